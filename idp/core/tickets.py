"""CAS tickets: issue, consume exactly once, expire — in SQL, or service and proxy tickets in Redis.

Tickets are stored only as SHA-256 digests. In SQL, "consume" is one conditional UPDATE; in Redis it is
one GETDEL: either way two nodes racing to validate the same ticket cannot both win. Service and proxy
tickets live seconds, so with Redis configured they never touch the database; proxy-granting tickets
live hours, die with their session and stay in SQL.

A ticket in Redis names its session by the public `sid`, which follows the person to a new session when
they log in again (sso.start hands tickets over); a session that ended takes its unused tickets with it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import string
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from idp.core.errors import SharedStateUnavailable
from idp.extensions import db, shared
from idp.models import SsoSession, Ticket

_ALPHABET = string.ascii_letters + string.digits
#: 22 base62 characters = 131 bits; "ST-" + 22 = 25 characters, within the 32 every client accepts.
RANDOM_CHARS = 22


def new_id(prefix: str, length: int = RANDOM_CHARS) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


#: Kinds that may live in Redis: one-time tickets of seconds.
ONE_TIME = ("ST", "PT")


@dataclass
class TicketData:
    """A one-time ticket as validation sees it, wherever it was stored (same fields as models.Ticket)."""

    id: str
    kind: str
    session_id: str
    account_id: int
    service: str
    service_id: int | None
    from_new_login: bool
    proxies: list[str]
    created_at: dt.datetime
    expires_at: dt.datetime
    #: Public session id (Redis tickets): resolves to the live session even after a re-login.
    sid: str | None = None
    consumed_at: dt.datetime | None = field(default=None)


@dataclass(frozen=True)
class Issued:
    ticket: str
    row: Ticket | TicketData


def _redis_key(key: str) -> str:
    return shared.key("ticket", key)


def issue(kind: str, *, session_id: str, account_id: int, service: str, service_id: int | None,
          lifetime: int, now: dt.datetime, from_new_login: bool = False,
          proxies: list[str] | None = None) -> Issued:
    """Create a ticket of kind ST, PT or PGT (PGTs are longer: clients accept 64 characters)."""
    ticket = new_id(kind, RANDOM_CHARS if kind in ONE_TIME else 40)
    fields = dict(id=digest(ticket), kind=kind, session_id=session_id, account_id=account_id, service=service,
                  service_id=service_id, from_new_login=from_new_login, proxies=list(proxies or []),
                  created_at=now, expires_at=now + dt.timedelta(seconds=lifetime))
    client = shared.redis
    if kind in ONE_TIME and client is not None:
        session = db.session.get(SsoSession, session_id)
        data = TicketData(**fields, sid=session.sid if session is not None else None)
        # Kept a minute past its lifetime so a late validation hears "expired", not "not recognized".
        try:
            client.set(_redis_key(data.id), _dump(data), ex=lifetime + 60, nx=True)
        except RedisError as exc:
            raise SharedStateUnavailable(f"cannot store the ticket: {exc}") from exc
        return Issued(ticket, data)
    row = Ticket(**fields)
    db.session.add(row)
    return Issued(ticket, row)


def _dump(data: TicketData) -> str:
    return json.dumps({"kind": data.kind, "session_id": data.session_id, "sid": data.sid,
                       "account_id": data.account_id, "service": data.service, "service_id": data.service_id,
                       "from_new_login": data.from_new_login, "proxies": data.proxies,
                       "created_at": data.created_at.isoformat(), "expires_at": data.expires_at.isoformat()})


def _load(key: str, raw: bytes | str) -> TicketData:
    d = json.loads(raw)
    return TicketData(id=key, kind=d["kind"], session_id=d["session_id"], sid=d.get("sid"),
                      account_id=d["account_id"], service=d["service"], service_id=d["service_id"],
                      from_new_login=d["from_new_login"], proxies=list(d["proxies"]),
                      created_at=dt.datetime.fromisoformat(d["created_at"]),
                      expires_at=dt.datetime.fromisoformat(d["expires_at"]))


def consume(ticket: str, now: dt.datetime) -> TicketData | None:
    """Mark a one-time ticket used and return it; None when unknown or already used.

    The caller still checks expiry and service: a failed validation has burned the ticket anyway,
    as CAS 3.0 §3.1.1 requires ("whether or not validation was successful"); the caller commits (SQL).
    A Redis ticket carries its session's `sid`: the caller finds the live session by it (sid matches,
    not ended) and refuses the ticket when that session has ended.
    """
    key = digest(ticket)
    client = shared.redis
    if client is not None:
        try:
            raw = client.getdel(_redis_key(key))
        except RedisError as exc:
            raise SharedStateUnavailable(f"cannot read the ticket: {exc}") from exc
        if raw is None:
            return None
        data = _load(key, raw)
        data.consumed_at = now
        return data
    # One statement claims and reads the row. It is committed with the validation's audit event (every
    # outcome records one): a second validation racing this one waits for that commit and finds it used.
    row = db.session.connection().execute(_CLAIM, {"key": key, "now": now}).first()
    return None if row is None else TicketData(id=key, **row._mapping, consumed_at=now)


_T = Ticket.__table__
#: Built once: the claim runs on every validation (Core, not the ORM: nothing here needs an identity map).
_CLAIM = (db.update(_T).where(_T.c.id == db.bindparam("key"), _T.c.consumed_at.is_(None), _T.c.kind.in_(ONE_TIME))
          .values(consumed_at=db.bindparam("now"))
          .returning(_T.c.kind, _T.c.session_id, _T.c.account_id, _T.c.service, _T.c.service_id,
                     _T.c.from_new_login, _T.c.proxies, _T.c.created_at, _T.c.expires_at))


def find_pgt(ticket: str, now: dt.datetime) -> Ticket | None:
    row = db.session.get(Ticket, digest(ticket))
    if row is None or row.kind != "PGT" or row.expires_at <= now:
        return None
    return row


def purge_expired(now: dt.datetime) -> int:
    """Delete tickets past their lifetime (any node may call it; it only removes dead rows)."""
    result = db.session.execute(db.delete(Ticket).where(Ticket.expires_at < now - dt.timedelta(minutes=5)))
    db.session.commit()
    return result.rowcount
