"""Authlib wiring: clients, grants, token storage, introspection, revocation.

All of Authlib's hooks live here; they call the SSO core for sessions and `claims` for what a person
releases, and never decide anything about accounts themselves.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
)
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9207 import IssuerParameter
from authlib.oidc.core import OpenIDCode as _OpenIDCode
from authlib.oidc.core.util import create_half_hash
from flask import current_app, g
from sqlalchemy.orm import joinedload

from idp.core import audit, claims, metrics
from idp.core.accounts import has_left
from idp.core.clock import utcnow
from idp.core.registry import client_secret_hash
from idp.extensions import commit_keeping_loaded, db
from idp.models import Account, AuthorizationCode, OAuthToken, Service, SsoSession
from idp.oidc.keys import KeyStore

ACR = "urn:idp:acr:password"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def keystore() -> KeyStore:
    """The instance's signing keys; created on first use if `idp init` has not made them yet. One KeyStore
    per app (building one resolves the folder's path on disk); it re-reads the file whenever it changes."""
    store = current_app.extensions.get("idp.oidc.keystore")
    if store is None:
        store = current_app.extensions["idp.oidc.keystore"] = KeyStore(Path(current_app.instance_path))
    if not store.path.exists():  # ensure() re-reads the file; only needed the first time
        store.ensure(utcnow())
    return store


def issuer() -> str:
    return current_app.config["BASE_URL"]


def _ts(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


# --- clients ------------------------------------------------------------------------------------------

class Client(ClientMixin):
    """An OIDC client from the service registry, as Authlib sees it."""

    def __init__(self, service: Service):
        #: The registry entry: a read-only row of the service table (attribute names as on the model).
        self.service = service

    @property
    def name(self) -> str:
        return self.service.name

    @property
    def public(self) -> bool:
        return self.service.client_secret_hash is None

    @property
    def id_token_signed_response_alg(self) -> str:
        return self.service.id_token_signed_response_alg or "RS256"

    def get_client_id(self) -> str:
        return self.service.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.service.redirect_uris or []
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The requested scopes the client is registered for. Others are left out (RFC 6749 §3.3: the
        token response then names the scope granted); None when scopes were asked and none of them may be
        granted, which Authlib answers with invalid_scope (a token for nothing would say nothing)."""
        allowed = set(self.service.scopes or ["openid"])
        asked = (scope or "").split()
        granted = [s for s in asked if s in allowed]
        return None if asked and not granted else " ".join(granted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string match with a registered URI (no prefix or pattern matching)."""
        return redirect_uri in (self.service.redirect_uris or [])

    def check_client_secret(self, client_secret: str) -> bool:
        if self.public or not client_secret:
            return False
        expected = client_secret_hash(client_secret, current_app.config["SECRET_KEY"])
        return hmac.compare_digest(expected, self.service.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        """Only "code", and only for clients registered for the code grant (a client_credentials-only
        service gets unauthorized_client, RFC 6749 §4.1.2.1)."""
        return response_type == "code" and self.check_grant_type("authorization_code")

    def check_grant_type(self, grant_type: str) -> bool:
        allowed = self.service.grant_types or ["authorization_code", "refresh_token"]
        if grant_type == "client_credentials" and self.public:
            return False
        return grant_type in allowed


#: The registry row as read-only columns (a row answers the same attribute names as the model).
_CLIENT = db.select(*Service.__table__.c).where(Service.protocol == "oidc", Service.client_id == db.bindparam("b_client_id"))


def query_client(client_id: str | None) -> Client | None:
    """The registered client; looked up once per request (Authlib asks again while building the token)."""
    if not client_id or "\x00" in client_id or len(client_id) > 100:  # no such client: no query (PostgreSQL
        return None                                                     # refuses U+0000 in text)
    known = g.setdefault("idp_oidc_clients", {})
    if client_id not in known:
        svc = db.session.connection().execute(_CLIENT, {"b_client_id": client_id}).first()
        known[client_id] = Client(svc) if svc else None
    return known[client_id]


# --- tokens ---------------------------------------------------------------------------------------------

def save_token(token: dict, request) -> None:
    """Store an issued token pair by digest, in the family and SSO session it descends from.

    A code exchange commits here, with the code's claim, before the ID token is signed: on SQLite the claim
    holds the database file's one write lock, and the RS256 signature (~0.7 ms) and the response would
    otherwise keep every other worker's writes waiting. The rows the ID token is made from stay loaded
    (commit_keeping_loaded). Should the signature fail, the 500 leaves stored tokens nobody received and
    the code used up. A refresh commits in the token view, with the rotation (revoke_old_credential)."""
    cfg = current_app.config
    now = utcnow()
    code: AuthorizationCode | None = getattr(request, "authorization_code", None)
    parent: OAuthToken | None = getattr(request, "refresh_token", None)
    session_id = code.session_id if code else (parent.session_id if parent else None)
    refresh = token.get("refresh_token")
    refresh_expires = None
    if refresh:
        refresh_expires = now + dt.timedelta(seconds=cfg["OIDC_REFRESH_TOKEN_LIFETIME"])
        session = getattr(request, "code_session", None) if code else (
            db.session.get(SsoSession, session_id) if session_id else None)
        if session is not None:
            refresh_expires = min(refresh_expires, session.expires_at)
    user = getattr(request, "user", None)
    common = {"client_id": request.client.get_client_id(), "account_id": user.id if user is not None else None,
              "session_id": session_id, "issued_at": now,
              "family": parent.family if parent else secrets.token_hex(8),
              "code_id": code.id if code else (parent.code_id if parent else None)}
    scope = token.get("scope", "")
    access_expires = now + dt.timedelta(seconds=int(token.get("expires_in", cfg["OIDC_ACCESS_TOKEN_LIFETIME"])))
    # A row holding a refresh token carries that refresh token's scope. RFC 6749 §6: the new refresh token's
    # scope is identical to the presented one's, even when the client asked for a narrower access token.
    refresh_scope = parent.scope if parent is not None else scope
    if refresh and set(refresh_scope.split()) != set(scope.split()):
        rows = [dict(common, access_token_hash=digest(token["access_token"]), refresh_token_hash=None, scope=scope,
                     access_expires_at=access_expires, refresh_expires_at=None),
                # The refresh token's own row: its access half is a random value never handed out, expired at once.
                dict(common, access_token_hash=digest(secrets.token_urlsafe(32)), refresh_token_hash=digest(refresh),
                     scope=refresh_scope, access_expires_at=now, refresh_expires_at=refresh_expires)]
    else:
        rows = [dict(common, access_token_hash=digest(token["access_token"]),
                     refresh_token_hash=digest(refresh) if refresh else None, scope=scope,
                     access_expires_at=access_expires, refresh_expires_at=refresh_expires)]
    for row in rows:  # one INSERT each (Core: no ORM object is read back)
        db.session.connection().execute(_INSERT_TOKEN, row)
    if code is not None:
        commit_keeping_loaded()
    metrics.token_issued(request.payload.grant_type if request.payload else None)


_INSERT_TOKEN = db.insert(OAuthToken.__table__)


def revoke_family(family: str, now: dt.datetime) -> int:
    result = db.session.execute(db.update(OAuthToken).where(OAuthToken.family == family,
                                                             OAuthToken.revoked_at.is_(None))
                                .values(revoked_at=now))
    db.session.commit()
    return result.rowcount


def session_alive(session_id: str | None, now: dt.datetime) -> bool:
    """Tokens issued within an SSO session live only as long as it does (logout ends both)."""
    if session_id is None:
        return True
    return _alive(db.session.get(SsoSession, session_id), now)


def _alive(session: SsoSession | None, now: dt.datetime) -> bool:
    return session is not None and _still_open(session.ended_at, session.expires_at, now)


def _still_open(ended_at: dt.datetime | None, expires_at: dt.datetime, now: dt.datetime) -> bool:
    """The rule for a session's tokens, from its two columns (introspection reads them without the row)."""
    return ended_at is None and expires_at > now


def find_token(value: str, hint: str | None = None) -> OAuthToken | None:
    key = digest(value)
    order = ("refresh_token", "access_token") if hint == "refresh_token" else ("access_token", "refresh_token")
    for kind in order:
        column = OAuthToken.access_token_hash if kind == "access_token" else OAuthToken.refresh_token_hash
        row = db.session.scalar(db.select(OAuthToken).where(column == key))
        if row is not None:
            return row
    return None


# --- grants ---------------------------------------------------------------------------------------------

class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only: required for public clients, accepted from confidential ones."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        client = grant.request.client
        if not challenge and client is not None and client.public:
            raise InvalidRequestError("Public clients must use PKCE (code_challenge with S256).",
                                      redirect_uri=redirect_uri)
        if challenge and method != "S256":
            # RFC 7636 makes "plain" the default when the method is absent; plain is refused here.
            raise InvalidRequestError("code_challenge_method must be S256.", redirect_uri=redirect_uri)
        return super().validate_code_challenge(grant, redirect_uri)


_C = AuthorizationCode.__table__
_CLAIM_CODE = (db.update(_C).where(_C.c.code_hash == db.bindparam("b_code_hash"),
                                   _C.c.client_id == db.bindparam("b_client_id"),
                                   _C.c.used_at.is_(None))
               .values(used_at=db.bindparam("b_now"))
               .returning(*[c for c in _C.c if c.key != "used_at"]))


_A, _SS = Account.__table__, SsoSession.__table__
#: What a code exchange needs of the person (has_left's columns, the subject) and of the session (alive? its
#: sid and end), in one query of plain columns: loading the two as ORM objects cost a tenth of an exchange.
_CODE_OWNER = (db.select(_A.c.id, _A.c.subject, _A.c.status, _A.c.left_at, _SS.c.id.label("session_row_id"),
                         _SS.c.sid, _SS.c.ended_at, _SS.c.expires_at)
               .select_from(_A.outerjoin(_SS, _SS.c.id == db.bindparam("b_session_id")))
               .where(_A.c.id == db.bindparam("b_account_id")))


@dataclass(frozen=True, slots=True)
class CodeOwner:
    """The person a code was issued to, as far as the exchange reads them (the Account attributes of the
    same names: what has_left, save_token and the ID token's `sub` read)."""

    id: int
    subject: str
    status: str
    left_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class CodeSession:
    """The SSO session a code was issued in, as far as the exchange reads it (SsoSession's attributes)."""

    id: str
    sid: str
    ended_at: dt.datetime | None
    expires_at: dt.datetime


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    AUTHORIZATION_CODE_LENGTH = 43

    def validate_authorization_request(self):
        if "openid" in (self.request.payload.scope or "").split() and not self.request.payload.redirect_uri:
            raise InvalidRequestError("redirect_uri is required in an OpenID Connect request.")
        return super().validate_authorization_request()

    def save_authorization_code(self, code: str, request) -> None:
        now = utcnow()
        data = request.payload.data
        session: SsoSession = request.sso_session
        db.session.add(AuthorizationCode(
            code_hash=digest(code), client_id=request.client.get_client_id(), account_id=request.user.id,
            session_id=session.id, redirect_uri=request.payload.redirect_uri or "", scope=request.scope or "",
            nonce=data.get("nonce"), code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"), auth_time=session.auth_time,
            created_at=now, expires_at=now + dt.timedelta(seconds=current_app.config["OIDC_CODE_LIFETIME"])))
        db.session.commit()

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        """Use the code up at once (one conditional UPDATE: two exchanges cannot both win). A second
        exchange revokes every token the first one produced (RFC 6749 §4.1.2).

        The claim is committed with the tokens (save_token): a racing second exchange waits for that
        commit, then finds the code used and the first exchange's token family to revoke."""
        now = utcnow()
        found = db.session.connection().execute(_CLAIM_CODE, {"b_code_hash": digest(code),
                                                              "b_client_id": client.get_client_id(), "b_now": now}
                                                ).first()
        if found is None:
            used = db.session.execute(db.select(AuthorizationCode.id, AuthorizationCode.account_id).where(
                AuthorizationCode.code_hash == digest(code), AuthorizationCode.client_id == client.get_client_id())
            ).first()
            if used is None:
                return None
            families = set(db.session.scalars(db.select(OAuthToken.family).where(OAuthToken.code_id == used.id)))
            for family in families:
                revoke_family(family, now)
            audit.record("oidc.code.replayed", actor=client.name, account_id=used.account_id, reason="code_reuse",
                         data={"client_id": client.get_client_id(), "revoked_families": len(families)})
            return None
        # A plain object with the row's values (never added to the session: the row is already claimed).
        row = AuthorizationCode(**found._mapping, used_at=now)
        # The person and the session in one query of plain columns, kept on the request: authenticate_user,
        # save_token (the refresh token's cap) and the ID token's sid read them from there.
        pair = db.session.connection().execute(_CODE_OWNER, {"b_account_id": row.account_id,
                                                             "b_session_id": row.session_id}).first()
        self.request.code_account = None if pair is None else CodeOwner(pair.id, pair.subject, pair.status,
                                                                         pair.left_at)
        session = self.request.code_session = None if pair is None or pair.session_row_id is None else \
            CodeSession(pair.session_row_id, pair.sid, pair.ended_at, pair.expires_at)
        if row.expires_at <= now or (row.session_id is not None and not _alive(session, now)):
            return None
        return row

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Kept (already marked used) so that a replay is recognised and punished."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Account | CodeOwner | None:
        account = getattr(self.request, "code_account", None) or db.session.get(Account, authorization_code.account_id)
        return account if account is not None and not has_left(account, current_app.extensions["idp.policy"]) else None


class OpenIDCode(_OpenIDCode):
    def exists_nonce(self, nonce: str, request) -> bool:
        return False  # codes are single use; the RP checks the nonce in the ID token

    def get_client_algorithm(self, client: Client) -> str:
        return client.id_token_signed_response_alg

    def encode_id_token(self, token: dict, request) -> str:
        """Authlib's claims (iss/aud/iat/exp, the code's nonce/auth_time/acr/amr/sid/azp, at_hash, the
        scope's claims), signed by the KeyStore with the client's alg and the key's kid. Authlib's own
        encoder goes through joserfc's default registry, which raises a SecurityWarning on every EdDSA
        signature (an error wherever warnings are errors, as in the test suite)."""
        client: Client = request.client
        alg = client.id_token_signed_response_alg
        out = self.get_compatible_claims(request)
        if request.authorization_code:
            out.update(self.get_authorization_code_claims(request.authorization_code))
            session = getattr(request, "code_session", None)  # read with the code's claim
            if session is not None:
                out["sid"] = session.sid
        if token.get("access_token"):
            out["at_hash"] = create_half_hash(token["access_token"], alg).decode("ascii")
        out.update(self.generate_user_info(request.user, token["scope"]))
        return keystore().sign(out, alg=alg, typ="JWT")

    def get_client_claims(self, client: Client) -> dict:
        now = int(utcnow().replace(tzinfo=dt.UTC).timestamp())
        return {"iss": issuer(), "aud": [client.get_client_id()], "iat": now,
                "exp": now + current_app.config["OIDC_ID_TOKEN_LIFETIME"]}

    def get_authorization_code_claims(self, authorization_code: AuthorizationCode) -> dict:
        out = super().get_authorization_code_claims(authorization_code)
        out["azp"] = authorization_code.client_id
        return out

    def generate_user_info(self, user: Account, scope: str) -> dict:
        """Only `sub` here: profile, e-mail and university claims come from userinfo (OIDC Core §5.4).
        ID tokens travel back as `id_token_hint` in logout URLs, so they should carry no personal data."""
        return {"sub": user.subject}


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotation with reuse detection: every refresh returns a new refresh token; presenting a rotated
    one again means it leaked, so the whole family is revoked."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> OAuthToken | None:
        now = utcnow()
        row = find_token(refresh_token, "refresh_token")
        if row is None or row.refresh_token_hash != digest(refresh_token):
            return None
        if row.rotated_at is not None:
            revoked = revoke_family(row.family, now)
            audit.record("oidc.refresh.reused", actor=row.client_id, account_id=row.account_id,
                         reason="refresh_token_reuse", data={"client_id": row.client_id, "revoked": revoked})
            return None
        if row.revoked_at is not None or (row.refresh_expires_at and row.refresh_expires_at <= now):
            return None
        if not session_alive(row.session_id, now) or self.authenticate_user(row) is None:
            return None  # invalid_grant (Authlib would answer invalid_request for a missing user)
        if row.session_id:
            session = db.session.get(SsoSession, row.session_id)
            session.last_used_at = now  # an app refreshing counts as use of the session
        return row

    def authenticate_user(self, refresh_token: OAuthToken) -> Account | None:
        account = db.session.get(Account, refresh_token.account_id) if refresh_token.account_id else None
        return account if account is not None and not has_left(account, current_app.extensions["idp.policy"]) else None

    def revoke_old_credential(self, refresh_token: OAuthToken) -> None:
        """Rotate: a conditional UPDATE, so of two refreshes racing with one token only one wins; the
        other is treated as reuse (its new tokens are rolled back, the family revoked)."""
        now = utcnow()
        won = db.session.execute(
            db.update(OAuthToken).where(OAuthToken.id == refresh_token.id, OAuthToken.rotated_at.is_(None))
            .values(rotated_at=now, revoked_at=db.func.coalesce(OAuthToken.revoked_at, now))
            .execution_options(synchronize_session=False)).rowcount
        if won != 1:
            db.session.rollback()
            revoked = revoke_family(refresh_token.family, now)
            audit.record("oidc.refresh.reused", actor=refresh_token.client_id, account_id=refresh_token.account_id,
                         reason="refresh_token_reuse", data={"client_id": refresh_token.client_id,
                                                             "revoked": revoked, "concurrent": True})
            raise InvalidGrantError("The refresh token was used concurrently; its tokens are revoked.")
        db.session.commit()


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


# --- introspection and revocation -----------------------------------------------------------------------

def _check_token_params(request) -> None:
    """`token` is required; an unknown token_type_hint is ignored and the search covers every kind
    (RFC 7662 §2.1, RFC 7009 §2.1: the server MAY ignore the hint). Authlib answers an unknown hint with
    unsupported_token_type and status 401, the status of a failed client authentication."""
    if "token" not in request.form:
        raise InvalidRequestError("Missing 'token' in request.")


def _introspect_query(column):
    """The token row, its session's state and its person with identifiers (the username is read from
    them): one query, one round trip."""
    return (db.select(*OAuthToken.__table__.c, SsoSession.id.label("session_found"),
                      SsoSession.ended_at.label("session_ended_at"), SsoSession.expires_at.label("session_expires_at"),
                      Account)
            .select_from(OAuthToken)
            .outerjoin(SsoSession, SsoSession.id == OAuthToken.session_id)
            .outerjoin(Account, Account.id == OAuthToken.account_id)
            .where(column == db.bindparam("b_key")).options(joinedload(Account.identifiers)))


_INTROSPECT = {"access_token": _introspect_query(OAuthToken.access_token_hash),
               "refresh_token": _introspect_query(OAuthToken.refresh_token_hash)}


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def create_endpoint_response(self, request):
        try:
            status, body, headers = super().create_endpoint_response(request)
        except OAuth2Error:
            metrics.introspection("error")
            raise
        metrics.introspection("active" if body.get("active") else "inactive")
        return status, body, headers

    def check_params(self, request, client) -> None:
        _check_token_params(request)

    def query_token(self, token_string: str, token_type_hint: str | None):
        """The token's row with its session's state and its person, in one query (apps introspect on every
        request they serve). `presented` says which half of the row was shown: it decides the lifetime."""
        key = digest(token_string)
        order = ("refresh_token", "access_token") if token_type_hint == "refresh_token" else \
            ("access_token", "refresh_token")
        for kind in order:
            row = db.session.execute(_INTROSPECT[kind], {"b_key": key}).unique().first()
            if row is not None:
                return SimpleNamespace(**row._mapping, presented=kind)
        return None

    def check_permission(self, token: OAuthToken, client: Client, request) -> bool:
        """Resource servers (any confidential client, e.g. the mail server) may introspect access tokens. A
        refresh token is no credential for a resource server: only its own client hears it is active
        (otherwise Dovecot, which checks only `active` and `username`, would take one as an IMAP login)."""
        if client.public:
            return False
        return token.presented != "refresh_token" or token.client_id == client.get_client_id()

    def create_introspection_payload(self, token: OAuthToken | None) -> dict:
        # Authlib's version judges every token by token.is_expired(), the access token's lifetime: a
        # refresh token would read inactive once its access token expired, though it still works.
        return {"active": False} if token is None else self.introspect_token(token)

    def introspect_token(self, token: OAuthToken) -> dict:
        now = utcnow()
        refresh = getattr(token, "presented", "access_token") == "refresh_token"
        expires = token.refresh_expires_at if refresh else token.access_expires_at
        session_alive = token.session_id is None or (
            token.session_found is not None and _still_open(token.session_ended_at, token.session_expires_at, now))
        active = (token.revoked_at is None and token.rotated_at is None and (expires is None or expires > now)
                  and session_alive)
        if not active:
            return {"active": False}
        out = {"active": True, "client_id": token.client_id, "scope": token.scope, "iat": _ts(token.issued_at),
               "iss": issuer(), "aud": token.client_id}
        if expires is not None:
            out["exp"] = _ts(expires)
        if not refresh:
            out["token_type"] = "Bearer"
        if token.account_id is not None:
            account = token.Account  # read with the token (query_token)
            if account is None or has_left(account, current_app.extensions["idp.policy"], now):
                return {"active": False}
            out["sub"] = account.subject
            out["username"] = claims.preferred_username(account, current_app.extensions["idp.policy"])
        return out


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def check_params(self, request, client) -> None:
        _check_token_params(request)

    def query_token(self, token_string: str, token_type_hint: str | None):
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: OAuthToken, request) -> None:
        """Revoking a refresh token ends its whole family; an access token only itself (RFC 7009 §2.1): it
        expires now. Its row may also hold the refresh token issued with it, which stays usable (revoked_at
        would end both halves)."""
        now = utcnow()
        if token.refresh_token_hash and token.refresh_token_hash == digest(request.form.get("token", "")):
            revoke_family(token.family, now)
        else:
            token.access_expires_at = min(token.access_expires_at, now)
            db.session.commit()


class SessionBoundBearer(BearerTokenValidator):
    def authenticate_token(self, token_string: str) -> OAuthToken | None:
        row = db.session.scalar(db.select(OAuthToken).where(OAuthToken.access_token_hash == digest(token_string)))
        if row is not None and not session_alive(row.session_id, utcnow()):
            row.revoked_at = row.revoked_at or utcnow()
            db.session.commit()
        return row


class Issuer(IssuerParameter):
    def get_issuer(self) -> str:
        return issuer()


class Server(AuthorizationServer):
    def authenticate_client(self, request, methods, endpoint="token"):
        """A failed client authentication looks the same whatever failed (unknown client_id, wrong secret,
        wrong method): 401 with a Basic challenge (RFC 6749 §5.2) and one description. Authlib answers an
        unknown client_id sent by client_secret_post with 400 and "does not exist", a wrong secret with 401:
        a way to probe which client_ids exist."""
        try:
            return super().authenticate_client(request, methods, endpoint)
        except (InvalidClientError, ValueError) as exc:  # ValueError: Basic credentials that are not UTF-8
            raise InvalidClientError(status_code=401 if "client_secret_basic" in methods else 400,
                                     description="Client authentication failed.") from exc


def new_token(*_args, **_kwargs) -> str:
    """256 random bits, URL-safe: Authlib's default draws 42 characters one system call each."""
    return secrets.token_urlsafe(32)


def init_app(app) -> None:
    """One Authlib server and resource protector per app (kept in app.extensions)."""
    cfg = app.config
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = new_token
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = new_token
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        "authorization_code": cfg["OIDC_ACCESS_TOKEN_LIFETIME"], "refresh_token": cfg["OIDC_ACCESS_TOKEN_LIFETIME"],
        "client_credentials": cfg["OIDC_ACCESS_TOKEN_LIFETIME"]}
    server = Server(app, query_client=query_client, save_token=save_token)
    server.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), OpenIDCode(require_nonce=False)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    server.register_extension(Issuer())
    protector = ResourceProtector()
    protector.register_token_validator(SessionBoundBearer())
    app.extensions["idp.oidc.server"] = server
    app.extensions["idp.oidc.protector"] = protector


def authorization_server() -> AuthorizationServer:
    return current_app.extensions["idp.oidc.server"]


def resource_protector() -> ResourceProtector:
    return current_app.extensions["idp.oidc.protector"]
