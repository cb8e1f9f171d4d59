from __future__ import annotations

import hashlib
import hmac
import time

from flask import current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from idp.core import accounts, assisted_recovery, recovery
from idp.core.policy import Verdict
from idp.extensions import limiter
from idp.http import authflow
from idp.http.security import client_ip
from idp.models import Account
from idp.recovery import bp
from idp.recovery.forms import CodeForm, CodePasswordForm, ResetForm, ResetRequestForm

#: The live check runs zxcvbn (and, last, argon2 history comparisons): bounded per client address.
CHECK_LIMIT = "30 per minute;300 per hour"
#: Reset requests: per client address, and per identifier (a mailbox must not be flooded).
REQUEST_LIMIT_IP = "10 per minute;50 per hour"
REQUEST_LIMIT_IDENTIFIER = "3 per 15 minutes;10 per day"
_ANSWERED = "idp_reset_answered"


def _policy():
    return current_app.extensions["idp.policy"]


def _identifier_key() -> str:
    """The per-identifier limit's key: the typed identifier normalised as the lookup normalises it and
    hashed with the instance key (like idp.core.throttle.subject), so Redis never holds what someone typed —
    an e-mail address, or a PESEL typed where the login goes."""
    typed = accounts.normalise_identifier(request.form.get("identifier") or "")[:254]
    secret = str(current_app.config["SECRET_KEY"]).encode()
    return "reset:" + hmac.new(secret, b"reset-limit:" + typed.encode(), hashlib.sha256).hexdigest()[:40]



def _flash_changed(account: Account) -> None:
    """The new password is set. A permanent lock outlives it (only the helpdesk lifts it): the person has
    just proved the mailbox, so they are told here rather than meeting "Invalid login or password"."""
    if account.locked_permanently:
        flash(_("Your password has been changed, but your account stays locked until the helpdesk unlocks it "
                "after repeated series of wrong passwords. Contact the helpdesk before logging in."), "error")
    else:
        flash(_("Your password has been changed. Log in with the new password."), "success")

@bp.route("/reset", methods=["GET", "POST"])
@limiter.limit(REQUEST_LIMIT_IP, methods=["POST"])
@limiter.limit(REQUEST_LIMIT_IDENTIFIER, key_func=_identifier_key, methods=["POST"])
def reset():
    """Type your address → a link to set a new password goes to the address(es) the policy names."""
    form = ResetRequestForm()
    if form.validate_on_submit():
        outcome = recovery.request_reset(form.identifier.data, _policy(), lang=authflow.lang(), client_ip=client_ip())
        if outcome.kind != "sent":
            if _policy().data["reset"]["reveal_unknown_identifier"]:
                if outcome.kind == "no_address":  # the person exists: "no user was found" would be untrue
                    form.identifier.errors = [_("The link cannot be sent: this account has no address to send it "
                                                "to. Contact the helpdesk.")]
                    return render_template("recovery/request.html", form=form, policy=_policy()), 422
                form.identifier.errors = [_("No user was found with this e-mail address.")]
                return render_template("recovery/request.html", form=form, policy=_policy()), 404
            outcome = recovery.neutral_outcome(form.identifier.data)
        return render_template("recovery/sent.html", outcome=outcome, policy=_policy(),
                               minutes=_policy().data["reset"]["link_lifetime_minutes"])
    return render_template("recovery/request.html", form=form, policy=_policy()), 400 if form.is_submitted() else 200


