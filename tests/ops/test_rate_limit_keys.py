"""Endpoint rate-limit counters (Flask-Limiter, the `limits` library) live under the IdP's Redis prefix — a
Redis ACL written as `~idp:*` covers them — and their keys never hold what someone typed (the reset form's
per-identifier limit keys a keyed hash of the identifier, never the address or a PESEL)."""
from __future__ import annotations

import pytest

from idp.core import limit_store
from idp.extensions import db, limiter, shared
from idp.models import ThrottleCounter
from tests.databases import local_redis_url, redis_settings_for
from tests.recovery.helpers import request_link

PESEL_TYPED = "90090515836"
ADDRESS_TYPED = "Ktos.Nieznany@Student.Example.edu.pl"


def limiter_keys(app, seen: list[str]) -> list[str]:
    """Every key the rate limiter holds: in Redis, those under this app's prefix; in the database (no
    Redis), the keys Flask-Limiter counted under (`seen`: each row stores a hash of one)."""
    if shared.redis is not None:
        return [k.decode() for k in shared.redis.scan_iter(match=app.config["REDIS_PREFIX"] + "*", count=1000)]
    rows = db.session.scalars(db.select(ThrottleCounter.key).where(ThrottleCounter.key.startswith("limit:"))).all()
    keys = list(seen)
    assert sorted(rows) == sorted({limit_store._key(k) for k in keys}), (rows, keys)  # (records them again)
    return keys


@pytest.fixture
def seen(monkeypatch) -> list[str]:
    """The keys the SQL limit storage was given (recorded on their way to their hashes)."""
    keys: list[str] = []
    real = limit_store._key
    monkeypatch.setattr(limit_store, "_key", lambda key: keys.append(key) or real(key))
    return keys


def limit_reset_requests(client, identifier: str) -> None:
    statuses = [request_link(client, identifier).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429], statuses  # REQUEST_LIMIT_IDENTIFIER: 3 per 15 minutes


def test_the_per_identifier_key_holds_no_identifier(app, client, person, seen):
    limit_reset_requests(client, ADDRESS_TYPED)
    limit_reset_requests(client, PESEL_TYPED)
    keys = limiter_keys(app, seen)
    assert [k for k in keys if "reset:" in k], keys
    text = "\n".join(keys).lower()
    assert ADDRESS_TYPED.lower() not in text and "ktos" not in text and PESEL_TYPED not in text


# Every run (CI starts Redis when it is down): a missing Redis fails the test, it does not hide it.
@pytest.mark.settings(**redis_settings_for(local_redis_url() or "redis://127.0.0.1:6379/0"))
def test_rate_limit_keys_are_under_the_redis_prefix(app, client, person, seen):
    prefix = app.config["REDIS_PREFIX"]
    limit_reset_requests(client, ADDRESS_TYPED)
    keys = limiter_keys(app, seen)
    limits = [k for k in keys if k.startswith(prefix + "limits:")]
    assert limits and all(k.startswith(prefix + "limits:LIMITER/") for k in limits), keys
    # Nothing of this app's left outside its namespace (the `limits` library's default "LIMITS:" prefix).
    assert not list(shared.redis.scan_iter(match=f"LIMITS:*{prefix}*", count=1000))
    # Flask-Limiter's reset clears this app's counters only: the key prefix is the storage's.
    assert limiter.storage.key_prefix == prefix + "limits"
