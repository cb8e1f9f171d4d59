"""Brute-force throttle: growing delays per account and blocks per client address (policy `[login]`).

Two counters stand in front of every password check (the login form, the link proof, the password
change page), whatever the outcome of the check itself:

- **a run of wrong passwords per subject**: the account the identifier names (`acct:<id>`, whichever of
  its identifiers was typed) or, when it names none, the typed identifier itself (`name:<keyed hash>`).
  After `delay_after` wrong passwords in a row every further attempt waits `delay_seconds`, doubling per
  wrong password up to `delay_max_seconds`; an attempt before the wait is over is refused without
  checking the password. Unknown identifiers are counted exactly like accounts, so the delays say
  nothing about whether an account exists. A correct password ends the run; a run whose last failure
  is older than `failure_reset_hours` no longer counts.
- **wrong passwords per client address** (an IPv6 address counts as its /64, what one subscriber gets):
  `address_failures` within `address_window_minutes` (a fixed window from the first) block password
  attempts from that address for `address_block_minutes`. Networks in `exempt_networks` (a campus NAT)
  are never blocked; their people still get the per-subject delays.

The account lockout (`lockout_threshold` …) lives on the Account row (core/authn.py), where the helpdesk
sees it; this module holds only short-lived counters, in Redis when configured (atomic Lua scripts, keys
that expire) and otherwise in the SQL table `throttle_counter` (one upsert per count, so parallel nodes
lose no count; expired rows are purged now and then). Like all of core, nothing here reads the request:
callers pass `client_ip` and `now`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from flask import current_app
from redis.exceptions import RedisError

from idp.core.errors import SharedStateUnavailable
from idp.core.policy import Policy
from idp.extensions import db, shared
from idp.models import ThrottleCounter

#: Chance that a counted failure also purges expired SQL rows (no cron job needed).
PURGE_CHANCE = 0.02
#: Redis keys outlive what they mean by this much (clock differences between nodes).
_MARGIN = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Counter:
    count: int
    since: dt.datetime
    last: dt.datetime
    until: dt.datetime | None


@dataclass(frozen=True)
class Refusal:
    #: "throttled" (the subject's delay) or "address_blocked" (the client address waits).
    reason: str
    until: dt.datetime

    def seconds(self, now: dt.datetime) -> int:
        """Whole seconds to wait (at least 1), as the page says them."""
        return max(1, math.ceil((self.until - now).total_seconds()))


@dataclass(frozen=True)
class Gate:
    """What check() saw before a password check; failed() and succeeded() act on it afterwards."""

    subject: str
    #: The key of the address rule, None when it does not apply (off, no address, exempt network).
    address: str | None
    refusal: Refusal | None
    #: Wrong passwords in the subject's current run.
    run: int


@dataclass(frozen=True)
class Failure:
    """What a counted failure changed."""

    #: The subject's next attempt is refused until then (None: no delay yet).
    delay_until: dt.datetime | None
    #: This failure started a block of the client address (until then); None otherwise.
    address_blocked_until: dt.datetime | None


# --- the stores -------------------------------------------------------------------------------------------

class Store(Protocol):
    def read(self, keys: Sequence[str]) -> list[Counter | None]: ...

    def hit(self, key: str, now: dt.datetime, *, reset: dt.timedelta, sliding: bool,
            keep: dt.timedelta) -> int:
        """Count one failure and return the count. The count starts again at 1 when the previous
        failure (`sliding`) or the first one of the window (not sliding) is `reset` old or older."""

    def hold(self, key: str, until: dt.datetime, now: dt.datetime) -> None:
        """Refuse attempts of this key until `until` (never shortens a longer hold)."""

    def clear(self, *keys: str) -> None: ...


class SqlStore:
    """The `throttle_counter` table, changed in the caller's transaction (the caller commits)."""

    def read(self, keys: Sequence[str]) -> list[Counter | None]:
        rows = {r.key: r for r in db.session.execute(
            db.select(ThrottleCounter.key, ThrottleCounter.count, ThrottleCounter.since, ThrottleCounter.last_at,
                      ThrottleCounter.until).where(ThrottleCounter.key.in_(list(keys))))}
        return [Counter(r.count, r.since, r.last_at, r.until) if (r := rows.get(k)) else None for k in keys]

    def hit(self, key: str, now: dt.datetime, *, reset: dt.timedelta, sliding: bool,
            keep: dt.timedelta) -> int:
        t = ThrottleCounter
        insert = _upsert_insert()
        stale = (t.last_at if sliding else t.since) <= now - reset
        stmt = insert(t).values(key=key, count=1, since=now, last_at=now, until=None, expires_at=now + keep)
        stmt = stmt.on_conflict_do_update(index_elements=[t.key], set_={
            "count": db.case((stale, 1), else_=t.count + 1),
            "since": db.case((stale, now), else_=t.since),
            "last_at": now,
            "expires_at": db.case((t.expires_at < now + keep, now + keep), else_=t.expires_at),
        }).returning(t.count)
        count = db.session.execute(stmt).scalar_one()
        if random.random() < PURGE_CHANCE:
            self.purge(now)
        return count

    def hold(self, key: str, until: dt.datetime, now: dt.datetime) -> None:
        t = ThrottleCounter
        db.session.execute(db.update(t).where(t.key == key, db.or_(t.until.is_(None), t.until < until))
                           .values(until=until,
                                   expires_at=db.case((t.expires_at < until, until), else_=t.expires_at)))

    def clear(self, *keys: str) -> None:
        db.session.execute(db.delete(ThrottleCounter).where(ThrottleCounter.key.in_(keys)))

    def purge(self, now: dt.datetime) -> int:
        """Delete the rows that no longer mean anything; returns how many."""
        return db.session.execute(db.delete(ThrottleCounter).where(ThrottleCounter.expires_at < now)).rowcount


