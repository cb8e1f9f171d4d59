"""Second factors: a TOTP authenticator app, single-use recovery codes, WebAuthn security keys.

The only module that imports pyotp, webauthn (py_webauthn) and segno. Plain functions: they take the
account, `client_ip` and `now`, record their own audit events (mfa.enrolled, mfa.verified, mfa.failed with
a reason, mfa.recovery_code.used, mfa.recovery_codes.issued, mfa.removed) and never look at the request.

TOTP secrets are stored encrypted (AES-GCM, the account id as associated data) with a key derived by HKDF
from the instance's SECRET_KEY. Rotating SECRET_KEY therefore makes every stored TOTP secret unreadable:
those people sign in with a recovery code or a security key and enrol their authenticator app again
(docs/security.md). Recovery codes (SHA-256 kept) and WebAuthn public keys do not depend on SECRET_KEY.

Wrong codes are limited per account: after MAX_WRONG_CODES wrong TOTP or recovery codes within
WRONG_CODE_MINUTES every code is refused until the oldest of them leaves the window (counted from the
audit log, so every worker sees the same count).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp.core import audit
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.extensions import db
from idp.models import Account, AuditEvent, RecoveryCode, TotpSecret, WebAuthnCredential

#: RFC 6238 defaults every authenticator app understands: SHA-1, 6 digits, 30-second steps.
TOTP_DIGITS = 6
TOTP_INTERVAL = 30
#: Steps accepted either side of now (RFC 6238 §5.2 "at most one time step" of network/clock drift).
TOTP_WINDOW = 1
#: Wrong codes (TOTP or recovery) allowed per account in the window before every code is refused.
MAX_WRONG_CODES = 5
WRONG_CODE_MINUTES = 15
#: Reasons of mfa.failed that count as a wrong code (a guess) for the limit above.
COUNTED_REASONS = ("wrong_code", "replayed", "wrong_recovery_code")
#: Recovery codes: 10 characters of an alphabet without look-alikes (~50 bits), shown as xxxxx-xxxxx.
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 10
#: How long the browser has to answer a WebAuthn challenge.
WEBAUTHN_TIMEOUT_MS = 120_000
WEBAUTHN_STATE_SECONDS = 300
_HKDF_INFO = b"idp/mfa/totp-secret/v1"
_CIPHER_PREFIX = "v1:"


class MfaError(DomainError):
    code = "mfa_error"


class AlreadyEnrolled(MfaError):
    code = "already_enrolled"


class WebAuthnRefused(MfaError):
    """A WebAuthn ceremony that did not verify; `code` is the audit reason."""
    code = "webauthn_invalid"


# --- what a person has ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Factors:
    totp: TotpSecret | None          # confirmed authenticator app, else None
    keys: list[WebAuthnCredential]   # security keys, oldest first
    recovery_left: int               # unused recovery codes

    @property
    def enrolled(self) -> bool:
        return self.totp is not None or bool(self.keys)


def _totp_row(account: Account) -> TotpSecret | None:
    return db.session.scalar(db.select(TotpSecret).where(TotpSecret.account_id == account.id))


def confirmed_totp(account: Account) -> TotpSecret | None:
    row = _totp_row(account)
    return row if row is not None and row.confirmed_at is not None else None


def credentials_of(account: Account) -> list[WebAuthnCredential]:
    return list(db.session.scalars(db.select(WebAuthnCredential)
                                   .where(WebAuthnCredential.account_id == account.id)
                                   .order_by(WebAuthnCredential.created_at, WebAuthnCredential.id)))


def recovery_codes_left(account: Account) -> int:
    return db.session.scalar(db.select(db.func.count(RecoveryCode.id)).where(
        RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None))) or 0


def factors(account: Account) -> Factors:
    return Factors(confirmed_totp(account), credentials_of(account), recovery_codes_left(account))


def enrolled(account: Account) -> bool:
    """A confirmed TOTP authenticator or at least one WebAuthn credential."""
    if confirmed_totp(account) is not None:
        return True
    return db.session.scalar(db.select(WebAuthnCredential.id)
                             .where(WebAuthnCredential.account_id == account.id).limit(1)) is not None


def required(account: Account, policy, *, staff: bool) -> bool:
    """Must this person use a second factor? Policy [mfa] required_for: "everyone", or "staff" (console
    roles; the caller says whether the person holds one)."""
    return policy.data["mfa"]["required_for"] == "everyone" or staff


# --- the wrong-code limit ---------------------------------------------------------------------------------

def blocked_until(account: Account, now: dt.datetime | None = None) -> dt.datetime | None:
    """When codes are accepted again after MAX_WRONG_CODES wrong ones in WRONG_CODE_MINUTES; None: now."""
    now = now or utcnow()
    window = dt.timedelta(minutes=WRONG_CODE_MINUTES)
    recent = list(db.session.scalars(
        db.select(AuditEvent.at).where(AuditEvent.account_id == account.id, AuditEvent.action == "mfa.failed",
                                       AuditEvent.reason.in_(COUNTED_REASONS), AuditEvent.at > now - window)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(MAX_WRONG_CODES)))
    if len(recent) < MAX_WRONG_CODES:
        return None
    return recent[-1] + window


def wrong_codes_left(account: Account, now: dt.datetime | None = None) -> int:
    now = now or utcnow()
    since = now - dt.timedelta(minutes=WRONG_CODE_MINUTES)
    count = db.session.scalar(db.select(db.func.count(AuditEvent.id)).where(
        AuditEvent.account_id == account.id, AuditEvent.action == "mfa.failed",
        AuditEvent.reason.in_(COUNTED_REASONS), AuditEvent.at > since)) or 0
    return max(0, MAX_WRONG_CODES - count)


def _failed(account: Account, reason: str, *, client_ip: str | None, now: dt.datetime, **data) -> None:
    audit.record("mfa.failed", account_id=account.id, reason=reason, client_ip=client_ip, now=now,
                 data=data or None)


def _limited(account: Account, method: str, *, client_ip: str | None, now: dt.datetime) -> bool:
    if blocked_until(account, now) is None:
        return False
    _failed(account, "too_many_attempts", client_ip=client_ip, now=now, method=method)
    return True


# --- TOTP secrets at rest ---------------------------------------------------------------------------------

def _key() -> bytes:
    secret_key = current_app.config["SECRET_KEY"]
    material = secret_key.encode() if isinstance(secret_key, str) else bytes(secret_key)
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material)


def _aad(account_id: int) -> bytes:
    return f"account:{account_id}".encode()


def _encrypt(secret: str, account_id: int) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_key()).encrypt(nonce, secret.encode(), _aad(account_id))
    return _CIPHER_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def _decrypt(stored: str, account_id: int) -> str | None:
    """The base32 secret; None when it cannot be read (SECRET_KEY rotated, or a row copied elsewhere)."""
    if not stored.startswith(_CIPHER_PREFIX):
        return None
    try:
        raw = base64.urlsafe_b64decode(stored[len(_CIPHER_PREFIX):].encode())
        return AESGCM(_key()).decrypt(raw[:12], raw[12:], _aad(account_id)).decode()
    except (InvalidTag, ValueError):
        return None


# --- TOTP -------------------------------------------------------------------------------------------------

def label(account: Account) -> str:
    """How the account is named in an authenticator app and to a security key: its first address."""
    return next((i.value for i in account.identifiers if "@" in i.value), None) or account.album


def totp_begin(account: Account, *, issuer: str = "idp", restart: bool = False,
               now: dt.datetime | None = None) -> tuple[str, str]:
    """A new (unconfirmed) authenticator secret, or the one already waiting for its first code (so a
    reloaded page shows the same QR code). Returns (base32 secret, otpauth:// URI).
    Raises AlreadyEnrolled when a confirmed authenticator exists: remove it first."""
    now = now or utcnow()
    row = _totp_row(account)
    if row is not None and row.confirmed_at is not None:
        raise AlreadyEnrolled("an authenticator app is already set up")
    secret = None if row is None or restart else _decrypt(row.secret, account.id)
    if secret is None:
        secret = pyotp.random_base32(32)
        if row is None:
            row = TotpSecret(account_id=account.id, secret="", created_at=now)
            db.session.add(row)
        row.secret = _encrypt(secret, account.id)
        row.created_at = now
        row.last_step = None
        db.session.commit()
    uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL).provisioning_uri(
        name=label(account), issuer_name=issuer)
    return secret, uri


def _normalise_code(code: str | None) -> str:
    return "".join((code or "").split()).replace("-", "")


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step (within ±TOTP_WINDOW of now) whose code is `code`; None if none is."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)
    at = now.replace(tzinfo=dt.UTC)
    current = totp.timecode(at)
    found = None
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(current + offset), code):
            found = current + offset
    return found


def _claim_step(row: TotpSecret, step: int, *, confirm_at: dt.datetime | None = None) -> bool:
    """Record `step` as used unless it (or a later one) already was — one conditional UPDATE, so two
    requests with the same code cannot both pass (RFC 6238 §5.2: a code is accepted once)."""
    values: dict = {"last_step": step}
    if confirm_at is not None:
        values["confirmed_at"] = confirm_at
    result = db.session.execute(
        db.update(TotpSecret).where(TotpSecret.id == row.id,
                                    db.or_(TotpSecret.last_step.is_(None), TotpSecret.last_step < step))
        .values(**values).execution_options(synchronize_session=False))
    db.session.commit()
    db.session.refresh(row)
    return result.rowcount == 1


def totp_confirm(account: Account, code: str, *, client_ip: str | None = None,
                 now: dt.datetime | None = None) -> bool:
    """The first correct code from the app confirms the enrolment (audited mfa.enrolled); False otherwise."""
    now = now or utcnow()
    row = _totp_row(account)
    if row is None or row.confirmed_at is not None:
        _failed(account, "no_pending_enrolment", client_ip=client_ip, now=now, method="totp", stage="confirm")
        return False
    if _limited(account, "totp", client_ip=client_ip, now=now):
        return False
    secret = _decrypt(row.secret, account.id)
    step = _matching_step(secret, _normalise_code(code), now) if secret else None
    if step is None or not _claim_step(row, step, confirm_at=now):
        _failed(account, "wrong_code", client_ip=client_ip, now=now, method="totp", stage="confirm")
        return False
    audit.record("mfa.enrolled", account_id=account.id, client_ip=client_ip, now=now, data={"method": "totp"})
    return True


def verify_totp(account: Account, code: str, now: dt.datetime | None = None, *,
                client_ip: str | None = None) -> bool:
    """A code from the confirmed authenticator, within ±1 step and newer than the last accepted one
    (a code works once). Audited: mfa.verified, or mfa.failed with wrong_code | replayed |
    too_many_attempts | no_totp | secret_unreadable. False whenever it is not accepted."""
    now = now or utcnow()
    row = confirmed_totp(account)
    if row is None:
        _failed(account, "no_totp", client_ip=client_ip, now=now, method="totp")
        return False
    if _limited(account, "totp", client_ip=client_ip, now=now):
        return False
    secret = _decrypt(row.secret, account.id)
    if secret is None:
        _failed(account, "secret_unreadable", client_ip=client_ip, now=now, method="totp")
        return False
    step = _matching_step(secret, _normalise_code(code), now)
    if step is None:
        _failed(account, "wrong_code", client_ip=client_ip, now=now, method="totp")
        return False
    if not _claim_step(row, step):
        _failed(account, "replayed", client_ip=client_ip, now=now, method="totp")
        return False
    audit.record("mfa.verified", account_id=account.id, client_ip=client_ip, now=now, data={"method": "totp"})
    return True


def totp_readable(account: Account) -> bool:
    """False when the stored secret cannot be decrypted any more (SECRET_KEY rotated): re-enrol."""
    row = confirmed_totp(account)
    return row is not None and _decrypt(row.secret, account.id) is not None


# --- recovery codes ---------------------------------------------------------------------------------------

def _hash_code(code: str) -> str:
    return hashlib.sha256(_normalise_code(code).lower().encode()).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def issue_recovery_codes(account: Account, n: int = 10, *, client_ip: str | None = None,
                         now: dt.datetime | None = None) -> list[str]:
    """New single-use codes (every older one stops working); only their SHA-256 is kept, so the list
    returned here is the only time anyone sees them."""
    now = now or utcnow()
    db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.account_id == account.id))
    codes = []
    while len(codes) < n:
        code = _new_code()
        if code not in codes:
            codes.append(code)
    db.session.add_all(RecoveryCode(account_id=account.id, code_hash=_hash_code(c), created_at=now)
                       for c in codes)
    audit.record("mfa.recovery_codes.issued", account_id=account.id, client_ip=client_ip, now=now,
                 data={"count": n}, commit=False)
    db.session.commit()
    return codes


def use_recovery_code(account: Account, code: str, *, client_ip: str | None = None,
                      now: dt.datetime | None = None) -> bool:
    """Spend one recovery code (audited mfa.recovery_code.used, with how many are left); False when it
    is wrong, already used, or codes are refused for now."""
    now = now or utcnow()
    if _limited(account, "recovery_code", client_ip=client_ip, now=now):
        return False
    normal = _normalise_code(code).lower()
    if len(normal) != RECOVERY_LENGTH:
        _failed(account, "wrong_recovery_code", client_ip=client_ip, now=now, method="recovery_code")
        return False
    row = db.session.scalar(db.select(RecoveryCode).where(RecoveryCode.account_id == account.id,
                                                          RecoveryCode.code_hash == _hash_code(normal))
                            .order_by(RecoveryCode.id).limit(1))
    spent = None
    if row is not None:
        spent = db.session.execute(db.update(RecoveryCode)
                                   .where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
                                   .values(used_at=now).execution_options(synchronize_session=False))
        db.session.commit()
    if spent is None or spent.rowcount != 1:
        _failed(account, "wrong_recovery_code", client_ip=client_ip, now=now, method="recovery_code",
                already_used=row is not None)
        return False
    audit.record("mfa.recovery_code.used", account_id=account.id, client_ip=client_ip, now=now,
                 data={"method": "recovery_code", "left": recovery_codes_left(account)})
    return True


# --- removing factors ---------------------------------------------------------------------------------------

def _after_removal(account: Account) -> None:
    """With no factor left, recovery codes would be a factor of their own: they go too."""
    if not enrolled(account):
        db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.account_id == account.id))


def remove_totp(account: Account, *, actor: str = "self", client_ip: str | None = None,
                now: dt.datetime | None = None) -> bool:
    """Forget the authenticator app (confirmed or waiting); False when there was none."""
    row = _totp_row(account)
    if row is None:
        return False
    confirmed = row.confirmed_at is not None
    db.session.delete(row)
    db.session.flush()
    _after_removal(account)
    if confirmed:
        audit.record("mfa.removed", actor=actor, account_id=account.id, client_ip=client_ip, now=now,
                     data={"method": "totp"}, commit=False)
    db.session.commit()
    return confirmed


def remove_credential(account: Account, credential_id: int, *, actor: str = "self",
                      client_ip: str | None = None, now: dt.datetime | None = None) -> bool:
    """Forget one security key of the account (by row id); False when it is not theirs."""
    row = db.session.get(WebAuthnCredential, credential_id)
    if row is None or row.account_id != account.id:
        return False
    name = row.name
    db.session.delete(row)
    db.session.flush()
    _after_removal(account)
    audit.record("mfa.removed", actor=actor, account_id=account.id, client_ip=client_ip, now=now,
                 data={"method": "webauthn", "name": name}, commit=False)
    db.session.commit()
    return True


def forget_all(account: Account) -> dict[str, int]:
    """Every factor of the person gone (authenticator app, security keys, recovery codes), in the caller's
    transaction: the helpdesk's reset after a lost phone and an ID check. Returns what there was."""
    had = {"totp": int(_totp_row(account) is not None),
           "keys": len(credentials_of(account)), "recovery_codes": recovery_codes_left(account)}
    for model in (TotpSecret, WebAuthnCredential, RecoveryCode):
        db.session.execute(db.delete(model).where(model.account_id == account.id))
    return had


# --- WebAuthn ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RelyingParty:
    id: str       # the host of BASE_URL
    origin: str   # scheme://host[:port] of BASE_URL, as a browser reports it
    name: str


def relying_party(name: str = "idp", base_url: str | None = None) -> RelyingParty:
    parts = urlsplit(base_url or current_app.config["BASE_URL"])
    host = (parts.hostname or "localhost").lower()
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return RelyingParty(host, f"{parts.scheme}://{host}{port}", name)


def _user_handle(account: Account) -> bytes:
    """Stable, opaque WebAuthn user id: no personal data, the same for every key of the account."""
    return hmac.new(_key(), f"webauthn-user:{account.id}".encode(), hashlib.sha256).digest()


def _descriptor(row: WebAuthnCredential) -> PublicKeyCredentialDescriptor:
    transports = []
    for t in row.transports or []:
        try:
            transports.append(AuthenticatorTransport(t))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id), transports=transports or None)


