""""e-learning", the demo's OpenID Connect client: what a Moodle-like app does with the IdP, through
Authlib's Flask client (as the IdP's own upstream login does, idp/federation/client.py).

Everything comes from discovery (/.well-known/openid-configuration). /login starts the code flow with
PKCE (S256), state and nonce; /oidc/callback exchanges the code (client_secret_basic), checks the ID
token (signature through the JWKS, iss, aud, exp, nonce) and asks userinfo, whose `sub` must be the ID
token's (OIDC Core §5.3.2). /logout is RP-initiated logout at the end_session_endpoint with
id_token_hint, post_logout_redirect_uri and state. POST /oidc/backchannel takes the IdP's logout token
(Back-Channel Logout 1.0 §2.6: signature, iss, aud, the event claim, no nonce) and ends the app sessions of
that IdP session (sid), so logging out in USOSweb logs the person out here too.
"""
from __future__ import annotations

import secrets

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, redirect, request, session
from flask_babel import gettext as _
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from idp.demo.web import SessionStore, as_text, as_time, make_app, page

CLIENT_ID = "elearning"
SCOPES = "openid profile email university"
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: What the registry signs this client's tokens with (the IdP's default); nothing else is accepted.
ALGORITHMS = ["RS256"]
#: Seconds for each call to the IdP (discovery, token, JWKS, userinfo).
TIMEOUT = 10
NAME = "e-learning"
COLOUR = "#7a2e8c"
#: Claims of the userinfo answer shown on the page, in this order; the rest follow.
SHOWN_FIRST = ("name", "email", "album", "role")
TIME_CLAIMS = ("exp", "iat", "auth_time", "nbf")


def _claim_rows(claims: dict) -> list[tuple[str, str]]:
    """The ID token's claims as (name, text) rows, times also as dates."""
    return [(k, as_time(v) if k in TIME_CLAIMS else as_text(v)) for k, v in sorted(claims.items())]


class LogoutTokenRefused(Exception):
    """A back-channel logout request this app must answer with 400 (§2.8)."""


