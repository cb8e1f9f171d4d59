"""Assisted recovery: for a person who cannot reach any mailbox, after an in-person ID check at the dean's
office, the helpdesk issues a one-time recovery code; the person types it with their login at
/password/code and sets a new password themselves. The helpdesk never sees or sets that password.

The code is 12 characters of Crockford's base32 (60 bits), shown once as XXXX-XXXX-XXXX: short enough to
read aloud or copy from a slip of paper. Only its SHA-256 is stored. It works for the policy's
`[helpdesk] recovery_code_minutes`, once; a newer code ends older unused ones; five wrong codes typed for
the login end it too, and wrong codes from one client address are counted across logins.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask_babel import lazy_gettext as _l

from idp.core import accounts, audit, authn, mail
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account, AssistedRecovery, AuditEvent

if TYPE_CHECKING:
    from idp.core.helpdesk import Actor

#: Crockford's base32: no I, L, O, U, so nothing reads as another character (typed O/I/L are forgiven).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 12  # 12 × 5 bits = 60 bits
GROUP = 4
#: Wrong codes typed for one login before its code ends (the person asks the helpdesk for a new one).
MAX_WRONG_ATTEMPTS = 5
#: Failed attempts from one client address, within THROTTLE_WINDOW, after which it is refused for a while.
MAX_FAILURES_PER_ADDRESS = 10
THROTTLE_WINDOW = dt.timedelta(minutes=15)
#: The audit action of every refused attempt (reason: why) — also what the per-address count reads.
FAILED = "reset.code.failed"
_MIN_REASON = 3

#: Refusal reasons. UNKNOWN covers an unknown login and a login without a code, WRONG a wrong code for a
#: login that has one: the person is told the same for both (no way to learn which logins exist).
UNKNOWN, WRONG, EXPIRED, USED, ENDED, THROTTLED = "unknown", "wrong", "expired", "used", "ended", "throttled"
GENERIC = frozenset({UNKNOWN, WRONG})


@dataclass(frozen=True)
class IssuedCode:
    record: AssistedRecovery
    #: The code as shown once to the helpdesk, who hands it to the person (never stored, never logged).
    code: str


@dataclass(frozen=True)
class Refusal:
    #: unknown | wrong | expired | used | ended | throttled
    reason: str
    #: The code ended just now (the last allowed wrong try).
    ended_now: bool = False

    @property
    def generic(self) -> bool:
        """True when the person is told only "the login or the code is not correct"."""
        return self.reason in GENERIC


class CodeGone(DomainError):
    """The code was used or ended between typing it and setting the password (nothing was changed)."""

    code = "recovery_code_gone"


# --- the code ---------------------------------------------------------------------------------------------

def new_code() -> str:
    """A fresh code as people read it: XXXX-XXXX-XXXX."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i:i + GROUP] for i in range(0, LENGTH, GROUP))


def normalise(code: str) -> str:
    """What was typed, as stored: upper case, no spaces or dashes, O→0 and I/L→1 (Crockford)."""
    text = "".join(ch for ch in (code or "").upper() if ch not in " -\t")
    return text.translate(str.maketrans({"O": "0", "I": "1", "L": "1"}))[:64]


def code_hash(code: str) -> str:
    return hashlib.sha256(normalise(code).encode()).hexdigest()


def well_formed(code: str) -> bool:
    text = normalise(code)
    return len(text) == LENGTH and all(ch in ALPHABET for ch in text)


# --- the helpdesk issues ----------------------------------------------------------------------------------

def _open(account_id: int, now: dt.datetime):
    return (db.select(AssistedRecovery)
            .where(AssistedRecovery.account_id == account_id, AssistedRecovery.used_at.is_(None),
                   AssistedRecovery.ended_at.is_(None), AssistedRecovery.expires_at > now)
            .order_by(AssistedRecovery.id.desc()))


def open_code(account: Account, now: dt.datetime | None = None) -> AssistedRecovery | None:
    """The account's code that still works, if any (the console shows when it was issued and until when)."""
    return db.session.scalars(_open(account.id, now or utcnow())).first()


