"""CAS tickets in SQL: issue, consume exactly once, expire.

Tickets are stored only as SHA-256 digests. "Consume" is one conditional UPDATE, so two nodes racing
to validate the same ticket cannot both win.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import string
from dataclasses import dataclass

from idp.extensions import db
from idp.models import Ticket

_ALPHABET = string.ascii_letters + string.digits
#: 22 base62 characters = 131 bits; "ST-" + 22 = 25 characters, within the 32 every client accepts.
RANDOM_CHARS = 22


def new_id(prefix: str, length: int = RANDOM_CHARS) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


@dataclass(frozen=True)
class Issued:
    ticket: str
    row: Ticket


def issue(kind: str, *, session_id: str, account_id: int, service: str, service_id: int | None,
          lifetime: int, now: dt.datetime, from_new_login: bool = False,
          proxies: list[str] | None = None) -> Issued:
    """Create a ticket of kind ST, PT or PGT (PGTs are longer: clients accept 64 characters)."""
    ticket = new_id(kind, RANDOM_CHARS if kind in {"ST", "PT"} else 40)
    row = Ticket(id=digest(ticket), kind=kind, session_id=session_id, account_id=account_id, service=service,
                 service_id=service_id, from_new_login=from_new_login, proxies=list(proxies or []),
                 created_at=now, expires_at=now + dt.timedelta(seconds=lifetime))
    db.session.add(row)
    return Issued(ticket, row)


def consume(ticket: str, now: dt.datetime) -> Ticket | None:
    """Mark a one-time ticket used and return it; None when unknown or already used.

    The caller still checks expiry and service: a failed validation has burned the ticket anyway,
    as CAS 3.0 §3.1.1 requires ("whether or not validation was successful").
    """
    key = digest(ticket)
    result = db.session.execute(
        db.update(Ticket).where(Ticket.id == key, Ticket.consumed_at.is_(None), Ticket.kind.in_(("ST", "PT")))
        .values(consumed_at=now))
    db.session.commit()
    if result.rowcount != 1:
        return None
    return db.session.get(Ticket, key)


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
