"""One notion of "now" (naive UTC, as stored), so tests and callers can pass their own."""
from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
