"""OIDC endpoints: discovery, JWKS, authorize (on the shared SSO session), token, userinfo,
introspection, revocation, RP-initiated logout."""
from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import MissingAuthorizationError, UnsupportedTokenTypeError
from authlib.oauth2.rfc6750.errors import InsufficientScopeError
from flask import current_app, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from idp.core import audit, claims, provisioning, sso
from idp.core.accounts import has_left
from idp.core.clock import utcnow
from idp.core.registry import ID_TOKEN_ALGORITHMS
from idp.extensions import csrf, db
from idp.http import authflow, second_factor
from idp.http.errors import error_page
from idp.http.forms import Form
from idp.http.security import client_ip
from idp.http.sso_cookie import clear_tgc, current_session
from idp.models import Account, Consent, Service, SsoSession
from idp.oidc import bp
from idp.oidc.keys import InvalidToken
from idp.oidc.server import (
    Client,
    authorization_server,
    issuer,
    keystore,
    query_client,
    resource_protector,
)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"


def _policy():
    return current_app.extensions["idp.policy"]


def _url(endpoint: str) -> str:
    return issuer() + url_for(endpoint)


@bp.route("/.well-known/openid-configuration")
def discovery():
    """OpenID Provider Metadata (OIDC Discovery 1.0 §3, RFC 8414). The document depends only on the
    configuration: built and serialised once per app (every relying party fetches it at start)."""
    body = current_app.extensions.get("idp.oidc.discovery")
    if body is None:
        body = current_app.extensions["idp.oidc.discovery"] = current_app.json.dumps(_metadata())
    return current_app.response_class(body, mimetype="application/json",
                                      headers={"Cache-Control": "public, max-age=300"})


def _metadata() -> dict:
    return {
        "issuer": issuer(),
        "authorization_endpoint": _url("oidc.authorize"),
        "token_endpoint": _url("oidc.token"),
        "userinfo_endpoint": _url("oidc.userinfo"),
        "jwks_uri": _url("oidc.jwks"),
        "end_session_endpoint": _url("oidc.end_session"),
        "introspection_endpoint": _url("oidc.introspect"),
        "revocation_endpoint": _url("oidc.revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGORITHMS),
        "scopes_supported": list(claims.SCOPES),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "sid", "azp",
                             *[c for names in claims.SCOPES.values() for c in names]],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "acr_values_supported": ["urn:idp:acr:password"],
        "authorization_response_iss_parameter_supported": True,
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "ui_locales_supported": ["pl", "en"],
    }


@bp.route("/oidc/jwks")
def jwks():
    # The key file is looked at on every request (a stat), as the signer does before every signature: a
    # rotation by any process shows here the moment it can sign. The serialised document is reused while
    # the file and the clock's second stay the same (a retirement shows within the second).
    store = keystore()
    st = store.path.stat()
    second = utcnow().replace(microsecond=0)
    stamp = (st.st_ino, st.st_mtime_ns, st.st_size, second)
    cached = current_app.extensions.get("idp.oidc.jwks")
    if cached is None or cached[0] != stamp:
        body = current_app.json.dumps(store.public_jwks(second)).encode()
        cached = current_app.extensions["idp.oidc.jwks"] = (stamp, body)
    return current_app.response_class(cached[1], mimetype="application/json",
                                      headers={"Cache-Control": "public, max-age=300"})


# --- authorization --------------------------------------------------------------------------------------

class ConsentForm(Form):
    """Only the CSRF token: the decision is the button pressed (allow / deny)."""


def _error_redirect(redirect_uri: str, error: str, description: str, state: str | None):
    """An authorization error sent back to the client, with `iss` (RFC 9207)."""
    params = [("error", error), ("error_description", description)]
    if state:
        params.append(("state", state))
    params.append(("iss", issuer()))
    return redirect(add_params_to_uri(redirect_uri, params), code=302)


def _grant_error(exc: OAuth2Error):
    """Errors before the redirect URI is known to be the client's: a page, never a redirect."""
    if exc.redirect_uri:
        return _error_redirect(exc.redirect_uri, exc.error, exc.description or exc.error, exc.state)
    audit.record("oidc.authorize.refused", actor=request.args.get("client_id", "unknown")[:254],
                 reason=exc.error, client_ip=client_ip(), data={"detail": exc.description})
    return error_page(_("The application's login request is invalid"),
                      _("The application that sent you here made a request the login service cannot accept. "
                        "Contact the application's administrator."),
                      400, hint=f"{exc.error}: {exc.description}" if exc.description else exc.error)


