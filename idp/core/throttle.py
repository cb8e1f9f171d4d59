"""Brute-force throttle: growing delays per typed identifier and blocks per client address (policy `[login]`).

Two counters stand in front of every password check (the login form, the link proof, the password
change page), whatever the outcome of the check itself:

- **a run of attempts per subject**: the typed identifier, normalised as the lookup normalises it and
  hashed with the instance key (`name:<keyed hash>`), whether or not it names an account — so a delay
  tells nothing about whether an account exists, nor which other identifiers belong to the same account.
  Pages that already know the account (the link proof, the password change) count under the account
  (`acct:<id>`). After `delay_after` attempts in a row without a correct password every further attempt
  waits `delay_seconds`, doubling per attempt up to `delay_max_seconds`; an attempt before the wait is
  over is refused without checking the password. A correct password ends the run; a run whose last
  attempt is older than `failure_reset_hours` no longer counts. (The per-account lockout on the Account
  row, core/authn.py, counts wrong passwords across all identifiers: rotating them escapes no lock.)
- **wrong passwords per client address** (an IPv6 address counts as its /64, what one subscriber gets):
  `address_failures` within `address_window_minutes` (a fixed window from the first) block password
  attempts from that address for `address_block_minutes`. Networks in `exempt_networks` (a campus NAT)
  are never blocked; their people still get the per-subject delays.

**Claim before the check.** claim() is one atomic step per attempt, taken *before* the password is
verified: refused when a hold is in force; otherwise the attempt is counted and the hold the *next*
attempt must wait for is set at once — the wait this attempt earns should it fail. So parallel requests
cannot slip through one window: at most `delay_after` attempts of a run pass before its first hold, then
one per hold, however many arrive at the same moment. succeeded() then undoes what a correct password
should not leave behind: the subject's run, and the attempt's count at the address (the address counts
failures only). The attempt that reaches `address_failures` sets the address's block at once, for the
same reason; when it turns out to be a correct password the block is lifted again (a parallel request
refused in that moment is the one false refusal this allows).

The account lockout lives on the Account row (core/authn.py), where the helpdesk sees it; this module
holds only short-lived counters, in Redis when configured (a Lua script per claim, keys that expire) and
otherwise in the SQL table `throttle_counter` (a conditional upsert per key, `… ON CONFLICT DO UPDATE …
WHERE until IS NULL OR until <= now`, in a short transaction of its own — never the login's, which would
hold the counter rows locked across the argon2 verification; expired rows are purged now and then,
outside any login transaction, in batches). Like all of core, nothing here reads the request: callers
pass `client_ip` and `now`.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import logging
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Protocol

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from idp.core.errors import SharedStateUnavailable
from idp.core.policy import Policy
from idp.extensions import db, shared
from idp.models import Account, Identifier, ThrottleCounter

log = logging.getLogger("idp.throttle")

#: Chance that a claim (SQL store) is followed by a purge of expired rows (no cron job needed).
PURGE_CHANCE = 0.02
#: Rows a purge deletes per transaction, and transactions per purge after a claim.
PURGE_BATCH = 500
PURGE_BATCHES = 4
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


# --- the stores -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """How one key counts attempts and when it holds the next one back."""

    key: str
    #: The count starts again once its last attempt (sliding) or its first one (a fixed window) is
    #: `reset` old.
    sliding: bool
    reset: dt.timedelta
    #: How long the counter means something after its last attempt.
    keep: dt.timedelta
    #: From the `after`-th attempt on (0: never), the next attempt waits `wait`, multiplied by `growth`
    #: per further attempt, at most `cap`.
    after: int
    wait: dt.timedelta
    growth: int
    cap: dt.timedelta

    def hold(self, count: int) -> dt.timedelta:
        if not self.after or count < self.after:
            return dt.timedelta(0)
        seconds = self.wait.total_seconds() * self.growth ** min(count - self.after, 32)
        return min(dt.timedelta(seconds=seconds), self.cap)


@dataclass(frozen=True)
class Slot:
    """One key right after a claim. Taken: its count with this attempt, and the hold this attempt set
    (None: none). Refused: count 0 and the hold in force, if any."""

    count: int = 0
    until: dt.datetime | None = None
    #: How the store recognises its own writes on release (the same window; the hold this claim set).
    since_token: object = None
    until_token: object = None


class Store(Protocol):
    def read(self, keys: Sequence[str]) -> list[Counter | None]: ...

    def claim(self, rules: Sequence[Rule], now: dt.datetime) -> tuple[bool, list[Slot]]:
        """Atomically, for all `rules` together: refuse (False) when any key holds attempts back at `now`;
        otherwise count the attempt under every key and set the holds it earns (True)."""

    def release(self, subject: str | None, address: str | None, slot: Slot | None) -> None:
        """A correct password after a taken claim: forget the subject's run; un-count the attempt at the
        address (within the same window) and lift the block its claim set."""

    def clear(self, *keys: str) -> None: ...


class _Held(Exception):
    """A key holds attempts back: the claim's transaction is rolled back."""