@bp.route("/reset/<token>", methods=["GET", "POST"])
def link(token: str):
    """The link page: security question (PESEL or date of birth), then the new password twice."""
    policy = _policy()
    state = recovery.check_link(token, policy)
    if state.status != "ok":
        return render_template("recovery/link_error.html", status=state.status, policy=policy), 410
    account = state.account
    session[authflow.RESET_KEY] = state.request.id
    answered = session.get(_ANSWERED) == state.request.id
    ask = policy.data["reset"]["security_question"] == "pesel" and not answered
    form = ResetForm()
    errors: list[str] = []
    violations: list[str] = []
    if form.validate_on_submit():
        given = (form.answer.data or "").strip()
        if ask:
            outcome = recovery.answer(state, given, policy, client_ip=client_ip())
            if outcome == recovery.MALFORMED:
                errors.append(_("This is not a valid PESEL number: it has 11 digits and a correct check digit.")
                              if recovery.asks_pesel(account) else
                              _("Enter the date of birth as YYYY-MM-DD or DD.MM.YYYY."))
            elif outcome == recovery.KILLED:
                return render_template("recovery/link_error.html", status="killed", policy=policy), 410
            elif outcome == recovery.GONE:
                return _gone(token)
            elif outcome == recovery.WRONG:
                errors.append(_("The answer to the security question is not correct."))
            else:
                session[_ANSWERED] = state.request.id
                ask = False
        if not errors:
            try:
                recovery.complete(state, form.new_password.data, policy, lang=authflow.lang(), client_ip=client_ip(),
                                  given_pesel=given if recovery.asks_pesel(account) else "")
            except accounts.PasswordRejected as exc:
                violations = [str(v.message) for v in exc.violations]
            except recovery.LinkGone:
                return _gone(token)
            else:
                session.pop(_ANSWERED, None)
                session.pop(authflow.RESET_KEY, None)
                _flash_changed(account)
                return redirect(url_for("cas.login"))
    verdict_rules = accounts.evaluate_password(account, "", policy).rules
    return render_template("recovery/link.html", form=form, ask=ask, pesel=recovery.asks_pesel(account),
                           errors=errors, violations=violations, policy=policy, account=account, rules=verdict_rules,
                           rules_checked=False, csrf_meta=True), 400 if form.is_submitted() else 200


def _gone(token: str):
    """The link stopped working while this request was being handled: its own page, saying why now."""
    status = recovery.check_link(token, _policy()).status
    return render_template("recovery/link_error.html", status="superseded" if status == "ok" else status,
                           policy=_policy()), 410


def verdict_json(verdict: Verdict) -> dict:
    return {"ok": verdict.ok, "score": verdict.score, "strength": verdict.strength,
            "rules": [{"code": r.code, "label": r.label, "ok": r.ok} for r in verdict.rules],
            "violations": [str(v.message) for v in verdict.violations]}


@bp.route("/check", methods=["POST"])
@limiter.limit(CHECK_LIMIT)
def check():
    """The server's own verdict on a candidate password, for the checklist and meter on password forms:
    the page never calls "strong" what the server would refuse."""
    purpose = request.args.get("for", "account")
    account = _code_person() if purpose == "code" else authflow.current_person(purpose)
    if account is None:
        return jsonify({"error": "no_person"}), 401
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        data = request.form
    password = str(data.get("password", ""))
    verdict = accounts.evaluate_password(account, password, current_app.extensions["idp.policy"], live=True)
    return jsonify(verdict_json(verdict))


# --- assisted recovery: a one-time code from the dean's office (idp/core/assisted_recovery.py) ----------

#: Typing a login and a code: per client address (the core also counts wrong codes per code and address).
CODE_LIMIT_IP = "10 per minute;30 per hour"
#: Setting the password with a redeemed code (argon2 history checks): per client address.
CODE_PASSWORD_LIMIT = "10 per minute;60 per hour"
#: The code this browser has just redeemed, and since when; the person has CODE_SECONDS to set the password.
_CODE_KEY = "idp_recovery_code"
CODE_SECONDS = 900


def _code_record():
    """The redeemed code of this browser, while it still works; None otherwise."""
    pending = session.get(_CODE_KEY) or {}
    if time.time() - pending.get("at", 0) > CODE_SECONDS:
        return None
    return assisted_recovery.usable(pending.get("id") or 0)


