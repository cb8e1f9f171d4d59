"""A small "e-learning" OpenID Connect relying party on 127.0.0.1 for the end-to-end tests.

Every protocol step goes through `oic` (pyoidc), an independent, OpenID-certified RP library, never
through our own code: discovery (`Client.provider_config`), the authorization request with PKCE S256
(`add_code_challenge`), nonce and state, the authorization response (state, RFC 9207 `iss`), the code
exchange with client_secret_basic (`do_access_token_request`: ID token signature through the JWKS, iss,
aud, azp, exp/iat, nonce), userinfo (`do_user_info_request`: sub must match the ID token), a refresh
(`do_access_token_refresh`), RP-initiated logout (an EndSessionRequest with id_token_hint and
post_logout_redirect_uri), and back-channel logout (`BackChannelLogoutRequest.verify`: the logout token's
signature, iss, aud and events claim).

Routes:
- GET /            the app's page: who is logged in; without an app session it starts the code flow
- GET /oidc/callback  the authorization response: code exchange, ID token check, userinfo, refresh
- GET /logout      RP-initiated logout at the provider's end_session_endpoint
- GET /logged-out  the registered post_logout_redirect_uri
- POST /oidc/backchannel  OpenID Connect Back-Channel Logout 1.0

Everything is recorded (completed logins with their claims and tokens, back-channel posts) so a test can
assert on it. A failure is recorded and shown on the page rather than raised into the HTTP server.
"""
from __future__ import annotations

import html
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from oic.oauth2.message import ErrorResponse
from oic.oic import Client
from oic.oic.message import (
    AccessTokenResponse,
    AuthorizationRequest,
    AuthorizationResponse,
    BackChannelLogoutRequest,
    EndSessionRequest,
    IdToken,
    OpenIDSchema,
    RegistrationResponse,
)
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from oic.utils.settings import OicClientSettings

CLIENT_ID = "elearning"
#: URL-safe on purpose: client_secret_basic form-encodes the secret (RFC 6749 §2.3.1).
CLIENT_SECRET = "e2e-" + "a-long-random-secret-value-" + "x7Qk9mZp2VtR4wLs8NbY"
SCOPES = ["openid", "profile", "email", "university"]
#: The algorithm the client expects ID tokens and logout tokens to be signed with (the registry default).
#: Passed to oic so that an unsigned token ("alg": "none") can never be accepted.
SIGNING_ALG = "RS256"
COOKIE = "elearning_session"
#: Seconds for each of oic's HTTP calls to the provider.
HTTP_TIMEOUT = 5


class FlowError(Exception):
    """A step of the code flow that the library refused or the provider answered with an error."""


@dataclass
class Pending:
    """An authorization request sent out and not yet answered."""
    client: Client
    state: str
    nonce: str
    code_verifier: str
    authorization_url: str


@dataclass
class Login:
    """One code flow the app completed (or tried to), and everything it learned."""
    state: str
    nonce: str
    code_verifier: str
    authorization_url: str
    #: The nonce oic itself remembered for this state (do_access_token_request compares the ID token's).
    library_nonce: str | None = None
    authorization_response: dict | None = None
    id_token: dict | None = None          # claims, as verified by oic
    id_token_header: dict | None = None   # the JWS header of the ID token (alg, kid, typ)
    id_token_jwt: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    token_scope: list[str] | None = None
    userinfo: dict | None = None
    refreshed: dict | None = None         # the refresh response (without the tokens' values)
    refreshed_access_token: str | None = None
    refreshed_refresh_token: str | None = None
    userinfo_after_refresh: dict | None = None
    error: str | None = None


@dataclass
class BackchannelPost:
    content_type: str
    logout_token: str | None
    claims: dict | None          # verified by oic, or None when refused
    header: dict | None
    error: str | None
    #: App sessions this logout ended (their sid matched the logout token's).
    ended_sessions: int = 0


@dataclass
class LogoutReturn:
    """A browser sent back to the post_logout_redirect_uri."""
    state: str | None
    expected_state: bool


@dataclass
class AppSession:
    login: Login
    client: Client
    name: str
    sid: str | None
    sub: str


