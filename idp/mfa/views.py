"""Second factor pages: enrol (authenticator app or security key), verify, recovery codes, manage.

Two kinds of visitor: a person in the middle of a login that needs the second factor (policy
`[mfa] required_for = "everyone"`; no SSO session yet — authflow.pending_second_factor), and a logged-in
person (their SSO session; the console sends them here to enrol, to verify, or to confirm again before a
destructive action). Passing the check finishes the pending login, or marks this SSO session verified.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import format_time
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from idp.core import mfa
from idp.core.clock import utcnow
from idp.extensions import db
from idp.http import authflow, second_factor
from idp.http.errors import error_page
from idp.http.security import client_ip
from idp.http.sso_cookie import current_session, set_tgc
from idp.mfa import bp
from idp.mfa.forms import ActionForm, RecoveryCodeForm, TotpCodeForm
from idp.models import Account, SsoSession

#: Flask-session keys: the WebAuthn challenge waiting for its answer; a pending login whose first factor
#: was just enrolled as a security key and now gets its recovery codes.
_WEBAUTHN = "idp_mfa_webauthn"
_PASSED = "idp_mfa_passed"


def _policy():
    return current_app.extensions["idp.policy"]


def _reauth_minutes() -> int:
    return _policy().data["helpdesk"]["reauth_minutes"]


@dataclass(frozen=True)
class Visitor:
    account: Account
    sso: SsoSession | None     # logged in: their session
    pending: dict | None       # in the middle of a login (policy "everyone")


def _visitor() -> Visitor | None:
    pending = authflow.pending_second_factor()
    if pending:
        account = db.session.get(Account, pending["account_id"])
        if account is not None:
            return Visitor(account, None, pending)
    current = current_session()
    if current is not None:
        account = db.session.get(Account, current.account_id)
        if account is not None:
            return Visitor(account, current, None)
    return None


def _next() -> str | None:
    return second_factor.safe_next(request.values.get("next"))


def _to_login():
    back = second_factor.safe_next(request.full_path if request.method == "GET" else None) or url_for("mfa.manage")
    authflow.remember_resume(back)
    return redirect(url_for("cas.login"))


def _passed_pending(who: Visitor) -> str | None:
    """The method this pending login already passed (a security key enrolled as its first factor)."""
    passed = session.get(_PASSED)
    if not passed or who.pending is None:
        return None
    same = passed.get("account_id") == who.account.id and passed.get("pending_at") == who.pending.get("at")
    return passed.get("method") if same else None


def _finish(who: Visitor, method: str, target: str | None = None):
    """After a passed check: (where to go, TGT to set or None). A pending login finishes (the SSO session
    starts, or the temporary-password change comes first); a logged-in session is marked verified."""
    if who.pending is not None:
        session.pop(_PASSED, None)
        return authflow.finish_second_factor(who.account, method)
    second_factor.mark_verified(who.sso, method)
    return target or _next() or url_for("mfa.manage"), None


def _redirect(target: str, tgt: str | None):
    response = redirect(target)
    if tgt:
        set_tgc(response, tgt)
    return response


def _codes_page(codes: list[str], continue_url: str, tgt: str | None = None, *, first: bool):
    response = current_app.make_response(render_template(
        "mfa/recovery_codes.html", codes=codes, continue_url=continue_url, first=first, policy=_policy(),
        title=_("Your recovery codes")))
    if tgt:
        set_tgc(response, tgt)
    return response


def _blocked_message(account: Account) -> str | None:
    until = mfa.blocked_until(account, utcnow())
    if until is None:
        return None
    return _("Too many wrong codes. For your security, codes are refused until %(time)s. Use your security "
             "key if you have one, or try again then.", time=format_time(until, "HH:mm"))


# --- enrolment: the authenticator app -------------------------------------------------------------------------

_TOTP_SETUP = "idp_totp_setup"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:32]


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Set up an authenticator app: QR code and the secret as text, then the first code confirms it.
    A security key can be registered here instead (webauthn.js)."""
    who = _visitor()
    if who is None:
        return _to_login()
    account = who.account
    have = mfa.factors(account)
    if who.pending is not None and have.enrolled:
        return redirect(url_for("mfa.verify"))
    if who.sso is not None and have.enrolled and second_factor.verified_at(who.sso) is None:
        return second_factor.to_verify(request.full_path)
    if have.totp is not None:
        flash(_("An authenticator app is already set up."), "success")
        return redirect(_next() or url_for("mfa.manage"))
    issuer = _policy().name(authflow.lang())
    secret, uri = mfa.totp_begin(account, issuer=issuer)
    # A waiting secret belongs to the browser that was shown it: another browser (someone who knew the
    # password and opened this page first) never gets it, and cannot confirm the one shown here.
    mine = session.get(_TOTP_SETUP) == _digest(secret)
    if not mine:
        secret, uri = mfa.totp_begin(account, issuer=issuer, restart=True)
        session[_TOTP_SETUP] = _digest(secret)
    form = TotpCodeForm()
    error = None
    if form.is_submitted() and not mine:
        error = _("This page was out of date: scan the new code and enter the code the app shows now.")
    elif form.validate_on_submit():
        if mfa.totp_confirm(account, form.code.data, client_ip=client_ip()):
            first = not have.enrolled
            codes = mfa.issue_recovery_codes(account, _policy().data["mfa"]["recovery_codes"],
                                             client_ip=client_ip()) if have.recovery_left == 0 else []
            target, tgt = _finish(who, "totp")
            if codes:
                return _codes_page(codes, target, tgt, first=first)
            flash(_("Your authenticator app is set up."), "success")
            return _redirect(target, tgt)
        error = _blocked_message(account) or _("That code is not correct. Check the time on your phone and "
                                               "enter the code the app shows now.")
    elif form.is_submitted():
        error = _("Enter the six-digit code from the app.")
    error = error or _blocked_message(account)
    groups = [secret[i:i + 4] for i in range(0, len(secret), 4)]
    return render_template("mfa/setup.html", form=form, error=error, secret_groups=groups, uri=uri,
                           qr=mfa.qr_svg(uri, title=_("QR code for your authenticator app")),
                           pending=who.pending is not None, next=_next(), policy=_policy(),
                           title=_("Set up a second factor")), 400 if form.is_submitted() else 200