def _state(purpose: str, challenge: bytes, account: Account, now: dt.datetime) -> dict:
    """What the caller keeps (in the browser's session) between the options and the answer."""
    return {"purpose": purpose, "challenge": bytes_to_base64url(challenge), "account_id": account.id,
            "exp": int(now.replace(tzinfo=dt.UTC).timestamp()) + WEBAUTHN_STATE_SECONDS}


def _check_state(state: dict | None, purpose: str, account: Account, now: dt.datetime) -> bytes:
    if (not state or state.get("purpose") != purpose or state.get("account_id") != account.id
            or not state.get("challenge")):
        raise WebAuthnRefused("no challenge", "webauthn_no_challenge")
    if state.get("exp", 0) < now.replace(tzinfo=dt.UTC).timestamp():
        raise WebAuthnRefused("challenge expired", "webauthn_expired")
    return base64url_to_bytes(state["challenge"])


def registration_options(account: Account, rp: RelyingParty, *, now: dt.datetime | None = None) -> tuple[str, dict]:
    """Options for navigator.credentials.create() as JSON, and the state to keep until the answer.
    User verification preferred; the account's keys are excluded (no double registration)."""
    now = now or utcnow()
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=label(account), user_id=_user_handle(account),
        user_display_name=account.display_name, timeout=WEBAUTHN_TIMEOUT_MS,
        attestation=AttestationConveyancePreference.NONE,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED,
            user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=[_descriptor(c) for c in credentials_of(account)])
    return options_to_json(options), _state("register", options.challenge, account, now)