def _auth_too_old(session: SsoSession, max_age: str | None) -> bool:
    if max_age is None or max_age == "":
        return False
    try:
        seconds = int(max_age)
    except ValueError:
        return False
    if seconds <= 0:
        return True  # max_age=0: authenticate now, whatever the clock says (≈ prompt=login)
    return (utcnow() - session.auth_time).total_seconds() > seconds


def _has_consent(account: Account, client: Client, scopes: list[str]) -> bool:
    row = db.session.scalar(db.select(Consent).where(Consent.account_id == account.id,
                                                    Consent.client_id == client.get_client_id()))
    return row is not None and set(scopes) <= set(row.scopes)


def _remember_consent(account: Account, client: Client, scopes: list[str]) -> None:
    row = db.session.scalar(db.select(Consent).where(Consent.account_id == account.id,
                                                    Consent.client_id == client.get_client_id()))
    if row is None:
        row = Consent(account_id=account.id, client_id=client.get_client_id(), scopes=[], granted_at=utcnow())
        db.session.add(row)
    row.scopes = sorted(set(row.scopes) | set(scopes))
    row.granted_at = utcnow()
    audit.record("oidc.consent.granted", account_id=account.id, client_ip=client_ip(), commit=False,
                 data={"client_id": client.get_client_id(), "scopes": scopes})
    db.session.commit()


#: The longest nonce kept with an authorization code (its column's length).
MAX_NONCE = 255


@bp.route("/oidc/authorize", methods=["GET", "POST"])
@csrf.exempt  # a relying party may POST the request (OIDC Core §3.1.2.1); the consent decision checks its own
def authorize():
    if request.method == "POST" and "decision" not in request.form:
        # An authorization request sent as a form POST: go on as the equivalent GET, so that the login
        # page's resume and the consent form (which posts back to the current URL) keep every parameter.
        return redirect(url_for("oidc.authorize") + "?" + urlencode(list(request.values.items(multi=True))),
                        code=303)
    server = authorization_server()
    current = current_session()
    account = db.session.get(Account, current.account_id) if current else None
    try:
        grant = server.get_consent_grant(end_user=account)
    except OAuth2Error as exc:
        return _grant_error(exc)
    client: Client = grant.client
    data = grant.request.payload.data
    state = grant.request.payload.state
    redirect_uri = grant.redirect_uri
    prompts = set((data.get("prompt") or "").split())
    if "none" in prompts and len(prompts) > 1:
        return _error_redirect(redirect_uri, "invalid_request", "prompt=none cannot be combined", state)
    # OIDC Core §6.1, §6.2: request objects are not supported (discovery says so); ignoring one would
    # answer a request other than the one the client signed.
    if data.get("request"):
        return _error_redirect(redirect_uri, "request_not_supported", "Request objects are not supported.", state)
    if data.get("request_uri"):
        return _error_redirect(redirect_uri, "request_uri_not_supported", "request_uri is not supported.", state)
    nonce = data.get("nonce") or ""
    if len(nonce) > MAX_NONCE or "\x00" in nonce:  # stored with the code; OIDC sets no limit, so say ours
        return _error_redirect(redirect_uri, "invalid_request",
                               f"nonce must be at most {MAX_NONCE} characters, without U+0000.", state)

    key = authflow.request_key()
    fresh = authflow.fresh_login_for(current, key)
    if current is None or (not fresh and ("login" in prompts or _auth_too_old(current, data.get("max_age")))):
        if "none" in prompts:
            return _error_redirect(redirect_uri, "login_required", "The person is not logged in.", state)
        authflow.expect_login_for(key)
        authflow.remember_resume(request.full_path, label=client.name, login_hint=data.get("login_hint"))
        params = {"renew": "true"} if current is not None else {}
        return redirect(url_for("cas.login", **params), code=302)

    if authflow.needs_second_factor(account) and second_factor.verified_at(current) is None:
        # policy "everyone", and this session began before it (or never passed the check)
        if "none" in prompts:
            return _error_redirect(redirect_uri, "interaction_required", "The second factor is needed.", state)
        return second_factor.to_verify(request.full_path)

    svc: Service = client.service
    if not provisioning.entitled(account, svc):
        ref = audit.record("oidc.authorize.not_provisioned", account_id=account.id, reason="not_entitled",
                           client_ip=client_ip(), data={"client_id": client.get_client_id()}).id
        if "none" in prompts:  # no page may be shown (OIDC Core §3.1.2.1): the client learns it from the error
            return _error_redirect(redirect_uri, "access_denied",
                                   f"The person has no account in this application (reference E{ref}).", state)
        return render_template("login/not_provisioned.html", service=svc, account=account, policy=_policy(),
                               last_migration=provisioning.last_migration(), ref=f"E{ref}"), 403

    scopes = (grant.request.scope or "").split()
    if not svc.first_party and ("consent" in prompts or not _has_consent(account, client, scopes)):
        if "none" in prompts:
            return _error_redirect(redirect_uri, "consent_required", "The person has not consented yet.", state)
        form = ConsentForm()
        if request.method == "POST":
            if not form.validate_on_submit():  # only the CSRF token can fail
                raise CSRFError(_("The form has expired"))
            if request.form.get("decision") != "allow":
                audit.record("oidc.consent.denied", account_id=account.id, client_ip=client_ip(),
                             data={"client_id": client.get_client_id()})
                return _error_redirect(redirect_uri, "access_denied", "The person declined.", state)
            _remember_consent(account, client, scopes)
        else:
            return render_template("oidc/consent.html", form=form, client=client, account=account,
                                   claims=claims.claims_for_consent(" ".join(scopes)), policy=_policy())

    authflow.forget_login_for()
    grant.request.sso_session = current
    response = server.create_authorization_response(grant_user=account, grant=grant)
    if response.status_code == 302 and "code=" in (response.headers.get("Location") or ""):
        sso.add_participant(current, service_id=svc.id, service_name=svc.name,
                            service_url=redirect_uri, ticket="", now=utcnow(), protocol="oidc")
        db.session.commit()
    return response


