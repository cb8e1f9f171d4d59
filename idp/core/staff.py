"""Console roles and API tokens: who may use the helpdesk console and the admin API, and as whom."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from idp.core import audit
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.extensions import db
from idp.models import Account, ApiToken, StaffRole

#: `helpdesk`: find people, explain, reset, unlock, link, merge. `admin`: that, plus services and roles.
ROLES = ("helpdesk", "admin")
#: What every role may do: an admin is a helpdesk person too.
IMPLIES = {"admin": {"admin", "helpdesk"}, "helpdesk": {"helpdesk"}}
TOKEN_PREFIX = "idpat_"


class UnknownRole(DomainError):
    code = "unknown_role"


def roles_of(account: Account | None) -> set[str]:
    """Every role the person holds, implied ones included (an admin is also helpdesk)."""
    if account is None:
        return set()
    held = db.session.scalars(db.select(StaffRole.role).where(StaffRole.account_id == account.id))
    return set().union(*(IMPLIES.get(r, set()) for r in held))


def has_role(account: Account | None, role: str) -> bool:
    return role in roles_of(account)


def actor_name(account: Account) -> str:
    """How a staff person appears as an audit actor: their first identifier (an address), else the album."""
    return next((i.value for i in account.identifiers), None) or f"album:{account.album}"


def grant(account: Account, role: str, *, actor: str, reason: str | None = None,
          now: dt.datetime | None = None) -> bool:
    """Give a console role; False when the person already held it. Audited."""
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    now = now or utcnow()
    existing = db.session.scalar(db.select(StaffRole).where(StaffRole.account_id == account.id,
                                                            StaffRole.role == role))
    if existing is not None:
        return False
    db.session.add(StaffRole(account_id=account.id, role=role, granted_at=now, granted_by=actor))
    audit.record("staff.role.granted", actor=actor, account_id=account.id, reason=reason,
                 data={"role": role}, now=now)
    return True


def revoke(account: Account, role: str, *, actor: str, reason: str | None = None,
           now: dt.datetime | None = None) -> bool:
    """Take a console role away (and every API token of a person left with none); False when not held."""
    if role not in ROLES:
        raise UnknownRole(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    now = now or utcnow()
    held = db.session.scalar(db.select(StaffRole).where(StaffRole.account_id == account.id, StaffRole.role == role))
    if held is None:
        return False
    db.session.delete(held)
    db.session.flush()
    if not roles_of(account):
        db.session.execute(db.update(ApiToken).where(ApiToken.account_id == account.id,
                                                     ApiToken.revoked_at.is_(None)).values(revoked_at=now))
    audit.record("staff.role.revoked", actor=actor, account_id=account.id, reason=reason, data={"role": role},
                 now=now)
    return True


def staff_members() -> list[tuple[Account, list[str]]]:
    """Everyone holding a console role, with the roles (as granted)."""
    rows = db.session.execute(db.select(Account, StaffRole.role).join(StaffRole, StaffRole.account_id == Account.id)
                              .order_by(Account.last_name, Account.first_name, StaffRole.role)).all()
    out: dict[int, tuple[Account, list[str]]] = {}
    for account, role in rows:
        out.setdefault(account.id, (account, []))[1].append(role)
    return list(out.values())


# --- API tokens ------------------------------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    #: The bearer value, shown once; only its SHA-256 is stored.
    secret: str


def create_token(account: Account, name: str, *, actor: str, days: int | None = 90,
                 now: dt.datetime | None = None) -> IssuedToken:
    """A bearer token for the admin API acting as this staff person (refused to people without a role)."""
    if not roles_of(account):
        raise DomainError("API tokens are for people with a console role (idp staff grant)", "not_staff")
    now = now or utcnow()
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(account_id=account.id, name=name.strip()[:100] or "token", token_hash=_digest(secret),
                     prefix=secret[:len(TOKEN_PREFIX) + 6], created_at=now,
                     expires_at=now + dt.timedelta(days=days) if days else None)
    db.session.add(token)
    db.session.flush()
    audit.record("staff.token.created", actor=actor, account_id=account.id,
                 data={"token_id": token.id, "name": token.name, "expires_at": token.expires_at.isoformat()
                       if token.expires_at else None}, now=now)
    return IssuedToken(token, secret)


def authenticate_token(secret: str, *, now: dt.datetime | None = None) -> Account | None:
    """The staff person a bearer token acts as; None for an unknown, revoked or expired token, or one
    whose owner no longer holds a role."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    now = now or utcnow()
    token = db.session.scalar(db.select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    if token is None or token.revoked_at is not None or (token.expires_at and token.expires_at <= now):
        return None
    account = db.session.get(Account, token.account_id)
    if account is None or account.status != "active" or account.merged_into_id is not None \
            or not roles_of(account):
        return None  # a person who left (or was merged) stops acting through scripts too
    if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
        token.last_used_at = now  # coarse, so a busy script does not write on every call
        db.session.commit()
    return account


def tokens_of(account: Account) -> list[ApiToken]:
    return list(db.session.scalars(db.select(ApiToken).where(ApiToken.account_id == account.id)
                                   .order_by(ApiToken.id.desc())))


def revoke_token(token_id: int, *, actor: str, now: dt.datetime | None = None) -> bool:
    now = now or utcnow()
    token = db.session.get(ApiToken, token_id)
    if token is None or token.revoked_at is not None:
        return False
    token.revoked_at = now
    audit.record("staff.token.revoked", actor=actor, account_id=token.account_id, data={"token_id": token.id},
                 now=now)
    return True