def _upsert_insert():
    """INSERT … ON CONFLICT DO UPDATE for the database in use (SQLite and PostgreSQL speak the same)."""
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


#: KEYS[1]; ARGV: now, reset (seconds), sliding (1/0), keep (ms). One hash per key: n, since, last, until.
_HIT = """
local now = tonumber(ARGV[1])
local ref = redis.call('HGET', KEYS[1], ARGV[3] == '1' and 'last' or 'since')
local n
if (not ref) or (now - tonumber(ref) >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'n', 1, 'since', ARGV[1], 'last', ARGV[1])
  n = 1
else
  n = redis.call('HINCRBY', KEYS[1], 'n', 1)
  redis.call('HSET', KEYS[1], 'last', ARGV[1])
end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return n
"""
#: KEYS[1]; ARGV: until, keep (ms).
_HOLD = """
local cur = redis.call('HGET', KEYS[1], 'until')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'until', ARGV[1]) end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""


def _epoch(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.UTC).timestamp()


def _moment(value: bytes | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(float(value), dt.UTC).replace(tzinfo=None) if value else None


class RedisStore:
    """One Redis hash per key, changed by Lua scripts (atomic on every node), expiring by itself.
    Times are the callers' `now` (epoch seconds), so the logic never depends on Redis's clock."""

    def __init__(self, client):
        self.client = client
        self._hit = client.register_script(_HIT)  # EVALSHA, the script text only when Redis lacks it
        self._hold = client.register_script(_HOLD)

    def _key(self, key: str) -> str:
        return shared.key("throttle", key)

    @staticmethod
    @contextmanager
    def _reachable() -> Iterator[None]:
        """Redis not answering: login cannot be judged, so it is refused as briefly unavailable (503)."""
        try:
            yield
        except RedisError as exc:
            raise SharedStateUnavailable(f"throttle store: {exc}") from exc

    def read(self, keys: Sequence[str]) -> list[Counter | None]:
        with self._reachable():
            return self._read(keys)

    def _read(self, keys: Sequence[str]) -> list[Counter | None]:
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.hmget(self._key(k), "n", "since", "last", "until")
        out: list[Counter | None] = []
        for n, since, last, until in pipe.execute():
            if n is None and until is None:
                out.append(None)
            else:
                first = _moment(since) or _moment(until)
                out.append(Counter(int(n or 0), first, _moment(last) or first, _moment(until)))
        return out

    def hit(self, key: str, now: dt.datetime, *, reset: dt.timedelta, sliding: bool,
            keep: dt.timedelta) -> int:
        with self._reachable():
            return int(self._hit(keys=[self._key(key)], args=[repr(_epoch(now)), repr(reset.total_seconds()),
                                                              "1" if sliding else "0", _ms(keep)]))

    def hold(self, key: str, until: dt.datetime, now: dt.datetime) -> None:
        with self._reachable():
            self._hold(keys=[self._key(key)], args=[repr(_epoch(until)), _ms(until - now)])

    def clear(self, *keys: str) -> None:
        with self._reachable():
            self.client.delete(*(self._key(k) for k in keys))


def _ms(span: dt.timedelta) -> int:
    return max(1000, int((span + _MARGIN).total_seconds() * 1000))


def store() -> Store:
    """Redis when IDP_REDIS_URL is set, else SQL."""
    client = shared.redis
    return RedisStore(client) if client is not None else SqlStore()


# --- keys -------------------------------------------------------------------------------------------------

def subject(account_id: int | None, identifier: str = "") -> str:
    """Whose run of wrong passwords an attempt belongs to: the account, else the typed identifier
    (normalised as the lookup normalises it, and hashed with the instance key: the table and Redis never
    hold what strangers typed)."""
    if account_id is not None:
        return f"acct:{account_id}"
    from idp.core.accounts import normalise_identifier

    secret = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(secret, b"throttle:" + normalise_identifier(identifier).encode(), hashlib.sha256)
    return "name:" + digest.hexdigest()[:40]


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def _parse(client_ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address((client_ip or "").strip())
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def exempt(policy: Policy, client_ip: str | None) -> bool:
    """The client address is in one of the policy's `exempt_networks`."""
    ip = _parse(client_ip)
    return ip is not None and any(ip in net for net in _networks(tuple(policy.data["login"]["exempt_networks"])))


