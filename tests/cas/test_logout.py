"""Logout, single logout and the SSO session's life (CAS 3.0 §2.3, Appendix C, §3.6)."""
from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import quote_plus

import pytest

from tests.cas.conftest import (
    MOODLE,
    SAML,
    SAMLP,
    USER,
    audit_events,
    failure_code,
    is_login_form,
    login_ticket,
    logout_request,
    service_for,
    sso_ticket,
    tgc,
    validate,
)
from tests.conftest import USOSWEB, cas_login
from tests.factories import PASSWORD, create_account


def apps_on_page(html: str) -> list[str]:
    """The logout page's list of apps, one normalised line each: "Name — confirmed"."""
    m = re.search(r'<ul class="apps">(.*?)</ul>', html, re.S)
    if not m:
        return []
    items = re.findall(r"<li>(.*?)</li>", m.group(1), re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in items]


@pytest.fixture
def apps(register, app_server):
    """Two relying apps on one recording server: one without logout_url (SLO goes to its service URL),
    one with a logout_url."""
    server = app_server()
    register(service_for(server.url, "Kalendarz", "/calendar/"),
             service_for(server.url, "Biblioteka", "/library/", logout_url=server.url + "/library-slo"))
    return {"calendar": server.url + "/calendar/home?view=week", "library": server.url + "/library/start",
            "server": server}


def slo_calls(server) -> list[dict]:
    return [c for c in server.calls if c["method"] == "POST"]


# --- the session ends --------------------------------------------------------------------------------

def test_logout_ends_the_session_and_deletes_the_cookie(client, person):
    login_ticket(client)
    old = tgc(client)
    r = client.get("/cas/logout")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "You have been logged out" in html
    cookie = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("idp_tgc="))
    assert cookie.startswith("idp_tgc=;")
    assert "Expires=Thu, 01 Jan 1970" in cookie or "Max-Age=0" in cookie
    assert tgc(client) is None
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 200 and is_login_form(r.get_data(as_text=True))
    assert old


def test_old_cookie_replayed_after_logout_gives_nothing(client, person, browser):
    login_ticket(client)
    old = tgc(client)
    client.get("/cas/logout")
    thief = browser()
    thief.set_cookie("idp_tgc", old)
    for params in ({"service": USOSWEB}, {"service": USOSWEB, "gateway": "true"}):
        r = thief.get("/cas/login", query_string=params)
        assert "ticket=" not in r.headers.get("Location", "")
    r = thief.get("/cas/login")
    assert "You are logged in" not in r.get_data(as_text=True)


def test_unused_ticket_dies_at_logout(client, person):
    t = login_ticket(client)
    client.get("/cas/logout")
    assert failure_code(validate(client, "/cas/serviceValidate", t)) == "INVALID_TICKET"


def test_logout_by_post_works_too(client, person):
    login_ticket(client)
    assert client.post("/cas/logout").status_code == 200
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200


def test_logout_without_a_session(client):
    r = client.get("/cas/logout")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "You have been logged out" in html
    assert "There was no active login session in this browser." in html


def test_logout_is_audited(client, person):
    login_ticket(client)
    client.get("/cas/logout")
    [event] = audit_events("sso.ended")
    assert event.reason == "logout" and event.account_id == person.id


# --- ?service= after logout --------------------------------------------------------------------------

def test_logout_redirects_to_a_registered_service(client, person):
    login_ticket(client)
    r = client.get("/cas/logout", query_string={"service": MOODLE})
    assert r.status_code == 302
    assert r.headers["Location"] == MOODLE
    assert tgc(client) is None
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200  # really logged out


def test_logout_does_not_redirect_to_an_unregistered_service(client, person):
    login_ticket(client)
    r = client.get("/cas/logout", query_string={"service": "https://evil.example.com/phish"})
    assert r.status_code == 200
    assert "Location" not in r.headers
    assert "You have been logged out" in r.get_data(as_text=True)
    [event] = audit_events("cas.logout.unknown_service")
    assert event.data["service"] == "https://evil.example.com/phish"


