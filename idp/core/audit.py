"""Audit events: every failed check and every change to an account, with its reason."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import AuditEvent

log = logging.getLogger("idp.audit")


def record(action: str, *, actor: str = "self", account_id: int | None = None, reason: str | None = None,
           client_ip: str | None = None, data: dict[str, Any] | None = None,
           now: dt.datetime | None = None, commit: bool = True) -> AuditEvent:
    """Store one event. `data` must never hold a password, a PESEL or a ticket that is still valid."""
    event = AuditEvent(at=now or utcnow(), action=action, actor=actor, account_id=account_id, reason=reason,
                       client_ip=client_ip, data=data)
    db.session.add(event)
    if commit:
        db.session.commit()
    log.info("audit %s reason=%s account=%s ip=%s", action, reason, account_id, client_ip)
    return event


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