# --- token, userinfo, introspection, revocation -------------------------------------------------------------

@bp.route("/oidc/token", methods=["POST"])
@csrf.exempt
def token():
    response = authorization_server().create_token_response()
    # A code exchange has committed its claim and tokens already (save_token, before the signature), and a
    # refresh its tokens and rotation (revoke_old_credential); this commits the rest: a refused exchange's
    # claim (it still uses its code up: one PKCE try per code) and client_credentials tokens. Nothing left
    # means no commit (SQLAlchemy's session events and expiry for nothing). An exception before this rolls
    # back what is not committed (500).
    if db.session().in_transaction():
        db.session.commit()
    return response


def _bearer_error(status: int, error: str | None = None, description: str | None = None):
    """RFC 6750 §3: a challenge on every refusal; no error code when no token was presented at all."""
    challenge = "Bearer"
    body = {}
    if error:
        challenge += f' error="{error}"'
        body["error"] = error
        if description:
            challenge += f', error_description="{description}"'
            body["error_description"] = description
    return jsonify(body), status, {"WWW-Authenticate": challenge}


@bp.route("/oidc/userinfo", methods=["GET", "POST"])
@csrf.exempt
def userinfo():
    protector = resource_protector()
    try:
        tok = protector.acquire_token(["openid"])
    except (MissingAuthorizationError, UnsupportedTokenTypeError):
        return _bearer_error(401)
    except InsufficientScopeError:
        return _bearer_error(403, "insufficient_scope", "The access token was not issued for the openid scope.")
    except OAuth2Error:
        return _bearer_error(401, "invalid_token", "The access token is invalid, expired or revoked.")
    account = db.session.get(Account, tok.account_id) if tok.account_id else None
    if account is None or has_left(account, _policy()):
        return _bearer_error(401, "invalid_token", "The access token is invalid, expired or revoked.")
    return jsonify(claims.for_scope(account, tok.scope, _policy()))


@bp.route("/oidc/introspect", methods=["POST"])
@csrf.exempt
def introspect():
    return authorization_server().create_endpoint_response("introspection")