def address_key(client_ip: str | None) -> str | None:
    """The key the address counts under: the address itself, or its /64 for IPv6 (one subscriber's
    network); None when there is no usable address."""
    ip = _parse(client_ip)
    if ip is None:
        return None
    if ip.version == 6:
        return "addr:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return f"addr:{ip}"


def _address(policy: Policy, client_ip: str | None) -> str | None:
    if not policy.data["login"]["address_failures"] or exempt(policy, client_ip):
        return None
    return address_key(client_ip)


# --- the rules --------------------------------------------------------------------------------------------

def delay_seconds(policy: Policy, run: int) -> int:
    """The wait after `run` wrong passwords in a row: none before `delay_after`, then `delay_seconds`
    doubling per further wrong password, at most `delay_max_seconds`."""
    rules = policy.data["login"]
    after = rules["delay_after"]
    if not after or run < after:
        return 0
    return min(rules["delay_seconds"] * 2 ** min(run - after, 32), rules["delay_max_seconds"])


def _reset(policy: Policy) -> dt.timedelta:
    return dt.timedelta(hours=policy.data["login"]["failure_reset_hours"])


def check(policy: Policy, *, subject: str, client_ip: str | None, now: dt.datetime) -> Gate:
    """Before a password check: may it happen now? A refusal names the longer of the two waits."""
    address = _address(policy, client_ip)
    keys = [subject] + ([address] if address else [])
    counters = store().read(keys)
    mine = counters[0]
    run = mine.count if mine is not None and now - mine.last < _reset(policy) else 0
    refusals = []
    if mine is not None and mine.until is not None and mine.until > now:
        refusals.append(Refusal("throttled", mine.until))
    if address and (theirs := counters[1]) is not None and theirs.until is not None and theirs.until > now:
        refusals.append(Refusal("address_blocked", theirs.until))
    refusal = max(refusals, key=lambda r: r.until) if refusals else None
    return Gate(subject=subject, address=address, refusal=refusal, run=run)


def failed(policy: Policy, gate: Gate, now: dt.datetime) -> Failure:
    """A wrong password (or an unknown identifier, or an account without one): count it for the
    subject and the client address, and start their waits."""
    rules = policy.data["login"]
    s = store()
    delay_until = None
    if rules["delay_after"]:
        run = s.hit(gate.subject, now, reset=_reset(policy), sliding=True, keep=_reset(policy))
        wait = delay_seconds(policy, run)
        if wait:
            delay_until = now + dt.timedelta(seconds=wait)
            s.hold(gate.subject, delay_until, now)
    blocked_until = None
    if gate.address:
        window = dt.timedelta(minutes=rules["address_window_minutes"])
        block = dt.timedelta(minutes=rules["address_block_minutes"])
        count = s.hit(gate.address, now, reset=window, sliding=False, keep=window + block)
        if count >= rules["address_failures"]:
            s.hold(gate.address, now + block, now)
            if count == rules["address_failures"]:  # exactly one failure per window starts the block
                blocked_until = now + block
    return Failure(delay_until, blocked_until)


def succeeded(gate: Gate) -> None:
    """A correct password: the subject's run of wrong passwords is over (the address keeps its count)."""
    if gate.run:
        store().clear(gate.subject)


def forget_account(account_id: int) -> None:
    """The helpdesk unlocked the account, or it got a new password: its delays end now."""
    store().clear(subject(account_id))


def account_delay(account_id: int, now: dt.datetime) -> dt.datetime | None:
    """Until when the account's next password attempt would be refused (None: it would not)."""
    [counter] = store().read([subject(account_id)])
    return counter.until if counter is not None and counter.until is not None and counter.until > now else None