def test_logout_ignores_the_cas2_url_parameter(client, person):
    login_ticket(client)
    r = client.get("/cas/logout", query_string={"url": MOODLE})
    assert r.status_code == 200
    assert "Location" not in r.headers


# --- single logout -----------------------------------------------------------------------------------

def test_every_app_that_got_a_ticket_receives_a_logout_request(client, person, apps):
    t_cal = login_ticket(client, apps["calendar"])
    t_lib = sso_ticket(client, apps["library"])
    server = apps["server"]
    r = client.get("/cas/logout")
    assert r.status_code == 200
    calls = slo_calls(server)
    assert len(calls) == 2
    by_path = {c["path"]: c for c in calls}
    # No logout_url: the service URL the app used, its own query included.
    assert set(by_path) == {"/calendar/home?view=week", "/library-slo"}
    for path, ticket in (("/calendar/home?view=week", t_cal), ("/library-slo", t_lib)):
        call = by_path[path]
        assert call["content_type"] == "application/x-www-form-urlencoded"
        root = logout_request(call["body"])
        assert root.get("Version") == "2.0"
        assert root.get("ID")
        dt.datetime.strptime(root.get("IssueInstant"), "%Y-%m-%dT%H:%M:%SZ")
        assert root.find(f"{{{SAML}}}NameID").text.strip() == "@NOT_USED@"
        assert root.find(f"{{{SAMLP}}}SessionIndex").text == ticket
    assert by_path["/calendar/home?view=week"]["form"] != by_path["/library-slo"]["form"]


def test_logout_request_fits_mod_auth_cas_buffer(client, person, register, callback_server):
    # The longest service URL a registered app might use still produces a small message.
    register(service_for(callback_server.url, "Kalendarz", "/calendar/"))
    service = callback_server.url + "/calendar/" + "x" * 900
    t = login_ticket(client, service)
    client.get("/cas/logout")
    [call] = slo_calls(callback_server)
    assert len(call["body"].encode()) < 1024
    assert logout_request(call["body"]).find(f"{{{SAMLP}}}SessionIndex").text == t
    # The body is exactly the URL-encoded form field.
    assert call["body"].startswith("logoutRequest=" + quote_plus("<samlp:LogoutRequest"))


def test_each_ticket_gets_its_own_logout_request_but_the_page_lists_each_app_once(client, person, apps):
    tickets = [login_ticket(client, apps["calendar"]), sso_ticket(client, apps["calendar"]),
               sso_ticket(client, apps["calendar"]), sso_ticket(client, apps["library"])]
    r = client.get("/cas/logout")
    indexes = sorted(logout_request(c["body"]).find(f"{{{SAMLP}}}SessionIndex").text
                     for c in slo_calls(apps["server"]))
    assert indexes == sorted(tickets)
    assert apps_on_page(r.get_data(as_text=True)) == ["Kalendarz — confirmed", "Biblioteka — confirmed"]


def test_apps_that_did_not_confirm_are_shown(client, person, register, callback_server, dead_url):
    register(service_for(callback_server.url, "Kalendarz", "/calendar/"), service_for(dead_url, "Stara poczta"))
    login_ticket(client, callback_server.url + "/calendar/")
    sso_ticket(client, dead_url + "/inbox")
    sso_ticket(client, dead_url + "/inbox")
    r = client.get("/cas/logout")
    assert apps_on_page(r.get_data(as_text=True)) == [
        "Kalendarz — confirmed", "Stara poczta — did not confirm: close the browser to be sure"]
    failed = audit_events("cas.slo.failed")
    assert len(failed) == 2 and {e.data["service"] for e in failed} == {"Stara poczta"}
    assert all(e.reason == "failed" for e in failed)


def test_app_answering_an_error_did_not_confirm(client, person, apps):
    apps["server"].status = 500
    login_ticket(client, apps["calendar"])
    r = client.get("/cas/logout")
    assert apps_on_page(r.get_data(as_text=True)) == [
        "Kalendarz — did not confirm: close the browser to be sure"]


