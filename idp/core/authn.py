"""Authentication: who is this, given what they typed. Same answer and same cost for unknown accounts."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from idp.core import audit, pesel
from idp.core.accounts import find_by_identifier, has_left
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account


@dataclass(frozen=True)
class AuthResult:
    account: Account | None
    #: None on success; otherwise a machine code for audit and helpdesk (never shown verbatim):
    #: unknown_identifier, no_password, wrong_password, account_left.
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def _loggable(identifier: str) -> str:
    """What an unknown identifier is recorded as: never a PESEL (people type it where a login goes)."""
    if pesel.problem(identifier.strip()) is None:
        return "(a PESEL, not recorded)"
    return identifier[:254]


def authenticate(identifier: str, password: str, policy: Policy, *, client_ip: str | None,
                 service: str | None = None, now: dt.datetime | None = None) -> AuthResult:
    """Check credentials. Every failure is audited with its reason; callers show one message for all."""
    now = now or utcnow()
    account = find_by_identifier(identifier, policy)
    pw = hasher()
    # Always one argon2 verification, whether or not the account exists or has a password.
    matches = pw.verify(account.password_hash if account else None, password)
    reason = None
    if account is None:
        reason = "unknown_identifier"
    elif not account.password_hash:
        reason = "no_password"
    elif not matches:
        reason = "wrong_password"
    elif has_left(account, policy, now):
        reason = "account_left"
    if reason:
        audit.record("login.failed", account_id=account.id if account else None, reason=reason,
                     client_ip=client_ip, now=now,
                     data={"identifier": _loggable(identifier), "service": service} if account is None
                     else {"service": service})
        return AuthResult(account, reason)
    if pw.needs_rehash(account.password_hash):
        account.password_hash = pw.hash(password)
    audit.record("login.succeeded", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"service": service})
    db.session.commit()
    return AuthResult(account, None)
