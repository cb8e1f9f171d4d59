"""Flask-Limiter's SQL storage (idp/core/limit_store.py, used without Redis): fixed windows as rows of
`throttle_counter`, shared by every worker and node (tests/e2e/test_shared_limits.py serves two nodes)."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import limit_store
from idp.extensions import db, limiter
from idp.models import ThrottleCounter

T0 = dt.datetime(2026, 11, 22, 8, 0, 0)
#: Without Redis, even in the suite's PostgreSQL + Redis run.
pytestmark = pytest.mark.settings(REDIS_URL="")


def epoch(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.UTC).timestamp()


def test_without_redis_the_limiter_counts_in_the_database(app):
    assert isinstance(limiter.storage, limit_store.SqlLimitStorage)


def test_a_fixed_window_counts_then_starts_again(app, monkeypatch):
    now = [T0]
    monkeypatch.setattr(limit_store, "_now", lambda: now[0])
    store = limit_store.SqlLimitStorage()
    assert [store.incr("LIMITER/addr:192.0.2.1/reset", 60) for _ in range(3)] == [1, 2, 3]
    assert store.get("LIMITER/addr:192.0.2.1/reset") == 3
    assert store.get_expiry("LIMITER/addr:192.0.2.1/reset") == epoch(T0 + dt.timedelta(minutes=1))
    assert store.get("LIMITER/addr:192.0.2.2/reset") == 0  # another key, another window
    now[0] = T0 + dt.timedelta(seconds=59)
    assert store.incr("LIMITER/addr:192.0.2.1/reset", 60) == 4
    now[0] = T0 + dt.timedelta(seconds=60)  # the window has ended: nothing counted, a new one at the next hit
    assert store.get("LIMITER/addr:192.0.2.1/reset") == 0
    assert store.incr("LIMITER/addr:192.0.2.1/reset", 60, amount=2) == 2
    assert store.get_expiry("LIMITER/addr:192.0.2.1/reset") == epoch(T0 + dt.timedelta(minutes=2))
    store.clear("LIMITER/addr:192.0.2.1/reset")
    assert store.get("LIMITER/addr:192.0.2.1/reset") == 0
    assert store.check()


def test_rows_hold_a_hash_and_reset_leaves_the_throttle_alone(app, monkeypatch):
    monkeypatch.setattr(limit_store, "_now", lambda: T0)
    store = limit_store.SqlLimitStorage()
    db.session.add(ThrottleCounter(key="addr:192.0.2.9", count=4, since=T0, last_at=T0, until=None,
                                   expires_at=T0 + dt.timedelta(hours=1)))
    db.session.commit()
    store.incr("LIMITER/reset:ktos@example.edu.pl/3/15/minute", 900)
    store.incr("LIMITER/addr:192.0.2.9/recovery.reset", 60)
    keys = db.session.scalars(db.select(ThrottleCounter.key).order_by(ThrottleCounter.key)).all()
    limits = [k for k in keys if k.startswith("limit:")]
    assert len(limits) == 2 and all(len(k) == len("limit:") + 40 for k in limits)
    assert not any("ktos" in k for k in keys)
    assert store.reset() == 2
    db.session.expire_all()
    assert db.session.scalars(db.select(ThrottleCounter.key)).all() == ["addr:192.0.2.9"]