# --- verification ------------------------------------------------------------------------------------------

@bp.route("/verify", methods=["GET", "POST"])
def verify():
    """The second factor: a code from the app, a recovery code, or a security key (webauthn.js)."""
    who = _visitor()
    if who is None:
        return _to_login()
    account = who.account
    have = mfa.factors(account)
    reauth = request.values.get("reauth") == "1"
    if not have.enrolled:
        return redirect(url_for("mfa.setup", next=_next()))
    if who.sso is not None and not reauth and second_factor.verified_at(who.sso) is not None:
        return redirect(_next() or url_for("mfa.manage"))
    totp_form, recovery_form = TotpCodeForm(), RecoveryCodeForm()
    method = request.form.get("method")
    error = None
    if request.method == "POST":
        form = recovery_form if method == "recovery_code" else totp_form
        # The core refuses (and audits) every code while the wrong-code limit holds.
        if not form.validate_on_submit():
            error = _("Enter the code.")
        elif method == "recovery_code":
            if mfa.use_recovery_code(account, form.code.data, client_ip=client_ip()):
                left = mfa.recovery_codes_left(account)
                if left <= 2:
                    flash(_("Recovery codes left: %(num)d. Create new ones on the second factor page.", num=left),
                          "warning")
                return _redirect(*_finish(who, "recovery_code"))
            error = _blocked_message(account) or _("That recovery code is not correct or was already used.")
        elif have.totp is not None and not mfa.totp_readable(account):
            mfa.verify_totp(account, form.code.data, client_ip=client_ip())  # audits secret_unreadable
            error = _("Your authenticator app can no longer be checked because the service's keys were "
                      "changed. Use a recovery code or a security key, then set up the app again.")
        elif mfa.verify_totp(account, form.code.data, client_ip=client_ip()):
            return _redirect(*_finish(who, "totp"))
        else:
            error = _blocked_message(account) or _("That code is not correct, or it was already used. Wait for "
                                                   "the next code and try again.")
    error = error or _blocked_message(account)
    status = 429 if error and mfa.blocked_until(account) else (400 if error else 200)
    return render_template("mfa/verify.html", totp_form=totp_form, recovery_form=recovery_form, error=error,
                           factors=have, reauth=reauth, pending=who.pending is not None, next=_next(),
                           policy=_policy(),
                           title=_("Confirm it is you") if reauth else _("Second factor")), status