@bp.route("/oidc/revoke", methods=["POST"])
@csrf.exempt
def revoke():
    return authorization_server().create_endpoint_response("revocation")


# --- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) ---------------------------------------------

class LogoutForm(Form):
    """Confirmation when the request cannot prove it comes from the person's own app."""


def _hint_claims(hint: str | None) -> dict | None:
    """The claims of an ID token we issued, or None. An expired hint is still ours: exp is not checked.
    Our logout tokens are signed with the same keys but are no ID tokens (they carry `events`)."""
    if not hint:
        return None
    try:
        out = keystore().verify(hint, utcnow())
    except InvalidToken:
        return None
    if out.get("iss") != issuer() or "events" in out or not out.get("sub"):
        return None
    return out


@bp.route("/oidc/logout", methods=["GET", "POST"])
@csrf.exempt  # RP-Initiated Logout §2: relying parties may POST; the confirmation form checks its own token
def end_session():
    values = request.values
    hint = _hint_claims(values.get("id_token_hint"))
    if values.get("id_token_hint") and hint is None:
        return error_page(_("Logout request not accepted"),
                          _("The application sent a logout request this service did not issue."), 400)
    client_id = values.get("client_id") or (hint or {}).get("aud")
    if isinstance(client_id, list):
        client_id = client_id[0] if client_id else None
    client = query_client(client_id) if client_id else None
    if hint is not None and values.get("client_id") and values.get("client_id") not in _audiences(hint):
        return error_page(_("Logout request not accepted"), _("The logout request names another application."), 400)
    target = values.get("post_logout_redirect_uri")
    if target and (client is None or target not in (client.service.post_logout_redirect_uris or [])):
        audit.record("oidc.logout.bad_redirect", actor=client_id or "unknown", reason="unregistered_redirect",
                     client_ip=client_ip(), data={"post_logout_redirect_uri": target[:512]})
        return error_page(_("Logout request not accepted"),
                          _("The application asked to return to an address it has not registered."), 400)

    current = current_session(touch=False)
    same_session = current is not None and hint is not None and hint.get("sid") == current.sid
    form = LogoutForm()
    confirmed = request.method == "POST" and form.validate_on_submit()
    if current is not None and not same_session and not confirmed:
        account = db.session.get(Account, current.account_id)
        return render_template("oidc/logout_confirm.html", form=form, client=client, account=account,
                               policy=_policy(), values={k: values.get(k) for k in (
                                   "id_token_hint", "client_id", "post_logout_redirect_uri", "state")
                                   if values.get(k)})
    apps = []
    if current is not None:
        cfg = current_app.config
        apps = sso.apps_summary(sso.end(current, reason="logout", client_ip=client_ip(),
                                        timeout=cfg["CALLBACK_TIMEOUT"], allow_loopback=cfg["ALLOW_LOOPBACK_CALLBACKS"]))
    if target:
        response = redirect(add_params_to_uri(target, [("state", values["state"])] if values.get("state") else []))
    else:
        response = current_app.make_response(render_template(
            "login/logged_out.html", apps=apps, was_logged_in=current is not None, policy=_policy()))
    authflow.forget_everything()
    clear_tgc(response)
    return response


def _audiences(claims_: dict) -> list[str]:
    aud = claims_.get("aud")
    return aud if isinstance(aud, list) else [aud] if aud else []


# --- back-channel logout (OpenID Connect Back-Channel Logout 1.0) ---------------------------------------------

def logout_message(participant, svc: Service | None, session: SsoSession, now: dt.datetime):
    """The logout token POSTed to the client's backchannel_logout_uri (§2.4: no nonce, the event claim)."""
    if svc is None or not svc.backchannel_logout_uri:
        return None
    account = db.session.get(Account, session.account_id)
    ts = int(now.replace(tzinfo=dt.UTC).timestamp())
    payload = {"iss": issuer(), "aud": svc.client_id, "iat": ts, "exp": ts + 120, "jti": secrets.token_urlsafe(16),
               "sub": account.subject if account else None, "sid": session.sid, "events": {BACKCHANNEL_EVENT: {}}}
    token_ = keystore().sign({k: v for k, v in payload.items() if v is not None},
                             alg=svc.id_token_signed_response_alg or "RS256", typ="logout+jwt")
    return svc.backchannel_logout_uri, {"logout_token": token_}