def _sqlite_session_writing() -> bool:
    """SQLite takes one writer for the whole file: when the session already holds a write transaction
    (a caller with uncommitted changes), a second connection would wait for it until its busy timeout."""
    if db.session.get_bind().dialect.name != "sqlite" or not db.session().in_transaction():
        return False
    return bool(getattr(db.session.connection().connection.dbapi_connection, "in_transaction", False))


@contextmanager
def own_transaction() -> Iterator:
    """A short transaction of its own, committed at once: never the login's transaction (which would keep
    the counter rows locked across the argon2 verification, and queue every login from one address behind
    it). On SQLite with a session that already writes, a savepoint of the session instead (see above)."""
    if _sqlite_session_writing():
        with db.session.begin_nested():
            yield db.session.connection()
        return
    with db.engine.begin() as conn:
        yield conn


@cache
def _claim_statement(dialect: str, sliding: bool):
    """One counter's claim: INSERT … ON CONFLICT DO UPDATE … RETURNING (SQLite and PostgreSQL speak the
    same), built once per dialect and window kind with bound values; building it per claim cost more
    than running it."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    t = ThrottleCounter
    now, keep_until = db.bindparam("b_now", type_=t.last_at.type), db.bindparam("b_keep", type_=t.expires_at.type)
    stale = (t.last_at if sliding else t.since) <= db.bindparam("b_stale", type_=t.since.type)
    stmt = insert(t).values(key=db.bindparam("b_key", type_=t.key.type), count=1, since=now, last_at=now,
                            until=None, expires_at=keep_until)
    return stmt.on_conflict_do_update(index_elements=[t.key], set_={
        "count": db.case((stale, 1), else_=t.count + 1),
        "since": db.case((stale, now), else_=t.since),
        "last_at": now,
        "until": None,
        "expires_at": db.case((t.expires_at < keep_until, keep_until), else_=t.expires_at),
    }, where=db.or_(t.until.is_(None), t.until <= now)).returning(t.count, t.since)


_T = ThrottleCounter.__table__
_FORGET = db.delete(_T).where(_T.c.key == db.bindparam("b_key"))
_UNCOUNT = db.update(_T).where(_T.c.key == db.bindparam("b_key"), _T.c.since == db.bindparam("b_since"),
                               _T.c.count > 0).values(count=_T.c.count - 1)
_UNHOLD = db.update(_T).where(_T.c.key == db.bindparam("b_key"), _T.c.until == db.bindparam("b_until")).values(until=None)


class SqlStore:
    """The `throttle_counter` table. Claims, releases and purges run in short transactions of their own;
    read() and clear() (the helpdesk, a new password) in the caller's."""

    def read(self, keys: Sequence[str]) -> list[Counter | None]:
        rows = {r.key: r for r in db.session.execute(
            db.select(ThrottleCounter.key, ThrottleCounter.count, ThrottleCounter.since, ThrottleCounter.last_at,
                      ThrottleCounter.until).where(ThrottleCounter.key.in_(list(keys))))}
        return [Counter(r.count, r.since, r.last_at, r.until) if (r := rows.get(k)) else None for k in keys]

    def claim(self, rules: Sequence[Rule], now: dt.datetime) -> tuple[bool, list[Slot]]:
        t = ThrottleCounter
        try:
            with own_transaction() as conn:
                slots = []
                for rule in rules:  # always the subject before the address: one lock order for every claim
                    stmt = _claim_statement(conn.dialect.name, rule.sliding)
                    row = conn.execute(stmt, {"b_key": rule.key, "b_now": now, "b_stale": now - rule.reset,
                                              "b_keep": now + rule.keep}).first()
                    if row is None:  # the row exists and holds attempts back: nothing was changed
                        raise _Held
                    count, since = row
                    until = now + hold if (hold := rule.hold(count)) else None
                    if until is not None:
                        conn.execute(db.update(t).where(t.key == rule.key).values(
                            until=until, expires_at=db.case((t.expires_at < until, until), else_=t.expires_at)))
                    slots.append(Slot(count, until, since, until))
                return True, slots
        except _Held:
            pass
        held = self.read([r.key for r in rules])
        return False, [Slot(until=c.until if c is not None and c.until is not None and c.until > now else None)
                       for c in held]

    def release(self, subject: str | None, address: str | None, slot: Slot | None) -> None:
        with own_transaction() as conn:
            if subject:
                conn.execute(_FORGET, {"b_key": subject})
            if address and slot is not None:
                conn.execute(_UNCOUNT, {"b_key": address, "b_since": slot.since_token})
                if slot.until_token is not None:
                    conn.execute(_UNHOLD, {"b_key": address, "b_until": slot.until_token})

    def clear(self, *keys: str) -> None:
        db.session.execute(db.delete(ThrottleCounter).where(ThrottleCounter.key.in_(keys)))

    def purge(self, now: dt.datetime, *, batch: int = PURGE_BATCH, batches: int | None = None) -> int:
        """Delete the rows that no longer mean anything, `batch` rows per short transaction of its own
        (at most `batches` of them); returns how many. On PostgreSQL rows another transaction has locked
        are skipped, so a purge never waits for a login (nor a login for a purge that waits)."""
        t = ThrottleCounter
        total = done = 0
        while batches is None or done < batches:
            with own_transaction() as conn:
                expired = db.select(t.key).where(t.expires_at < now).limit(batch)
                if conn.dialect.name == "postgresql":
                    expired = expired.with_for_update(skip_locked=True)
                deleted = conn.execute(db.delete(t).where(t.key.in_(expired.scalar_subquery()),
                                                          t.expires_at < now)).rowcount
            total += deleted
            done += 1
            if deleted < batch:
                break
        return total


