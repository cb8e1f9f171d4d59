"""Helpers for the OIDC HTTP tests: registered clients, a browser that walks the code flow, a token
endpoint caller, ID-token verification with joserfc against the published JWKS only, a frozen clock.

Nothing here uses idp.oidc.keys: tokens are checked the way a relying party would, from /oidc/jwks.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
import warnings
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import KeySet

from tests.conftest import SERVICES, USOSWEB, cas_login, csrf_token
from tests.factories import PASSWORD

ISSUER = "http://127.0.0.1:8000"  # BASE_URL of the app fixture
USER = "lukasz.zolkiewski@student.example.edu.pl"

# --- the registered clients ---------------------------------------------------------------------------

MAIL = "mail"  # confidential, first-party
MAIL_SECRET = "mail-secret-" + "m" * 40
MAIL_CB = "https://mail.example.edu.pl/oidc/callback"
MAIL_CB2 = "https://mail.example.edu.pl/oidc/callback2"
MAIL_HOME = "https://mail.example.edu.pl/"

ELEARNING = "elearning"  # confidential, third-party: asks for consent
ELEARNING_SECRET = "elearning-secret-" + "e" * 40
ELEARNING_CB = "https://elearning.example.edu.pl/oidc/callback"
ELEARNING_HOME = "https://elearning.example.edu.pl/"

MOBILE = "mobile"  # public (no secret): PKCE required
MOBILE_CB = "https://app.example.edu.pl/callback"

REPORTS = "reports"  # client_credentials only (service to service)
REPORTS_SECRET = "reports-secret-" + "r" * 40

LIBRARY = "library"  # ES256 ID tokens
LIBRARY_SECRET = "library-secret-" + "l" * 40
LIBRARY_CB = "https://library.example.edu.pl/cb"

WIKI = "wiki"  # EdDSA ID tokens
WIKI_SECRET = "wiki-secret-" + "w" * 40
WIKI_CB = "https://wiki.example.edu.pl/cb"

CLIENTS = [
    {"name": "Poczta", "protocol": "oidc", "client_id": MAIL, "client_secret": MAIL_SECRET,
     "redirect_uris": [MAIL_CB, MAIL_CB2], "scopes": ["openid", "profile", "email", "university"],
     "grant_types": ["authorization_code", "refresh_token"], "post_logout_redirect_uris": [MAIL_HOME],
     "first_party": True},
    {"name": "E-learning", "protocol": "oidc", "client_id": ELEARNING, "client_secret": ELEARNING_SECRET,
     "redirect_uris": [ELEARNING_CB], "scopes": ["openid", "profile", "email"],
     "post_logout_redirect_uris": [ELEARNING_HOME]},
    {"name": "Aplikacja mobilna", "protocol": "oidc", "client_id": MOBILE, "redirect_uris": [MOBILE_CB],
     "scopes": ["openid", "profile", "email"], "first_party": True},
    {"name": "Raporty", "protocol": "oidc", "client_id": REPORTS, "client_secret": REPORTS_SECRET,
     "redirect_uris": ["https://reports.example.edu.pl/cb"], "scopes": ["openid", "profile"],
     "grant_types": ["client_credentials"]},
    {"name": "Biblioteka", "protocol": "oidc", "client_id": LIBRARY, "client_secret": LIBRARY_SECRET,
     "redirect_uris": [LIBRARY_CB], "scopes": ["openid", "profile"], "first_party": True,
     "id_token_signed_response_alg": "ES256"},
    {"name": "Wiki", "protocol": "oidc", "client_id": WIKI, "client_secret": WIKI_SECRET,
     "redirect_uris": [WIKI_CB], "scopes": ["openid", "profile"], "first_party": True,
     "id_token_signed_response_alg": "EdDSA"},
]
SECRETS = {MAIL: MAIL_SECRET, ELEARNING: ELEARNING_SECRET, REPORTS: REPORTS_SECRET, LIBRARY: LIBRARY_SECRET,
           WIKI: WIKI_SECRET, MOBILE: None}
CALLBACKS = {MAIL: MAIL_CB, ELEARNING: ELEARNING_CB, MOBILE: MOBILE_CB, LIBRARY: LIBRARY_CB, WIKI: WIKI_CB}
ALGS = {LIBRARY: "ES256", WIKI: "EdDSA"}


@pytest.fixture
def client(client):
    """The root conftest's browser, preferring English so assertions can use the English wording."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def browser(app):
    """browser() -> another, independent browser (own cookie jar)."""
    from tests.conftest import FreshContextClient

    def make():
        c = FreshContextClient(app, app.response_class, use_cookies=True)
        c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        return c

    return make


