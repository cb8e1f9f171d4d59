"""What an OIDC client may learn about a person, by scope. One place for claim release.

Scope `university` (the university's own claims): `album`, `role`, `affiliations` (eduPerson-style:
student → [student, member], teacher → [faculty, employee, member], staff → [staff, employee, member]).
"""
from __future__ import annotations

from idp.core.accounts import canonical_username
from idp.core.policy import Policy
from idp.models import Account

#: Scope -> the claims it releases (besides `sub`, always released).
SCOPES: dict[str, tuple[str, ...]] = {
    "openid": (),
    "profile": ("name", "given_name", "family_name", "preferred_username"),
    "email": ("email", "email_verified"),
    "university": ("album", "role", "affiliations"),
}

_AFFILIATIONS = {"student": ["student", "member"], "teacher": ["faculty", "employee", "member"],
                 "staff": ["staff", "employee", "member"]}


def preferred_username(account: Account, policy: Policy) -> str:
    return canonical_username(account, policy)


def _claim(account: Account, name: str, policy: Policy):
    if name == "name":
        return account.display_name
    if name == "given_name":
        return account.first_name
    if name == "family_name":
        return account.last_name
    if name == "preferred_username":
        return preferred_username(account, policy)
    if name == "email":
        return account.identifier("university_email") or account.identifier("private_email")
    if name == "email_verified":
        # The university issued its own mailbox; a private address from the SIS was never verified here.
        return account.identifier("university_email") is not None
    if name == "album":
        return account.album
    if name == "role":
        return account.role
    if name == "affiliations":
        return _AFFILIATIONS.get(account.role, ["member"])
    raise KeyError(name)


def for_scope(account: Account, scope: str, policy: Policy) -> dict:
    """`sub` plus every claim the granted scopes release (missing values are left out)."""
    out: dict = {"sub": account.subject}
    for s in (scope or "").split():
        for name in SCOPES.get(s, ()):
            value = _claim(account, name, policy)
            if value is not None:
                out[name] = value
    return out


def claims_for_consent(scope: str) -> list[str]:
    """The claim names a consent page lists for these scopes."""
    return [name for s in (scope or "").split() for name in SCOPES.get(s, ())]
