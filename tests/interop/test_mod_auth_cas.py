"""mod_auth_cas 1.2 at the HTTP level (requests as the browser): deep links through the login, a CASRenew
path, forged attribute headers, and what it answers to the IdP's back-channel logoutRequest — and whether
it ends its session.

The IdP shows an app as "confirmed" on its logout page only for a 2xx answer (docs/cas.md). In the
protected path itself mod_auth_cas ends the session and answers 302 (its redirect to the login page, the
answer to any request without a session); at a dedicated endpoint with its "CAS" input filter
(httpd.conf.template, /cas-slo) it ends the session and the page answers 200. Both are measured here with
a real session opened through the IdP and the exact message the IdP sends (idp.core.sso.logout_request_xml).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from idp.core.sso import logout_request_xml
from tests.conftest import csrf_token
from tests.interop.conftest import CANONICAL_USER, PASSWORD, STUDENT, Interop

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT = 30


@pytest.fixture
def client() -> Iterator[requests.Session]:
    """A cookie jar that follows redirects: the browser, at the HTTP level."""
    with requests.Session() as session:
        yield session


def open_cas_session(interop: Interop, client: requests.Session) -> str:
    """A browser's steps: /cas-app/ → the IdP's form → log in → back with a ticket that mod_auth_cas
    validates → its session cookie in `client`. Returns the ticket."""
    form = client.get(interop.cas_app, timeout=HTTP_TIMEOUT)
    assert form.url.startswith(f"{interop.idp_url}/cas/login?"), form.url
    done = client.post(form.url, timeout=HTTP_TIMEOUT, data={
        "csrf_token": csrf_token(form.text), "username": STUDENT["album"], "password": PASSWORD})
    assert done.status_code == 200 and done.url == interop.cas_app, (done.status_code, done.url)
    assert CANONICAL_USER in done.text
    back = next(r.headers["Location"] for r in done.history if "ticket=" in r.headers.get("Location", ""))
    return parse_qs(urlsplit(back).query)["ticket"][0]


def served_from_session(client: requests.Session, interop: Interop) -> bool:
    """/cas-app/ answers from mod_auth_cas's session (200), or sends the browser to the IdP (302)."""
    r = client.get(interop.cas_app, allow_redirects=False, timeout=HTTP_TIMEOUT)
    if r.status_code == 302:
        assert r.headers["Location"].startswith(f"{interop.idp_url}/cas/login?"), r.headers["Location"]
        return False
    assert r.status_code == 200, r.status_code
    return True


@pytest.mark.parametrize(("path", "answer"), [("/cas-app/", 302), ("/cas-slo", 200)])
def test_logout_request_ends_the_session(interop: Interop, client: requests.Session, path: str, answer: int):
    ticket = open_cas_session(interop, client)
    assert served_from_session(client, interop)
    # What the IdP POSTs at logout (a server-to-server call: no cookie of the person's).
    body = {"logoutRequest": logout_request_xml(ticket, dt.datetime.now(dt.UTC).replace(tzinfo=None))}
    reply = requests.post(f"{interop.apache.url}{path}", data=body, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert reply.status_code == answer, (reply.status_code, reply.headers)
    if answer == 302:
        assert reply.headers["Location"].startswith(f"{interop.idp_url}/cas/login?")
    assert not served_from_session(client, interop), (
        f"mod_auth_cas still serves the session after a logoutRequest at {path}:\n{interop.logs()}")


def test_logout_request_for_another_ticket_leaves_the_session(interop: Interop, client: requests.Session):
    """The session index names the session: a logoutRequest for some other ticket ends nothing."""
    open_cas_session(interop, client)
    body = {"logoutRequest": logout_request_xml("ST-" + "x" * 22, dt.datetime.now(dt.UTC).replace(tzinfo=None))}
    reply = requests.post(f"{interop.apache.url}/cas-slo", data=body, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert reply.status_code == 200
    assert served_from_session(client, interop)


def test_deep_link_with_a_query_comes_back_to_the_same_url(interop: Interop, client: requests.Session):
    """mod_auth_cas sends the whole URL (path and query, percent-encoded its own way) as the service; the
    IdP must give the ticket back to it and validate it for exactly that URL."""
    deep = f"{interop.cas_app}plan/zajec?semestr=2026Z&grupa=%C5%BC%C3%B3%C5%82w+1"
    form = client.get(deep, timeout=HTTP_TIMEOUT)
    assert form.url.startswith(f"{interop.idp_url}/cas/login?"), form.url
    assert parse_qs(urlsplit(form.url).query)["service"] == [deep]
    done = client.post(form.url, timeout=HTTP_TIMEOUT, data={
        "csrf_token": csrf_token(form.text), "username": STUDENT["album"], "password": PASSWORD})
    assert done.status_code == 200 and done.url == deep, (done.status_code, done.url, interop.logs())
    assert CANONICAL_USER in done.text


def test_renew_path_asks_for_the_password_again(interop: Interop, client: requests.Session):
    """CASRenew: within a single sign-on session the IdP still shows the form (CAS `renew=true`), and the
    ticket from that fresh login passes mod_auth_cas's validation."""
    open_cas_session(interop, client)
    renew = f"{interop.cas_app}renew/"
    form = client.get(renew, timeout=HTTP_TIMEOUT)
    assert form.url.startswith(f"{interop.idp_url}/cas/login?"), form.url
    assert parse_qs(urlsplit(form.url).query).get("renew") == ["true"], form.url
    assert 'name="password"' in form.text
    done = client.post(form.url, timeout=HTTP_TIMEOUT, data={
        "csrf_token": csrf_token(form.text), "username": STUDENT["album"], "password": PASSWORD})
    assert done.status_code == 200 and done.url == renew, (done.status_code, done.url, interop.logs())
    assert CANONICAL_USER in done.text


def test_attribute_headers_sent_by_the_browser_do_not_reach_the_app(interop: Interop, client: requests.Session):
    """CASScrubRequestHeaders: the app can trust CAS-* headers, whatever the browser sends."""
    open_cas_session(interop, client)
    forged = {"CAS-User": "rektor@example.edu.pl", "CAS-mail": "rektor@example.edu.pl",
              "CAS-Given-Name": "Rektor", "CAS-role": "admin"}
    page = client.get(interop.cas_app, headers=forged, allow_redirects=False, timeout=HTTP_TIMEOUT)
    assert page.status_code == 200
    assert "rektor" not in page.text.lower() and "admin" not in page.text, page.text
    assert CANONICAL_USER in page.text and STUDENT["first_name"] in page.text
