"""The second factor as the web sees it: whether this browser's SSO session passed it, and when;
where to send a person to enrol or to verify. The factors themselves live in core/mfa.py.

The console (idp/helpdesk) and the login flow use only these functions.

The passed check is kept in the browser's Flask session, bound to the SSO session's id (the digest of its
TGT): a new SSO session — a new login, `renew`, another person on this browser — needs a new check.
"""
from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from flask import redirect, session, url_for

from idp.core import mfa
from idp.core.clock import utcnow
from idp.models import Account, SsoSession

#: Flask-session key: {"sid": SsoSession.id, "at": epoch seconds (UTC), "method": totp|recovery_code|webauthn}
_KEY = "idp_mfa"


def enrolled(account: Account) -> bool:
    """The person has a confirmed TOTP authenticator or at least one WebAuthn credential."""
    return mfa.enrolled(account)


def verified_at(sso_session: SsoSession) -> dt.datetime | None:
    """When this browser last passed the second factor within this SSO session (None: not yet)."""
    state = session.get(_KEY)
    if not state or sso_session is None or state.get("sid") != sso_session.id:
        return None
    return dt.datetime.fromtimestamp(state["at"], dt.UTC).replace(tzinfo=None)


def verified_method(sso_session: SsoSession) -> str | None:
    state = session.get(_KEY)
    return state.get("method") if state and sso_session is not None and state.get("sid") == sso_session.id else None


def mark_verified(sso_session: SsoSession, method: str) -> None:
    """Record a passed check (method: totp | recovery_code | webauthn) for this browser's SSO session."""
    at = utcnow().replace(tzinfo=dt.UTC).timestamp()
    session[_KEY] = {"sid": sso_session.id, "at": int(at), "method": method}


def fresh(sso_session: SsoSession | None, minutes: int, now: dt.datetime | None = None) -> bool:
    """Passed within the last `minutes` in this SSO session (a re-check for destructive actions)."""
    when = verified_at(sso_session) if sso_session is not None else None
    return when is not None and (now or utcnow()) - when <= dt.timedelta(minutes=minutes)


def safe_next(url: str | None) -> str | None:
    """`url` when it is a local path on this site ("/…", no scheme, no host, no backslash); else None."""
    if not url or not url.startswith("/") or url.startswith("//") or "\\" in url or len(url) > 2048:
        return None
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return None
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None
    return url


def to_enrol(next_url: str):
    """Redirect response to the enrolment page; after it the person comes back to `next_url` (local)."""
    return redirect(url_for("mfa.setup", next=safe_next(next_url)))


def to_verify(next_url: str, *, reauth: bool = False):
    """Redirect response to the verification page (`reauth`: says it is a confirmation for a destructive
    action); after it the person comes back to `next_url` (local)."""
    return redirect(url_for("mfa.verify", next=safe_next(next_url), reauth="1" if reauth else None))
