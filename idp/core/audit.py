"""Audit events: every failed check and every change to an account, with its reason."""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from idp.core import metrics
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import AuditEvent


def _text(value: str | None, limit: int | None = None) -> str | None:
    """A request's value as the audit can store it on every database: PostgreSQL text holds no U+0000, and
    the column's length is the limit (an event is never lost to a hostile client_id)."""
    if value is None:
        return None
    value = value.replace("\x00", "\ufffd") if "\x00" in value else value
    return value[:limit] if limit else value


def _clean(data: Any) -> Any:
    if isinstance(data, str):
        return _text(data)
    if isinstance(data, dict):
        return {k: _clean(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_clean(v) for v in data]
    return data


def record(action: str, *, actor: str = "self", account_id: int | None = None, reason: str | None = None,
           client_ip: str | None = None, data: dict[str, Any] | None = None,
           now: dt.datetime | None = None, commit: bool = True) -> AuditEvent:
    """Store one event. `data` must never hold a password, a PESEL or a ticket that is still valid."""
    event = AuditEvent(at=now or utcnow(), action=action, actor=_text(actor, 254), account_id=account_id,
                       reason=_text(reason, 64), client_ip=_text(client_ip, 64), data=_clean(data))
    db.session.add(event)
    if commit:
        db.session.commit()
    # Counted, never logged: audit events live in the database only (who, what, from where).
    metrics.audit_event(action, reason)
    return event


_INSERT = db.insert(AuditEvent.__table__)


def append(action: str, *, actor: str = "self", account_id: int | None = None, reason: str | None = None,
           client_ip: str | None = None, data: dict[str, Any] | None = None,
           now: dt.datetime | None = None) -> None:
    """`record` for the protocol endpoints apps call thousands of times a minute: one INSERT at once, in
    the caller's transaction (committed by the caller), without an ORM object nobody reads back."""
    db.session.connection().execute(_INSERT, {"at": now or utcnow(), "action": action, "actor": _text(actor, 254),
                                              "account_id": account_id, "reason": _text(reason, 64),
                                              "client_ip": _text(client_ip, 64), "data": _clean(data)})
    metrics.audit_event(action, reason)


def recent(account_id: int | None = None, action_prefix: str | None = None, limit: int = 50) -> list[AuditEvent]:
    query = db.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if account_id is not None:
        query = query.where(AuditEvent.account_id == account_id)
    if action_prefix:
        query = query.where(AuditEvent.action.startswith(action_prefix))
    return list(db.session.scalars(query))


def reference(event: AuditEvent) -> str:
    """The code an error page shows, so the helpdesk can find what happened: "E" + the event id."""
    return f"E{event.id}"


def find_by_reference(code: str) -> AuditEvent | None:
    """The event behind a reference code from an error page (E123, case and spaces forgiven)."""
    code = code.strip().upper()
    if not code.startswith("E") or not code[1:].isdigit():
        return None
    return db.session.get(AuditEvent, int(code[1:]))


# --- reading the log: the console's audit view, the admin API and `idp audit export` share these -------

@dataclass(frozen=True)
class AuditFilter:
    """Which events to read; every field optional. `action` matches a prefix ("login." or "helpdesk.")."""
    action: str | None = None
    account_id: int | None = None
    actor: str | None = None
    reason: str | None = None
    client_ip: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None


def _where(query, f: AuditFilter):
    if f.action:
        query = query.where(AuditEvent.action.startswith(f.action))
    if f.account_id is not None:
        query = query.where(AuditEvent.account_id == f.account_id)
    if f.actor:
        query = query.where(AuditEvent.actor == f.actor)
    if f.reason:
        query = query.where(AuditEvent.reason == f.reason)
    if f.client_ip:
        query = query.where(AuditEvent.client_ip == f.client_ip)
    if f.since:
        query = query.where(AuditEvent.at >= f.since)
    if f.until:
        query = query.where(AuditEvent.at < f.until)
    return query


@dataclass(frozen=True)
class Page:
    items: list[AuditEvent]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))


def page(f: AuditFilter, number: int = 1, per_page: int = 50) -> Page:
    """One page of matching events, newest first."""
    per_page = max(1, min(per_page, 500))
    total = db.session.scalar(_where(db.select(db.func.count(AuditEvent.id)), f)) or 0
    number = max(1, min(number, max(1, math.ceil(total / per_page))))
    items = list(db.session.scalars(_where(db.select(AuditEvent), f).order_by(AuditEvent.id.desc())
                                    .offset((number - 1) * per_page).limit(per_page)))
    return Page(items, total, number, per_page)


def iter_events(f: AuditFilter, batch: int = 1000) -> Iterator[AuditEvent]:
    """Every matching event, oldest first, read in batches by id (an export of millions stays flat)."""
    last = 0
    while True:
        rows = list(db.session.scalars(_where(db.select(AuditEvent), f).where(AuditEvent.id > last)
                                       .order_by(AuditEvent.id).limit(batch)))
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        db.session.expunge_all()


def as_dict(event: AuditEvent) -> dict[str, Any]:
    """One event as the export and the API write it (times in UTC, ISO 8601 with Z)."""
    return {"id": event.id, "reference": reference(event), "at": event.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "action": event.action, "actor": event.actor, "account_id": event.account_id, "reason": event.reason,
            "client_ip": event.client_ip, "data": event.data}