def issue(account: Account, *, actor: Actor, reason: str, policy: Policy,
          now: dt.datetime | None = None) -> IssuedCode:
    """Issue a one-time recovery code for the person standing at the desk (after an ID check), ending any
    older unused code. `actor`: idp.core.helpdesk.Actor (name, account_id, client_ip, via). Audited
    "helpdesk.recovery_code" with the reason; the code itself is returned once and stored only hashed.
    Raises ReasonRequired (blank reason) or Refused (an account that cannot log in)."""
    from idp.core import helpdesk  # imported here: the helpdesk core shows open codes (no import cycle)

    why = " ".join((reason or "").split())
    if len(why) < helpdesk.MIN_REASON:
        raise helpdesk.ReasonRequired(str(_l("Say why you are doing this (a few words for the audit log).")))
    why = why[:500]
    helpdesk.may_act_on(account, actor)
    if account.merged_into_id is not None:
        raise helpdesk.Refused(str(_l("This account was merged into another one: act on that account instead.")),
                               "merged")
    if account.status != "active":
        raise helpdesk.Refused(str(_l("This account is not active: a recovery code would not let the person log "
                                      "in.")), "not_active")
    now = now or utcnow()
    minutes = policy.data["helpdesk"]["recovery_code_minutes"]
    before = list(db.session.scalars(db.select(AssistedRecovery.id).where(
        AssistedRecovery.account_id == account.id, AssistedRecovery.used_at.is_(None),
        AssistedRecovery.ended_at.is_(None), AssistedRecovery.expires_at > now).order_by(AssistedRecovery.id)))
    db.session.execute(db.update(AssistedRecovery)
                       .where(AssistedRecovery.account_id == account.id, AssistedRecovery.used_at.is_(None),
                              AssistedRecovery.ended_at.is_(None))
                       .values(ended_at=now), execution_options={"synchronize_session": False})
    code = new_code()
    record = AssistedRecovery(account_id=account.id, code_hash=code_hash(code), issued_by=actor.name[:254],
                              issued_at=now, expires_at=now + dt.timedelta(minutes=minutes), wrong_attempts=0)
    db.session.add(record)
    db.session.flush()
    audit.record("helpdesk.recovery_code", actor=actor.name, account_id=account.id, client_ip=actor.client_ip,
                 now=now, commit=False,
                 data={"why": why, "via": actor.via, "record": record.id, "staff_id": actor.account_id,
                       "before": {"open_codes": before},
                       "after": {"open_codes": [record.id], "expires_at": _iso(record.expires_at)}})
    db.session.commit()  # expires every loaded record: the older ones read their ended_at anew
    return IssuedCode(record, code)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the person redeems ------------------------------------------------------------------------------------

def _recent_failures(client_ip: str | None, now: dt.datetime) -> int:
    if not client_ip:
        return 0
    return db.session.scalar(db.select(db.func.count(AuditEvent.id))
                             .where(AuditEvent.action == FAILED, AuditEvent.client_ip == client_ip,
                                    AuditEvent.at > now - THROTTLE_WINDOW)) or 0


def _refuse(refusal: Refusal, audit_reason: str, *, account_id: int | None, client_ip: str | None,
            now: dt.datetime, data: dict | None = None) -> Refusal:
    audit.record(FAILED, account_id=account_id, reason=audit_reason, client_ip=client_ip, now=now, commit=False,
                 data=data)
    db.session.commit()
    return refusal


def _find_account(identifier: str) -> Account | None:
    """Any login of the person (album number, any e-mail or alias), whatever the policy logs in with: the
    person may not know which one is "theirs"; merged and inactive accounts are not found."""
    account = accounts.find_any(identifier)
    if account is None or account.merged_into_id is not None or account.status != "active":
        return None
    return account


