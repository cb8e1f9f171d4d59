"""Service onboarding check (admins): the registered services, and for one of them — does a URL belong to
it, exactly what a chosen person would release to it, and a self-test of the IdP's answers to it
(idp/core/onboarding.py). Registered on the helpdesk blueprint; read-only but for the audit events."""
from __future__ import annotations

from flask import abort, current_app, g, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import SelectMultipleField, StringField, widgets
from wtforms.validators import InputRequired, Length, Optional

from idp.core import accounts, audit, claims, onboarding, registry
from idp.extensions import db
from idp.helpdesk import bp
from idp.helpdesk.access import console_required
from idp.http.forms import Form
from idp.models import Service

# --- forms ---------------------------------------------------------------------------------------------------


class UrlTestForm(Form):
    url = StringField(_l("Address to test"), validators=[InputRequired(), Length(max=registry.MAX_URL)],
                      render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none",
                                 "inputmode": "url"})


class PreviewForm(Form):
    person = StringField(_l("Person"), validators=[InputRequired(), Length(max=254)],
                         render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none"})
    scopes = SelectMultipleField(_l("Scopes the application asks for"), choices=[], validate_choice=True,
                                 option_widget=widgets.CheckboxInput(), widget=widgets.ListWidget(prefix_label=False))


class SelfTestForm(Form):
    sample = StringField(_l("An address of the application (CAS: a URL it sends as service)"),
                         validators=[Optional(), Length(max=registry.MAX_URL)],
                         render_kw={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "none",
                                    "inputmode": "url"})


# --- words ---------------------------------------------------------------------------------------------------

NOTE_LABELS = {
    "too_long": _l("The address is longer than the IdP accepts."),
    "not_http": _l("This is not an absolute http(s) address."),
    "plain_http": _l("The address uses plain http: tickets and codes would travel unencrypted."),
    "fragment": _l("The address has a #fragment, which browsers never send to the application."),
    "shadowed": _l("Another service registered earlier matches this address first, so the login would be for "
                   "that service instead (see below)."),
    "other_service": _l("The address belongs to another registered service (see below)."),
    "unregistered": _l("No registered CAS service matches this address: the login page would refuse it as an "
                       "unknown application."),
    "near_miss": _l("Nearly equal to a registered address, but addresses are compared exactly: a different "
                    "letter case, trailing slash, query or fragment makes them different."),
}
MATCHED_LABELS = {
    "service_pattern": _l("matches the service pattern"),
    "redirect_uri": _l("is a registered redirect URI"),
    "post_logout_redirect_uri": _l("is a registered address to return to after logout"),
    "backchannel_logout_uri": _l("is the back-channel logout address"),
}
ENTITLED_LABELS = {
    "open": _l("The service does not require an entitlement: everyone who can log in may use it."),
    "listed": _l("The person's record from the student records system lists this service."),
    "not_listed": _l("The person's record from the student records system does not list this service."),
    "default_role": _l("The person's record lists no services; their role is entitled by default."),
    "not_default_role": _l("The person's record lists no services, and their role is not entitled by default."),
}
CHECK_LABELS = {
    "cas_sample_url": _l("The test address belongs to this service"),
    "cas_login": _l("The login page accepts the service address"),
    "cas_service_validate": _l("CAS 2.0 validation (/cas/serviceValidate) answers a made-up ticket with "
                               "INVALID_TICKET"),
    "cas_p3_service_validate": _l("CAS 3.0 validation (/cas/p3/serviceValidate) answers a made-up ticket with "
                                  "INVALID_TICKET"),
    "cas_single_logout": _l("Single logout address is reachable"),
    "oidc_discovery": _l("Discovery document (/.well-known/openid-configuration)"),
    "oidc_issuer": _l("The issuer is the IdP's public address"),
    "oidc_endpoints": _l("Every endpoint is under the issuer"),
    "oidc_client_supported": _l("The client's scopes and grant types are offered"),
    "oidc_jwks": _l("Signing keys for the client's ID token algorithm"),
    "oidc_redirect_uris": _l("Redirect URIs are well-formed"),
    "oidc_post_logout_redirect_uris": _l("Addresses after logout are well-formed"),
    "oidc_authorize": _l("An authorization request (prompt=none) is answered with login_required at the "
                         "first redirect URI"),
    "oidc_backchannel_logout": _l("Back-channel logout address is reachable (no logout token sent)"),
}
STATUS_LABELS = {"ok": _l("passed"), "failed": _l("failed"), "warning": _l("warning"), "skipped": _l("not applicable")}
ATTRIBUTE_LABELS = {"uid": _l("Canonical login"), "mail": _l("E-mail"), "university_email": _l("University e-mail"),
                    "private_email": _l("Private e-mail"), "aliases": _l("Aliases"), "album": _l("Album number"),
                    "given_name": _l("First name"), "family_name": _l("Last name"), "name": _l("Full name"),
                    "role": _l("Role")}


# --- views ---------------------------------------------------------------------------------------------------

def _policy():
    return current_app.extensions["idp.policy"]


def _service(name: str) -> Service:
    service = registry.by_name(name[:100])
    if service is None:
        abort(404)
    return service


def _preview_form(service: Service, *, submitted: bool = False) -> PreviewForm:
    """The person-preview form; offered the client's scopes (OIDC), all ticked until the admin chooses."""
    form = PreviewForm() if submitted else PreviewForm(formdata=None)
    allowed = onboarding.granted_scopes(service)
    form.scopes.choices = [(s, s) for s in allowed]
    if not submitted:
        form.scopes.data = allowed
    return form


def _page(service: Service, *, status: int = 200, **extra):
    """The service's page; the form just sent keeps what was typed, the other two start empty."""
    forms = {"url_form": extra.pop("url_form", None) or UrlTestForm(formdata=None),
             "preview_form": extra.pop("preview_form", None) or _preview_form(service),
             "test_form": extra.pop("test_form", None) or SelfTestForm(formdata=None)}
    return render_template("helpdesk/services_detail.html", policy=_policy(), service=service,
                           title=_("Service %(name)s", name=service.name), notes=NOTE_LABELS,
                           entitled_labels=ENTITLED_LABELS,
                           check_labels=CHECK_LABELS, status_labels=STATUS_LABELS,
                           attribute_labels=ATTRIBUTE_LABELS, scope_claims=claims.SCOPES,
                           **forms, **extra), status


@bp.route("/services", methods=["GET"])
@console_required("admin")
def services():
    """Every registered service, CAS and OIDC, with what matters when one is onboarded."""
    rows = list(db.session.scalars(db.select(Service).order_by(Service.protocol, Service.name)))
    return render_template("helpdesk/services.html", policy=_policy(), services=rows,
                           title=_("Registered services"))


@bp.route("/services/<name>", methods=["GET"])
@console_required("admin")
def service(name: str):
    return _page(_service(name))


@bp.route("/services/<name>/url", methods=["POST"])
@console_required("admin")
def service_url(name: str):
    """Does this address belong to the service, and which service would the IdP really take it for?"""
    svc = _service(name)
    form = UrlTestForm()
    if not form.validate_on_submit():
        return _page(svc, url_form=form, status=400)
    check = onboarding.match_url(svc, form.url.data)
    return _page(svc, url_form=form, url_check=check,
                 url_how=", ".join(str(MATCHED_LABELS[k]) for k in check.matched_as))


@bp.route("/services/<name>/preview", methods=["POST"])
@console_required("admin")
def service_preview(name: str):
    """Exactly what this person would release to the service. Recorded (an admin read someone's data)."""
    svc = _service(name)
    form = _preview_form(svc, submitted=True)
    if not form.validate_on_submit():
        return _page(svc, preview_form=form, status=400)
    account = accounts.find_any(form.person.data)
    if account is None:
        form.person.errors = [_("Nobody has this album number or address.")]
        return _page(svc, preview_form=form, status=404)
    result = onboarding.preview(svc, account, _policy(), scopes=form.scopes.data if svc.protocol == "oidc" else None)
    actor = g.staff.actor
    audit.record("helpdesk.service_preview", actor=actor.name, account_id=account.id, client_ip=actor.client_ip,
                 data={"service": svc.name, "via": actor.via, "scopes": result.scopes or None})
    return _page(svc, preview_form=form, preview=result)


@bp.route("/services/<name>/self-test", methods=["POST"])
@console_required("admin")
def service_self_test(name: str):
    """Ask the IdP, over HTTP at its public address, what the application would ask it."""
    svc = _service(name)
    form = SelfTestForm()
    if not form.validate_on_submit():
        return _page(svc, test_form=form, status=400)
    cfg = current_app.config
    # No transaction stays open while the IdP is asked over HTTP (its answers write audit events).
    db.session.commit()
    checks = onboarding.self_test(svc, cfg["BASE_URL"], sample=form.sample.data or None,
                                  allow_loopback=cfg["ALLOW_LOOPBACK_CALLBACKS"])
    actor = g.staff.actor
    audit.record("helpdesk.service_self_test", actor=actor.name, client_ip=actor.client_ip,
                 reason=None if onboarding.passed(checks) else "failed",
                 data={"service": svc.name, "via": actor.via, "checks": {c.name: c.status for c in checks}})
    return _page(svc, test_form=form, checks=checks, passed=onboarding.passed(checks),
                 sample=onboarding.sample_url(svc, form.sample.data))
