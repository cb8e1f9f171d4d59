"""What an attacker, a cache or an auditor observes: headers, open redirects, injection, audit trail."""
from __future__ import annotations

import re

import pytest

from tests.cas.conftest import (
    MOODLE,
    USER,
    audit_events,
    failure_code,
    login_ticket,
    sso_ticket,
    tgc,
    validate,
)
from tests.conftest import USOSWEB, cas_login
from tests.factories import PASSWORD


def _csp(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {d.strip().split(" ", 1)[0]: d.strip().partition(" ")[2] for d in policy.split(";") if d.strip()}


# --- headers -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/cas/login", "/cas/login?service=" + USOSWEB, "/cas/logout"])
def test_pages_are_not_cached_and_cannot_be_framed(client, path):
    r = client.get(path)
    assert r.status_code == 200
    assert "no-store" in r.headers["Cache-Control"]
    assert r.headers["Pragma"] == "no-cache"
    csp = _csp(r)
    assert csp["frame-ancestors"] == "'none'"
    assert "'unsafe-inline'" not in csp.get("script-src", "")
    assert csp["object-src"] == "'none'"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] in {"same-origin", "strict-origin-when-cross-origin"}


def test_csp_nonce_is_fresh_per_response(client):
    nonces = {_csp(client.get("/cas/login"))["script-src"] for _ in range(3)}
    assert len(nonces) == 3


def test_ticket_redirect_and_failed_login_are_not_cached(client, person):
    r = cas_login(client, USER, "wrong-wrong-wrong")
    assert r.status_code == 401 and "no-store" in r.headers["Cache-Control"]
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302 and "no-store" in r.headers["Cache-Control"]


def test_error_page_for_unknown_service_has_the_headers_too(client):
    r = client.get("/cas/login", query_string={"service": "https://evil.example.com/"})
    assert r.status_code == 400
    assert "no-store" in r.headers["Cache-Control"]
    assert _csp(r)["frame-ancestors"] == "'none'"


# --- reflected input ---------------------------------------------------------------------------------

def test_service_url_is_escaped_in_the_form(client):
    evil = 'https://usosweb.example.edu.pl/"><script>alert(1)</script>'
    r = client.get("/cas/login", query_string={"service": evil})
    assert r.status_code == 200  # it matches the registered pattern, so it is "registered"
    html = r.get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert '"><script>' not in html


def test_service_url_is_escaped_on_the_post_form(client, person):
    evil = 'https://usosweb.example.edu.pl/x"><script>alert(1)</script>'
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": evil, "method": "POST"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.get_data(as_text=True)


def test_username_is_escaped_after_a_failed_login(client):
    r = cas_login(client, '"><img src=x onerror=alert(1)>@example.edu.pl', "whatever-password")
    assert r.status_code == 401
    assert "<img src=x" not in r.get_data(as_text=True)


def test_tickets_and_tgc_never_appear_where_they_should_not(client, person):
    r = cas_login(client, USER, PASSWORD)
    value = tgc(client)
    assert value not in r.headers["Location"] and value not in r.get_data(as_text=True)
    r = client.get("/cas/login")
    assert value not in r.get_data(as_text=True)


# --- open redirects ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["https://evil.example.com/", "//evil.example.com/", "javascript:alert(1)",
                                    "https://usosweb.example.edu.pl.evil.com/"])
def test_no_open_redirect_from_login_or_logout(client, person, target):
    for params in ({"service": target}, {"service": target, "gateway": "true"}):
        r = client.get("/cas/login", query_string=params)
        assert "Location" not in r.headers
    login_ticket(client)
    r = client.get("/cas/logout", query_string={"service": target})
    assert "Location" not in r.headers


# --- audit -------------------------------------------------------------------------------------------