#: KEYS: the keys of one claim (the subject, the address). ARGV[1]: now (epoch seconds); then 7 per key:
#: sliding (1/0), reset (s), keep (ms), after, wait (s), growth, cap (s). One hash per key: n, since,
#: last, until. Returns {1, then n, since, until ('' none) per key} or {0, then 0, '', until in force}.
_CLAIM = """
local now = tonumber(ARGV[1])
local held = false
for i = 1, #KEYS do
  local u = redis.call('HGET', KEYS[i], 'until')
  if u and tonumber(u) > now then held = true end
end
if held then
  local out = {0}
  for i = 1, #KEYS do
    local u = redis.call('HGET', KEYS[i], 'until')
    if not (u and tonumber(u) > now) then u = '' end
    out[#out + 1] = 0
    out[#out + 1] = ''
    out[#out + 1] = u
  end
  return out
end
local out = {1}
for i = 1, #KEYS do
  local key, a = KEYS[i], 1 + (i - 1) * 7
  local ref = redis.call('HGET', key, ARGV[a + 1] == '1' and 'last' or 'since')
  local n
  if (not ref) or (now - tonumber(ref) >= tonumber(ARGV[a + 2])) then
    redis.call('DEL', key)
    redis.call('HSET', key, 'n', 1, 'since', ARGV[1], 'last', ARGV[1])
    n = 1
  else
    n = redis.call('HINCRBY', key, 'n', 1)
    redis.call('HSET', key, 'last', ARGV[1])
  end
  local keep, after = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local untl = ''
  if after > 0 and n >= after then
    local wait = math.min(tonumber(ARGV[a + 5]) * tonumber(ARGV[a + 6]) ^ math.min(n - after, 32),
                          tonumber(ARGV[a + 7]))
    untl = string.format('%.6f', now + wait)
    redis.call('HSET', key, 'until', untl)
    keep = math.max(keep, (wait + 60) * 1000)
  else
    redis.call('HDEL', key, 'until')
  end
  if redis.call('PTTL', key) < keep then redis.call('PEXPIRE', key, math.ceil(keep)) end
  out[#out + 1] = n
  out[#out + 1] = redis.call('HGET', key, 'since')
  out[#out + 1] = untl
end
return out
"""
#: KEYS: the subject (when ARGV[1] is 1), then the address (when ARGV[2] is not ''). ARGV: 1/0, the
#: address's window start and the block the claim set ('' none), as the claim returned them.
_RELEASE = """
local i = 1
if ARGV[1] == '1' then
  redis.call('DEL', KEYS[1])
  i = 2
end
local key = KEYS[i]
if key and ARGV[2] ~= '' then
  if redis.call('HGET', key, 'since') == ARGV[2] and tonumber(redis.call('HGET', key, 'n') or '0') > 0 then
    redis.call('HINCRBY', key, 'n', -1)
  end
  if ARGV[3] ~= '' and redis.call('HGET', key, 'until') == ARGV[3] then redis.call('HDEL', key, 'until') end
end
return 1
"""