@dataclass
class OidcAppState:
    issuer: str = ""
    pending: dict[str, Pending] = field(default_factory=dict)
    logins: list[Login] = field(default_factory=list)
    backchannel_posts: list[BackchannelPost] = field(default_factory=list)
    logout_returns: list[LogoutReturn] = field(default_factory=list)
    #: Logout requests this app sent (end_session URLs), by the state they carry.
    logout_states: dict[str, str] = field(default_factory=dict)
    #: Live app sessions by cookie value.
    sessions: dict[str, AppSession] = field(default_factory=dict)
    #: Tracebacks of requests the app itself failed on (a bug here, not a refusal by the library).
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def login_by_state(self, state: str) -> Login:
        found = [x for x in self.logins if x.state == state]
        assert len(found) == 1, f"{len(found)} logins with state {state}"
        return found[0]


def _cookie(header: str | None) -> str | None:
    for part in (header or "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None


class _Handler(BaseHTTPRequestHandler):
    server: OidcApp
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep the test output clean
        pass

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _page(self, status: int, title: str, body: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, "<!doctype html><html lang='pl'><head><meta charset='utf-8'>"
                           f"<title>{html.escape(title)}</title></head><body>{body}</body></html>", headers)

    # --- GET ----------------------------------------------------------------------------------------

    def do_GET(self):  # noqa: N802 (http.server naming)
        parts = urlsplit(self.path)
        try:
            if parts.path == "/":
                self._home()
            elif parts.path == "/oidc/callback":
                self._callback(parts.query)
            elif parts.path == "/logout":
                self._logout()
            elif parts.path == "/logged-out":
                self._logged_out(parts.query)
            else:
                self._send(404, "<p>not found</p>")
        except Exception:  # never hang the browser on a bug of the test app itself: show and record it
            trace = traceback.format_exc()
            with self.server.state.lock:
                self.server.state.errors.append(trace)
            self._page(500, "Błąd", f"<pre id='error'>{html.escape(trace)}</pre>")

    def _session(self) -> tuple[str | None, AppSession | None]:
        key = _cookie(self.headers.get("Cookie"))
        with self.server.state.lock:
            return key, self.server.state.sessions.get(key) if key else None

    def _home(self) -> None:
        _key, session = self._session()
        if session is None:
            self._send(302, "", {"Location": self.server.begin_login()})
            return
        info = session.login.userinfo or {}
        self._page(200, "E-learning", (
            f"<h1 id='welcome'>Witaj, {html.escape(session.name)}</h1>"
            f"<p>sub: <span id='sub'>{html.escape(session.sub)}</span></p>"
            f"<p>Album: <span id='album'>{html.escape(str(info.get('album', '')))}</span></p>"
            f"<p>E-mail: <span id='email'>{html.escape(str(info.get('email', '')))}</span></p>"
            "<p><a id='logout' href='/logout'>Wyloguj</a></p>"))

    def _callback(self, query: str) -> None:
        state = (parse_qs(query).get("state") or [""])[0]
        with self.server.state.lock:
            pending = self.server.state.pending.pop(state, None)
        if pending is None:
            self._page(400, "Błąd", "<h1>Unknown or reused state</h1>")
            return
        login = Login(state=pending.state, nonce=pending.nonce, code_verifier=pending.code_verifier,
                      authorization_url=pending.authorization_url,
                      library_nonce=pending.client.state2nonce.get(pending.state))
        with self.server.state.lock:
            self.server.state.logins.append(login)
        try:
            self.server.complete_login(pending, query, login)
        except Exception as exc:
            login.error = f"{type(exc).__name__}: {exc}"
            self._page(403, "Logowanie nieudane", f"<h1>Logowanie nieudane</h1>"
                                                  f"<p id='error'>{html.escape(login.error)}</p>")
            return
        key = secrets.token_urlsafe(24)
        info = login.userinfo or {}
        name = info.get("name") or f"{info.get('given_name', '')} {info.get('family_name', '')}".strip()
        with self.server.state.lock:
            self.server.state.sessions[key] = AppSession(login=login, client=pending.client, name=name,
                                                         sid=login.id_token.get("sid"), sub=login.id_token["sub"])
        self._send(303, "", {"Location": "/",
                             "Set-Cookie": f"{COOKIE}={key}; Path=/; HttpOnly; SameSite=Lax"})

    def _logout(self) -> None:
        key, session = self._session()
        if session is None:
            self._page(200, "Wylogowano", "<h1 id='logged-out'>Nie jesteś zalogowany</h1>")
            return
        with self.server.state.lock:
            self.server.state.sessions.pop(key, None)  # the app's own session ends at once, as a real RP does
        self._send(302, "", {"Location": self.server.end_session_url(session),
                             "Set-Cookie": f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"})

    def _logged_out(self, query: str) -> None:
        state = (parse_qs(query).get("state") or [None])[0]
        with self.server.state.lock:
            expected = state is not None and self.server.state.logout_states.pop(state, None) is not None
            self.server.state.logout_returns.append(LogoutReturn(state, expected))
        self._page(200, "Wylogowano", "<h1 id='logged-out'>Wylogowano z e-learningu</h1>")

    # --- POST ---------------------------------------------------------------------------------------

    def do_POST(self):  # noqa: N802
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        if parts.path != "/oidc/backchannel":
            self._send(404, "<p>not found</p>")
            return
        post = self.server.backchannel_logout(self.headers.get("Content-Type", ""), body)
        # Back-Channel Logout 1.0 §2.8: 200 on success, 400 when the request is refused.
        self._send(200 if post.error is None else 400, "" if post.error is None else html.escape(post.error))


class OidcApp(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = OidcAppState()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.redirect_uri = f"{self.url}/oidc/callback"
        self.post_logout_redirect_uri = f"{self.url}/logged-out"
        self.backchannel_logout_uri = f"{self.url}/oidc/backchannel"
        self._thread = threading.Thread(target=self.serve_forever, name="e2e-oidc-app", daemon=True)
        self._verifier: Client | None = None
        self._verifier_lock = threading.Lock()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> OidcApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)

    # --- oic ----------------------------------------------------------------------------------------

    def new_client(self) -> Client:
        """A client configured from the provider's discovery document and JWKS, statically registered."""
        if not self.state.issuer:
            raise FlowError("the app does not know its provider yet")
        client = Client(client_authn_method=CLIENT_AUTHN_METHOD,
                        settings=OicClientSettings(timeout=HTTP_TIMEOUT))
        client.provider_config(self.state.issuer)  # discovery + JWKS into the key jar; issuer must match
        client.store_registration_info(RegistrationResponse(
            client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uris=[self.redirect_uri],
            token_endpoint_auth_method="client_secret_basic",
            post_logout_redirect_uris=[self.post_logout_redirect_uri]))
        client.redirect_uris = [self.redirect_uri]
        return client

    def begin_login(self) -> str:
        """The authorization request URL (code flow, PKCE S256, nonce, state), built by oic."""
        client = self.new_client()
        pkce, verifier = client.add_code_challenge()  # {"code_challenge": ..., "code_challenge_method": "S256"}
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        args = {"client_id": CLIENT_ID, "response_type": "code", "scope": SCOPES, "redirect_uri": self.redirect_uri,
                "state": state, "nonce": nonce, **pkce}
        # request_info (not construct_AuthorizationRequest alone) also remembers state -> nonce, which
        # do_access_token_request checks against the ID token.
        url, _body, _http, _req = client.request_info(AuthorizationRequest, method="GET", request_args=args)
        with self.state.lock:
            self.state.pending[state] = Pending(client, state, nonce, verifier, url)
        return url

    def complete_login(self, pending: Pending, query: str, login: Login) -> None:
        client = pending.client
        aresp = client.parse_response(AuthorizationResponse, info=query, sformat="urlencoded")
        login.authorization_response = aresp.to_dict()
        if isinstance(aresp, ErrorResponse) or "error" in aresp:
            raise FlowError(f"authorization error: {aresp.to_dict()}")
        if aresp.get("state") != pending.state:
            raise FlowError("state mismatch")

        tresp = client.do_access_token_request(
            state=pending.state, authn_method="client_secret_basic", algs={"sign": SIGNING_ALG},
            request_args={"code": aresp["code"], "redirect_uri": self.redirect_uri,
                          "code_verifier": pending.code_verifier})
        if not isinstance(tresp, AccessTokenResponse):
            raise FlowError(f"token endpoint: {tresp.to_dict()}")
        if "id_token" not in tresp:
            raise FlowError("no id_token in the token response")
        idt = tresp["id_token"]  # an IdToken verified by oic
        login.id_token = idt.to_dict()
        login.id_token_header = dict(idt.jws_header)
        login.id_token_jwt = tresp["id_token_jwt"]
        login.access_token = tresp["access_token"]
        login.refresh_token = tresp.get("refresh_token")
        login.token_scope = tresp.get("scope")
        if login.id_token.get("nonce") != pending.nonce:  # oic checked it too; be explicit
            raise FlowError("nonce mismatch")

        info = client.do_user_info_request(method="GET", state=pending.state)
        if not isinstance(info, OpenIDSchema):
            raise FlowError(f"userinfo: {info.to_dict()}")
        login.userinfo = info.to_dict()

        if not login.refresh_token:
            raise FlowError("no refresh token issued")
        refreshed = client.do_access_token_refresh(state=pending.state, authn_method="client_secret_basic")
        if not isinstance(refreshed, AccessTokenResponse):
            raise FlowError(f"refresh: {refreshed.to_dict()}")
        login.refreshed = {k: v for k, v in refreshed.to_dict().items() if k not in ("access_token", "refresh_token")}
        login.refreshed_access_token = refreshed["access_token"]
        login.refreshed_refresh_token = refreshed.get("refresh_token")
        after = client.do_user_info_request(method="GET", state=pending.state)
        login.userinfo_after_refresh = after.to_dict()

    def end_session_url(self, session: AppSession) -> str:
        """RP-initiated logout: end_session_endpoint with id_token_hint and post_logout_redirect_uri."""
        state = secrets.token_urlsafe(12)
        url, _body, _http, _req = session.client.request_info(
            EndSessionRequest, method="GET",
            request_args={"id_token_hint": session.login.id_token_jwt, "state": state,
                          "post_logout_redirect_uri": self.post_logout_redirect_uri})
        with self.state.lock:
            self.state.logout_states[state] = url
        return url

    def verify_id_token(self, jwt: str) -> dict:
        """Check an ID token the way the code flow does (oic: signature through the JWKS with the expected
        algorithm, iss, aud/azp, exp/iat); raises when it is not acceptable."""
        client = self._verifier_client()
        token = IdToken().from_jwt(jwt, keyjar=client.keyjar, algs={"sign": SIGNING_ALG})
        token.verify(iss=client.provider_info["issuer"], client_id=CLIENT_ID, keyjar=client.keyjar)
        return token.to_dict()

    def _verifier_client(self) -> Client:
        with self._verifier_lock:
            if self._verifier is None:
                self._verifier = self.new_client()
            return self._verifier

    def backchannel_logout(self, content_type: str, body: str) -> BackchannelPost:
        raw = (parse_qs(body).get("logout_token") or [None])[0]
        post = BackchannelPost(content_type=content_type, logout_token=raw, claims=None, header=None, error=None)
        try:
            if not content_type.startswith("application/x-www-form-urlencoded"):
                raise FlowError(f"unexpected content type {content_type!r}")
            client = self._verifier_client()
            request = BackChannelLogoutRequest().from_urlencoded(body)
            # Signature through the provider's JWKS (RS256 only), iss, aud, the events claim, sid or sub.
            request.verify(keyjar=client.keyjar, iss=client.provider_info["issuer"], aud=CLIENT_ID,
                           algs={"sign": SIGNING_ALG})
            token = request["logout_token"]
            post.claims = token.to_dict()
            post.header = dict(token.jws_header)
            if "exp" in post.claims and post.claims["exp"] < time.time():
                raise FlowError("expired logout token")
        except Exception as exc:
            post.error = f"{type(exc).__name__}: {exc}"
        with self.state.lock:
            if post.error is None:
                sid, sub = post.claims.get("sid"), post.claims.get("sub")
                for key, session in list(self.state.sessions.items()):
                    if (sid and session.sid == sid) or (not sid and sub and session.sub == sub):
                        del self.state.sessions[key]
                        post.ended_sessions += 1
            self.state.backchannel_posts.append(post)
        return post