def redeem(identifier: str, code: str, *, client_ip: str | None,
           now: dt.datetime | None = None) -> AssistedRecovery | Refusal:
    """Check a login and recovery code typed by the person. Returns the record (still unused: `complete`
    uses it up) or a Refusal; every refusal is audited "reset.code.failed" with its reason."""
    now = now or utcnow()
    typed = (identifier or "").strip()[:254]
    if _recent_failures(client_ip, now) >= MAX_FAILURES_PER_ADDRESS:
        return _refuse(Refusal(THROTTLED), "address_throttled", account_id=None, client_ip=client_ip, now=now,
                       data={"identifier": authn.loggable_identifier(typed)})
    account = _find_account(typed)
    digest = code_hash(code)
    if account is None:
        return _refuse(Refusal(UNKNOWN), "unknown_identifier", account_id=None, client_ip=client_ip, now=now,
                       data={"identifier": authn.loggable_identifier(typed)})
    record = db.session.scalar(db.select(AssistedRecovery).where(AssistedRecovery.account_id == account.id,
                                                                 AssistedRecovery.code_hash == digest))
    if record is not None:
        if record.used_at is not None:
            return _refuse(Refusal(USED), "recovery_code_used", account_id=account.id, client_ip=client_ip, now=now,
                           data={"record": record.id})
        if record.ended_at is not None:
            return _refuse(Refusal(ENDED), "recovery_code_ended", account_id=account.id, client_ip=client_ip,
                           now=now, data={"record": record.id})
        if record.expires_at <= now:
            return _refuse(Refusal(EXPIRED), "recovery_code_expired", account_id=account.id, client_ip=client_ip,
                           now=now, data={"record": record.id})
        audit.record("reset.code.accepted", account_id=account.id, client_ip=client_ip, now=now,
                     data={"record": record.id})
        return record
    current = db.session.scalars(_open(account.id, now)).first()
    if current is None:
        return _refuse(Refusal(UNKNOWN), "no_recovery_code", account_id=account.id, client_ip=client_ip, now=now)
    # Count the wrong try in one conditional UPDATE (parallel tries can neither lose a count nor go past
    # the limit), and end the code at the limit.
    count = db.session.execute(
        db.update(AssistedRecovery)
        .where(AssistedRecovery.id == current.id, AssistedRecovery.used_at.is_(None),
               AssistedRecovery.ended_at.is_(None), AssistedRecovery.wrong_attempts < MAX_WRONG_ATTEMPTS)
        .values(wrong_attempts=AssistedRecovery.wrong_attempts + 1)
        .returning(AssistedRecovery.wrong_attempts),
        execution_options={"synchronize_session": False}).scalar_one_or_none()
    if count is None:  # it ended meanwhile
        return _refuse(Refusal(UNKNOWN), "no_recovery_code", account_id=account.id, client_ip=client_ip, now=now)
    ended = count >= MAX_WRONG_ATTEMPTS
    if ended:
        db.session.execute(db.update(AssistedRecovery)
                           .where(AssistedRecovery.id == current.id, AssistedRecovery.ended_at.is_(None))
                           .values(ended_at=now), execution_options={"synchronize_session": False})
    result = _refuse(Refusal(WRONG, ended_now=ended), "too_many_wrong_codes" if ended else "wrong_recovery_code",
                     account_id=account.id, client_ip=client_ip, now=now,
                     data={"record": current.id, "wrong_attempts": count})
    db.session.refresh(current)
    return result


def usable(record_id: int, now: dt.datetime | None = None) -> AssistedRecovery | None:
    """The record a browser redeemed a moment ago, if it still works (not used, not ended, not expired)."""
    record = db.session.get(AssistedRecovery, record_id or 0)
    now = now or utcnow()
    if record is None or record.used_at is not None or record.ended_at is not None or record.expires_at <= now:
        return None
    account = db.session.get(Account, record.account_id)
    if account is None or account.status != "active" or account.merged_into_id is not None:
        return None
    return record


def complete(record: AssistedRecovery, new_password: str, policy: Policy, *, client_ip: str | None,
             lang: str = "pl", now: dt.datetime | None = None) -> Account:
    """The person sets their new password with a redeemed code: the one password engine (policy-checked,
    not temporary; raises accounts.PasswordRejected), the code used up in the same transaction, every
    session and refresh token ended, and a "your password was changed" notice to every address (whoever
    talked the helpdesk into a code, the real owner hears of it). Raises CodeGone (nothing changed) when
    the code was used or ended since it was typed."""
    now = now or utcnow()
    if usable(record.id, now) is None:
        raise CodeGone("the recovery code was used, ended or expired")
    account = db.session.get(Account, record.account_id)
    record_id, issued_by = record.id, record.issued_by

    def with_the_change(moment: dt.datetime) -> None:
        claimed = db.session.execute(
            db.update(AssistedRecovery)
            .where(AssistedRecovery.id == record_id, AssistedRecovery.used_at.is_(None),
                   AssistedRecovery.ended_at.is_(None))
            .values(used_at=moment), execution_options={"synchronize_session": False}).rowcount
        if claimed != 1:
            raise CodeGone("the recovery code was used or ended meanwhile")
        addresses = sorted({i.value for i in account.identifiers if i.kind in ("university_email", "private_email")})
        for address in addresses:
            mail.enqueue(to=address, template="password_changed", lang=lang, purpose="password_changed",
                         account_id=account.id, now=moment, context={"name": account.first_name, "when": moment})
        audit.record("reset.code.used", account_id=account.id, client_ip=client_ip, now=moment, commit=False,
                     data={"record": record_id, "issued_by": issued_by})

    try:
        accounts.set_password(account, new_password, policy, temporary=False, actor="self", forbid_current=True,
                              keep_session=None, now=now, in_same_transaction=with_the_change)
    except CodeGone:
        db.session.rollback()
        raise
    db.session.refresh(record)
    return account
