"""CAS endpoints: parse parameters, run the shared login flow, issue or validate tickets."""
from __future__ import annotations

import logging
from urllib.parse import urlencode, urlsplit, urlunsplit

from flask import current_app, redirect, render_template, request, session
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError

from idp.cas import bp, protocol, responses
from idp.core import audit, provisioning, registry, sso, tickets
from idp.core.clock import utcnow
from idp.extensions import csrf, db
from idp.http import authflow, second_factor
from idp.http.errors import error_page
from idp.http.security import client_ip
from idp.http.sso_cookie import clear_tgc, current_session, set_tgc
from idp.models import Account, Service, SsoSession

log = logging.getLogger("idp.cas")


def _flag(name: str) -> bool:
    """CAS flags are "set" when present; an explicit false/0 is read as not set."""
    value = request.values.get(name)
    return value is not None and value.lower() not in {"false", "0", "no"}


def _policy():
    return current_app.extensions["idp.policy"]


def _with_ticket(url: str, ticket: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&ticket={ticket}" if parts.query else f"ticket={ticket}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _unknown_service(url: str):
    event = audit.record("cas.login.unknown_service", actor="anonymous", reason="unregistered_service",
                         client_ip=client_ip(), data={"service": url[:512]})
    return error_page(_("Unknown application"),
                      _("The application that sent you here is not registered with the login service, so you "
                        "cannot be logged in to it. Check the address or contact the application's administrator."),
                      400, event=event)


def _grant(sso_session: SsoSession, svc: Service | None, service_url: str | None, *, new_login: bool,
           method: str, warned: bool = False, gateway: bool = False):
    """Last step of /login: a ticket for the service, or the "you are logged in" page.

    With `gateway` nothing may be asked or shown (CAS 3.0 §2.1.1): whatever would need a page (the second
    factor, "not provisioned", the warning) sends the person back to the service without a ticket."""
    account = db.session.get(Account, sso_session.account_id)
    back = gateway and svc is not None and service_url is not None
    if authflow.needs_second_factor(account) and second_factor.verified_at(sso_session) is None:
        # A session that never passed the second factor (started before the policy asked for it).
        if back:
            return redirect(service_url, code=302)
        return second_factor.to_verify(_resume_url(service_url, False, method))
    if svc is None or service_url is None:
        resume = authflow.pop_resume()
        if resume:  # the login was for another protocol's request (OIDC /authorize): go back to it
            if new_login:
                authflow.mark_fresh(sso_session)
            return redirect(resume, code=302)
        return render_template("login/logged_in.html", account=account, policy=_policy(),
                               apps=sso.apps_summary(sso.participants(sso_session)))
    if not provisioning.entitled(account, svc):
        ref = audit.record("cas.login.not_provisioned", account_id=account.id, reason="not_entitled",
                           client_ip=client_ip(), data={"service": svc.name, **({"gateway": True} if back else {})}).id
        if back:
            return redirect(service_url, code=302)
        last = provisioning.last_migration()
        return render_template("login/not_provisioned.html", service=svc, account=account, policy=_policy(),
                               last_migration=last, ref=f"E{ref}",
                               next_migration=provisioning.next_migration(_policy(), utcnow())), 403
    if sso_session.warn and not new_login and not warned:
        if back:
            return redirect(service_url, code=302)
        return render_template("cas/warn.html", service=svc, service_url=service_url, method=method,
                               account=account, policy=_policy())
    now = utcnow()
    issued = tickets.issue("ST", session_id=sso_session.id, account_id=account.id, service=service_url,
                           service_id=svc.id, lifetime=current_app.config["TICKET_LIFETIME"], now=now,
                           from_new_login=new_login)
    sso.add_participant(sso_session, service_id=svc.id, service_name=svc.name, service_url=service_url,
                        ticket=issued.ticket, now=now)
    db.session.commit()
    if method == "POST":
        return render_template("cas/post_redirect.html", service=svc, service_url=service_url,
                               ticket=issued.ticket, policy=_policy())
    return redirect(_with_ticket(service_url, issued.ticket), code=302)


@bp.route("/login", methods=["GET", "POST"])
def login():
    service_url = request.values.get("service") or None
    renew = _flag("renew")
    gateway = _flag("gateway") and not renew  # CAS 3.0 §2.1.1: ignore gateway when renew is set
    method = "POST" if (request.values.get("method") or "").upper() == "POST" else "GET"
    svc = None
    if service_url:
        svc = registry.match_cas_service(service_url)
        if svc is None:
            return _unknown_service(service_url)
    current = current_session()
    form = authflow.LoginForm()
    service_name = svc.name if svc else None

    if request.method == "GET" or "warn_ok" in request.form:
        fresh = authflow.take_fresh(current)
        if current is not None and (not renew or fresh):
            return _grant(current, svc, service_url, new_login=fresh, method=method,
                          warned="warn_ok" in request.form, gateway=gateway)
        if gateway and svc is not None:
            return redirect(service_url, code=302)
        form.service.data = service_url
        return authflow.render_login(form, service_name=service_name)

    if not form.validate():
        return authflow.render_login(form, service_name=service_name,
                                     error=_("Enter your login and password."), status=400)
    result = authflow.check_credentials(form, svc.name if svc else None)
    if result.password_was_correct:  # only the password's owner learns what else blocks the way
        return authflow.render_blocked(result.reason, result.account, result.event)
    if not result.ok:
        form.password.data = ""
        return authflow.render_login(form, service_name=service_name, error=_("Invalid login or password"),
                                     error_detail=authflow.lockout_hint(), status=401)
    if authflow.needs_second_factor(result.account):  # policy "everyone": before anything else
        return authflow.begin_second_factor(result.account, warn=bool(form.warn.data),
                                            resume=_resume_url(service_url, renew, method))
    if authflow.needs_required_action(result.account):
        return authflow.begin_required_action(result.account, warn=bool(form.warn.data),
                                              resume=_resume_url(service_url, renew, method))
    est = authflow.establish(result.account, warn=bool(form.warn.data), current=current)
    response = current_app.make_response(_grant(est.session, svc, service_url, new_login=True, method=method))
    set_tgc(response, est.tgt)
    return response


def _resume_url(service_url: str | None, renew: bool, method: str) -> str:
    params = {}
    if service_url:
        params["service"] = service_url
    if renew:
        params["renew"] = "true"
    if method == "POST":
        params["method"] = "POST"
    return "/cas/login" + ("?" + urlencode(params) if params else "")


@bp.errorhandler(CSRFError)
def _csrf_expired(exc):
    """A login form left open too long: show it again instead of a dead end."""
    if request.endpoint == "cas.login":
        service_url = request.values.get("service") or None
        svc = registry.match_cas_service(service_url) if service_url else None
        if service_url and svc is None:
            return _unknown_service(service_url)
        form = authflow.LoginForm(formdata=None)
        form.service.data = service_url
        return authflow.render_login(form, service_name=svc.name if svc else None,
                                     error=_("The form has expired. Please log in again."), status=400)
    return error_page(_("The form has expired"), _("Go back, reload the page and try again."), 400)


@bp.route("/logout", methods=["GET", "POST"])
@csrf.exempt
def logout():
    """End the SSO session everywhere; redirect only to a registered service (CAS 3.0 §2.3.2)."""
    current = current_session(touch=False)
    apps = []
    if current is not None:
        cfg = current_app.config
        # One line per app on the page, however many tickets (and logout messages) it got.
        apps = sso.apps_summary(sso.end(current, reason="logout", client_ip=client_ip(),
                                        timeout=cfg["CALLBACK_TIMEOUT"],
                                        allow_loopback=cfg["ALLOW_LOOPBACK_CALLBACKS"]))
    target = request.args.get("service")
    if target and registry.match_cas_service(target) is not None:
        response = redirect(target, code=302)
    else:
        if target:
            audit.record("cas.logout.unknown_service", reason="unregistered_service", client_ip=client_ip(),
                         data={"service": target[:512]})
        response = current_app.make_response(
            render_template("login/logged_out.html", apps=apps, was_logged_in=current is not None,
                            policy=_policy()))
    session.clear()
    clear_tgc(response)
    return response


def _settings() -> protocol.Settings:
    cfg = current_app.config
    return protocol.Settings(pgt_lifetime=cfg["PGT_LIFETIME"], callback_timeout=cfg["CALLBACK_TIMEOUT"],
                             allow_loopback=cfg["ALLOW_LOOPBACK_CALLBACKS"])


def _format() -> str | None:
    fmt = (request.args.get("format") or "XML").upper()
    return fmt if fmt in {"XML", "JSON"} else None


def _internal_error(exc: Exception, where: str) -> protocol.Failure:
    """An unexpected error during validation or proxying: log it, undo the half-done transaction, and
    answer INTERNAL_ERROR (CAS 3.0 §2.5.3, §2.7.3) in the protocol's own format, never an HTML page."""
    log.exception("CAS %s failed unexpectedly", where)
    try:
        db.session.rollback()
        service = request.args.get("service") or request.args.get("targetService")
        audit.record("cas.validate.failed", actor=protocol.redact(service, 254) or "unknown",
                     reason="INTERNAL_ERROR", client_ip=client_ip(),
                     data={"endpoint": request.path, "service": protocol.redact(service, 512),
                           "error": type(exc).__name__})
    except Exception:  # the database itself may be what failed
        log.exception("could not record the audit event for the failure above")
        db.session.rollback()
    return protocol.Failure("INTERNAL_ERROR", "An internal error occurred during ticket validation")


def _validate(*, proxy_tickets: bool, attributes: bool, allow_pgt: bool = True):
    fmt = _format()
    try:
        if fmt is None:
            return responses.validation(protocol.reject(
                "INVALID_REQUEST", "format must be XML or JSON", service=request.args.get("service"),
                client_ip=client_ip(), now=utcnow()), "XML")
        result = protocol.validate(
            request.args.get("ticket"), request.args.get("service"), _policy(), _settings(),
            renew=_flag("renew"), allow_proxy_tickets=proxy_tickets,
            pgt_url=request.args.get("pgtUrl") if allow_pgt else None, with_attributes=attributes,
            now=utcnow(), client_ip=client_ip())
        return responses.validation(result, fmt)
    except Exception as exc:
        return responses.validation(_internal_error(exc, request.path), fmt or "XML")


@bp.route("/validate")
def validate_v1():
    try:
        result = protocol.validate(request.args.get("ticket"), request.args.get("service"), _policy(),
                                   _settings(), renew=_flag("renew"), allow_proxy_tickets=False, pgt_url=None,
                                   with_attributes=False, now=utcnow(), client_ip=client_ip())
        return responses.v1(result)
    except Exception as exc:
        return responses.v1(_internal_error(exc, request.path))


@bp.route("/serviceValidate")
def service_validate():
    return _validate(proxy_tickets=False, attributes=False)


@bp.route("/proxyValidate")
def proxy_validate():
    return _validate(proxy_tickets=True, attributes=False)


@bp.route("/p3/serviceValidate")
def p3_service_validate():
    return _validate(proxy_tickets=False, attributes=True)


@bp.route("/p3/proxyValidate")
def p3_proxy_validate():
    return _validate(proxy_tickets=True, attributes=True)


@bp.route("/proxy")
def proxy():
    fmt = _format()
    if fmt is None:  # as at the validation endpoints
        return responses.proxy(protocol.reject("INVALID_REQUEST", "format must be XML or JSON",
                                               service=request.args.get("targetService"), client_ip=client_ip(),
                                               now=utcnow()), "XML")
    try:
        result = protocol.proxy(request.args.get("pgt"), request.args.get("targetService"), _policy(),
                                lifetime=current_app.config["TICKET_LIFETIME"], now=utcnow(),
                                client_ip=client_ip())
        return responses.proxy(result, fmt)
    except Exception as exc:
        return responses.proxy(_internal_error(exc, request.path), fmt)