@pytest.fixture
def register(app):
    """register(*entries): the CAS services of tests/conftest, CLIENTS, and extra entries."""
    from idp.core import registry

    def _register(*entries: dict) -> None:
        registry.replace_all([dict(s) for s in SERVICES] + [dict(c) for c in CLIENTS] + [dict(e) for e in entries])

    return _register


@pytest.fixture
def clients(register):
    register()


@pytest.fixture
def oidc(app, clients, person):
    """The registered clients and a person who can log in (the common starting point)."""
    return person


# --- the flow, as a browser walks it --------------------------------------------------------------------

def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def auth_params(client_id: str = MAIL, *, redirect_uri: str | None = "default", scope: str = "openid",
                state: str | None = "st-123", nonce: str | None = "n-456", challenge: str | None = None,
                **extra) -> dict:
    params = {"response_type": "code", "client_id": client_id, "scope": scope}
    if redirect_uri == "default":
        redirect_uri = CALLBACKS.get(client_id)
    if redirect_uri is not None:
        params["redirect_uri"] = redirect_uri
    if state is not None:
        params["state"] = state
    if nonce is not None:
        params["nonce"] = nonce
    if challenge is not None:
        params["code_challenge"] = challenge
        params["code_challenge_method"] = "S256"
    params.update({k: v for k, v in extra.items() if v is not None})
    return params


def location(response) -> str:
    assert response.status_code in (302, 303), (response.status_code, response.get_data(as_text=True)[:1500])
    return response.headers["Location"]


def query(response_or_url) -> dict[str, str]:
    """The query parameters of a redirect (single values; a repeated parameter fails the test)."""
    url = response_or_url if isinstance(response_or_url, str) else location(response_or_url)
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def local(url: str) -> str:
    """A redirect inside the IdP, as a path the test client can follow."""
    parts = urlsplit(url)
    assert parts.netloc in ("", "localhost", "127.0.0.1:8000"), url
    return parts.path + ("?" + parts.query if parts.query else "")


def is_login_form(html: str) -> bool:
    return 'name="password"' in html and 'name="username"' in html


def authorize(client, params: dict, *, login: bool = True, username: str = USER, password: str = PASSWORD):
    """GET /oidc/authorize; when sent to the login page (and `login`), log in and come back.
    Returns the final response of the IdP (the redirect to the client, a page, ...)."""
    r = client.get("/oidc/authorize", query_string=params)
    if login and r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/cas/login":
        login_path = local(r.headers["Location"])
        page = client.get(login_path)
        assert is_login_form(page.get_data(as_text=True))
        r = client.post(login_path, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                          "username": username, "password": password})
        back = local(location(r))
        assert urlsplit(back).path == "/oidc/authorize", back
        r = client.get(back)
    return r


def consent(client, params: dict, decision: str = "allow"):
    """Answer the consent page currently shown for these authorization parameters."""
    page = client.get("/oidc/authorize", query_string=params)
    assert page.status_code == 200 and 'name="decision"' in page.get_data(as_text=True), page.status_code
    return client.post("/oidc/authorize", query_string=params,
                       data={"csrf_token": csrf_token(page.get_data(as_text=True)), "decision": decision})


def code_from(response, redirect_uri: str | None = None) -> str:
    url = location(response)
    if redirect_uri:
        assert without_query(url) == redirect_uri, url
    q = query(url)
    assert "error" not in q, q
    assert q["iss"] == ISSUER
    return q["code"]


def get_code(client, client_id: str = MAIL, **kw) -> tuple[str, dict]:
    """A code for client_id (logging in if the browser has no session; consenting when asked)."""
    params = auth_params(client_id, **kw)
    r = authorize(client, params)
    if r.status_code == 200 and 'name="decision"' in r.get_data(as_text=True):
        r = consent(client, params)
    return code_from(r, params.get("redirect_uri")), params


def token_request(client, data: dict, *, client_id: str | None = MAIL, secret: str | None = "default",
                  auth: str = "basic"):
    """POST /oidc/token with client authentication by `auth`: basic | post | none."""
    if secret == "default":
        secret = SECRETS.get(client_id)
    data = dict(data)
    headers = {}
    if auth == "basic":
        raw = f"{client_id}:{secret}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
    elif auth == "post":
        data.update(client_id=client_id, client_secret=secret)
    elif auth == "none":
        data["client_id"] = client_id
    return client.post("/oidc/token", data=data, headers=headers)


