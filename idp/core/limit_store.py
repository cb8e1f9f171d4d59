"""Flask-Limiter's counters in SQL when Redis is not configured (storage URI `idp-sql://`).

The endpoint rate limits (reset requests, recovery codes, the live password check, the admin API, the
login's `address_rate_limit`) must hold across workers and nodes: the `limits` library's `memory://` is
one worker's memory, so a limit configured as 3 would be 3 × workers × nodes. This storage keeps each
fixed window as one row of `throttle_counter` (the brute-force throttle's table, under keys of their own,
purged with it): `limit:<sha256 of the limiter's key>`, `count` the hits in the window, `since` its start
and `expires_at` its end. Every hit is one `INSERT … ON CONFLICT DO UPDATE … RETURNING` in a short
transaction of its own (the throttle's rule: never the request's transaction), on SQLite and PostgreSQL
alike. Only the fixed-window strategy (Flask-Limiter's default) is supported.

Windows run on real time, as the `limits` library's own (its reset times are `time.time()` epochs).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from functools import cache

from limits.storage import Storage
from sqlalchemy.exc import SQLAlchemyError

from idp.core.throttle import own_transaction
from idp.extensions import db
from idp.models import ThrottleCounter

SCHEME = "idp-sql"
_PREFIX = "limit:"
_T = ThrottleCounter.__table__


def _key(key: str) -> str:
    """The row key: the limiter's keys hold addresses and hashed identifiers and may be long."""
    return _PREFIX + hashlib.sha256(key.encode()).hexdigest()[:40]


def _now() -> dt.datetime:
    return dt.datetime.fromtimestamp(time.time(), dt.UTC).replace(tzinfo=None)


def _epoch(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.UTC).timestamp()


@cache
def _hit_statement(dialect: str):
    """One hit: a new window when there is none or it has ended, else one more in it; the count back."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    now = db.bindparam("b_now", type_=_T.c.since.type)
    end = db.bindparam("b_end", type_=_T.c.expires_at.type)
    amount = db.bindparam("b_amount", type_=_T.c.count.type)
    ended = _T.c.expires_at <= now
    stmt = insert(_T).values(key=db.bindparam("b_key", type_=_T.c.key.type), count=amount, since=now,
                             last_at=now, until=None, expires_at=end)
    return stmt.on_conflict_do_update(index_elements=[_T.c.key], set_={
        "count": db.case((ended, amount), else_=_T.c.count + amount),
        "since": db.case((ended, now), else_=_T.c.since),
        "expires_at": db.case((ended, end), else_=_T.c.expires_at),
        "last_at": now,
    }).returning(_T.c.count)


class SqlLimitStorage(Storage):
    """A `limits` storage over the app's database (every call runs inside a request or app context)."""

    STORAGE_SCHEME = [SCHEME]

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = _now()
        with own_transaction() as conn:
            return conn.execute(_hit_statement(conn.dialect.name), {
                "b_key": _key(key), "b_now": now, "b_end": now + dt.timedelta(seconds=expiry),
                "b_amount": amount}).scalar_one()

    def _window(self, key: str) -> tuple[int, dt.datetime] | None:
        row = db.session.execute(db.select(_T.c.count, _T.c.expires_at).where(_T.c.key == _key(key))).first()
        if row is None or row.expires_at <= _now():
            return None
        return row.count, row.expires_at

    def get(self, key: str) -> int:
        window = self._window(key)
        return window[0] if window else 0

    def get_expiry(self, key: str) -> float:
        window = self._window(key)
        return _epoch(window[1]) if window else time.time()

    def check(self) -> bool:
        try:
            db.session.execute(db.select(1))
            return True
        except SQLAlchemyError:
            return False

    def reset(self) -> int | None:
        with own_transaction() as conn:
            return conn.execute(db.delete(_T).where(_T.c.key.startswith(_PREFIX))).rowcount

    def clear(self, key: str) -> None:
        with own_transaction() as conn:
            conn.execute(db.delete(_T).where(_T.c.key == _key(key)))