def test_app_answering_with_its_login_redirect_confirmed(client, person, apps):
    """mod_auth_cas ends the session and answers its protected path's 302 to the login page: received, as
    Apereo CAS counts it (200, 202, 204, 301, 302, 304); a 303 or a 4xx is not."""
    apps["server"].status = 302
    apps["server"].location = "https://login.example.edu.pl/cas/login?service=x"
    login_ticket(client, apps["calendar"])
    r = client.get("/cas/logout")
    assert apps_on_page(r.get_data(as_text=True)) == ["Kalendarz — confirmed"]
    assert audit_events("cas.slo.failed") == []


@pytest.mark.parametrize("status", [303, 403])
def test_other_answers_did_not_confirm(client, person, apps, status):
    apps["server"].status = status
    login_ticket(client, apps["calendar"])
    r = client.get("/cas/logout")
    assert apps_on_page(r.get_data(as_text=True)) == [
        "Kalendarz — did not confirm: close the browser to be sure"]


@pytest.mark.settings(CALLBACK_TIMEOUT=0.5)
def test_slow_app_does_not_hold_up_logout(client, person, register, app_server, callback_server):
    slow = app_server()
    slow.delay = 3.0
    register(service_for(slow.url, "Powolna"), service_for(callback_server.url, "Kalendarz", "/calendar/"))
    login_ticket(client, slow.url + "/app")
    sso_ticket(client, callback_server.url + "/calendar/")
    started = time.monotonic()
    r = client.get("/cas/logout")
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert elapsed < 2.0  # the app would answer after 3 s; the per-call timeout is 0.5 s
    assert apps_on_page(r.get_data(as_text=True)) == [
        "Powolna — did not confirm: close the browser to be sure", "Kalendarz — confirmed"]
    assert len(slo_calls(callback_server)) == 1  # the healthy app was told in parallel


@pytest.mark.settings(CALLBACK_TIMEOUT=0.5)
def test_trickling_app_cannot_stretch_logout_beyond_the_budget(client, person, register, app_server):
    """An app that keeps sending a byte now and then never hits the per-read timeout; the fan-out
    budget (two timeouts here) still ends the wait."""
    slow = app_server()
    slow.trickle = 3.0
    register(service_for(slow.url, "Kapiąca"))
    login_ticket(client, slow.url + "/app")
    started = time.monotonic()
    r = client.get("/cas/logout")
    assert time.monotonic() - started < 2.0  # the app trickles for 3 s; the budget is 1 s
    assert apps_on_page(r.get_data(as_text=True)) == [
        "Kapiąca — did not confirm: close the browser to be sure"]


def test_dead_app_does_not_block_logout(client, person, register, dead_url):
    register(service_for(dead_url, "Martwa"))
    login_ticket(client, dead_url + "/app")
    started = time.monotonic()
    r = client.get("/cas/logout")
    assert time.monotonic() - started < 1.5
    assert r.status_code == 200


def test_slo_is_sent_once(client, person, apps, browser):
    login_ticket(client, apps["calendar"])
    old = tgc(client)
    client.get("/cas/logout")
    replay = browser()
    replay.set_cookie("idp_tgc", old)
    replay.get("/cas/logout")
    assert len(slo_calls(apps["server"])) == 1


@pytest.mark.settings(ALLOW_LOOPBACK_CALLBACKS=False)
def test_production_refuses_slo_to_loopback(client, person, apps):
    login_ticket(client, apps["calendar"])
    r = client.get("/cas/logout")
    assert slo_calls(apps["server"]) == []
    assert apps_on_page(r.get_data(as_text=True)) == [
        "Kalendarz — did not confirm: close the browser to be sure"]
    assert audit_events("cas.slo.failed")[0].reason == "refused"


