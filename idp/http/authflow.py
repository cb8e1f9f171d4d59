"""The login flow every protocol shares: the form, checking it, required actions, starting the session.

A protocol endpoint parses its own parameters, calls into this module, and issues its own ticket or code
at the end (authentik's "shared flow, protocol-specific last step").
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from flask import abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import format_datetime, format_time, get_locale, ngettext, to_user_timezone
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import InputRequired, Length

from idp.core import accounts, audit, authn, metrics, provisioning, sso, throttle
from idp.core.authn import AuthResult
from idp.core.clock import utcnow
from idp.extensions import limiter
from idp.http.forms import Form
from idp.http.security import client_ip
from idp.models import Account, SsoSession

log = logging.getLogger("idp.login")

#: Longest password accepted at login: longer input is refused before hashing.
MAX_PASSWORD = 1024
_PENDING = "idp_pending_login"
_FRESH = "idp_fresh_sid"


class LoginForm(Form):
    username = StringField(_l("Login"), validators=[InputRequired(), Length(max=254)],
                           render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false",
                                      "autofocus": True})
    password = PasswordField(_l("Password"), validators=[InputRequired(), Length(max=MAX_PASSWORD)],
                             render_kw={"autocomplete": "current-password"})
    warn = BooleanField(_l("Warn me before logging me into other sites"))
    service = HiddenField()


def policy():
    return current_app.extensions["idp.policy"]


def lang() -> str:
    return str(get_locale() or "pl")


def render_login(form: LoginForm, *, service_name: str | None, error: str | None = None, status: int = 200,
                 error_detail: str | None = None):
    pending = pending_resume()
    if pending and service_name is None:
        service_name = pending.get("label")
        if pending.get("login_hint") and not form.username.data:
            form.username.data = pending["login_hint"]
    last = provisioning.last_migration()
    return render_template("login/form.html", form=form, service_name=service_name, error=error,
                           error_detail=error_detail, policy=policy(), lang=lang(), last_migration=last,
                           upstreams=current_app.config["UPSTREAM"]), status


def check_credentials(form: LoginForm, service: str | None) -> AuthResult:
    """Check the login form. An attempt the brute-force protection refuses (the endpoint rate limit, a
    delay, a blocked address) never comes back: it ends the request with the form again — username kept —
    HTTP 429 and how long to wait (werkzeug's abort with a response), so every protocol's login view gets
    it without handling it."""
    wait = password_post_limited()
    if wait is not None:
        message = wait_message(wait, rate_limited=True)
    else:
        result = authn.authenticate(form.username.data or "", form.password.data or "", policy(),
                                    client_ip=client_ip(), service=service)
        if not result.throttled:
            return result
        wait = result.retry_after or 1
        message = wait_message(wait)
    form.password.data = ""
    page, status = render_login(form, service_name=service, error=message, status=429)
    response = current_app.make_response((page, status))
    response.headers["Retry-After"] = str(wait)
    abort(response)


def lockout_hint() -> str | None:
    """Under "Invalid login or password", for every failed login alike (so it tells nobody anything about
    an account): a locked account refuses even the right password, and says so to nobody."""
    rules = policy().data["login"]
    if not rules["lockout_threshold"]:
        return None
    hint = ngettext("After %(count)s wrong passwords in a row, an account refuses password logins for at least "
                    "%(num)s minute, even with the right password.",
                    "After %(count)s wrong passwords in a row, an account refuses password logins for at least "
                    "%(num)s minutes, even with the right password.",
                    rules["lockout_minutes"], count=rules["lockout_threshold"])
    if rules["permanent_lockout_after"]:
        return hint + " " + _("If you are sure of yours, wait, or set a new one with the reset link below; "
                              "after repeated locks, only the helpdesk can unlock the account.")
    return hint + " " + _("If you are sure of yours, wait, or set a new one with the reset link below.")


def wait_message(seconds: int, *, rate_limited: bool = False) -> str:
    """"Too many failed attempts. Try again in 8 s." — minutes from two minutes on. `rate_limited`: the
    address's endpoint rate limit, which counts every attempt, not only failed ones."""
    minutes = math.ceil(seconds / 60)
    if rate_limited:
        if seconds < 120:
            return _("Too many login attempts from your network. Try again in %(num)s s.", num=seconds)
        return _("Too many login attempts from your network. Try again in %(num)s min.", num=minutes)
    if seconds < 120:
        return _("Too many failed attempts. Try again in %(num)s s.", num=seconds)
    return _("Too many failed attempts. Try again in %(num)s min.", num=minutes)


# --- the endpoint rate limit on password posts (policy [login] address_rate_limit) ----------------------
#
# Counted in Flask-Limiter's storage (Redis when configured, else the database: idp/core/limit_store.py)
# under its key prefix, but called here rather than as a view decorator: only posts that reach a password check
# count, exempt networks are honoured, the refusal is the login form in the person's language, and no
# X-RateLimit/Retry-After headers land on ordinary answers (Flask-Limiter adds them to every response of
# a decorated view, redirects included).

@lru_cache(maxsize=8)
def _rate_items(text: str) -> tuple:
    from limits import parse_many

    return tuple(parse_many(text)) if text.strip() else ()


def password_post_limited(address: str | None = None) -> int | None:
    """Count one posted password for the client address's endpoint rate limit (every page that checks a
    password calls this first; the mail endpoint passes the IMAP client's `address`, the requester being the
    mail server). None: go on; else the seconds until the limit lets it through."""
    address = address or client_ip()
    items = _rate_items(policy().data["login"]["address_rate_limit"])
    if not items or not limiter.enabled or throttle.exempt(policy(), address):
        return None
    ids = (current_app.config.get("RATELIMIT_KEY_PREFIX") or "", "login-password",
           throttle.address_key(address) or "unknown")
    for item in items:
        try:
            allowed = limiter.limiter.hit(item, *ids)
        except (RedisError, SQLAlchemyError):  # a flood guard only: the throttle behind it answers for the store
            log.warning("login rate limit not counted: its store (Redis or the database) unavailable")
            return None
        if not allowed:
            reset = limiter.limiter.get_window_stats(item, *ids).reset_time
            wait = max(1, math.ceil(reset - time.time()))
            log.info("login rate limit %s reached for %s (wait %s s)", item, address, wait)
            _record_rate_limited(ids, address, str(item), wait)
            return wait
    return None


def _record_rate_limited(ids: tuple, address: str, limit: str, wait: int) -> None:
    """Every refusal is counted (metrics); the first of each minute per address is also audited, so the
    helpdesk sees a flood began without the flood filling the audit log."""
    metrics.login_rate_limited()
    try:
        first = limiter.limiter.hit(_rate_items("1 per minute")[0], *ids, "audited")
    except (RedisError, SQLAlchemyError):
        return
    if first:
        audit.record("login.rate_limited", actor="idp", reason="address_rate_limit", client_ip=address,
                     data={"limit": limit, "retry_after": wait})


def format_moment(moment: dt.datetime) -> str:
    """A time to wait for, in the person's time zone: "14:05" today, else "3 December, 14:05"."""
    same_day = to_user_timezone(moment).date() == to_user_timezone(utcnow()).date()
    return format_time(moment, "HH:mm") if same_day else format_datetime(moment, "d MMMM, HH:mm")


def render_blocked(reason: str, account: Account, event):
    """Why a verified person (a correct password, or an upstream provider and its link) is not let in — left
    the university: what it means, what to do, whom to ask, and the reference code of the refused login.
    Never shown after a wrong password, nor for a lock (core/authn.py AFTER_CORRECT_PASSWORD)."""
    now = utcnow()
    context = {"kind": reason, "account": account, "policy": policy(), "ref": audit.reference(event)}
    if reason == "account_left":
        grace = policy().data["migration"]["left_grace_days"]
        context.update(title=_("Your account is no longer active"), left_on=account.left_at, grace_days=grace,
                       grace_ended_on=account.left_at + dt.timedelta(days=grace) if account.left_at else None,
                       next_migration=provisioning.next_migration(policy(), now))
    return render_template("login/blocked.html", **context), 403


@dataclass(frozen=True)
class Established:
    session: SsoSession
    tgt: str


def establish(account: Account, *, warn: bool, current: SsoSession | None) -> Established:
    """Start a new SSO session (a new id on every authentication) for a verified person."""
    started = sso.start(account, policy(), warn=warn, client_ip=client_ip(), replaces=current)
    return Established(started.session, started.tgt)


# --- required actions: a temporary password must be changed before any ticket ------------------------

def needs_required_action(account: Account) -> bool:
    """A temporary password, or one older than the policy's maximum age, is changed before any app."""
    return account.password_temporary or accounts.password_expired(account, policy())


def begin_required_action(account: Account, *, warn: bool, resume: str, second_factor: str | None = None):
    """Remember who passed the password check and where to resume, then send them to change it.
    `second_factor`: the method of the second factor already passed in this login (policy "everyone"),
    carried over to the SSO session that starts after the change (see carry_second_factor)."""
    session[_PENDING] = {"account_id": account.id, "warn": warn, "resume": resume, "at": int(time.time())}
    if second_factor:
        session[_PENDING]["mfa"] = second_factor
    return redirect(url_for("login.change_password"))


def carry_second_factor(pending: dict, sso_session: SsoSession) -> None:
    """The login that just finished its required action had passed the second factor before it."""
    if pending.get("mfa"):
        from idp.http import second_factor

        second_factor.mark_verified(sso_session, pending["mfa"])


#: How long a person has, after typing a temporary password, to choose the new one.
PENDING_SECONDS = 900


def pending_required_action() -> dict | None:
    """The login waiting for a password change; None when there is none or it is too old."""
    pending = session.get(_PENDING)
    if pending and time.time() - pending.get("at", 0) > PENDING_SECONDS:
        session.pop(_PENDING, None)
        return None
    return pending


def finish_required_action() -> str:
    """Clear the pending state; returns the local URL to resume at."""
    pending = session.pop(_PENDING, None) or {}
    resume = pending.get("resume") or url_for("cas.login")
    parts = urlsplit(resume)
    if parts.scheme or parts.netloc or not resume.startswith("/"):
        resume = url_for("cas.login")
    return resume


def _local(url: str | None) -> str:
    parts = urlsplit(url or "")
    if not url or parts.scheme or parts.netloc or not url.startswith("/") or url.startswith("//"):
        return url_for("cas.login")
    return url


# --- required action: the second factor (policy [mfa] required_for = "everyone") -------------------------
#
# Checked right after the password (or the upstream provider), before a temporary-password change and
# before any SSO session exists: the person is "pending" in this browser's session until the factor is
# passed (or, without one, enrolled) on the /mfa pages, which then call finish_second_factor.

_PENDING_MFA = "idp_pending_mfa"


def needs_second_factor(account: Account) -> bool:
    """Policy [mfa] required_for = "everyone": every login passes the second factor before any app.
    ("staff": only the helpdesk console asks for it, see idp/helpdesk.)"""
    return policy().data["mfa"]["required_for"] == "everyone"


def begin_second_factor(account: Account, *, warn: bool, resume: str):
    """Remember who passed the first factor and where to resume, then send them to verify the second
    factor — or to enrol one first when they have none."""
    from idp.core import mfa

    session.pop(_PENDING, None)
    session[_PENDING_MFA] = {"account_id": account.id, "warn": warn, "resume": resume, "at": int(time.time())}
    return redirect(url_for("mfa.verify" if mfa.enrolled(account) else "mfa.setup"))


def pending_second_factor() -> dict | None:
    """The login waiting for its second factor; None when there is none or it is too old."""
    pending = session.get(_PENDING_MFA)
    if pending and time.time() - pending.get("at", 0) > PENDING_SECONDS:
        session.pop(_PENDING_MFA, None)
        return None
    return pending


def finish_second_factor(account: Account, method: str) -> tuple[str, str | None]:
    """The pending login passed its second factor (`method`). A due temporary-password change comes next
    (the passed check is carried over to it); otherwise the SSO session starts now, marked verified.
    Returns (the local URL to go to, the TGT for the cookie or None)."""
    from idp.http import second_factor
    from idp.http.sso_cookie import current_session

    pending = session.pop(_PENDING_MFA, None) or {}
    warn = bool(pending.get("warn"))
    resume = _local(pending.get("resume"))
    if needs_required_action(account):
        begin_required_action(account, warn=warn, resume=resume, second_factor=method)
        return url_for("login.change_password"), None
    est = establish(account, warn=warn, current=current_session())
    mark_fresh(est.session)
    second_factor.mark_verified(est.session, method)
    return resume, est.tgt


def mark_fresh(sso_session: SsoSession) -> None:
    """The session was just created from a password typed on a page other than the protocol's own."""
    session[_FRESH] = {"sid": sso_session.id, "at": int(time.time())}


def _fresh_for(mark, sso_session: SsoSession | None) -> bool:
    """A mark counts for its session, and no longer than a login may take to resume what asked for it: one
    left behind (a consent page never answered) must not pass for a new login an hour later."""
    return (sso_session is not None and isinstance(mark, dict) and mark.get("sid") == sso_session.id
            and time.time() - mark.get("at", 0) <= RESUME_SECONDS)


def take_fresh(sso_session: SsoSession | None) -> bool:
    """True once, right after mark_fresh for this session: the next ticket counts as a new login."""
    return _fresh_for(session.pop(_FRESH, None), sso_session)


#: Which protocol request (request_key) sent the person to the login page, and which one the login that
#: followed was for: it satisfies that request's prompt=login or max_age (through a consent page and its
#: POST), not a later request's.
_LOGIN_FOR = "idp_login_for"
_LOGIN_DONE = "idp_login_done"


def request_key() -> str:
    """This request, however the browser re-encodes its URL on the way back from the login page."""
    items = sorted(request.args.items(multi=True))
    return hashlib.sha256(json.dumps([request.path, items]).encode()).hexdigest()[:32]


def expect_login_for(key: str) -> None:
    """The request `key` sends the person to log in now: only that login will count as fresh for it."""
    session.pop(_LOGIN_DONE, None)
    session[_LOGIN_FOR] = key


def fresh_login_for(sso_session: SsoSession | None, key: str) -> bool:
    """Did the person just log in for the request `key`? The login's mark (mark_fresh) is used up by the
    first protocol request after it: kept for this one when it sent the person to log in, dropped
    otherwise, so that a login that ended elsewhere (a consent page left undecided, a "not provisioned"
    page) counts neither for the next client's prompt=login or max_age nor for a CAS renew."""
    if take_fresh(sso_session) and session.pop(_LOGIN_FOR, None) == key:
        session[_LOGIN_DONE] = {"key": key, "at": int(time.time())}
    done = session.get(_LOGIN_DONE)
    return (sso_session is not None and isinstance(done, dict) and done.get("key") == key
            and time.time() - done.get("at", 0) <= RESUME_SECONDS)


def forget_login_for() -> None:
    """The request was answered: its login counts for nothing more."""
    session.pop(_LOGIN_DONE, None)


# --- resuming a protocol request after the login page ---------------------------------------------------

_RESUME = "idp_resume"
#: How long a protocol request waits for its login.
RESUME_SECONDS = 900


def remember_resume(url: str, *, label: str | None = None, login_hint: str | None = None) -> None:
    """A protocol endpoint (OIDC /authorize) sends the person to the login page and wants them back."""
    session[_RESUME] = {"url": url, "label": label, "login_hint": (login_hint or "")[:254], "at": int(time.time())}


def pending_resume() -> dict | None:
    pending = session.get(_RESUME)
    if pending and time.time() - pending.get("at", 0) > RESUME_SECONDS:
        session.pop(_RESUME, None)
        return None
    return pending


def pop_resume() -> str | None:
    """The local URL to go back to after login, once; None when nothing waits."""
    pending = pending_resume()
    session.pop(_RESUME, None)
    if not pending:
        return None
    url = pending["url"]
    parts = urlsplit(url)
    return None if parts.scheme or parts.netloc or not url.startswith("/") else url


def forget_everything() -> None:
    """Logout: nothing of the person's browser session (CSRF token, pending logins) survives."""
    session.clear()


#: The reset request whose link page this browser has open (for the live password check).
RESET_KEY = "idp_reset_request"


#: The account whose activation data this browser has just verified (idp/activation), and since when.
ACTIVATION_KEY = "idp_activation"
#: How long, after the data check, the person has to choose the first password.
ACTIVATION_SECONDS = 900


def current_person(purpose: str):
    """Whose password a form is about: `required` — the person in the middle of a required action (a
    temporary or expired password); `account` — the logged-in person; `activation` — the new student whose
    data were just verified. None when there is nobody."""
    from idp.extensions import db
    from idp.http.sso_cookie import current_session

    if purpose == "required":
        pending = pending_required_action()
        return db.session.get(Account, pending["account_id"]) if pending else None
    if purpose == "reset":
        from idp.core.clock import utcnow
        from idp.models import ResetRequest

        req = db.session.get(ResetRequest, session.get(RESET_KEY) or 0)
        if req is None or req.used_at is not None or req.ended_at is not None or req.expires_at <= utcnow():
            return None
        return db.session.get(Account, req.account_id)
    if purpose == "activation":
        pending = session.get(ACTIVATION_KEY) or {}
        if time.time() - pending.get("at", 0) > ACTIVATION_SECONDS:
            return None
        account = db.session.get(Account, pending.get("account_id") or 0)
        return account if account is not None and account.password_hash is None else None
    if purpose == "account":
        current = current_session(touch=False)
        return db.session.get(Account, current.account_id) if current else None
    return None
