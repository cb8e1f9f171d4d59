"""Accounts and their identifiers: lookup by whatever the person typed, the canonical username,
the attributes a service may receive, and setting a password."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

from flask import current_app

from idp.core import audit, throttle
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.passwords import hasher
from idp.core.policy import PersonData, Policy, Verdict, Violation, evaluate
from idp.extensions import db
from idp.models import Account, Identifier, OAuthToken, PasswordHistory, SsoSession

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

#: Attributes a CAS service may be released (registry `attributes`), and how each is read.
ATTRIBUTES = {
    "uid": lambda a, p: canonical_username(a, p),
    "mail": lambda a, p: a.identifier("university_email") or a.identifier("private_email"),
    "university_email": lambda a, p: a.identifier("university_email"),
    "private_email": lambda a, p: a.identifier("private_email"),
    "aliases": lambda a, p: a.aliases(),
    "album": lambda a, p: a.album,
    "given_name": lambda a, p: a.first_name,
    "family_name": lambda a, p: a.last_name,
    "name": lambda a, p: a.display_name,
    "role": lambda a, p: a.role,
}

#: What `username_attribute` may name: single-valued, stable enough to be a user name.
USERNAME_ATTRIBUTES = ("uid", "mail", "university_email", "private_email", "album")


class PasswordRejected(DomainError):
    code = "password_rejected"

    def __init__(self, violations: list[Violation]):
        super().__init__("; ".join(str(v.message) for v in violations))
        self.violations = violations


def normalise_identifier(raw: str) -> str:
    """Trimmed and lower-cased; e-mail addresses and album numbers both compare this way."""
    return raw.strip().lower()


def find_by_identifier(raw: str, policy: Policy) -> Account | None:
    """The account a login identifier names, limited to the kinds the policy lets log in."""
    value = normalise_identifier(raw)
    if not value:
        return None
    allowed = set(policy.data["login"]["identifiers"])
    if "@" not in value:
        if "album" not in allowed:
            return None
        # A merged account keeps its album number (the SIS key) but no longer logs in.
        return db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == value,
                                                          Account.merged_into_id.is_(None)))
    ident = db.session.scalar(db.select(Identifier).where(Identifier.value == value))
    if ident is None or ident.kind not in allowed:
        return None
    return ident.account


def find_any(raw: str) -> Account | None:
    """Lookup by any identifier regardless of policy (CLI and helpdesk)."""
    value = normalise_identifier(raw)
    ident = db.session.scalar(db.select(Identifier).where(Identifier.value == value))
    if ident:
        return ident.account
    return db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == value))


def canonical_username(account: Account, policy: Policy) -> str:
    """The stable name relying apps see, whichever identifier was typed."""
    kind = policy.data["login"]["canonical_identifier"]
    if kind == "album":
        return account.album
    return account.identifier(kind) or account.album


def attribute(account: Account, name: str, policy: Policy):
    return ATTRIBUTES[name](account, policy)


def person_data(account: Account, pesel: str = "") -> PersonData:
    """The person's data the password rules look for; the PESEL only through its keyed hash."""
    return PersonData(
        first_name=account.first_name, last_name=account.last_name,
        identifiers=tuple(i.value for i in account.identifiers), album=account.album, pesel=pesel,
        birth_date=account.birth_date.isoformat() if account.birth_date else "",
        pesel_hash=account.pesel_hash or "", pesel_key=current_app.config["PESEL_KEY"] if account.pesel_hash else "",
    )


def verify_password(account: Account, password: str) -> bool:
    """The person's current password, checked exactly as typed (one argon2 verification either way)."""
    return hasher().verify(account.password_hash, password)


def _previous_hashes(account: Account, depth: int) -> list[str]:
    rows = db.session.scalars(db.select(PasswordHistory.password_hash)
                              .where(PasswordHistory.account_id == account.id)
                              .order_by(PasswordHistory.id.desc()).limit(max(depth - 1, 0)))
    current = [account.password_hash] if account.password_hash else []
    return (current + list(rows))[:depth]


def seen_before(account: Account, policy: Policy) -> Callable[[str], bool]:
    """The history rule: the new password equals one of the last N (the current one included),
    compared with the stored argon2 hashes."""
    depth = policy.data["password"]["history"]

    def check(password: str) -> bool:
        return any(hasher().verify(h, password) for h in _previous_hashes(account, depth))
    return check


