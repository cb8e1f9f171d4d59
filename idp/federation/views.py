"""Upstream login: start, callback, and the "already exists" / "not recognized" pages."""
from __future__ import annotations

import time
from urllib.parse import urlencode

from flask import abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from idp.core import accounts, audit, authn, linking, mail, provisioning
from idp.core.clock import utcnow
from idp.extensions import db
from idp.federation import bp, client
from idp.federation.forms import ConfirmLinkForm, LinkByMailForm, LinkByPasswordForm
from idp.http import authflow
from idp.http.errors import error_page
from idp.http.security import client_ip
from idp.http.sso_cookie import current_session, set_tgc
from idp.models import Account

#: The flask-session keys: where to go back after an upstream login, and the link waiting for proof.
_FLOW = "idp_upstream"
_LINK = "idp_link"
FLOW_SECONDS = 900


def _policy():
    return current_app.extensions["idp.policy"]


def _lang() -> str:
    return authflow.lang()


def _callback_url(name: str) -> str:
    return current_app.config["BASE_URL"] + url_for("federation.callback", name=name)


def _resume_url(service: str | None, renew: bool) -> str:
    params = {k: v for k, v in (("service", service), ("renew", "true" if renew else None)) if v}
    return url_for("cas.login") + ("?" + urlencode(params) if params else "")


def _provider_or_404(name: str) -> dict:
    entry = linking.upstream(name)
    if entry is None:
        abort(404)
    return entry


def _failed(name: str, exc: client.UpstreamError):
    event = audit.record("upstream.login.failed", reason=exc.reason[:64], client_ip=client_ip(),
                         data={"provider": name, "detail": exc.detail[:300]})
    label = linking.label(name)
    if exc.reason == "access_denied":
        return error_page(_("Login with %(provider)s was cancelled", provider=label),
                          _("You did not agree to log in with %(provider)s. Log in with your password instead, "
                            "or try again.", provider=label), 403, event=event)
    return error_page(_("Login with %(provider)s did not work", provider=label),
                      _("%(provider)s did not confirm who you are, so you are not logged in. Try again in a "
                        "moment, or log in with your password.", provider=label), 502, event=event)


@bp.route("/<name>/start")
def start(name: str):
    """Send the browser to the provider; remember where the login was going (a CAS service, or an OIDC
    request waiting in the session)."""
    _provider_or_404(name)
    renew = (request.args.get("renew") or "").lower() in {"1", "true", "yes"}
    session[_FLOW] = {"name": name, "resume": _resume_url(request.args.get("service") or None, renew),
                      "at": int(time.time())}
    try:
        return client.authorize_redirect(name, _callback_url(name),
                                         prompt="login" if renew else None)
    except client.UpstreamError as exc:
        return _failed(name, exc)


def _flow(name: str) -> dict | None:
    flow = session.get(_FLOW)
    if not flow or flow.get("name") != name or time.time() - flow.get("at", 0) > FLOW_SECONDS:
        return None
    return flow


def _log_in(account: Account, *, method: str, resume: str):
    """Start the SSO session for a person an upstream provider (and a link) vouched for."""
    if authflow.needs_second_factor(account):  # policy "everyone": the upstream login is the first factor
        audit.record("login.succeeded", account_id=account.id, client_ip=client_ip(),
                     data={"method": "upstream", "provider": method, "second_factor": "pending"})
        return authflow.begin_second_factor(account, warn=False, resume=resume)
    if authflow.needs_required_action(account):
        return authflow.begin_required_action(account, warn=False, resume=resume)
    est = authflow.establish(account, warn=False, current=current_session())
    authflow.mark_fresh(est.session)
    audit.record("login.succeeded", account_id=account.id, client_ip=client_ip(),
                 data={"method": "upstream", "provider": method})
    response = redirect(resume)
    set_tgc(response, est.tgt)
    return response


def _left_page(account: Account, provider: str):
    event = audit.record("upstream.login.failed", account_id=account.id, reason="account_left",
                         client_ip=client_ip(), data={"provider": provider})
    return authflow.render_blocked("account_left", account, event)


