from __future__ import annotations

from flask import current_app, redirect, render_template, url_for
from flask_babel import gettext as _

from idp.account import bp
from idp.account.forms import ChangeOwnPasswordForm
from idp.core import accounts, audit
from idp.core.policy import Rule
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
    failed_rules: set[str] | None = None  # codes of the rules the submitted password broke
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
                failed_rules = {v.code for v in exc.violations}
    failed = form.is_submitted() and not done
    rules, checked = checklist(account, policy, failed_rules)
    return render_template("account/password.html", form=form, violations=violations, done=done, policy=policy,
                           account=account, rules=rules, rules_checked=checked,
                           title=_("Change password")), 400 if failed else 200


def checklist(account: Account, policy, failed: set[str] | None) -> tuple[list[Rule], bool]:
    """The policy's rules for the checklist, from the engine itself (labels in the reader's language).

    Nothing typed yet (`failed` None): the rules unjudged. After a refused submission: each rule marked by
    whether the engine reported it broken, so the list reads right without JavaScript too. An over-long
    password is refused before the other rules run: they stay unjudged then.
    """
    rules = accounts.evaluate_password(account, "", policy).rules
    if failed is None or "too_long" in failed:
        return rules, False
    # history and same-as-current are judged only when every other rule passed
    deferred = {"reused", "same_as_current"}
    others_failed = bool(set(failed) - deferred)
    return [Rule(r.code, r.label, None if r.code in deferred and others_failed else r.code not in failed)
            for r in rules], True
