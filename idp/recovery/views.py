from __future__ import annotations

from flask import current_app, flash, jsonify, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from idp.core import accounts, recovery
from idp.core.policy import Verdict
from idp.extensions import limiter
from idp.http import authflow
from idp.http.security import client_ip
from idp.recovery import bp
from idp.recovery.forms import ResetForm, ResetRequestForm

#: The live check runs zxcvbn (and, last, argon2 history comparisons): bounded per client address.
CHECK_LIMIT = "30 per minute;300 per hour"
#: Reset requests: per client address, and per identifier (a mailbox must not be flooded).
REQUEST_LIMIT_IP = "10 per minute;50 per hour"
REQUEST_LIMIT_IDENTIFIER = "3 per 15 minutes;10 per day"
_ANSWERED = "idp_reset_answered"


def _policy():
    return current_app.extensions["idp.policy"]


def _identifier_key() -> str:
    return "reset:" + (request.form.get("identifier") or "").strip().lower()[:254]


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
                flash(_("Your password has been changed. Log in with the new password."), "success")
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
    account = authflow.current_person(request.args.get("for", "account"))
    if account is None:
        return jsonify({"error": "no_person"}), 401
    data = request.get_json(silent=True) or request.form
    password = str(data.get("password", ""))
    verdict = accounts.evaluate_password(account, password, current_app.extensions["idp.policy"])
    return jsonify(verdict_json(verdict))
