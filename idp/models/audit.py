from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class AuditEvent(db.Model):
    """Something that happened to an account or a protocol check, with its reason. Kept apart from logs."""

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)  # e.g. login.failed, cas.validate.failed
    #: Who did it: "self", "cli", a staff identifier, or a service name.
    actor: Mapped[str] = mapped_column(String(254), default="self")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"), index=True)
    reason: Mapped[str | None] = mapped_column(String(64))  # machine code: wrong_password, unknown_identifier …
    client_ip: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict | None] = mapped_column(JSON)