def test_app_that_got_a_proxy_ticket_is_logged_out_too(client, person, register, callback_server):
    register(service_for(callback_server.url, "Proxy callbacks", "/pgt"),
             service_for(callback_server.url, "Kalendarz", "/calendar/"))
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, pgtUrl=callback_server.url + "/pgt")
    assert failure_code(r) is None
    pgt = callback_server.calls[0]["query"]["pgtId"][0]
    target = callback_server.url + "/calendar/feed"
    r = client.get("/cas/proxy", query_string={"pgt": pgt, "targetService": target})
    pt = re.search(r"<cas:proxyTicket>([^<]+)<", r.get_data(as_text=True)).group(1)
    client.get("/cas/logout")
    [call] = slo_calls(callback_server)
    assert call["path"] == "/calendar/feed"
    assert logout_request(call["body"]).find(f"{{{SAMLP}}}SessionIndex").text == pt


def test_another_person_logging_in_on_the_same_browser_logs_the_first_one_out(client, person, apps):
    create_account(album="67890", first_name="Anna", last_name="Nowak",
                   university_email="anna.nowak@student.example.edu.pl", private_email=None, aliases=())
    t = login_ticket(client, apps["calendar"])
    first = tgc(client)
    r = cas_login(client, "anna.nowak@student.example.edu.pl", PASSWORD, apps["library"],
                  extra={"renew": "true"})
    assert r.status_code == 302
    assert tgc(client) != first
    # The first person's app is told, with the first person's ticket.
    [call] = slo_calls(apps["server"])
    assert call["path"] == "/calendar/home?view=week"
    assert logout_request(call["body"]).find(f"{{{SAMLP}}}SessionIndex").text == t
    # The second person's apps are the only ones in the new session.
    r = client.get("/cas/logout")
    assert apps_on_page(r.get_data(as_text=True)) == ["Biblioteka — confirmed"]


# --- session lifetime --------------------------------------------------------------------------------

@pytest.mark.policy(session__idle_minutes=5)
def test_session_idle_expiry(client, person, clock):
    login_ticket(client)
    for _ in range(3):  # every use restarts the idle clock
        clock.advance(minutes=4)
        assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 302
    clock.advance(minutes=5)
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 200 and is_login_form(r.get_data(as_text=True))
    r = client.get("/cas/login", query_string={"service": USOSWEB, "gateway": "true"})
    assert r.headers["Location"] == USOSWEB  # gateway: no session any more, no ticket
    [event] = audit_events("sso.ended")
    assert event.reason == "expired"


@pytest.mark.policy(session__idle_minutes=5)
def test_idle_expiry_notifies_the_apps(client, person, apps, clock):
    t = login_ticket(client, apps["calendar"])
    clock.advance(minutes=6)
    client.get("/cas/login", query_string={"service": USOSWEB})
    [call] = slo_calls(apps["server"])
    assert logout_request(call["body"]).find(f"{{{SAMLP}}}SessionIndex").text == t


@pytest.mark.policy(session__absolute_hours=1, session__idle_minutes=120)
def test_session_absolute_expiry(client, person, clock):
    login_ticket(client)
    clock.advance(minutes=30)
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 302
    clock.advance(minutes=29)
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 302
    clock.advance(minutes=1)  # 60 minutes after the password was typed, however busy
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200


def test_logging_in_again_after_expiry_works(client, person, clock):
    login_ticket(client)
    old = tgc(client)
    clock.advance(hours=11)
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200
    login_ticket(client)
    assert tgc(client) != old


# --- session ids -------------------------------------------------------------------------------------

def test_new_session_id_on_every_authentication(client, person, browser):
    login_ticket(client)
    first = tgc(client)
    login_ticket(client, MOODLE, extra={"renew": "true"})
    second = tgc(client)
    login_ticket(client, extra={"renew": "true"})
    third = tgc(client)
    assert len({first, second, third}) == 3
    # Only the newest one opens the session.
    for old in (first, second):
        b = browser()
        b.set_cookie("idp_tgc", old)
        assert b.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200
    b = browser()
    b.set_cookie("idp_tgc", third)
    assert b.get("/cas/login", query_string={"service": USOSWEB}).status_code == 302


