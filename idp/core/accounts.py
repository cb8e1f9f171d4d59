"""Accounts and their identifiers: lookup by whatever the person typed, the canonical username,
the attributes a service may receive, and setting a password."""
from __future__ import annotations

import datetime as dt
import re

from flask_babel import lazy_gettext as _l

from idp.core import audit
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.passwords import hasher
from idp.core.policy import PersonData, Policy, Violation, check_password
from idp.extensions import db
from idp.models import Account, Identifier

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
        return db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == value))
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
    return PersonData(
        first_name=account.first_name, last_name=account.last_name,
        identifiers=tuple(i.value for i in account.identifiers), album=account.album, pesel=pesel,
        birth_date=account.birth_date.isoformat() if account.birth_date else "",
    )


def set_password(account: Account, password: str, policy: Policy, *, temporary: bool = False,
                 actor: str = "self", forbid_current: bool = False, now: dt.datetime | None = None) -> None:
    """The one path that sets a password: policy check, hash, audit. Raises PasswordRejected."""
    violations = check_password(password, person_data(account), policy)
    if forbid_current and account.password_hash and hasher().verify(account.password_hash, password):
        violations.append(Violation("same_as_current", _l("The new password must differ from the current one.")))
    if violations:
        audit.record("password.rejected", actor=actor, account_id=account.id,
                     reason=violations[0].code, data={"rules": [v.code for v in violations]}, now=now)
        raise PasswordRejected(violations)
    now = now or utcnow()
    account.password_hash = hasher().hash(password)
    account.password_temporary = temporary
    account.password_changed_at = now
    account.updated_at = now
    audit.record("password.set", actor=actor, account_id=account.id, reason="temporary" if temporary else None,
                 now=now, commit=False)
    db.session.commit()
