from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class UpstreamIdentity(db.Model):
    """An identity at an upstream OpenID Connect provider, linked to one local account.

    Keyed by (provider, subject): the upstream `sub`, never the e-mail (addresses move between people).
    """

    __tablename__ = "upstream_identity"
    __table_args__ = (UniqueConstraint("provider", "subject", name="uq_upstream_identity_provider_subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    #: The address the provider vouched for when the link was made (shown to the person and helpdesk).
    email: Mapped[str | None] = mapped_column(String(254))
    #: How the link was proved: password | mail | import | helpdesk
    linked_by: Mapped[str] = mapped_column(String(16))
    linked_at: Mapped[dt.datetime]
    last_login_at: Mapped[dt.datetime | None]


class PendingLink(db.Model):
    """An upstream login that met an existing account ("already exists"): waits for proof of that account.

    Also the record of a login nobody could be found for (account_id None, "not recognized"): a later
    import that brings the person links it automatically.
    """

    __tablename__ = "pending_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: exists (an account has the address: proof needed) | unknown (no account yet)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    client_ip: Mapped[str | None] = mapped_column(String(64))
    #: When a confirmation link was last mailed for it (the page says so when the person comes back).
    mailed_at: Mapped[dt.datetime | None]
    #: linked | expired | superseded | declined — set once; None while it waits
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolved_at: Mapped[dt.datetime | None]