@bp.route("/<name>/callback")
def callback(name: str):
    _provider_or_404(name)
    flow = _flow(name)
    if flow is None:
        event = audit.record("upstream.login.failed", reason="no_flow", client_ip=client_ip(),
                             data={"provider": name})
        return error_page(_("The login took too long"),
                          _("Start again from the login page."), 400, event=event)
    try:
        claims = client.finish(name)
    except client.UpstreamError as exc:
        return _failed(name, exc)
    result = linking.resolve(claims, _policy(), client_ip=client_ip())
    if result.kind == "linked":
        session.pop(_FLOW, None)
        if accounts.has_left(result.account, _policy(), utcnow()):
            return _left_page(result.account, name)
        return _log_in(result.account, method=name, resume=flow["resume"])
    if result.kind == "exists":
        session[_LINK] = result.pending.id
        return redirect(url_for("federation.link"))
    session.pop(_FLOW, None)
    return render_template("federation/not_recognized.html", provider=linking.label(name), email=claims.email,
                           verified=result.pending.email is not None, ref=audit.reference(result.event),
                           policy=_policy(), last_migration=provisioning.last_migration(),
                           next_migration=provisioning.next_migration(_policy(), utcnow())), 403


def _waiting_or_page():
    pending = linking.waiting_link(session.get(_LINK))
    if pending is None:
        session.pop(_LINK, None)
    return pending


@bp.route("/link", methods=["GET", "POST"])
def link():
    """ "Użytkownik … już istnieje": prove the existing account (its password or a mailed link) to link."""
    pending = _waiting_or_page()
    if pending is None:
        return error_page(_("Nothing to link"),
                          _("This page has expired or the link was already made. Log in again."), 410,
                          record=False)
    account = db.session.get(Account, pending.account_id)
    by_password = LinkByPasswordForm(prefix="pw")
    by_mail = LinkByMailForm(prefix="mail")
    error, status = None, None
    left = linking.proof_attempts_left(pending)
    if by_password.submit.data and by_password.validate_on_submit():
        if authn.is_locked(account, utcnow()):
            error = _("Password logins to this account are locked for now. Use the confirmation link "
                      "instead.")
        elif left <= 0:
            error = _("Too many wrong passwords. Use the confirmation link instead.")
        elif (wait := authflow.password_post_limited()) is not None:
            error, status = authflow.wait_message(wait, rate_limited=True), 429
        else:
            try:
                proved = linking.prove_with_password(pending, by_password.password.data, _policy(),
                                                    client_ip=client_ip())
            except linking.LinkError:
                return _taken(pending)
            except authn.Throttled as refused:
                proved, error, status = None, authflow.wait_message(refused.retry_after), 429
            if proved:
                session.pop(_LINK, None)
                flow = session.pop(_FLOW, None) or {}
                return _log_in(account, method=pending.provider,
                               resume=flow.get("resume") or url_for("cas.login"))
            if error is None:
                left = linking.proof_attempts_left(pending)
                error = _("This is not the password of that account.")
    elif by_mail.send.data and by_mail.validate_on_submit():
        masked = linking.send_confirmation(pending, _policy(), lang=_lang(), client_ip=client_ip())
        return render_template("federation/sent.html", masked=masked, provider=linking.label(pending.provider),
                               policy=_policy())
    status = status or (400 if error or (request.method == "POST") else 409)
    return render_template("federation/exists.html", pending=pending, provider=linking.label(pending.provider),
                           by_password=by_password, by_mail=by_mail, error=error, attempts_left=left,
                           policy=_policy(), masked=[mail.mask(a) for a in linking.confirmation_addresses(account)]), status


def _taken(pending):
    """The upstream identity was linked to another account meanwhile (a helpdesk action, a second tab)."""
    event = audit.record("upstream.link.failed", account_id=pending.account_id, reason="linked_elsewhere",
                         client_ip=client_ip(), data={"provider": pending.provider})
    return error_page(_("This identity is already linked"),
                      _("The %(provider)s identity is already linked to another university account. Contact the "
                        "helpdesk.", provider=linking.label(pending.provider)), 409, event=event)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str):
    """The mailed confirmation. GET only shows what will be linked (mail scanners open links); POST links."""
    pending = linking.pending_from_token(token, _policy())
    if pending is None:
        audit.record("upstream.link.failed", reason="link_expired", client_ip=client_ip())
        return error_page(_("This link no longer works"),
                          _("It has expired, was already used, or a newer one was sent. Log in with "
                            "%(what)s again to get a new one.", what=_("your upstream account")), 410,
                          record=False)
    form = ConfirmLinkForm()
    if form.validate_on_submit():
        try:
            linking.confirm_by_mail(pending, client_ip=client_ip())
        except linking.LinkError:
            return _taken(pending)
        return render_template("federation/linked.html", provider=linking.label(pending.provider),
                               email=pending.email, policy=_policy())
    account = db.session.get(Account, pending.account_id)
    return render_template("federation/confirm.html", form=form, provider=linking.label(pending.provider),
                           email=pending.email, account=account, policy=_policy())
