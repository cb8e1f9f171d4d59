from __future__ import annotations

from flask import current_app, redirect, render_template, url_for
from flask_babel import gettext as _

from idp.account.views import checklist
from idp.core import accounts, sso
from idp.extensions import db
from idp.http import authflow
from idp.http.sso_cookie import current_session, set_tgc
from idp.login import bp
from idp.login.forms import ChangePasswordForm
from idp.models import Account


@bp.route("/")
def index():
    current = current_session()
    if current is None:
        return redirect(url_for("cas.login"))
    account = db.session.get(Account, current.account_id)
    return render_template("login/logged_in.html", account=account, policy=current_app.extensions["idp.policy"],
                           apps=sso.apps_summary(sso.participants(current)))


@bp.route("/login/change-password", methods=["GET", "POST"])
def change_password():
    """Required action: a temporary password is replaced before any app gets a ticket."""
    pending = authflow.pending_required_action()
    if not pending:
        authflow.finish_required_action()
        return redirect(url_for("cas.login"))
    account = db.session.get(Account, pending["account_id"])
    policy = current_app.extensions["idp.policy"]
    form = ChangePasswordForm()
    violations = []
    failed_rules: set[str] | None = None
    if form.validate_on_submit():
        try:
            accounts.set_password(account, form.new_password.data, policy, temporary=False, actor="self",
                                  forbid_current=True)
        except accounts.PasswordRejected as exc:
            violations = [str(v.message) for v in exc.violations]
            failed_rules = {v.code for v in exc.violations}
        else:
            est = authflow.establish(account, warn=pending.get("warn", False), current=current_session())
            authflow.mark_fresh(est.session)
            authflow.carry_second_factor(pending, est.session)
            response = redirect(authflow.finish_required_action())
            set_tgc(response, est.tgt)
            return response
    failed = bool(violations) or (form.is_submitted() and bool(form.errors))
    rules, checked = checklist(account, policy, failed_rules)
    # Why the person is here: a temporary password (import, helpdesk, --temporary) or an expired one.
    reason = "temporary" if account.password_temporary else "expired"
    return render_template("login/change_password.html", form=form, violations=violations, policy=policy,
                           account=account, rules=rules, rules_checked=checked, reason=reason,
                           title=_("Set a new password")), 400 if failed else 200
