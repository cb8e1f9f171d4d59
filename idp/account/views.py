from __future__ import annotations

from functools import wraps

from flask import abort, current_app, flash, redirect, render_template, session, url_for
from flask_babel import gettext as _

from idp.account import bp
from idp.account.forms import ActionForm, ChangeOwnPasswordForm
from idp.core import accounts, audit, authn, linking, sso
from idp.core.clock import utcnow
from idp.core.policy import Rule
from idp.extensions import db
from idp.http import authflow
from idp.http.event_words import KIND_LABELS, LINKED_BY_LABELS, ROLE_LABELS, recent_logins
from idp.http.security import client_ip
from idp.http.sso_cookie import clear_tgc, current_session
from idp.models import Account, SsoSession


@bp.route("/password", methods=["GET", "POST"])
def change_password():
    """A logged-in person changes their password: current one, then the new one twice. Every other
    session of the account ends and every refresh token is revoked."""
    current = current_session()
    if current is None:
        return _to_login(url_for("account.change_password"))
    account = db.session.get(Account, current.account_id)
    policy = current_app.extensions["idp.policy"]
    form = ChangeOwnPasswordForm()
    violations: list[str] = []
    failed_rules: set[str] | None = None  # codes of the rules the submitted password broke
    done = False
    status = None
    if form.validate_on_submit():
        # The current password gets the login form's brute-force protection: a stolen session must not
        # become a way to guess the password without delays or lockout.
        right = False
        if (wait := authflow.password_post_limited()) is not None:
            form.current_password.errors = [authflow.wait_message(wait, rate_limited=True)]
            status = 429
        else:
            try:
                right = authn.verify_known(account, form.current_password.data, policy, client_ip=client_ip())
            except authn.Locked as locked:  # the owner's own page: the lock may be named, never the password
                audit.record("password.change.failed", account_id=account.id, reason="locked_unchecked",
                             client_ip=client_ip())
                form.current_password.errors = [
                    _("Your account is locked until %(when)s after too many wrong passwords: your current "
                      "password cannot be checked until then. A new password set through the reset link lifts "
                      "the lock.", when=authflow.format_moment(locked.until)) if locked.until else
                    _("Your account is locked after repeated series of wrong passwords. It stays locked until the "
                      "helpdesk unlocks it.")]
                status = 403
            except authn.Throttled as refused:
                audit.record("password.change.failed", account_id=account.id, reason=refused.reason,
                             client_ip=client_ip(), data={"retry_after": refused.retry_after})
                form.current_password.errors = [authflow.wait_message(refused.retry_after)]
                status = 429
            else:
                if not right:
                    audit.record("password.change.failed", account_id=account.id, reason="wrong_current_password",
                                 client_ip=client_ip())
                    form.current_password.errors = [_("The current password is not correct.")]
        if right:
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
                           title=_("Change password")), status or (400 if failed else 200)


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


# --- the overview: identifiers, links, sessions, recent logins ---------------------------------------

def _logged_in():
    """(SSO session, account) of this browser, or None."""
    current = current_session()
    if current is None:
        return None
    account = db.session.get(Account, current.account_id)
    return (current, account) if account is not None else None


def _to_login(back: str | None = None):
    """Send the person to the login page; after it they come back (to the overview by default)."""
    authflow.remember_resume(back or url_for("account.overview"))
    return redirect(url_for("cas.login", service=None))


def _own_account_action(view):
    """A POST on the logged-in person's own account: logged in (else the login page), CSRF checked;
    the view gets (current session, account)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        who = _logged_in()
        if who is None:
            return _to_login()
        if not ActionForm().validate_on_submit():
            abort(400)
        return view(*who, *args, **kwargs)
    return wrapper


@bp.route("", methods=["GET"])
def overview():
    """The logged-in person's own account: identifiers, linked identities, sessions, recent logins."""
    who = _logged_in()
    if who is None:
        return _to_login()
    current, account = who
    policy = current_app.extensions["idp.policy"]
    login_kinds = set(policy.data["login"]["identifiers"])
    idents = [{"value": i.value, "kind": str(KIND_LABELS.get(i.kind, i.kind)), "logs_in": i.kind in login_kinds}
              for i in account.identifiers if i.kind in ("university_email", "private_email", "alias")]
    links = [{"id": u.id, "provider": linking.label(u.provider), "subject": u.subject, "email": u.email,
              "linked_by": str(LINKED_BY_LABELS.get(u.linked_by, u.linked_by)), "linked_at": u.linked_at,
              "last_login_at": u.last_login_at} for u in linking.identities_of(account)]
    sessions = [{"sid": s.sid, "auth_time": s.auth_time, "last_used_at": s.last_used_at, "client_ip": s.client_ip,
                 "apps": sso.apps_summary(sso.participants(s)), "current": s.id == current.id}
                for s in sso.sessions_of(account, policy, utcnow())]
    return render_template("account/overview.html", account=account, policy=policy, form=ActionForm(),
                           identifiers=idents, album_logs_in="album" in login_kinds,
                           role=str(ROLE_LABELS.get(account.role, account.role)), links=links,
                           sessions=sessions, others=sum(1 for s in sessions if not s["current"]),
                           logins=recent_logins(account), title=_("Your account"))


@bp.route("/identities/<int:identity_id>/unlink", methods=["POST"])
@_own_account_action
def unlink_identity(_current: SsoSession, account: Account, identity_id: int):
    try:
        done = linking.unlink(account, identity_id, actor="self", client_ip=client_ip())
    except linking.LastWayToLogIn as exc:
        flash(str(exc), "error")
        return redirect(url_for("account.overview"))
    if not done:
        abort(404)
    flash(_("The identity was unlinked. It can no longer be used to log in to your account."), "success")
    return redirect(url_for("account.overview"))


def _end(target: SsoSession) -> list[sso.AppStatus]:
    return sso.apps_summary(sso.end(target, reason="ended_by_user", actor="self", client_ip=client_ip()))


@bp.route("/sessions/<sid>/end", methods=["POST"])
@_own_account_action
def end_session(current: SsoSession, account: Account, sid: str):
    """Log out one session of the person's own (its apps are told, as at /cas/logout). Ending the
    session of this very browser logs it out here too."""
    target = db.session.scalar(db.select(SsoSession).where(SsoSession.sid == sid[:64]))
    if target is None or target.account_id != account.id or target.ended_at is not None:
        abort(404)  # not theirs, or already over: the same answer
    if target.id == current.id:
        apps = _end(target)
        response = current_app.make_response(render_template(
            "login/logged_out.html", apps=apps, was_logged_in=True, policy=current_app.extensions["idp.policy"]))
        session.clear()
        clear_tgc(response)
        return response
    _end(target)
    flash(_("That session was logged out."), "success")
    return redirect(url_for("account.overview"))


@bp.route("/sessions/end-others", methods=["POST"])
@_own_account_action
def end_other_sessions(current: SsoSession, account: Account):
    """Log out every session of the person except this browser's."""
    policy = current_app.extensions["idp.policy"]
    ended = 0
    for s in sso.sessions_of(account, policy, utcnow()):
        if s.id != current.id:
            _end(s)
            ended += 1
    flash(_("Every other session was logged out.") if ended else _("There were no other sessions."), "success")
    return redirect(url_for("account.overview"))
