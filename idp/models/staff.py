from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class StaffRole(db.Model):
    """A console role of a person (`helpdesk`, `admin`), granted by `idp staff grant` or an admin."""

    __tablename__ = "staff_role"
    __table_args__ = (UniqueConstraint("account_id", "role", name="uq_staff_role_account_role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))  # helpdesk | admin
    granted_at: Mapped[dt.datetime]
    granted_by: Mapped[str] = mapped_column(String(254))


class TotpSecret(db.Model):
    """A person's TOTP authenticator. The secret is stored encrypted with a key derived from the
    instance's SECRET_KEY (core/mfa.py); `confirmed_at` is None until the first correct code."""

    __tablename__ = "totp_secret"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), unique=True)
    secret: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime]
    confirmed_at: Mapped[dt.datetime | None]
    #: The last accepted time step: a code is accepted once (no replay within its 30-second window).
    last_step: Mapped[int | None]


class RecoveryCode(db.Model):
    """One of the single-use codes shown once at second-factor enrolment (SHA-256 of the code kept)."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class WebAuthnCredential(db.Model):
    """A security key or platform authenticator registered with WebAuthn."""

    __tablename__ = "webauthn_credential"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    #: base64url of the credential id, as the browser reports it.
    credential_id: Mapped[str] = mapped_column(String(1024), unique=True)
    #: base64url of the COSE public key.
    public_key: Mapped[str] = mapped_column(Text)
    sign_count: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(100))
    transports: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]


class AssistedRecovery(db.Model):
    """A one-time recovery code the helpdesk issued after an in-person ID check: short-lived, single
    use, shown once. Only its SHA-256 is kept; the person sets the new password with it themselves."""

    __tablename__ = "assisted_recovery"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_by: Mapped[str] = mapped_column(String(254))
    issued_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]
    #: Ended early: a newer code was issued, or too many wrong tries.
    ended_at: Mapped[dt.datetime | None]
    wrong_attempts: Mapped[int] = mapped_column(default=0)


class ApiToken(db.Model):
    """A bearer token for the admin JSON API, acting as the staff person who owns it (with their roles).
    Only its SHA-256 is kept; `prefix` lets a list tell tokens apart."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
