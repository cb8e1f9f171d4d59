"""Who may open the helpdesk console, and when a destructive action asks for the second factor again.

Every console view is wrapped in `console_required`: an SSO session (else the login page, then back), a
console role (else a 403 page, audited as helpdesk.access.denied), a second factor enrolled (else the
enrolment page) and passed in this SSO session (else the verification page). Destructive actions add
`fresh_factor_required`: the factor was passed within the policy's [helpdesk] reauth_minutes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from idp.core import audit, staff
from idp.core.helpdesk import Actor
from idp.extensions import db
from idp.http import authflow, second_factor
from idp.http.security import client_ip
from idp.http.sso_cookie import current_session
from idp.models import Account, SsoSession


@dataclass(frozen=True)
class StaffContext:
    """The staff person using the console in this request (g.staff)."""

    account: Account
    actor: Actor
    sso_session: SsoSession
    roles: frozenset[str]


def back_url() -> str:
    """Where to come back after the login or the second factor: this page (GET and POST share a URL in
    the console, the GET showing the form), never anything off-site."""
    path = request.full_path if request.query_string else request.path
    parts = urlsplit(path)
    if parts.scheme or parts.netloc or not path.startswith("/"):
        return url_for("helpdesk.dashboard")
    return path


def _denied(account: Account, role: str):
    audit.record("helpdesk.access.denied", actor=staff.actor_name(account), account_id=account.id,
                 reason="no_role", client_ip=client_ip(),
                 data={"path": request.path[:512], "role": role})
    return render_template("helpdesk/denied.html", policy=current_app.extensions["idp.policy"], role=role,
                           title=_("No access to the helpdesk console")), 403


def console_required(role: str | object = "helpdesk"):
    """Decorator for console views (`@console_required` or `@console_required("admin")`)."""
    if callable(role):  # used without arguments
        return console_required("helpdesk")(role)

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            current = current_session()
            account = db.session.get(Account, current.account_id) if current is not None else None
            if current is None or account is None:
                authflow.remember_resume(back_url())
                return redirect(url_for("cas.login"))
            roles = staff.roles_of(account)
            if role not in roles:
                return _denied(account, str(role))
            if not second_factor.enrolled(account):
                return second_factor.to_enrol(back_url())
            if second_factor.verified_at(current) is None:
                return second_factor.to_verify(back_url())
            g.staff = StaffContext(account=account, roles=frozenset(roles), sso_session=current,
                                   actor=Actor(name=staff.actor_name(account), account_id=account.id,
                                               client_ip=client_ip(), via="console"))
            return view(*args, **kwargs)
        return wrapper
    return decorate


def factor_is_fresh(sso_session: SsoSession, now: dt.datetime | None = None) -> bool:
    """The second factor was passed in this SSO session within the policy's reauth_minutes."""
    minutes = current_app.extensions["idp.policy"].data["helpdesk"]["reauth_minutes"]
    return second_factor.fresh(sso_session, minutes, now)


def fresh_factor_required(view):
    """Inside console_required: a destructive action asks for the second factor again when the last
    check is older than [helpdesk] reauth_minutes (then comes back to the action's form)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        ctx: StaffContext | None = g.get("staff")
        if ctx is None:  # pragma: no cover - a decorator order mistake, not a request
            raise RuntimeError("fresh_factor_required must be used inside console_required")
        if not factor_is_fresh(ctx.sso_session):
            return second_factor.to_verify(back_url(), reauth=True)
        return view(*args, **kwargs)
    return wrapper