def _credential_dict(credential) -> dict:
    if isinstance(credential, str):
        try:
            credential = json.loads(credential)
        except ValueError:
            credential = None
    if not isinstance(credential, dict):
        raise WebAuthnRefused("malformed credential", "webauthn_invalid")
    return credential


def register_credential(account: Account, state: dict | None, credential, rp: RelyingParty, *,
                        name: str = "", client_ip: str | None = None,
                        now: dt.datetime | None = None) -> WebAuthnCredential:
    """Verify the browser's answer to registration_options and keep the key (audited mfa.enrolled).
    Raises WebAuthnRefused (audited mfa.failed with its code) when it does not verify."""
    now = now or utcnow()
    try:
        challenge = _check_state(state, "register", account, now)
        data = _credential_dict(credential)
        try:
            verified = verify_registration_response(credential=data, expected_challenge=challenge,
                                                    expected_rp_id=rp.id, expected_origin=rp.origin)
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            raise WebAuthnRefused(str(exc)[:200], "webauthn_invalid") from exc
        cred_id = bytes_to_base64url(verified.credential_id)
        if db.session.scalar(db.select(WebAuthnCredential.id).where(WebAuthnCredential.credential_id == cred_id)):
            raise WebAuthnRefused("credential already registered", "webauthn_already_registered")
    except WebAuthnRefused as exc:
        _failed(account, exc.code, client_ip=client_ip, now=now, method="webauthn", stage="register",
                detail=str(exc)[:200])
        raise
    transports = [t for t in (data.get("response", {}).get("transports") or []) if isinstance(t, str)][:8]
    row = WebAuthnCredential(account_id=account.id, credential_id=cred_id,
                             public_key=bytes_to_base64url(verified.credential_public_key),
                             sign_count=verified.sign_count, name=(name or "").strip()[:100] or "Security key",
                             transports=transports or None, created_at=now)
    db.session.add(row)
    audit.record("mfa.enrolled", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"method": "webauthn", "name": row.name, "user_verified": verified.user_verified})
    db.session.commit()
    return row


