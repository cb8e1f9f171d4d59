"""The OpenID Connect client side, for upstream providers: Authlib behind one wall, like idp/oidc/ for the
provider side. Everything here ends in a plain `UpstreamClaims` (or UpstreamError): account logic is in
core/linking.py."""
from __future__ import annotations

import logging
import secrets

import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.flask_client import OAuth
from flask import Flask, current_app

from idp.core.linking import UpstreamClaims

log = logging.getLogger("idp.federation")
#: Seconds for one call to an upstream provider (discovery, token, JWKS, userinfo).
TIMEOUT = 10


class UpstreamError(Exception):
    """The provider refused, failed or answered something we must not trust. `reason` is for the audit."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


def init_app(app: Flask) -> None:
    """One Authlib registry per app (tests build many apps with different upstreams)."""
    oauth = OAuth()
    oauth.init_app(app)
    for up in app.config["UPSTREAM"]:
        kwargs = {"scope": " ".join(up["scopes"]), "code_challenge_method": "S256", "default_timeout": TIMEOUT,
                  "token_endpoint_auth_method": "client_secret_basic" if up["client_secret"] else "none"}
        oauth.register(up["name"], client_id=up["client_id"], client_secret=up["client_secret"],
                       server_metadata_url=up["issuer"] + "/.well-known/openid-configuration",
                       client_kwargs=kwargs)
    app.extensions["idp.upstream_oauth"] = oauth


def _client(name: str):
    client = current_app.extensions["idp.upstream_oauth"].create_client(name)
    if client is None:
        raise UpstreamError("unknown_provider", name)
    return client


def _metadata(name: str, client) -> dict:
    try:
        metadata = client.load_server_metadata()
    except (requests.RequestException, ValueError) as exc:
        raise UpstreamError("provider_unreachable", f"discovery failed: {type(exc).__name__}") from None
    issuer = next(u["issuer"] for u in current_app.config["UPSTREAM"] if u["name"] == name)
    if metadata.get("issuer", "").rstrip("/") != issuer:
        # OpenID Connect Discovery §4.3: the document must name the issuer it was fetched for.
        raise UpstreamError("issuer_mismatch", f"discovery names {metadata.get('issuer')!r}")
    return metadata


def authorize_redirect(name: str, redirect_uri: str, *, prompt: str | None = None):
    """The redirect to the provider's authorization endpoint (state, nonce and PKCE kept in the session)."""
    client = _client(name)
    _metadata(name, client)
    extra = {"prompt": prompt} if prompt else {}
    return client.authorize_redirect(redirect_uri, nonce=secrets.token_urlsafe(24), **extra)


def finish(name: str) -> UpstreamClaims:
    """Exchange the code from the callback and return who the provider says this is."""
    client = _client(name)
    _metadata(name, client)
    try:
        token = client.authorize_access_token()
    except OAuthError as exc:
        raise UpstreamError(exc.error or "oauth_error", exc.description or "") from None
    except requests.RequestException as exc:
        raise UpstreamError("provider_unreachable", f"token request failed: {type(exc).__name__}") from None
    except Exception as exc:  # a bad ID token signature, audience, nonce or expiry
        log.info("upstream %s: ID token refused: %s", name, exc)
        raise UpstreamError("invalid_id_token", type(exc).__name__) from None
    id_claims = token.get("userinfo")
    if not id_claims or not id_claims.get("sub"):
        raise UpstreamError("no_id_token", "the token response carried no ID token")
    claims = dict(id_claims)
    try:
        info = client.userinfo(token=token)
    except requests.RequestException as exc:
        raise UpstreamError("provider_unreachable", f"userinfo failed: {type(exc).__name__}") from None
    if info.get("sub") != id_claims["sub"]:
        # OIDC Core §5.3.2: userinfo about someone else must not be used.
        raise UpstreamError("userinfo_subject_mismatch", "")
    claims.update(info)
    verified = claims.get("email_verified")
    name_claim = claims.get("name") or " ".join(x for x in (claims.get("given_name"), claims.get("family_name")) if x)
    return UpstreamClaims(provider=name, subject=str(claims["sub"])[:255],
                          email=str(claims["email"])[:254] if claims.get("email") else None,
                          email_verified=verified is True or verified == "true", name=name_claim or None)