def _epoch(moment: dt.datetime) -> float:
    return moment.replace(tzinfo=dt.UTC).timestamp()


def _moment(value: bytes | str | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(float(value), dt.UTC).replace(tzinfo=None) if value else None


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


class RedisStore:
    """One Redis hash per key, changed by Lua scripts (atomic on every node), expiring by itself.
    Times are the callers' `now` (epoch seconds), so the logic never depends on Redis's clock."""

    def __init__(self, client):
        self.client = client
        self._claim = client.register_script(_CLAIM)  # EVALSHA, the script text only when Redis lacks it
        self._release = client.register_script(_RELEASE)

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

    def claim(self, rules: Sequence[Rule], now: dt.datetime) -> tuple[bool, list[Slot]]:
        args: list[object] = [repr(_epoch(now))]
        for r in rules:
            args += ["1" if r.sliding else "0", repr(r.reset.total_seconds()), _ms(r.keep), r.after,
                     repr(r.wait.total_seconds()), r.growth, repr(r.cap.total_seconds())]
        with self._reachable():
            ok, *rest = self._claim(keys=[self._key(r.key) for r in rules], args=args)
        slots = []
        for i in range(len(rules)):
            count, since, until = rest[3 * i:3 * i + 3]
            if int(ok):
                slots.append(Slot(int(count), _moment(_text(until)), _text(since), _text(until) or None))
            else:
                slots.append(Slot(until=_moment(_text(until))))
        return bool(int(ok)), slots

    def release(self, subject: str | None, address: str | None, slot: Slot | None) -> None:
        keys = ([self._key(subject)] if subject else []) + ([self._key(address)] if address and slot else [])
        args = ["1" if subject else "0", (slot.since_token or "") if address and slot else "",
                (slot.until_token or "") if address and slot else ""]
        with self._reachable():
            self._release(keys=keys, args=args)

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

def subject(identifier: str) -> str:
    """Whose run of attempts a login belongs to: the typed identifier — normalised as the lookup
    normalises it, hashed with the instance key (the table and Redis never hold what strangers typed) —
    whether it names an account or not."""
    from idp.core.accounts import normalise_identifier

    secret = str(current_app.config["SECRET_KEY"]).encode()
    digest = hmac.new(secret, b"throttle:" + normalise_identifier(identifier).encode(), hashlib.sha256)
    return "name:" + digest.hexdigest()[:40]


def account_subject(account_id: int) -> str:
    """The run of a page that already knows the account (the link proof, the password change)."""
    return f"acct:{account_id}"


def account_subjects(account_id: int) -> list[str]:
    """Every subject an account's attempts may count under: its own and each of its identifiers'."""
    album = db.session.scalar(db.select(Account.album).where(Account.id == account_id))
    values = db.session.scalars(db.select(Identifier.value).where(Identifier.account_id == account_id))
    names = ([album] if album else []) + list(values)
    return [account_subject(account_id)] + [subject(v) for v in names]


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
    """The wait after `run` attempts in a row without a correct password: none before `delay_after`, then
    `delay_seconds` doubling per further attempt, at most `delay_max_seconds`."""
    rules = policy.data["login"]
    after = rules["delay_after"]
    if not after or run < after:
        return 0
    return min(rules["delay_seconds"] * 2 ** min(run - after, 32), rules["delay_max_seconds"])


def _reset(policy: Policy) -> dt.timedelta:
    return dt.timedelta(hours=policy.data["login"]["failure_reset_hours"])


def _subject_rule(policy: Policy, key: str) -> Rule:
    rules = policy.data["login"]
    return Rule(key, sliding=True, reset=_reset(policy), keep=_reset(policy), after=rules["delay_after"],
                wait=dt.timedelta(seconds=rules["delay_seconds"]), growth=2,
                cap=dt.timedelta(seconds=rules["delay_max_seconds"]))


def _address_rule(policy: Policy, key: str) -> Rule:
    rules = policy.data["login"]
    window = dt.timedelta(minutes=rules["address_window_minutes"])
    block = dt.timedelta(minutes=rules["address_block_minutes"])
    return Rule(key, sliding=False, reset=window, keep=window + block, after=rules["address_failures"],
                wait=block, growth=1, cap=block)


@dataclass(frozen=True)
class Claim:
    """An attempt as claim() left it: refused, or counted (and succeeded() to be told of a correct password)."""

    subject: str
    #: The key of the address rule, None when it does not apply (off, no address, exempt network).
    address: str | None
    refusal: Refusal | None = None
    #: Attempts in the subject's run, this one included (0: refused, or delays off).
    run: int = 0
    #: The subject's next attempt is refused until then (None: no delay).
    delay_until: dt.datetime | None = None
    #: This attempt was the `address_failures`-th of the window: should it fail, the address is blocked
    #: until then (audited once, by the caller).
    address_blocked_until: dt.datetime | None = None
    _subject_taken: bool = field(default=False, repr=False)
    _address_slot: Slot | None = field(default=None, repr=False)


def claim(policy: Policy, *, subject: str, client_ip: str | None, now: dt.datetime) -> Claim:
    """Before a password check: may it happen now? If so the attempt is counted — atomically with the
    check, so parallel requests cannot pass together — and the holds it earns are in force at once. A
    refusal names the longer of the two waits. One store round trip (Redis) or short transaction (SQL)."""
    login = policy.data["login"]
    address = _address(policy, client_ip)
    plan = ([_subject_rule(policy, subject)] if login["delay_after"] else []) + \
           ([_address_rule(policy, address)] if address else [])
    if not plan:
        return Claim(subject, address)
    s = store()
    taken, slots = s.claim(plan, now)
    by_key = {rule.key: slot for rule, slot in zip(plan, slots, strict=True)}
    mine, theirs = by_key.get(subject), by_key.get(address) if address else None
    if not taken:
        refusals = ([Refusal("throttled", mine.until)] if mine is not None and mine.until is not None else []) + \
                   ([Refusal("address_blocked", theirs.until)] if theirs is not None and theirs.until is not None
                    else [])
        # No hold left to name: it was lifted between the refusal and the read (a correct password). Rare.
        refusal = max(refusals, key=lambda r: r.until) if refusals else Refusal(
            "throttled" if mine is not None else "address_blocked", now + dt.timedelta(seconds=1))
        return Claim(subject, address, refusal)
    if isinstance(s, SqlStore) and random.random() < PURGE_CHANCE:
        _purge_quietly(s, now)
    blocked = theirs.until if theirs is not None and theirs.count == login["address_failures"] else None
    return Claim(subject, address, run=mine.count if mine is not None else 0,
                 delay_until=mine.until if mine is not None else None, address_blocked_until=blocked,
                 _subject_taken=mine is not None, _address_slot=theirs)


def _purge_quietly(s: SqlStore, now: dt.datetime) -> None:
    """The occasional purge after a claim: never inside a login's transaction, never an error for it."""
    if _sqlite_session_writing():
        return
    try:
        s.purge(now, batches=PURGE_BATCHES)
    except SQLAlchemyError as exc:
        log.warning("throttle purge failed (the login goes on): %s", exc)


def succeeded(claim: Claim) -> None:
    """A correct password after a claim that was let through: the subject's run of attempts is over, and
    the attempt no longer counts at the address (which counts failures only), nor does the block it set.
    Call it after the login's commit. Never raises: a counter left standing errs on the safe side, so a
    store that fails here is logged, not turned against a login that already succeeded."""
    if claim.refusal is not None or not (claim._subject_taken or claim._address_slot is not None):
        return
    try:
        store().release(claim.subject if claim._subject_taken else None, claim.address, claim._address_slot)
    except (SharedStateUnavailable, SQLAlchemyError) as exc:
        log.warning("throttle counters not released after a correct password: %s", exc)


def forget_account(account_id: int) -> None:
    """The helpdesk unlocked the account, or it got a new password: its delays end now — under the
    account and under each of its identifiers."""
    store().clear(*account_subjects(account_id))


def account_delay(account_id: int, now: dt.datetime) -> dt.datetime | None:
    """Until when the next password attempt with one of the account's identifiers (or on a page that knows
    the account) may be refused — the longest such wait (None: none)."""
    holds = [c.until for c in store().read(account_subjects(account_id))
             if c is not None and c.until is not None and c.until > now]
    return max(holds, default=None)


def address_state(client_ip: str, now: dt.datetime) -> tuple[str, Counter | None] | None:
    """The address rule's counter for a client address (its /64 for IPv6): (key, counter or None when it
    has nothing counted). None when the text is not an address."""
    key = address_key(client_ip)
    if key is None:
        return None
    counter = store().read([key])[0]
    if counter is not None and counter.until is None and counter.last < now - dt.timedelta(days=1):
        counter = None
    return key, counter


def lift_address_block(client_ip: str) -> str | None:
    """Forget everything counted against a client address (a block in force included): the operator's way
    out when a campus NAT was blocked. Returns the key cleared, None when the text is not an address.
    SQL store: in the caller's transaction (the caller commits, with its audit event)."""
    key = address_key(client_ip)
    if key is not None:
        store().clear(key)
    return key

