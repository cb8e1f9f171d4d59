"""Authentication: who is this, given what they typed. Same answer and same cost for unknown accounts.

Brute-force protection, as in Keycloak and Apereo CAS (docs/security.md "Brute-force protection"):

- Before the password is checked, core/throttle.py claims the attempt in one atomic step: it refuses it
  outright while a hold is in force — the typed identifier's growing delay after `delay_after` attempts
  in a row without a correct password, or a blocked client address — and otherwise counts it and sets
  at once the hold the next attempt must wait for, so parallel requests cannot pass together. Refused
  attempts cost no argon2 verification and say only how long to wait (reason "throttled" or
  "address_blocked", audited as `login.throttled`); every attempt let through costs exactly one. The
  delay is keyed by the typed identifier, whether it names an account or not: it tells nothing about
  whether an account exists, nor which identifiers share one. A correct password ends the run.
- Lockout: `[login] lockout_threshold` wrong passwords in a row — counted per account, whichever of its
  identifiers was typed — lock password logins for `lockout_minutes`; each further lock without a
  successful login in between lasts twice as long, up to `lockout_max_minutes`; after
  `permanent_lockout_after` temporary locks in a row (when set) the next one lasts until the helpdesk
  unlocks the account. A run whose last wrong password is older than `failure_reset_hours` no longer
  counts. A locked account answers every password, the right one too, as a wrong one: the audit log alone
  says which ("locked", "locked_permanently" or "locked_wrong_password"), so the lock reveals neither
  whether an account exists nor whether a guess was right. Unknown identifiers never lock anything.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from idp.core import audit, pesel, throttle
from idp.core.accounts import find_by_identifier, has_left, verify_password
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.core.policy import Policy
from idp.extensions import commit_keeping_loaded, db
from idp.models import Account, AuditEvent

#: Failures that follow a *correct* password: the person may be told why (a "why" page), because only
#: the owner of the password can see it. Every other failure shows the one generic message — a lock's
#: too ("locked", "locked_permanently" are audited, never told): told only after the right password, it
#: would let guessing go on through the lock and confirm the hit (Keycloak answers the same way).
AFTER_CORRECT_PASSWORD = frozenset({"account_left"})
#: Attempts refused before any password check; the person is told how long to wait (and nothing else).
THROTTLED = frozenset({"throttled", "address_blocked"})


class Locked(Exception):
    """A password check refused, before it happened, because the account is locked: for a page that
    already knows the account (and may say so). `until` is None for a lock the helpdesk must lift."""

    def __init__(self, until: dt.datetime | None):
        super().__init__("locked")
        self.until = until


class Throttled(Exception):
    """A password check refused before it happened (see THROTTLED): wait `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: int):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class AuthResult:
    account: Account | None
    #: None on success; otherwise a machine code for audit and helpdesk (never shown verbatim):
    #: unknown_identifier, no_password, wrong_password, locked_wrong_password (a wrong password while
    #: locked), locked and locked_permanently (the right password while locked: refused all the same),
    #: account_left (after a correct password), throttled and address_blocked (refused before the password
    #: was checked).
    reason: str | None
    #: The audit event recorded for a failure (its reference code goes on a "why" page).
    event: AuditEvent | None = field(default=None, compare=False)
    #: Seconds to wait before trying again (reasons in THROTTLED only).
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def throttled(self) -> bool:
        return self.reason in THROTTLED

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
    return bool(account.locked_permanently) or (account.locked_until is not None and account.locked_until > now)


def lock_minutes(policy: Policy, lockouts: int) -> int:
    """How long the lock after `lockouts` earlier locks in a row lasts: doubling, capped."""
    rules = policy.data["login"]
    return min(rules["lockout_minutes"] * 2 ** min(lockouts, 32), rules["lockout_max_minutes"])


def count_wrong_password(account: Account, policy: Policy, now: dt.datetime, client_ip: str | None) -> None:
    """One more wrong password in a row (at login, proving the account for a link, changing the password);
    at the threshold the account locks — for longer after each lock, for good after the policy's number
    of them. One UPDATE each, so nodes answering at the same moment cannot lose a count. A run whose last
    wrong password is `failure_reset_hours` old starts again."""
    rules = policy.data["login"]
    threshold = rules["lockout_threshold"]
    stale = db.and_(Account.last_failed_at.is_not(None),
                    Account.last_failed_at <= now - dt.timedelta(hours=rules["failure_reset_hours"]))
    db.session.execute(db.update(Account).where(Account.id == account.id).values(
        failed_logins=db.case((stale, 1), else_=Account.failed_logins + 1),
        lockouts=db.case((stale, 0), else_=Account.lockouts),
        last_failed_at=now))
    count, lockouts = db.session.execute(db.select(Account.failed_logins, Account.lockouts)
                                         .where(Account.id == account.id)).one()
    if threshold and count >= threshold:
        unlocked = (Account.id == account.id, Account.locked_permanently.is_(False),
                    db.or_(Account.locked_until.is_(None), Account.locked_until <= now))
        after = rules["permanent_lockout_after"]
        if after and lockouts >= after:
            locked = db.session.execute(db.update(Account).where(*unlocked).values(
                locked_permanently=True, locked_until=None, lockouts=Account.lockouts + 1)).rowcount
            data = {"failed_logins": count, "lockouts": lockouts + 1, "permanent": True}
            reason = "too_many_lockouts"
        else:
            until = now + dt.timedelta(minutes=lock_minutes(policy, lockouts))
            locked = db.session.execute(db.update(Account).where(*unlocked).values(
                locked_until=until, lockouts=Account.lockouts + 1)).rowcount
            data = {"failed_logins": count, "until": until.isoformat(timespec="seconds"), "lockouts": lockouts + 1}
            reason = "too_many_wrong_passwords"
        if locked:  # not already locked by a parallel request
            audit.record("account.locked", actor="idp", account_id=account.id, reason=reason,
                         client_ip=client_ip, now=now, commit=False, data=data)
    db.session.expire(account, ["failed_logins", "locked_until", "lockouts", "locked_permanently", "last_failed_at"])


def _lock_ran_out(account: Account, policy: Policy, now: dt.datetime) -> None:
    """A temporary lock that has run out starts a fresh run of attempts (the run of locks goes on until
    a correct password, or until its last wrong password is `failure_reset_hours` old)."""
    if account.locked_until is not None and not is_locked(account, now):
        account.locked_until = None
        account.failed_logins = 0
    reset = dt.timedelta(hours=policy.data["login"]["failure_reset_hours"])
    if (account.last_failed_at is not None and now - account.last_failed_at >= reset
            and not is_locked(account, now) and (account.failed_logins or account.lockouts)):
        account.failed_logins = account.lockouts = 0


def _audit_address_block(policy: Policy, claim: throttle.Claim, now: dt.datetime, client_ip: str | None) -> None:
    """A failed attempt that was the address's `address_failures`-th of its window: its claim set the block;
    audit it (about the address, not the account whose wrong password happened to be the last one)."""
    if claim.address_blocked_until is not None:
        audit.record("address.blocked", actor="idp", reason="too_many_wrong_passwords", client_ip=client_ip,
                     now=now, commit=False,
                     data={"until": claim.address_blocked_until.isoformat(timespec="seconds"),
                           "failures": policy.data["login"]["address_failures"]})


def verify_known(account: Account, password: str, policy: Policy, *, client_ip: str | None,
                 now: dt.datetime | None = None) -> bool:
    """The password of an account already known to the page (the link proof, the password change): the
    same throttle as the login form, its delay counted under the account itself (the page knows it) —
    raises Throttled before checking — and a wrong password counts towards the account's lockout. A locked
    account raises Locked, unchecked: the page may say so (it names the account already), but no password,
    right or wrong, is tried while the lock holds. The throttle commits its claim in a transaction of its
    own; the caller audits its own outcome and commits the rest."""
    now = now or utcnow()
    _lock_ran_out(account, policy, now)
    if is_locked(account, now):
        raise Locked(None if account.locked_permanently else account.locked_until)
    claim = throttle.claim(policy, subject=throttle.account_subject(account.id), client_ip=client_ip, now=now)
    if claim.refusal is not None:
        raise Throttled(claim.refusal.reason, claim.refusal.seconds(now))
    if verify_password(account, password):
        throttle.succeeded(claim)
        return True
    count_wrong_password(account, policy, now, client_ip)
    _audit_address_block(policy, claim, now, client_ip)
    return False


def authenticate(identifier: str, password: str, policy: Policy, *, client_ip: str | None,
                 service: str | None = None, now: dt.datetime | None = None) -> AuthResult:
    """Check credentials. Every failure is audited with its reason; callers show one message for all
    but those in AFTER_CORRECT_PASSWORD (a "why" page) and THROTTLED (how long to wait). A locked account
    gets the one message whatever the password: the password is still verified (the same time for every
    attempt) and the audit tells the helpdesk whether it was right ("locked") or not."""
    now = now or utcnow()
    account = find_by_identifier(identifier, policy)
    who = {"identifier": loggable_identifier(identifier), "service": service} if account is None else {"service": service}
    # Claimed (counted, its hold set) before the password is checked: the same for every identifier.
    claim = throttle.claim(policy, subject=throttle.subject(identifier), client_ip=client_ip, now=now)
    if claim.refusal is not None:  # no password check at all
        wait = claim.refusal.seconds(now)
        event = audit.record("login.throttled", account_id=account.id if account else None,
                             reason=claim.refusal.reason, client_ip=client_ip, now=now, commit=False,
                             data={**who, "retry_after": wait})
        db.session.commit()
        return AuthResult(account, claim.refusal.reason, event, retry_after=wait)
    pw = hasher()
    # Always one argon2 verification, whether or not the account exists, has a password or is locked.
    matches = pw.verify(account.password_hash if account else None, password)
    if account is not None:
        _lock_ran_out(account, policy, now)
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
        # A lock first: any "why" page after the right password (account_left) would confirm the guess.
        if account.locked_permanently:
            reason = "locked_permanently"  # until the helpdesk unlocks it
        elif is_locked(account, now):
            reason = "locked"  # the lock holds until it runs out (or a password reset lifts it)
        elif has_left(account, policy, now):
            reason = "account_left"
        if not is_locked(account, now) and (account.failed_logins or account.lockouts):
            account.failed_logins = account.lockouts = 0  # the right password: the runs are over
    owner = reason is None or reason in AFTER_CORRECT_PASSWORD
    if not owner:
        _audit_address_block(policy, claim, now, client_ip)  # the claim already counted it and set the holds
    if reason:
        event = audit.record("login.failed", account_id=account.id if account else None, reason=reason,
                             client_ip=client_ip, now=now, commit=False, data=who)
        db.session.commit()
        if owner:
            throttle.succeeded(claim)  # the owner: no more delays
        return AuthResult(account, reason, event)
    if pw.needs_rehash(account.password_hash):
        account.password_hash = pw.hash(password)
    audit.record("login.succeeded", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"service": service})
    commit_keeping_loaded()  # the login goes on with the account (and the page's service)
    throttle.succeeded(claim)  # after the commit, in a transaction of its own
    return AuthResult(account, None)
