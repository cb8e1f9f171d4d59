from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class ThrottleCounter(db.Model):
    """Brute-force counters when Redis is not configured (idp/core/throttle.py): a run of wrong passwords
    of one account or typed identifier, or the wrong passwords of one client address in a window."""

    __tablename__ = "throttle_counter"

    #: "acct:<id>", "name:<keyed hash of the identifier>" or "addr:<address or IPv6 /64>".
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    #: Start of the run (or of the address's window).
    since: Mapped[dt.datetime]
    #: The last counted failure.
    last_at: Mapped[dt.datetime]
    #: Attempts are refused before this (a delay, or an address block).
    until: Mapped[dt.datetime | None]
    #: The row means nothing after this and is purged.
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