# --- recovery codes ----------------------------------------------------------------------------------------

@bp.route("/recovery-codes", methods=["GET", "POST"])
def recovery_codes():
    """New recovery codes (every older one stops working), shown once. Logged in: needs a check passed in
    the last [helpdesk] reauth_minutes. A pending login whose first factor was a security key gets its
    first codes here, and then continues."""
    who = _visitor()
    if who is None:
        return _to_login()
    account = who.account
    passed = _passed_pending(who)
    if who.pending is not None and passed is None:
        return redirect(url_for("mfa.verify"))
    if who.sso is not None:
        if not mfa.enrolled(account):
            return second_factor.to_enrol(request.full_path)
        if not second_factor.fresh(who.sso, _reauth_minutes()):
            return second_factor.to_verify(request.full_path, reauth=True)
    form = ActionForm()
    if form.validate_on_submit():
        codes = mfa.issue_recovery_codes(account, _policy().data["mfa"]["recovery_codes"], client_ip=client_ip())
        if passed is not None:
            target, tgt = _finish(who, passed)
            return _codes_page(codes, target, tgt, first=True)
        return _codes_page(codes, _next() or url_for("mfa.manage"), first=False)
    return render_template("mfa/recovery_new.html", form=form, left=mfa.recovery_codes_left(account),
                           next=_next(), policy=_policy(), title=_("Recovery codes")), 400 if form.is_submitted() else 200


# --- managing: list, add a key, remove -----------------------------------------------------------------------

@bp.route("", methods=["GET"])
def manage():
    """The person's second factors: the app, security keys, recovery codes left."""
    who = _visitor()
    if who is None or who.sso is None:
        return redirect(url_for("mfa.verify")) if who is not None else _to_login()
    have = mfa.factors(who.account)
    if have.enrolled and second_factor.verified_at(who.sso) is None:
        return second_factor.to_verify(request.full_path)
    return render_template("mfa/manage.html", factors=have, form=ActionForm(), policy=_policy(),
                           everyone=_policy().data["mfa"]["required_for"] == "everyone",
                           title=_("Second factor"))


def _removal_allowed(who: Visitor | None):
    """A removal needs a logged-in person who passed the second factor within reauth_minutes; returns a
    response to send instead, or None."""
    if who is None or who.sso is None:
        return _to_login()
    if not ActionForm().validate_on_submit():
        return redirect(url_for("mfa.manage"))
    if not second_factor.fresh(who.sso, _reauth_minutes()):
        return second_factor.to_verify(url_for("mfa.manage"), reauth=True)
    return None


@bp.route("/totp/remove", methods=["POST"])
def remove_totp():
    who = _visitor()
    refused = _removal_allowed(who)
    if refused is not None:
        return refused
    if mfa.remove_totp(who.account, client_ip=client_ip()):
        flash(_("The authenticator app was removed."), "success")
    return redirect(url_for("mfa.manage"))


