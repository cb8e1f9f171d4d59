"""Activation for new students: step 1 the data (album number, PESEL or date of birth, surname), step 2 the
first password. Thin: the matching, the rate limit and the challenge live in idp/core/activation.py."""
from __future__ import annotations

import time

from flask import abort, current_app, flash, redirect, render_template, session, url_for
from flask_babel import gettext as _

from idp.activation import bp
from idp.activation.forms import ActivationForm, ActivationPasswordForm
from idp.core import accounts, activation, audit, provisioning
from idp.core.clock import utcnow
from idp.http import authflow
from idp.http.security import client_ip


def _policy():
    return current_app.extensions["idp.policy"]


def _enabled():
    policy = _policy()
    if not policy.data["activation"]["enabled"]:
        abort(404)
    return policy


def _limited(state: activation.Limits, event=None):
    retry = max(1, int((state.blocked_until - utcnow()).total_seconds()) + 1)
    page = render_template("activation/limited.html", until=state.blocked_until, policy=_policy(),
                           ref=audit.reference(event) if event is not None else None)
    return page, 429, {"Retry-After": str(retry)}


def _render_start(form: ActivationForm, status: int, *, errors: list[str] | None = None, mismatch=None):
    """The data form; with a fresh proof-of-work challenge once this address has used its free attempts."""
    policy = _policy()
    state = activation.limits(policy, client_ip=client_ip())
    challenge = activation.issue_challenge(policy) if state.challenge else None
    form.challenge.data = challenge.token if challenge else ""
    form.solution.data = ""
    form.secret.data = ""  # never echo a PESEL back into the page
    return render_template("activation/start.html", form=form, policy=policy, errors=errors or [],
                           mismatch=mismatch, challenge=challenge,
                           last_migration=provisioning.last_migration() if mismatch else None,
                           next_migration=provisioning.next_migration(policy, utcnow()) if mismatch else None), status


@bp.route("", methods=["GET", "POST"])
def start():
    """Step 1: the person's data as the student records system holds them."""
    policy = _enabled()
    ip = client_ip()
    state = activation.limits(policy, client_ip=ip)
    form = ActivationForm()
    if state.blocked_until is not None:
        event = None
        if form.is_submitted():
            event = activation.record_refused(activation.RATE_LIMITED, client_ip=ip,
                                              data={"failures": state.failures})
        return _limited(state, event)
    if not form.validate_on_submit():
        return _render_start(form, 400 if form.is_submitted() else 200)
    secret = activation.read_secret(form.secret.data)
    if secret == activation.BAD_PESEL:
        form.secret.errors = [_("This is not a valid PESEL number: it has 11 digits and a correct check digit.")]
        return _render_start(form, 400)
    if secret == activation.BAD_SECRET:
        form.secret.errors = [_("Type your PESEL number (11 digits) or, if you have no PESEL, your date of birth "
                                "as YYYY-MM-DD.")]
        return _render_start(form, 400)
    nonce = None
    if state.challenge:
        check = activation.check_challenge(form.challenge.data, form.solution.data, policy)
        if not check.ok:
            activation.record_refused(activation.CHALLENGE_FAILED, client_ip=ip,
                                      data={"why": check.status, **({"challenge": check.nonce} if check.nonce else {})})
            if check.status == "missing":
                message = _("After several failed attempts your browser must complete a short check before the "
                            "form is sent. This needs JavaScript: turn it on, wait until the check finishes and "
                            "send the form again.")
            elif check.status == "expired":
                message = _("The browser check has expired. Send the form again after the new check finishes.")
            else:
                message = _("The browser check did not succeed. Send the form again after the new check "
                            "finishes.")
            return _render_start(form, 400, errors=[message])
        nonce = check.nonce
    result = activation.verify(form.album.data, secret, form.surname.data, policy, client_ip=ip, challenge=nonce)
    if result.status == activation.MISMATCH:
        return _render_start(form, 400, mismatch=audit.reference(result.event))
    if result.status == activation.ALREADY_ACTIVE:
        return render_template("activation/already_active.html", policy=policy), 409
    session[authflow.ACTIVATION_KEY] = {"account_id": result.account.id, "at": int(time.time())}
    return redirect(url_for("activation.password"))


@bp.route("/password", methods=["GET", "POST"])
def password():
    """Step 2: the first password, under the policy, with the live checklist."""
    policy = _enabled()
    account = authflow.current_person("activation")
    if account is None:
        session.pop(authflow.ACTIVATION_KEY, None)
        flash(_("The time to choose a password has run out, or the account is already active. Type your data "
                "again."), "warning")
        return redirect(url_for("activation.start"))
    form = ActivationPasswordForm()
    violations: list[str] = []
    if form.validate_on_submit():
        try:
            activation.complete(account, form.new_password.data, policy, client_ip=client_ip())
        except accounts.PasswordRejected as exc:
            violations = [str(v.message) for v in exc.violations]
        except activation.AlreadyActive:
            session.pop(authflow.ACTIVATION_KEY, None)
            return render_template("activation/already_active.html", policy=policy), 409
        else:
            session.pop(authflow.ACTIVATION_KEY, None)
            return render_template("activation/done.html", policy=policy, account=account)
    rules = accounts.evaluate_password(account, "", policy).rules
    return render_template("activation/password.html", form=form, violations=violations, policy=policy,
                           account=account, rules=rules, rules_checked=False, csrf_meta=True), \
        400 if form.is_submitted() else 200