def _code_person():
    """Whose password the code page is about (the live checklist's `for=code`)."""
    from idp.extensions import db
    from idp.models import Account

    record = _code_record()
    return db.session.get(Account, record.account_id) if record else None


def _refusal_words(refusal: assisted_recovery.Refusal) -> str:
    if refusal.reason == assisted_recovery.EXPIRED:
        return _("This recovery code has expired. Ask the dean's office for a new one.")
    if refusal.reason == assisted_recovery.USED:
        return _("This recovery code has already been used. If you did not set a password with it, contact the "
                 "dean's office at once.")
    if refusal.reason == assisted_recovery.ENDED:
        return _("This recovery code no longer works: a newer code was issued, or a wrong code was typed too many "
                 "times. Ask the dean's office for a new one.")
    if refusal.reason == assisted_recovery.THROTTLED:
        return _("Too many attempts from your network. Wait a quarter of an hour and try again.")
    # Unknown login, no code for it, or a wrong code: one answer, so nobody learns which logins exist.
    return _("The login or the recovery code is not correct. Check both and try again; after several wrong tries "
             "the code stops working and the dean's office has to issue a new one.")


_REFUSAL_STATUS = {assisted_recovery.EXPIRED: 410, assisted_recovery.USED: 410, assisted_recovery.ENDED: 410,
                   assisted_recovery.THROTTLED: 429}


@bp.route("/code", methods=["GET", "POST"])
@limiter.limit(CODE_LIMIT_IP, methods=["POST"])
def code():
    """Type your login and the recovery code from the dean's office → set a new password yourself."""
    form = CodeForm()
    errors: list[str] = []
    status = 400 if form.is_submitted() else 200
    if form.validate_on_submit():
        if not assisted_recovery.well_formed(form.code.data):
            form.code.errors = [_("A recovery code has 12 letters and digits, for example 7KQ4-M2XD-9HBT.")]
        else:
            outcome = assisted_recovery.redeem(form.identifier.data, form.code.data, client_ip=client_ip())
            if isinstance(outcome, assisted_recovery.Refusal):
                errors.append(_refusal_words(outcome))
                status = _REFUSAL_STATUS.get(outcome.reason, 400)
            else:
                session.pop(_ANSWERED, None)
                session[_CODE_KEY] = {"id": outcome.id, "at": int(time.time())}
                return redirect(url_for("recovery.code_password"))
    form.code.data = ""  # a code is never echoed back into the page
    return render_template("recovery/code.html", form=form, errors=errors, policy=_policy()), status


@bp.route("/code/password", methods=["GET", "POST"])
@limiter.limit(CODE_PASSWORD_LIMIT, methods=["POST"])
def code_password():
    """The new password, twice, with the live checklist: the code was checked on the previous page."""
    policy = _policy()
    record = _code_record()
    if record is None:
        session.pop(_CODE_KEY, None)
        flash(_("Type your login and the recovery code first. A code works only once and only for a limited "
                "time."), "error")
        return redirect(url_for("recovery.code"))
    account = _code_person()
    form = CodePasswordForm()
    violations: list[str] = []
    if form.validate_on_submit():
        try:
            assisted_recovery.complete(record, form.new_password.data, policy, client_ip=client_ip(),
                                       lang=authflow.lang())
        except accounts.PasswordRejected as exc:
            violations = [str(v.message) for v in exc.violations]
        except assisted_recovery.CodeGone:
            session.pop(_CODE_KEY, None)
            flash(_("The recovery code stopped working before the password was set. Ask the dean's office for a "
                    "new one."), "error")
            return redirect(url_for("recovery.code"))
        else:
            session.pop(_CODE_KEY, None)
            _flash_changed(account)
            return redirect(url_for("cas.login"))
    rules = accounts.evaluate_password(account, "", policy).rules
    return render_template("recovery/code_password.html", form=form, violations=violations, policy=policy,
                           account=account, rules=rules, rules_checked=False, csrf_meta=True), \
        400 if form.is_submitted() else 200
