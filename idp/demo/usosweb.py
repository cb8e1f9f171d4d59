""""USOSweb", the demo's CAS client: what a USOS deployment's web front end does with the IdP.

/login sends the browser to the IdP's /cas/login?service=<this app's /login>; coming back with
?ticket=ST-…, it validates the ticket server-side at /cas/p3/serviceValidate (CAS 3.0 §2.5, §2.7: the
response carries the user and the registered attributes) and keeps an app session. /logout ends the app
session and sends the browser to /cas/logout?service=<this app>, which ends the single-sign-on session
everywhere. POST /slo receives the IdP's back-channel logoutRequest (CAS 3.0 Appendix C) and ends the app
session whose ticket it names, so logging out in e-learning logs the person out here too.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlencode

import requests
from flask import Flask, redirect, request, session
from flask_babel import gettext as _

from idp.demo.web import SessionStore, make_app, page

CAS_NS = {"cas": "http://www.yale.edu/tp/cas"}
SAMLP_NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol"}
#: Seconds for the ticket validation call.
TIMEOUT = 10
NAME = "USOSweb"
COLOUR = "#00468c"


@dataclass
class Validation:
    """What the IdP said about a ticket: the user and attributes, or a CAS error code and message."""
    user: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    error_code: str | None = None
    error: str | None = None


def validate(cas_url: str, service: str, ticket: str) -> Validation:
    """Ask the IdP whether `ticket` was issued for `service` (CAS 3.0 /p3/serviceValidate, XML)."""
    try:
        resp = requests.get(f"{cas_url}/p3/serviceValidate", params={"service": service, "ticket": ticket},
                            timeout=TIMEOUT)
        root = ET.fromstring(resp.content)
    except (requests.RequestException, ET.ParseError) as exc:
        return Validation(error_code="UNREACHABLE", error=f"{type(exc).__name__}: {exc}")
    success = root.find("cas:authenticationSuccess", CAS_NS)
    if success is None:
        failure = root.find("cas:authenticationFailure", CAS_NS)
        if failure is None:
            return Validation(error_code="UNEXPECTED", error=resp.text[:300])
        return Validation(error_code=failure.get("code"), error=(failure.text or "").strip())
    attributes: dict[str, list[str]] = {}
    found = success.find("cas:attributes", CAS_NS)
    for element in (found if found is not None else []):
        name = element.tag.rpartition("}")[2]
        attributes.setdefault(name, []).append((element.text or "").strip())
    return Validation(user=success.findtext("cas:user", namespaces=CAS_NS), attributes=attributes)


def session_index(logout_request: str) -> str | None:
    """The ticket a SAML logoutRequest names (its SessionIndex), or None when it is not one."""
    try:
        root = ET.fromstring(logout_request)
    except ET.ParseError:
        return None
    return (root.findtext("samlp:SessionIndex", namespaces=SAMLP_NS) or "").strip() or None


def create_app(base_url: str, idp_url: str, links: list[tuple[str, str]] | None = None) -> Flask:
    """The app at `base_url`, logging people in through the IdP at `idp_url`; `links` (label, URL) lead to
    the other demo apps."""
    app = make_app(__name__, session_cookie="usosweb_session")
    store = SessionStore()
    service = f"{base_url}/login"
    cas_url = f"{idp_url}/cas"

    def show(title: str, body: str, status: int = 200, **context):
        return page(NAME, _("Student services (CAS demo app)"), COLOUR, title, body, links=links or [],
                    **context), status

    @app.get("/")
    def home():
        current = store.get(session.get("key"))
        if current is None:
            session.pop("key", None)
            return show(_("You are not logged in"), """
<p>{{ intro }}</p>
<p><a id="login" class="button" href="login">{{ login }}</a></p>""",
                        intro=_("USOSweb shows your courses, grades and enrolments. Log in with your "
                                "university account."),
                        login=_("Log in"))
        attributes = current["attributes"]
        name = " ".join((attributes.get(k) or [""])[0] for k in ("given_name", "family_name")).strip()
        return show(_("Welcome, %(name)s", name=name or current["user"]), """
<p>{{ intro }}</p>
<table id="attributes">
<tr><th scope="row">{{ user_label }}</th><td id="user">{{ user }}</td></tr>
{% for key, values in attributes|dictsort %}
<tr><th scope="row">{{ key }}</th><td id="attr-{{ key }}">{{ values|text }}</td></tr>
{% endfor %}</table>
<p><a id="logout" class="button" href="logout">{{ logout }}</a></p>
<p class="note">{{ note }}</p>""",
                    intro=_("The IdP vouched for you: this is what its ticket validation "
                            "(/cas/p3/serviceValidate) returned."),
                    user_label=_("User (cas:user)"), user=current["user"], attributes=attributes,
                    logout=_("Log out"),
                    note=_("Logging out here ends your single-sign-on session: every other app logs you out "
                           "too."))

    @app.get("/login")
    def login():
        ticket = request.args.get("ticket")
        if not ticket:
            return redirect(f"{cas_url}/login?{urlencode({'service': service})}")
        result = validate(cas_url, service, ticket)
        if result.user is None:
            return show(_("Login failed"), """
<p>{{ message }}</p><p><code id="error">{{ code }}: {{ error }}</code></p>
<p><a class="button" href="login">{{ again }}</a></p>""", 403,
                        message=_("The IdP did not accept the ticket."), code=result.error_code,
                        error=result.error, again=_("Try again"))
        session["key"] = store.new({"user": result.user, "attributes": result.attributes, "ticket": ticket})
        return redirect(f"{base_url}/")

    @app.get("/logout")
    def logout():
        store.drop(session.pop("key", None))
        return redirect(f"{cas_url}/logout?{urlencode({'service': base_url + '/'})}")

    @app.post("/slo")
    def slo():
        ticket = session_index(request.form.get("logoutRequest", ""))
        if not ticket:
            return "not a CAS logoutRequest", 400
        store.drop_where("ticket", ticket)
        return "", 200

    return app