@bp.route("/keys/<int:key_id>/remove", methods=["POST"])
def remove_key(key_id: int):
    who = _visitor()
    refused = _removal_allowed(who)
    if refused is not None:
        return refused
    if mfa.remove_credential(who.account, key_id, client_ip=client_ip()):
        flash(_("The security key was removed."), "success")
    return redirect(url_for("mfa.manage"))


# --- WebAuthn JSON endpoints (idp/static/webauthn.js; CSRF token in the X-CSRFToken header) -----------------

def _json_error(message: str, status: int = 400):
    return jsonify(error=message), status


@bp.errorhandler(CSRFError)
def _csrf_error(exc):
    """webauthn.js reads {"error": …}; forms get the usual page."""
    if request.is_json:
        return _json_error(_("The page has expired. Reload it and try again."))
    return error_page(_("The form has expired"), _("Go back, reload the page and try again."), 400)


def _rp() -> mfa.RelyingParty:
    return mfa.relying_party(_policy().name(authflow.lang()))


def _may_register(who: Visitor | None) -> str | None:
    """Why this visitor may not add a security key now (a message), or None."""
    if who is None:
        return _("You are not logged in. Log in again.")
    enrolled = mfa.enrolled(who.account)
    if who.pending is not None and (enrolled or _passed_pending(who)):
        return _("Verify with your second factor first.")
    if who.sso is not None and enrolled and second_factor.verified_at(who.sso) is None:
        return _("Verify with your second factor first.")
    return None


@bp.route("/webauthn/register/options", methods=["POST"])
def webauthn_register_options():
    who = _visitor()
    refused = _may_register(who)
    if refused:
        return _json_error(refused, 403)
    options, state = mfa.registration_options(who.account, _rp())
    session[_WEBAUTHN] = state
    return current_app.response_class(options, mimetype="application/json")


@bp.route("/webauthn/register", methods=["POST"])
def webauthn_register():
    who = _visitor()
    refused = _may_register(who)
    if refused:
        return _json_error(refused, 403)
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    try:
        mfa.register_credential(who.account, session.pop(_WEBAUTHN, None), body.get("credential"), _rp(),
                                name=str(body.get("name") or "")[:100] or _("Security key"), client_ip=client_ip())
    except mfa.WebAuthnRefused:
        return _json_error(_("The security key could not be registered. Try again."))
    need_codes = mfa.recovery_codes_left(who.account) == 0
    if who.pending is not None:
        session[_PASSED] = {"account_id": who.account.id, "pending_at": who.pending.get("at"), "method": "webauthn"}
        return jsonify(redirect=url_for("mfa.recovery_codes"))
    second_factor.mark_verified(who.sso, "webauthn")
    flash(_("The security key was added."), "success")
    if need_codes:
        return jsonify(redirect=url_for("mfa.recovery_codes", next=_next()))
    return jsonify(redirect=_next() or url_for("mfa.manage"))


@bp.route("/webauthn/authenticate/options", methods=["POST"])
def webauthn_authenticate_options():
    who = _visitor()
    if who is None:
        return _json_error(_("You are not logged in. Log in again."), 403)
    try:
        options, state = mfa.authentication_options(who.account, _rp())
    except mfa.WebAuthnRefused:
        return _json_error(_("No security key is registered for your account."))
    session[_WEBAUTHN] = state
    return current_app.response_class(options, mimetype="application/json")


@bp.route("/webauthn/authenticate", methods=["POST"])
def webauthn_authenticate():
    who = _visitor()
    if who is None:
        return _json_error(_("You are not logged in. Log in again."), 403)
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    try:
        mfa.authenticate(who.account, session.pop(_WEBAUTHN, None), body.get("credential"), _rp(),
                         client_ip=client_ip())
    except mfa.WebAuthnRefused:
        return _json_error(_("The security key was not accepted. Try again, or use a code."))
    target, tgt = _finish(who, "webauthn")
    response = jsonify(redirect=target)
    if tgt:
        set_tgc(response, tgt)
    return response