def evaluate_password(account: Account, password: str, policy: Policy, *, pesel: str = "",
                      forbid_current: bool = True, live: bool = False) -> Verdict:
    """The verdict the live checklist shows and every setter enforces: one engine, one answer.
    `forbid_current`: a change by the person must change the password (off for staff setting one).
    `live`: the checklist as someone types — never compared with the stored passwords (see policy.evaluate)."""
    def is_current(candidate: str) -> bool:
        return bool(account.password_hash) and hasher().verify(account.password_hash, candidate)

    return evaluate(password, person_data(account, pesel), policy, seen_before=seen_before(account, policy),
                    is_current=is_current if forbid_current else None, defer_stored=live)


def has_left(account: Account, policy: Policy, now: dt.datetime | None = None) -> bool:
    """Left the university: marked so by staff, or missing from imports for longer than the grace period."""
    if account.status != "active":
        return True
    if account.left_at is None:
        return False
    grace = dt.timedelta(days=policy.data["migration"]["left_grace_days"])
    return (now or utcnow()) - account.left_at > grace


def password_expired(account: Account, policy: Policy, now: dt.datetime | None = None) -> bool:
    """The policy's optional maximum age (NIST advises none; some institutions require it)."""
    days = policy.data["password"]["max_age_days"]
    if not days or account.password_changed_at is None:
        return False
    return (now or utcnow()) - account.password_changed_at > dt.timedelta(days=days)


def set_password(account: Account, password: str, policy: Policy, *, temporary: bool = False,
                 actor: str = "self", forbid_current: bool = False, keep_session: SsoSession | None = None,
                 pesel: str = "", now: dt.datetime | None = None,
                 in_same_transaction: Callable[[dt.datetime], None] | None = None) -> None:
    """The one path that sets a password: policy check, hash, history, audit, and the side effects.

    Every SSO session of the account except `keep_session` ends (its apps are told), and every refresh
    token is revoked: whoever knew the old password loses what it gave them. Raises PasswordRejected.
    """
    violations = evaluate_password(account, password, policy, pesel=pesel, forbid_current=forbid_current).violations
    if violations:
        audit.record("password.rejected", actor=actor, account_id=account.id,
                     reason=violations[0].code, data={"rules": [v.code for v in violations]}, now=now)
        raise PasswordRejected(violations)
    now = now or utcnow()
    if account.password_hash:
        db.session.add(PasswordHistory(account_id=account.id, password_hash=account.password_hash, replaced_at=now))
    account.password_hash = hasher().hash(password)
    account.password_temporary = temporary
    account.password_changed_at = now
    account.updated_at = now
    # A new password lifts a temporary lockout and ends the runs of wrong passwords and locks (guesses at
    # the old password mean nothing now); a permanent lock stays until the helpdesk unlocks it.
    account.failed_logins, account.locked_until, account.lockouts, account.last_failed_at = 0, None, 0, None
    audit.record("password.set", actor=actor, account_id=account.id, reason="temporary" if temporary else None,
                 now=now, commit=False)
    if in_same_transaction is not None:  # e.g. the reset link used up and the notice mail queued
        in_same_transaction(now)
    if account.id is not None:  # after in_same_transaction: its checks run before anything is flushed
        throttle.forget_account(account.id)
    db.session.commit()
    _trim_history(account)
    end_other_sessions(account, keep=keep_session, reason="password_changed", now=now)


def _trim_history(account: Account, keep: int = 24) -> None:
    ids = list(db.session.scalars(db.select(PasswordHistory.id).where(PasswordHistory.account_id == account.id)
                                  .order_by(PasswordHistory.id.desc()).offset(keep)))
    if ids:
        db.session.execute(db.delete(PasswordHistory).where(PasswordHistory.id.in_(ids)))
        db.session.commit()


def end_other_sessions(account: Account, *, keep: SsoSession | None, reason: str,
                       now: dt.datetime | None = None) -> int:
    """End every live SSO session of the account but `keep`, and revoke every refresh token."""
    from idp.core import sso

    now = now or utcnow()
    sessions = list(db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == account.id,
                                                                  SsoSession.ended_at.is_(None))))
    ended = 0
    for session in sessions:
        if keep is not None and session.id == keep.id:
            continue
        sso.end(session, reason=reason, now=now, actor="idp")
        ended += 1
    db.session.execute(db.update(OAuthToken).where(OAuthToken.account_id == account.id,
                                                   OAuthToken.refresh_token_hash.is_not(None),
                                                   OAuthToken.revoked_at.is_(None)).values(revoked_at=now))
    db.session.commit()
    return ended
