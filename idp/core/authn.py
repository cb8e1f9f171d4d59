"""Authentication: who is this, given what they typed. Same answer and same cost for unknown accounts.

Lockout: `[login] lockout_threshold` wrong passwords in a row lock password logins for `lockout_minutes`.
Only someone who then types the *correct* password learns of the lock (reason "locked"); a wrong
password on a locked account fails like any other ("locked_wrong_password" in the audit log only), so
the lock reveals nothing about whether an account exists. Unknown identifiers never lock anything.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from idp.core import audit, pesel
from idp.core.accounts import find_by_identifier, has_left
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account, AuditEvent

#: Failures that follow a *correct* password: the person may be told why (a "why" page), because only
#: the owner of the password can see it. Every other failure shows the one generic message.
AFTER_CORRECT_PASSWORD = frozenset({"locked", "account_left"})


@dataclass(frozen=True)
class AuthResult:
    account: Account | None
    #: None on success; otherwise a machine code for audit and helpdesk (never shown verbatim):
    #: unknown_identifier, no_password, wrong_password, locked_wrong_password (a wrong password while
    #: locked), account_left and locked (both only after a correct password).
    reason: str | None
    #: The audit event recorded for a failure (its reference code goes on a "why" page).
    event: AuditEvent | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def password_was_correct(self) -> bool:
        """A failure the person may be told about: the password was right, something else blocks."""
        return self.reason in AFTER_CORRECT_PASSWORD


def loggable_identifier(identifier: str) -> str:
    """What an unknown identifier is recorded as: never a PESEL (people type it where a login goes)."""
    if pesel.problem(identifier.strip()) is None:
        return "(a PESEL, not recorded)"
    return identifier[:254]


def is_locked(account: Account, now: dt.datetime) -> bool:
    return account.locked_until is not None and account.locked_until > now


def count_wrong_password(account: Account, policy: Policy, now: dt.datetime, client_ip: str | None) -> None:
    """One more wrong password in a row (at login, or proving the account for a link); at the threshold
    the account locks. One UPDATE each, so nodes
    answering at the same moment cannot lose a count."""
    threshold = policy.data["login"]["lockout_threshold"]
    db.session.execute(db.update(Account).where(Account.id == account.id)
                       .values(failed_logins=Account.failed_logins + 1))
    count = db.session.scalar(db.select(Account.failed_logins).where(Account.id == account.id))
    if threshold and count >= threshold:
        until = now + dt.timedelta(minutes=policy.data["login"]["lockout_minutes"])
        locked = db.session.execute(
            db.update(Account).where(Account.id == account.id,
                                     db.or_(Account.locked_until.is_(None), Account.locked_until <= now))
            .values(locked_until=until)).rowcount
        if locked:  # not already locked by a parallel request
            audit.record("account.locked", actor="idp", account_id=account.id, reason="too_many_wrong_passwords",
                         client_ip=client_ip, now=now, commit=False,
                         data={"failed_logins": count, "until": until.isoformat(timespec="seconds")})
    db.session.expire(account, ["failed_logins", "locked_until"])


def authenticate(identifier: str, password: str, policy: Policy, *, client_ip: str | None,
                 service: str | None = None, now: dt.datetime | None = None) -> AuthResult:
    """Check credentials. Every failure is audited with its reason; callers show one message for all
    but those in AFTER_CORRECT_PASSWORD."""
    now = now or utcnow()
    account = find_by_identifier(identifier, policy)
    pw = hasher()
    # Always one argon2 verification, whether or not the account exists, has a password or is locked.
    matches = pw.verify(account.password_hash if account else None, password)
    if account is not None and account.locked_until is not None and not is_locked(account, now):
        account.locked_until = None  # the lock has run out: a fresh run of attempts
        account.failed_logins = 0
    reason = None
    if account is None:
        reason = "unknown_identifier"
    elif not account.password_hash:
        reason = "no_password"
    elif not matches:
        if is_locked(account, now):
            reason = "locked_wrong_password"  # not counted: a lock is never extended by guessing
        else:
            reason = "wrong_password"
            count_wrong_password(account, policy, now, client_ip)
    else:
        if has_left(account, policy, now):
            reason = "account_left"
        elif is_locked(account, now):
            reason = "locked"  # the lock holds until it runs out (or a password reset lifts it)
        if account.failed_logins and not is_locked(account, now):
            account.failed_logins = 0  # the right password: the run of wrong ones is over
    if reason:
        event = audit.record("login.failed", account_id=account.id if account else None, reason=reason,
                             client_ip=client_ip, now=now, commit=False,
                             data={"identifier": loggable_identifier(identifier), "service": service} if account is None
                             else {"service": service})
        db.session.commit()
        return AuthResult(account, reason, event)
    if pw.needs_rehash(account.password_hash):
        account.password_hash = pw.hash(password)
    audit.record("login.succeeded", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"service": service})
    db.session.commit()
    return AuthResult(account, None)