def create_app(base_url: str, issuer: str, client_secret: str, links: list[tuple[str, str]] | None = None) -> Flask:
    """The app at `base_url`, a confidential client of the IdP whose issuer (= base URL) is `issuer`."""
    app = make_app(__name__, session_cookie="elearning_session")
    store = SessionStore()
    oauth = OAuth(app)
    oauth.register("idp", client_id=CLIENT_ID, client_secret=client_secret,
                   server_metadata_url=f"{issuer}/.well-known/openid-configuration",
                   client_kwargs={"scope": SCOPES, "code_challenge_method": "S256",
                                  "token_endpoint_auth_method": "client_secret_basic", "default_timeout": TIMEOUT})
    redirect_uri = f"{base_url}/oidc/callback"
    logged_out_uri = f"{base_url}/logged-out"

    def show(title: str, body: str, status: int = 200, **context):
        return page(NAME, _("Courses (OpenID Connect demo app)"), COLOUR, title, body, links=links or [],
                    **context), status

    def logged_out_page(title: str, intro: str):
        return show(title, """
<p>{{ intro }}</p>
<p><a id="login" class="button" href="login">{{ login }}</a></p>""",
                    intro=intro, login=_("Log in"))

    @app.get("/")
    def home():
        current = store.get(session.get("key"))
        if current is None:
            session.pop("key", None)
            return logged_out_page(_("You are not logged in"),
                                   _("Your courses, quizzes and assignments. Log in with your university "
                                     "account: if you are already logged in to another university app, "
                                     "no password is asked."))
        info = current["userinfo"]
        ordered = [k for k in SHOWN_FIRST if k in info] + sorted(k for k in info if k not in SHOWN_FIRST)
        return show(_("Welcome, %(name)s", name=info.get("name") or current["sub"]), """
<p>{{ intro }}</p>
<h2>{{ userinfo_title }}</h2>
<table id="userinfo">{% for key in ordered %}
<tr><th scope="row">{{ key }}</th><td id="claim-{{ key }}">{{ info[key]|text }}</td></tr>{% endfor %}</table>
<h2>{{ id_token_title }}</h2>
<table id="id-token">{% for key, value in claims %}
<tr><th scope="row">{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<p><a id="logout" class="button" href="logout">{{ logout }}</a></p>
<p class="note">{{ note }}</p>""",
                    intro=_("The IdP vouched for you through OpenID Connect (code flow with PKCE)."),
                    userinfo_title=_("From the userinfo endpoint"), info=info, ordered=ordered,
                    id_token_title=_("ID token claims"), claims=_claim_rows(current["claims"]), logout=_("Log out"),
                    note=_("Logging out here ends your single-sign-on session: every other app logs you out "
                           "too."))

    def unreachable(exc: Exception):
        return show(_("The IdP does not answer"), """
<p>{{ message }}</p><p><code id="error">{{ error }}</code></p>""", 502,
                    message=_("The university's login service could not be reached. Try again in a moment."),
                    error=type(exc).__name__)

    @app.get("/login")
    def login():
        try:
            return oauth.idp.authorize_redirect(redirect_uri, nonce=secrets.token_urlsafe(24))
        except requests.RequestException as exc:  # discovery failed
            return unreachable(exc)

    @app.get("/oidc/callback")
    def callback():
        try:
            token = oauth.idp.authorize_access_token()
            claims = dict(token["userinfo"])  # the ID token's claims, checked by Authlib
            info = dict(oauth.idp.userinfo(token=token))
            if info.get("sub") != claims.get("sub"):
                raise OAuthError(error="userinfo_subject_mismatch")
        except (OAuthError, requests.RequestException, JoseError, KeyError) as exc:
            error = getattr(exc, "error", None) or type(exc).__name__
            return show(_("Login failed"), """
<p>{{ message }}</p><p><code id="error">{{ error }}</code></p>
<p><a class="button" href="login">{{ again }}</a></p>""", 403,
                        message=_("The login did not complete."), error=error, again=_("Try again"))
        session["key"] = store.new({"claims": claims, "userinfo": info, "id_token": token["id_token"],
                                    "sid": claims.get("sid"), "sub": claims["sub"]})
        return redirect(f"{base_url}/")

    @app.get("/logout")
    def logout():
        current = store.get(session.get("key"))
        store.drop(session.pop("key", None))  # the app's own session ends at once
        if current is None:
            return redirect(f"{base_url}/")
        try:
            return oauth.idp.logout_redirect(post_logout_redirect_uri=logged_out_uri,
                                             id_token_hint=current["id_token"])
        except requests.RequestException as exc:
            return unreachable(exc)

    @app.get("/logged-out")
    def logged_out():
        try:
            oauth.idp.validate_logout_response()  # the state this app sent
        except OAuthError:
            return redirect(f"{base_url}/")
        return logged_out_page(_("You have logged out"),
                               _("You have logged out of e-learning and of the university's single sign-on."))

    @app.post("/oidc/backchannel")
    def backchannel():
        try:
            claims = verify_logout_token(request.form.get("logout_token", ""))
        except LogoutTokenRefused as exc:
            return {"error": "invalid_request", "error_description": str(exc)}, 400
        if claims.get("sid"):
            store.drop_where("sid", claims["sid"])
        else:
            store.drop_where("sub", claims["sub"])
        return "", 200

    def verify_logout_token(raw: str) -> dict:
        """The claims of a valid logout token, or LogoutTokenRefused saying why not."""
        if not raw:
            raise LogoutTokenRefused("no logout_token")
        metadata = oauth.idp.load_server_metadata()
        try:
            try:
                token = jwt.decode(raw, KeySet.import_key_set(oauth.idp.fetch_jwk_set()), algorithms=ALGORITHMS)
            except InvalidKeyIdError:  # the IdP rotated its keys since we fetched them
                token = jwt.decode(raw, KeySet.import_key_set(oauth.idp.fetch_jwk_set(force=True)),
                                   algorithms=ALGORITHMS)
            JWTClaimsRegistry(iss={"essential": True, "value": metadata["issuer"]},
                              aud={"essential": True, "value": CLIENT_ID},
                              iat={"essential": True}, exp={"essential": True}).validate(token.claims)  # exp, iat too
        except (JoseError, ValueError, requests.RequestException) as exc:
            raise LogoutTokenRefused(type(exc).__name__) from None
        claims = token.claims
        if BACKCHANNEL_EVENT not in (claims.get("events") or {}):
            raise LogoutTokenRefused("no back-channel logout event")
        if "nonce" in claims:
            raise LogoutTokenRefused("a logout token carries no nonce")
        if not claims.get("sid") and not claims.get("sub"):
            raise LogoutTokenRefused("neither sid nor sub")
        return claims

    return app
