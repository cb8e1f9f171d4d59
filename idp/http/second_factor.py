"""The second factor as the web sees it: whether this browser's SSO session passed it, and when;
where to send a person to enrol or to verify. The factors themselves live in core/mfa.py.

INTERFACE (filled in by the MFA work): the console (idp/helpdesk) and the login flow rely on exactly these.
"""
from __future__ import annotations

import datetime as dt

from idp.models import Account, SsoSession


def enrolled(account: Account) -> bool:
    """The person has a confirmed TOTP authenticator or at least one WebAuthn credential."""
    raise NotImplementedError


def verified_at(sso_session: SsoSession) -> dt.datetime | None:
    """When this browser last passed the second factor within this SSO session (None: not yet)."""
    raise NotImplementedError


def mark_verified(sso_session: SsoSession, method: str) -> None:
    """Record a passed check (method: totp | recovery_code | webauthn) for this browser's SSO session."""
    raise NotImplementedError


def to_enrol(next_url: str):
    """Redirect response to the enrolment page; after it the person comes back to `next_url` (local)."""
    raise NotImplementedError


def to_verify(next_url: str, *, reauth: bool = False):
    """Redirect response to the verification page (`reauth`: says it is a confirmation for a destructive
    action); after it the person comes back to `next_url` (local)."""
    raise NotImplementedError