def test_reauthentication_keeps_the_apps_for_single_logout(client, person, apps):
    t1 = login_ticket(client, apps["calendar"])
    t2 = login_ticket(client, apps["library"], extra={"renew": "true"})
    assert slo_calls(apps["server"]) == []  # typing the password again is not a logout
    r = client.get("/cas/logout")
    indexes = sorted(logout_request(c["body"]).find(f"{{{SAMLP}}}SessionIndex").text
                     for c in slo_calls(apps["server"]))
    assert indexes == sorted([t1, t2])
    assert apps_on_page(r.get_data(as_text=True)) == ["Kalendarz — confirmed", "Biblioteka — confirmed"]


def test_a_planted_cookie_is_ignored_and_replaced(client, person):
    client.set_cookie("idp_tgc", "TGT-" + "A" * 40)
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 200 and is_login_form(r.get_data(as_text=True))
    login_ticket(client)
    assert tgc(client) != "TGT-" + "A" * 40


def test_tgc_value_format(client, person):
    login_ticket(client)
    value = tgc(client)
    assert value.startswith("TGT-")
    assert re.fullmatch(r"[A-Za-z0-9-]+", value)
    assert len(value) - 4 >= 22  # >= 128 bits of base62


# --- the cookie --------------------------------------------------------------------------------------

def _set_cookie(response, name: str) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]
    assert len(headers) == 1, response.headers.getlist("Set-Cookie")
    return headers[0]


def _attrs(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        out[key.lower()] = value
    return out


def test_tgc_cookie_flags_on_http(client, person):
    r = cas_login(client, USER, PASSWORD)
    header = _set_cookie(r, "idp_tgc")
    attrs = _attrs(header)
    assert "httponly" in attrs
    assert attrs["samesite"] == "Lax"
    assert "secure" not in attrs  # plain-http development instance: the browser would drop a Secure cookie
    assert attrs["path"] == "/"
    assert "domain" not in attrs
    assert "expires" not in attrs and "max-age" not in attrs  # ends with the browser (§3.6.1)


HTTPS = "https://idp.example.edu.pl"


@pytest.fixture
def https_browser(client):
    """The browser talks https to the IdP (host: the test client's localhost) and, like a real browser
    under Referrer-Policy same-origin, sends a Referer with its form posts (Flask-WTF checks it on https)."""
    client.environ_base.update({"wsgi.url_scheme": "https", "HTTP_REFERER": "https://localhost/cas/login"})
    return client


@pytest.mark.settings(BASE_URL=HTTPS)
def test_tgc_cookie_flags_on_https(https_browser, person):
    r = cas_login(https_browser, USER, PASSWORD)
    assert r.status_code == 302
    header = _set_cookie(r, "__Host-idp_tgc")
    attrs = _attrs(header)
    assert "secure" in attrs and "httponly" in attrs
    assert attrs["samesite"] == "Lax"
    assert attrs["path"] == "/"  # __Host- requires Path=/ and no Domain
    assert "domain" not in attrs
    assert "expires" not in attrs and "max-age" not in attrs
    assert not any(h.startswith("idp_tgc=") for h in r.headers.getlist("Set-Cookie"))
    assert "max-age=31536000" in r.headers["Strict-Transport-Security"]
    # The session works over https, and logout deletes the same cookie with the same attributes.
    assert https_browser.get("/cas/login", query_string={"service": MOODLE}).status_code == 302
    r = https_browser.get("/cas/logout")
    cleared = _attrs(_set_cookie(r, "__Host-idp_tgc"))
    assert "secure" in cleared and cleared["path"] == "/"
    assert https_browser.get("/cas/login", query_string={"service": MOODLE}).status_code == 200


@pytest.mark.settings(BASE_URL=HTTPS)
def test_https_instance_refuses_loopback_slo_by_default(https_browser, person, apps):
    login_ticket(https_browser, apps["calendar"])
    https_browser.get("/cas/logout")
    assert slo_calls(apps["server"]) == []
