from __future__ import annotations

from flask import current_app, redirect, render_template, url_for
from flask_babel import gettext as _

from idp.account import bp
from idp.account.forms import ChangeOwnPasswordForm
from idp.core import accounts, audit
from idp.extensions import db
from idp.http.security import client_ip
from idp.http.sso_cookie import current_session
from idp.models import Account


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    """A logged-in person changes their password: current one, then the new one twice. Every other
    session of the account ends and every refresh token is revoked."""
    current = current_session()
    if current is None:
        return redirect(url_for("cas.login", service=None))
    account = db.session.get(Account, current.account_id)
    policy = current_app.extensions["idp.policy"]
    form = ChangeOwnPasswordForm()
    violations: list[str] = []
    done = False
    if form.validate_on_submit():
        if not accounts.verify_password(account, form.current_password.data):
            audit.record("password.change.failed", account_id=account.id, reason="wrong_current_password",
                         client_ip=client_ip())
            form.current_password.errors = [_("The current password is not correct.")]
        else:
            try:
                accounts.set_password(account, form.new_password.data, policy, actor="self", forbid_current=True,
                                      keep_session=current)
                done = True
            except accounts.PasswordRejected as exc:
                violations = [str(v.message) for v in exc.violations]
    failed = form.is_submitted() and not done
    return render_template("account/password.html", form=form, violations=violations, done=done, policy=policy,
                           account=account, title=_("Change password")), 400 if failed else 200
