"""/cas/login as a browser and a relying app see it (CAS 3.0 §2.1, §2.2)."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.cas.conftest import (
    MOODLE,
    USER,
    audit_events,
    cas_xml,
    failure_code,
    is_login_form,
    login_ticket,
    page_error,
    post_warn_ok,
    sso_ticket,
    success,
    tgc,
    validate,
)
from tests.conftest import USOSWEB, cas_login, csrf_token, ticket_from
from tests.factories import PASSWORD, create_account

UNKNOWN = "https://evil.example.com/steal"


def user_of(client, ticket, service=USOSWEB, **params) -> str:
    ok = success(validate(client, "/cas/serviceValidate", ticket, service, **params))
    return ok.find("{http://www.yale.edu/tp/cas}user").text


# --- unknown services --------------------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"gateway": "true"}, {"renew": "true"}, {"method": "POST"}])
def test_unknown_service_is_an_error_page_never_a_redirect(client, person, extra):
    r = client.get("/cas/login", query_string={"service": UNKNOWN, **extra})
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "Unknown application" in html
    assert not is_login_form(html)


def test_unknown_service_with_a_live_session_gets_no_ticket(client, person):
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": UNKNOWN, "gateway": "true"})
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert "ST-" not in r.get_data(as_text=True)


def test_posting_credentials_for_an_unknown_service_is_refused(client, person):
    page = client.get("/cas/login", query_string={"service": USOSWEB})
    r = client.post("/cas/login", query_string={"service": UNKNOWN},
                    data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": USER,
                          "password": PASSWORD, "service": UNKNOWN})
    assert r.status_code == 400
    assert "Location" not in r.headers
    assert tgc(client) is None


def test_unknown_service_is_audited(client):
    client.get("/cas/login", query_string={"service": UNKNOWN})
    events = audit_events("cas.login.unknown_service")
    assert len(events) == 1
    assert events[0].reason == "unregistered_service"
    assert events[0].data["service"] == UNKNOWN


def test_service_that_only_resembles_a_registered_one_is_unknown(client):
    for url in ["https://usosweb.example.edu.pl.evil.com/", "https://usosweb.example.edu.pl@evil.com/",
                "http://usosweb.example.edu.pl/kontroler.php", "https://usoswebXexample.edu.pl/",
                "https://usosweb.example.edu.pl/" + "a" * 5000]:
        r = client.get("/cas/login", query_string={"service": url})
        assert r.status_code == 400, url
        assert "Location" not in r.headers


# --- the form ---------------------------------------------------------------------------------------

def test_login_form_carries_the_service_and_the_spec_fields(client):
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert re.search(r'<form method="post"', html)
    assert re.search(r'name="username"[^>]*autocomplete="username"|autocomplete="username"[^>]*name="username"',
                     html)
    assert 'autocomplete="current-password"' in html
    assert 'name="warn"' in html and 'type="checkbox"' in html
    # §2.1.3: "service MUST also be a parameter of the form, containing the value originally passed"
    m = re.search(r'<input[^>]*name="service"[^>]*>', html)
    assert m and 'value="https://usosweb.example.edu.pl/kontroler.php?_action=news/default"' in \
        m.group(0).replace("&amp;", "&")
    assert "USOSweb" in html  # the person sees which application they log in to
    assert "Caps Lock is on." in html  # the hint (shown by the script when Caps Lock is on)


def test_fresh_login_redirects_to_the_service_with_a_ticket(client, person):
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302
    location = r.headers["Location"]
    parts = urlsplit(location)
    assert location.startswith("https://usosweb.example.edu.pl/kontroler.php?")
    query = parse_qs(parts.query)
    assert query["_action"] == ["news/default"]  # the app's own parameters survive
    assert list(query) == ["_action", "ticket"]
    assert user_of(client, query["ticket"][0]) == USER


def test_ticket_goes_before_a_fragment(client, person):
    service = "https://usosweb.example.edu.pl/app#/news"
    r = cas_login(client, USER, PASSWORD, service)
    location = r.headers["Location"]
    assert location.startswith("https://usosweb.example.edu.pl/app?ticket=ST-")
    assert location.endswith("#/news")


def test_sso_session_gives_a_ticket_without_the_form(client, person):
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": MOODLE})
    assert r.status_code == 302
    assert r.headers["Location"].startswith(MOODLE + "&ticket=ST-")
    t = ticket_from(r)
    # Moodle's username_attribute is the album number.
    ok = success(validate(client, "/cas/serviceValidate", t, MOODLE))
    assert ok.find("{http://www.yale.edu/tp/cas}user").text == "12345"


def test_no_session_shows_the_form(client, person):
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 200
    assert is_login_form(r.get_data(as_text=True))
    assert "Location" not in r.headers


# --- renew -------------------------------------------------------------------------------------------

def test_renew_asks_for_credentials_even_with_a_session(client, person):
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": USOSWEB, "renew": "true"})
    assert r.status_code == 200
    assert is_login_form(r.get_data(as_text=True))
    assert "Location" not in r.headers


def test_ticket_from_a_renewed_login_validates_with_renew(client, person):
    login_ticket(client)
    t = login_ticket(client, extra={"renew": "true"})
    assert failure_code(validate(client, "/cas/serviceValidate", t, renew="true")) is None


def test_first_login_ticket_validates_with_renew(client, person):
    t = login_ticket(client)
    assert failure_code(validate(client, "/cas/serviceValidate", t, renew="true")) is None


def test_sso_ticket_fails_validation_with_renew(client, person):
    login_ticket(client)
    t = sso_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, renew="true")
    assert failure_code(r) == "INVALID_TICKET"


@pytest.mark.parametrize("endpoint", ["/cas/proxyValidate", "/cas/p3/serviceValidate", "/cas/p3/proxyValidate"])
def test_sso_ticket_fails_renew_on_every_endpoint(client, person, endpoint):
    login_ticket(client)
    assert failure_code(validate(client, endpoint, sso_ticket(client), renew="true")) == "INVALID_TICKET"


def test_sso_ticket_fails_renew_on_validate_v1(client, person):
    login_ticket(client)
    r = validate(client, "/cas/validate", sso_ticket(client), renew="true")
    assert r.get_data(as_text=True) == "no\n\n"


def test_renew_with_wrong_password_keeps_asking(client, person):
    login_ticket(client)
    r = cas_login(client, USER, "wrong-password", extra={"renew": "true"})
    assert r.status_code == 401
    assert is_login_form(r.get_data(as_text=True))


# --- gateway -----------------------------------------------------------------------------------------

def test_gateway_without_session_redirects_without_ticket(client, person):
    r = client.get("/cas/login", query_string={"service": USOSWEB, "gateway": "true"})
    assert r.status_code == 302
    assert r.headers["Location"] == USOSWEB
    assert tgc(client) is None


def test_gateway_with_session_gives_a_ticket(client, person):
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": MOODLE, "gateway": "true"})
    assert r.status_code == 302
    t = ticket_from(r)
    assert t.startswith("ST-")
    assert failure_code(validate(client, "/cas/serviceValidate", t, MOODLE)) is None


def test_gateway_for_a_person_not_provisioned_goes_back_without_a_ticket(client, register):
    """CAS 3.0 §2.1.1: with gateway nothing is shown; the app learns there is no ticket for this person."""
    register({"name": "Wirtualny Dziekanat", "protocol": "cas",
              "service_pattern": r"^https://dziekanat\.example\.edu\.pl/.*", "requires_entitlement": True})
    create_account(entitlements=["USOSweb"])
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": "https://dziekanat.example.edu.pl/", "gateway": "true"})
    assert r.status_code == 302 and r.headers["Location"] == "https://dziekanat.example.edu.pl/"
    assert audit_events("cas.login.not_provisioned")[-1].data == {"service": "Wirtualny Dziekanat", "gateway": True}


def test_gateway_for_a_person_who_asked_to_be_warned_goes_back_without_a_ticket(client, person):
    cas_login(client, USER, PASSWORD, warn=True)
    r = client.get("/cas/login", query_string={"service": MOODLE, "gateway": "true"})
    assert r.status_code == 302 and r.headers["Location"] == MOODLE


def test_gateway_with_renew_is_ignored_and_credentials_are_asked(client, person):
    # Without a session: the form, not a ticketless redirect.
    r = client.get("/cas/login", query_string={"service": USOSWEB, "gateway": "true", "renew": "true"})
    assert r.status_code == 200
    assert is_login_form(r.get_data(as_text=True))
    # With a session: the form too, not a ticket.
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": USOSWEB, "gateway": "true", "renew": "true"})
    assert r.status_code == 200
    assert is_login_form(r.get_data(as_text=True))


def test_gateway_without_service_shows_the_form(client):
    r = client.get("/cas/login", query_string={"gateway": "true"})
    assert r.status_code == 200
    assert is_login_form(r.get_data(as_text=True))


# --- warn --------------------------------------------------------------------------------------------

def test_warn_shows_the_warn_page_before_the_next_sso_ticket(client, person):
    r = cas_login(client, USER, PASSWORD, warn=True)
    assert r.status_code == 302  # the login itself is not warned about: the person just typed the password
    r = client.get("/cas/login", query_string={"service": MOODLE})
    assert r.status_code == 200
    assert "Location" not in r.headers
    html = r.get_data(as_text=True)
    assert "You are about to log in to Moodle" in html
    assert "ST-" not in html
    assert not is_login_form(html)
    r = post_warn_ok(client, html, MOODLE)
    assert r.status_code == 302
    t = ticket_from(r)
    assert r.headers["Location"].startswith(MOODLE + "&ticket=")
    assert failure_code(validate(client, "/cas/serviceValidate", t, MOODLE)) is None


def test_warn_applies_to_every_later_sso_login(client, person):
    cas_login(client, USER, PASSWORD, warn=True)
    for _ in range(2):
        r = client.get("/cas/login", query_string={"service": USOSWEB})
        assert r.status_code == 200
        r = post_warn_ok(client, r.get_data(as_text=True), USOSWEB)
        assert r.status_code == 302


def test_warn_continue_without_csrf_token_issues_no_ticket(client, person):
    cas_login(client, USER, PASSWORD, warn=True)
    r = client.post("/cas/login", data={"service": MOODLE, "warn_ok": "1"})
    assert r.status_code == 400
    assert "Location" not in r.headers


def test_warn_page_with_method_post_continues_with_the_form_post(client, person):
    cas_login(client, USER, PASSWORD, warn=True)
    r = client.get("/cas/login", query_string={"service": MOODLE, "method": "POST"})
    assert r.status_code == 200
    r = post_warn_ok(client, r.get_data(as_text=True), MOODLE, method="POST")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert re.search(r'<form method="post" action="https://moodle\.example\.edu\.pl/course/view\.php\?id=7"', html)


def test_without_warn_no_warn_page(client, person):
    cas_login(client, USER, PASSWORD)
    assert client.get("/cas/login", query_string={"service": MOODLE}).status_code == 302


# --- method=POST -------------------------------------------------------------------------------------

def _posted_ticket(html: str, service: str) -> str:
    form = re.search(r'<form method="post" action="([^"]+)"[^>]*data-autosubmit[^>]*>(.*?)</form>', html, re.S)
    assert form, html
    assert form.group(1).replace("&amp;", "&") == service
    m = re.search(r'<input type="hidden" name="ticket" value="([^"]+)">', form.group(2))
    assert m
    return m.group(1)


def test_method_post_after_login_gives_an_auto_submitting_form(client, person):
    r = cas_login(client, USER, PASSWORD, extra={"method": "POST"})
    assert r.status_code == 200
    assert "Location" not in r.headers
    html = r.get_data(as_text=True)
    t = _posted_ticket(html, USOSWEB)
    assert "idp.js" in html  # the script that submits the form
    assert failure_code(validate(client, "/cas/serviceValidate", t)) is None


def test_method_post_with_sso(client, person):
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": MOODLE, "method": "POST"})
    assert r.status_code == 200
    t = _posted_ticket(r.get_data(as_text=True), MOODLE)
    assert failure_code(validate(client, "/cas/serviceValidate", t, MOODLE)) is None


# --- no service --------------------------------------------------------------------------------------

def test_login_without_service_shows_logged_in_page(client, person):
    r = cas_login(client, USER, PASSWORD, service=None)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "You are logged in" in html
    assert "Łukasz Żółkiewski" in html
    assert tgc(client, "idp_tgc")
    r = client.get("/cas/login")
    assert r.status_code == 200
    assert "You are logged in" in r.get_data(as_text=True)


def test_logged_in_page_lists_each_app_once(client, person):
    login_ticket(client)
    sso_ticket(client)
    sso_ticket(client, MOODLE)
    html = client.get("/cas/login").get_data(as_text=True)
    assert html.count("<li>USOSweb</li>") == 1
    assert html.count("<li>Moodle</li>") == 1


def test_home_page_lists_each_app_once(client, person):
    login_ticket(client)
    sso_ticket(client)
    html = client.get("/").get_data(as_text=True)
    assert html.count("<li>USOSweb</li>") == 1


# --- credentials -------------------------------------------------------------------------------------

def test_wrong_password_and_unknown_user_look_the_same(client, person):
    wrong = cas_login(client, USER, "Not-The-Password-123")
    unknown = cas_login(client, "nobody@student.example.edu.pl", "Not-The-Password-123")
    assert wrong.status_code == unknown.status_code == 401
    assert page_error(wrong.get_data(as_text=True)) == page_error(unknown.get_data(as_text=True)) \
        == "Invalid login or password"
    for r in (wrong, unknown):
        assert "Location" not in r.headers
        assert is_login_form(r.get_data(as_text=True))
        assert 'value="Not-The-Password-123"' not in r.get_data(as_text=True)  # never echo the password
    assert tgc(client) is None


def test_wrong_password_message_is_polish_by_default(browser, person):
    polish = browser(lang=None)  # no Accept-Language: the policy's default language
    wrong = cas_login(polish, USER, "Not-The-Password-123")
    unknown = cas_login(polish, "nobody@student.example.edu.pl", "Not-The-Password-123")
    assert page_error(wrong.get_data(as_text=True)) == page_error(unknown.get_data(as_text=True)) \
        == "Niepoprawne dane logowania"


def test_username_is_kept_after_a_failed_login(client, person):
    r = cas_login(client, USER, "Not-The-Password-123")
    assert f'value="{USER}"' in r.get_data(as_text=True)


def test_unknown_and_passwordless_accounts_cost_one_password_check_too(client, person, monkeypatch):
    """Same time whether or not the account exists: every attempt runs exactly one argon2 verification."""
    from idp.core.passwords import Passwords

    calls = []
    real = Passwords.verify
    monkeypatch.setattr(Passwords, "verify", lambda self, stored, pw: calls.append(stored) or real(self, stored, pw))
    create_account(album="55555", university_email="no.password@student.example.edu.pl", private_email=None,
                   aliases=(), password=None)
    for username in (USER, "nobody@student.example.edu.pl", "no.password@student.example.edu.pl", "99999"):
        calls.clear()
        assert cas_login(client, username, "Not-The-Password-123").status_code == 401
        assert len(calls) == 1, username


@pytest.mark.parametrize("username", [
    "S12345@student.example.edu.pl",            # alias, mixed case
    "LUKASZ.ZOLKIEWSKI@STUDENT.EXAMPLE.EDU.PL",  # university e-mail in capitals
    "  lukasz.zolkiewski@student.example.edu.pl ",
    "12345",                                     # album (the default policy allows it)
])
def test_login_by_any_allowed_identifier_gives_the_canonical_user(client, person, username):
    t = login_ticket(client, username=username)
    assert user_of(client, t) == USER


def test_password_is_case_sensitive(client, person):
    r = cas_login(client, USER, PASSWORD.upper())
    assert r.status_code == 401


def test_private_email_does_not_log_in_under_the_default_policy(client, person):
    r = cas_login(client, "lukasz.z@example.com", PASSWORD)
    assert r.status_code == 401
    assert page_error(r.get_data(as_text=True)) == "Invalid login or password"


@pytest.mark.policy(login__identifiers=["university_email"])
@pytest.mark.parametrize("username", ["12345", "s12345@student.example.edu.pl", "lukasz.z@example.com"])
def test_identifier_kinds_the_policy_does_not_allow_are_refused(client, person, username):
    r = cas_login(client, username, PASSWORD)
    assert r.status_code == 401
    assert page_error(r.get_data(as_text=True)) == "Invalid login or password"
    assert tgc(client) is None
    event = audit_events("login.failed")[-1]
    assert event.reason == "unknown_identifier"


@pytest.mark.policy(login__identifiers=["album"])
def test_album_only_policy(client, person):
    assert cas_login(client, USER, PASSWORD).status_code == 401
    t = login_ticket(client, username="12345")
    assert user_of(client, t) == USER


@pytest.mark.policy(login__identifiers=["private_email"], login__canonical_identifier="private_email")
def test_private_email_policy(client, person):
    assert cas_login(client, "12345", PASSWORD).status_code == 401
    t = login_ticket(client, username="Lukasz.Z@example.com")
    assert user_of(client, t) == "lukasz.z@example.com"


def test_account_that_left_cannot_log_in_and_only_the_right_password_is_told_why(client):
    create_account(status="left")
    wrong = cas_login(client, USER, "not-the-password")
    assert wrong.status_code == 401
    assert page_error(wrong.get_data(as_text=True)) == "Invalid login or password"
    right = cas_login(client, USER, PASSWORD)
    assert right.status_code == 403 and "Location" not in right.headers


def test_empty_fields_ask_for_both(client, person):
    page = client.get("/cas/login", query_string={"service": USOSWEB})
    r = client.post("/cas/login", query_string={"service": USOSWEB},
                    data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": "", "password": "",
                          "service": USOSWEB})
    assert r.status_code == 400
    assert is_login_form(r.get_data(as_text=True))
    assert page_error(r.get_data(as_text=True)) == "Enter your login and password."


def test_overlong_password_is_refused_without_a_crash(client, person):
    r = cas_login(client, USER, "x" * 5000)
    assert r.status_code == 400
    assert is_login_form(r.get_data(as_text=True))


# --- CSRF --------------------------------------------------------------------------------------------

def test_missing_csrf_token_shows_the_form_again(client, person):
    r = client.post("/cas/login", query_string={"service": USOSWEB},
                    data={"username": USER, "password": PASSWORD, "service": USOSWEB})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert is_login_form(html)
    assert page_error(html) == "The form has expired. Please log in again."
    assert "Location" not in r.headers
    assert tgc(client) is None
    # The form still leads to the same application, and a retry works.
    assert USOSWEB.replace("&", "&amp;") in html or USOSWEB in html
    assert cas_login(client, USER, PASSWORD).status_code == 302


def test_wrong_csrf_token_shows_the_form_again(client, person):
    client.get("/cas/login", query_string={"service": USOSWEB})
    r = client.post("/cas/login", query_string={"service": USOSWEB},
                    data={"csrf_token": "forged", "username": USER, "password": PASSWORD, "service": USOSWEB})
    assert r.status_code == 400
    assert is_login_form(r.get_data(as_text=True))
    assert tgc(client) is None


def test_missing_csrf_token_with_an_unknown_service_is_still_the_unknown_service_page(client, person):
    r = client.post("/cas/login", query_string={"service": UNKNOWN},
                    data={"username": USER, "password": PASSWORD, "service": UNKNOWN})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Unknown application" in html
    assert not is_login_form(html)


# --- required actions: temporary password ------------------------------------------------------------

NEW_PASSWORD = "Parowóz-Klarnet-Zima-1954"


def _change_password(client, new, confirm=None):
    page = client.get("/login/change-password")
    assert page.status_code == 200
    return client.post("/login/change-password", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "new_password": new,
        "confirm": new if confirm is None else confirm})


def test_temporary_password_must_be_changed_before_the_ticket(client, browser):
    create_account(temporary=True)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/login/change-password"
    assert "ticket" not in r.headers["Location"]
    assert tgc(client) is None  # no session until the password is changed
    # Going straight to the app meanwhile gives no ticket.
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200

    # The policy is checked on the new password.
    weak = _change_password(client, "haslo123")
    assert weak.status_code == 400
    html = weak.get_data(as_text=True)
    assert "The password was not accepted" in html
    assert "at least 15 characters" in html
    same = _change_password(client, PASSWORD)
    assert same.status_code == 400
    assert "must differ from the current one" in same.get_data(as_text=True)
    personal = _change_password(client, "Zolkiewski-Tramwaj-Parasol-77")
    assert personal.status_code == 400
    assert "personal data" in personal.get_data(as_text=True)
    mismatch = _change_password(client, NEW_PASSWORD, NEW_PASSWORD + "x")
    assert "do not match" in mismatch.get_data(as_text=True)
    assert tgc(client) is None

    r = _change_password(client, NEW_PASSWORD)
    assert r.status_code == 302
    resume = urlsplit(r.headers["Location"])
    assert resume.path == "/cas/login"
    assert parse_qs(resume.query)["service"] == [USOSWEB]
    assert tgc(client)
    r = client.get(r.headers["Location"])
    assert r.status_code == 302
    t = ticket_from(r)
    # The password was typed just now: this ticket counts as a fresh login.
    assert failure_code(validate(client, "/cas/serviceValidate", t, renew="true")) is None

    fresh = browser()
    assert cas_login(fresh, USER, PASSWORD).status_code == 401
    assert cas_login(fresh, USER, NEW_PASSWORD).status_code == 302


def test_temporary_password_flow_keeps_renew_and_method(client):
    create_account(temporary=True)
    r = cas_login(client, USER, PASSWORD, extra={"renew": "true", "method": "POST"})
    assert urlsplit(r.headers["Location"]).path == "/login/change-password"
    r = _change_password(client, NEW_PASSWORD)
    resume = parse_qs(urlsplit(r.headers["Location"]).query)
    assert resume["renew"] == ["true"] and resume["method"] == ["POST"]
    r = client.get(r.headers["Location"])
    assert r.status_code == 200
    t = re.search(r'name="ticket" value="([^"]+)"', r.get_data(as_text=True)).group(1)
    assert failure_code(validate(client, "/cas/serviceValidate", t, renew="true")) is None


def test_change_password_page_without_a_pending_login_goes_to_login(client, person):
    r = client.get("/login/change-password")
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/cas/login"


# --- entitlements ------------------------------------------------------------------------------------

def test_not_provisioned_person_gets_an_explanation_not_a_ticket(client, register):
    register({"name": "Wirtualny Dziekanat", "protocol": "cas",
              "service_pattern": r"^https://dziekanat\.example\.edu\.pl/.*", "requires_entitlement": True})
    create_account(entitlements=["USOSweb"])
    login_ticket(client)
    r = client.get("/cas/login", query_string={"service": "https://dziekanat.example.edu.pl/"})
    assert r.status_code == 403
    assert "Location" not in r.headers
    html = r.get_data(as_text=True)
    assert "you do not have an account in Wirtualny Dziekanat" in html
    assert re.search(r'class="ref">E\d+<', html)


def test_xml_of_the_smoke_test_is_well_formed(client, person):
    t = login_ticket(client)
    cas_xml(validate(client, "/cas/serviceValidate", t))