def exchange(client, code: str, client_id: str = MAIL, *, redirect_uri: str | None = "default",
             verifier: str | None = None, auth: str | None = None, **kw):
    if redirect_uri == "default":
        redirect_uri = CALLBACKS.get(client_id)
    data = {"grant_type": "authorization_code", "code": code}
    if redirect_uri is not None:
        data["redirect_uri"] = redirect_uri
    if verifier is not None:
        data["code_verifier"] = verifier
    if auth is None:
        auth = "none" if SECRETS.get(client_id) is None else "basic"
    return token_request(client, data, client_id=client_id, auth=auth, **kw)


def tokens(client, client_id: str = MAIL, **kw) -> dict:
    """Log in (if needed), get a code and exchange it: the token response."""
    code, _ = get_code(client, client_id, **kw)
    r = exchange(client, code, client_id)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def refresh(client, refresh_token: str, client_id: str = MAIL, **extra):
    return token_request(client, {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra},
                         client_id=client_id)


def error_of(response, status: int = 400) -> str:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:1500])
    body = response.get_json()
    assert body is not None, response.get_data(as_text=True)[:500]
    return body["error"]


def userinfo(client, access_token: str | None):
    headers = {"Authorization": f"Bearer {access_token}"} if access_token is not None else {}
    return client.get("/oidc/userinfo", headers=headers)


def introspect(client, token: str, *, client_id: str = MAIL, auth: str = "basic", **extra):
    return _endpoint(client, "/oidc/introspect", token, client_id, auth, extra)


def revoke(client, token: str, *, client_id: str = MAIL, auth: str = "basic", **extra):
    return _endpoint(client, "/oidc/revoke", token, client_id, auth, extra)


def _endpoint(client, path: str, token: str, client_id: str | None, auth: str, extra: dict):
    data = {"token": token, **extra}
    headers = {}
    secret = SECRETS.get(client_id)
    if auth == "basic":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    elif auth == "post":
        data.update(client_id=client_id, client_secret=secret)
    elif auth == "none":
        data["client_id"] = client_id
    return client.post(path, data=data, headers=headers)


# --- verifying what the IdP signed, with the JWKS only ---------------------------------------------------

def jwks(client) -> dict:
    r = client.get("/oidc/jwks")
    assert r.status_code == 200
    return r.get_json()


def jose_header(token: str) -> dict:
    import json

    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def verify_jwt(client, token: str, alg: str = "RS256") -> dict:
    """Verify a JWT with the published JWKS (joserfc): signature, kid present, alg as expected.
    Returns the claims; the caller checks them."""
    keyset = KeySet.import_key_set(jwks(client))
    header = jose_header(token)
    assert header["alg"] == alg, header
    assert header.get("kid") in {k.kid for k in keyset.keys}, header
    with warnings.catch_warnings():
        # joserfc flags "EdDSA" as deprecated (RFC 9864); OpenID Connect still names it so.
        warnings.simplefilter("ignore", SecurityWarning)
        decoded = jwt.decode(token, keyset, algorithms=[alg])
    return dict(decoded.claims)


def id_token_claims(client, token: str, client_id: str = MAIL, *, nonce: str | None = "n-456",
                    now: dt.datetime | None = None) -> dict:
    """The ID token's claims after the checks OIDC Core §3.1.3.7 asks of a relying party."""
    from joserfc.jwt import JWTClaimsRegistry

    claims = verify_jwt(client, token, ALGS.get(client_id, "RS256"))
    moment = int((now or dt.datetime.now(dt.UTC).replace(tzinfo=None)).replace(tzinfo=dt.UTC).timestamp())
    registry = JWTClaimsRegistry(now=moment, leeway=5, iss={"essential": True, "value": ISSUER},
                                 sub={"essential": True}, exp={"essential": True}, iat={"essential": True})
    registry.validate(claims)
    aud = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert client_id in aud
    if len(aud) > 1 or "azp" in claims:
        assert claims["azp"] == client_id
    if nonce is not None:
        assert claims["nonce"] == nonce
    else:
        assert "nonce" not in claims
    return claims


# --- time: the `clock` fixture and Clock live in tests/conftest.py ---------------------------------------


def timestamp(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


# --- CAS, for the shared session ------------------------------------------------------------------------

def cas_ticket_login(client, service: str = USOSWEB) -> str:
    r = cas_login(client, USER, PASSWORD, service)
    assert r.status_code == 302, r.get_data(as_text=True)[:1500]
    return parse_qs(urlsplit(r.headers["Location"]).query)["ticket"][0]


def audit_events(action: str | None = None) -> list:
    from idp.extensions import db
    from idp.models import AuditEvent

    q = db.select(AuditEvent).order_by(AuditEvent.id)
    if action:
        q = q.where(AuditEvent.action == action)
    db.session.expire_all()
    return list(db.session.scalars(q))