def authentication_options(account: Account, rp: RelyingParty, *,
                           now: dt.datetime | None = None) -> tuple[str, dict]:
    """Options for navigator.credentials.get() listing the account's keys, and the state to keep.
    Raises WebAuthnRefused("no_credentials") when the account has none."""
    now = now or utcnow()
    keys = credentials_of(account)
    if not keys:
        raise WebAuthnRefused("no security key registered", "webauthn_no_credentials")
    options = generate_authentication_options(rp_id=rp.id, timeout=WEBAUTHN_TIMEOUT_MS,
                                              allow_credentials=[_descriptor(c) for c in keys],
                                              user_verification=UserVerificationRequirement.PREFERRED)
    return options_to_json(options), _state("authenticate", options.challenge, account, now)


def authenticate(account: Account, state: dict | None, credential, rp: RelyingParty, *,
                 client_ip: str | None = None, now: dt.datetime | None = None) -> WebAuthnCredential:
    """Verify the browser's answer to authentication_options: one of the account's keys signed our
    challenge, and its signature counter went up (a counter that does not suggests a cloned key).
    Audited mfa.verified; raises WebAuthnRefused (audited mfa.failed) otherwise."""
    now = now or utcnow()
    try:
        challenge = _check_state(state, "authenticate", account, now)
        data = _credential_dict(credential)
        raw_id = data.get("rawId") or data.get("id")
        row = db.session.scalar(db.select(WebAuthnCredential).where(
            WebAuthnCredential.account_id == account.id, WebAuthnCredential.credential_id == str(raw_id)[:1024]))
        if row is None:
            raise WebAuthnRefused("unknown credential", "webauthn_unknown_credential")
        try:
            verified = verify_authentication_response(
                credential=data, expected_challenge=challenge, expected_rp_id=rp.id, expected_origin=rp.origin,
                credential_public_key=base64url_to_bytes(row.public_key),
                credential_current_sign_count=row.sign_count)
        except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
            reason = "webauthn_sign_count" if "sign count" in str(exc).lower() else "webauthn_invalid"
            raise WebAuthnRefused(str(exc)[:200], reason) from exc
    except WebAuthnRefused as exc:
        _failed(account, exc.code, client_ip=client_ip, now=now, method="webauthn", detail=str(exc)[:200])
        raise
    row.sign_count = verified.new_sign_count
    row.last_used_at = now
    audit.record("mfa.verified", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"method": "webauthn", "name": row.name, "user_verified": verified.user_verified})
    db.session.commit()
    return row


# --- QR code -------------------------------------------------------------------------------------------

def qr_svg(text: str, *, title: str = "") -> str | None:
    """An inline SVG QR code of `text` (no scripts, no style attributes: fits the CSP); None when the
    optional QR library is not installed (the page then shows the secret as text only)."""
    try:
        import segno
    except ImportError:  # pragma: no cover - segno is a declared dependency
        return None
    svg = segno.make(text, error="m").svg_inline(scale=4, dark="#000", light="#fff", title=title or None,
                                                 svgclass="qr", lineclass=None)
    return svg.replace("<svg ", '<svg role="img" ', 1)
