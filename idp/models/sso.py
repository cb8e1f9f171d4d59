from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class SsoSession(db.Model):
    """A single-sign-on session. The browser holds the TGT; the row is keyed by its SHA-256 only."""

    __tablename__ = "sso_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the TGT
    #: Public session id (OIDC `sid`, back-channel logout): random, unrelated to the TGT.
    sid: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: secrets.token_urlsafe(16))
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]  # absolute lifetime
    #: CAS `warn`: ask before each SSO-issued ticket.
    warn: Mapped[bool] = mapped_column(default=False)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    ended_at: Mapped[dt.datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(32))


class Ticket(db.Model):
    """ST, PT or PGT, keyed by the SHA-256 of the ticket string (a leaked table grants nothing)."""

    __tablename__ = "ticket"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(4))  # ST | PT | PGT
    session_id: Mapped[str] = mapped_column(ForeignKey("sso_session.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"))
    #: ST/PT: the exact service URL it was issued for; PGT: the pgtUrl that received it.
    service: Mapped[str] = mapped_column(Text)
    #: Issued from fresh credentials (not from an existing SSO session): what `renew=true` demands.
    from_new_login: Mapped[bool] = mapped_column(default=False)
    #: Proxy chain, most recent first (PT and PGT).
    proxies: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    consumed_at: Mapped[dt.datetime | None]


class SessionParticipant(db.Model):
    """A service that received a ticket in a session: whom single logout must notify."""

    __tablename__ = "session_participant"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sso_session.id", ondelete="CASCADE"), index=True)
    service_id: Mapped[int | None] = mapped_column(ForeignKey("service.id", ondelete="SET NULL"))
    service_name: Mapped[str] = mapped_column(String(100))
    #: cas: SAML logoutRequest with `ticket` as SessionIndex; oidc: a back-channel logout token.
    protocol: Mapped[str] = mapped_column(String(8), default="cas")
    service_url: Mapped[str] = mapped_column(Text)
    #: The ticket string itself: CAS SLO sends it as SessionIndex. Already consumed, so harmless.
    ticket: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    #: None until logout; then delivered | failed | refused | skipped.
    logout_status: Mapped[str | None] = mapped_column(String(16))
    logout_detail: Mapped[str | None] = mapped_column(Text)
