from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class ResetRequest(db.Model):
    """One "send me a reset link" request. The link carries only its id, signed; the row says whether
    the link still works (used, superseded by a newer request, or killed by wrong answers)."""

    __tablename__ = "reset_request"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    client_ip: Mapped[str | None] = mapped_column(String(64))
    wrong_answers: Mapped[int] = mapped_column(default=0)
    used_at: Mapped[dt.datetime | None]
    #: superseded (a newer request or a completed reset), killed (too many wrong answers)
    ended_reason: Mapped[str | None] = mapped_column(String(16))
    ended_at: Mapped[dt.datetime | None]