def test_failed_logins_are_audited_with_reasons(client, person):
    from tests.factories import create_account

    create_account(album="55555", university_email="no.password@student.example.edu.pl", private_email=None,
                   aliases=(), password=None)
    cas_login(client, USER, "Wrong-Password-Here")
    cas_login(client, "ghost@student.example.edu.pl", "Wrong-Password-Here")
    cas_login(client, "no.password@student.example.edu.pl", "Wrong-Password-Here")
    events = audit_events("login.failed")
    assert [e.reason for e in events] == ["wrong_password", "unknown_identifier", "no_password"]
    assert events[0].account_id == person.id
    assert events[1].account_id is None and events[1].data["identifier"] == "ghost@student.example.edu.pl"
    assert all(e.data.get("service") == "USOSweb" for e in events)
    for e in events:
        assert "Wrong-Password-Here" not in str(e.data)
        assert e.client_ip == "127.0.0.1"


def test_successful_login_is_audited(client, person):
    login_ticket(client)
    [event] = audit_events("login.succeeded")
    assert event.account_id == person.id and event.data == {"service": "USOSweb"}
    assert len(audit_events("sso.started")) == 1


def test_failed_validations_are_audited_with_the_cas_code(client, person):
    t = login_ticket(client)
    validate(client, "/cas/serviceValidate", t, MOODLE)          # INVALID_SERVICE (burns it)
    validate(client, "/cas/serviceValidate", t)                  # INVALID_TICKET
    validate(client, "/cas/serviceValidate", None)               # INVALID_REQUEST
    validate(client, "/cas/serviceValidate", "garbage")          # INVALID_TICKET_SPEC
    validate(client, "/cas/validate", sso_ticket(client), renew="true")  # INVALID_TICKET (renew)
    events = audit_events("cas.validate.failed")
    assert [e.reason for e in events] == ["INVALID_SERVICE", "INVALID_TICKET", "INVALID_REQUEST",
                                          "INVALID_TICKET_SPEC", "INVALID_TICKET"]
    assert events[0].account_id == person.id
    assert events[0].data["service"] == MOODLE
    assert "not issued for this service" in events[0].data["detail"]
    assert "renew" in events[4].data["detail"]


def test_audit_log_does_not_keep_live_tickets(client, person):
    """A still-valid ST passed by mistake where a PGT belongs must not be copied into the audit log."""
    t = login_ticket(client)
    client.get("/cas/proxy", query_string={"pgt": t, "targetService": USOSWEB})
    for event in audit_events():
        assert t not in f"{event.actor} {event.data}"
    assert failure_code(validate(client, "/cas/serviceValidate", t)) is None


def test_not_provisioned_is_audited(client, register):
    from tests.factories import create_account

    register({"name": "Dziekanat", "protocol": "cas", "service_pattern": r"^https://dziekanat\.example\.edu\.pl/.*",
              "requires_entitlement": True})
    create_account(entitlements=[])
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": "https://dziekanat.example.edu.pl/"})
    [event] = audit_events("cas.login.not_provisioned")
    assert event.reason == "not_entitled"
    assert f"E{event.id}" in r.get_data(as_text=True)  # the reference code on the page finds the event


# --- the login form itself ---------------------------------------------------------------------------

def test_login_post_needs_the_form_token_even_with_correct_credentials(client, person):
    client.get("/cas/login")
    r = client.post("/cas/login", data={"username": USER, "password": PASSWORD})
    assert r.status_code == 400
    assert tgc(client) is None
    assert audit_events("login.succeeded") == []  # not even checked


def test_login_get_with_credentials_in_the_query_does_not_log_in(client, person):
    r = client.get("/cas/login", query_string={"service": USOSWEB, "username": USER, "password": PASSWORD})
    assert r.status_code == 200
    assert tgc(client) is None


def test_password_field_is_never_prefilled(client, person):
    r = cas_login(client, USER, "Wrong-Password-Here")
    m = re.search(r'<input[^>]*name="password"[^>]*>', r.get_data(as_text=True))
    assert m and "value=" not in m.group(0).replace('value=""', "")
