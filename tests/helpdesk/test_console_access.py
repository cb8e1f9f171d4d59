"""Who gets into the helpdesk console (/helpdesk): nobody anonymous, nobody without a console role (403,
audited), no staff person without a second factor (enrol, then verify), and destructive actions only
with a fresh second-factor check. Plus the console's stricter security headers."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from idp.core import staff
from idp.extensions import db
from idp.models import Account
from tests.conftest import cas_login, csrf_token
from tests.factories import PASSWORD
from tests.helpdesk.console import (
    STAFF_EMAIL,
    Desk,
    english,
    enrol_totp,
    events,
    location,
    make_staff,
    path_of,
    text,
)

STUDENT = "lukasz.zolkiewski@student.example.edu.pl"


@pytest.fixture
def client(client):
    return english(client)


@pytest.fixture
def desk(client, clock):
    return Desk.open(client, clock)


def query(r) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location(r)).query)


# --- refusals -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["/helpdesk/", "/helpdesk/?q=12345", "/helpdesk/people/12345", "/helpdesk/audit",
                                 "/helpdesk/people/12345/unlock", "/helpdesk/people/12345/merge"])
def test_anonymous_visitors_are_sent_to_the_login_page(client, person, url):
    r = client.get(url)
    assert r.status_code == 302 and path_of(r) == "/cas/login"


def test_after_logging_in_a_staff_person_comes_back_to_the_console_page_asked_for(client, clock, person):
    account = make_staff()
    enrol_totp(account, clock)
    r = client.get("/helpdesk/people/12345")
    assert path_of(r) == "/cas/login"
    r = cas_login(client, STAFF_EMAIL, PASSWORD, service=None)
    assert r.status_code == 302 and location(r) == "/helpdesk/people/12345"
    r = client.get(location(r))
    # then the second factor, and back again
    assert path_of(r) == "/mfa/verify" and query(r)["next"] == ["/helpdesk/people/12345"]


def test_an_anonymous_post_changes_nothing(client, person):
    person.failed_logins, person.locked_until = 5, None
    db.session.commit()
    r = client.post("/helpdesk/people/12345/unlock", data={"reason": "ticket 1"})
    assert r.status_code in (302, 400)
    assert db.session.get(Account, person.id).failed_logins == 5
    assert events("helpdesk.unlock") == []


@pytest.mark.parametrize("url", ["/helpdesk/", "/helpdesk/people/12345", "/helpdesk/audit",
                                 "/helpdesk/people/12345/temporary-password"])
def test_a_logged_in_person_without_a_console_role_gets_403_and_it_is_audited(client, person, url):
    cas_login(client, STUDENT, PASSWORD, service=None)
    r = client.get(url)
    assert r.status_code == 403
    assert "No access to the helpdesk console" in text(r)
    assert "Łukasz" not in text(r).split("<main", 1)[1]  # nothing of the console, not even the person asked for
    [event] = events("helpdesk.access.denied")
    assert event.account_id == person.id and event.actor == STUDENT
    assert event.data["path"] == urlsplit(url).path


def test_a_post_by_a_person_without_a_role_is_refused_too(client, person):
    cas_login(client, STUDENT, PASSWORD, service=None)
    person.failed_logins = 5  # after the login, which forgets wrong passwords
    db.session.commit()
    page = client.get("/account")
    r = client.post("/helpdesk/people/12345/unlock", data={"csrf_token": csrf_token(text(page)), "reason": "x" * 10})
    assert r.status_code == 403
    assert db.session.get(Account, person.id).failed_logins == 5
    assert events("helpdesk.unlock") == []


def test_a_staff_person_without_a_second_factor_is_sent_to_enrol(client, clock):
    make_staff()
    cas_login(client, STAFF_EMAIL, PASSWORD, service=None)
    r = client.get("/helpdesk/audit?action=login.")
    assert r.status_code == 302 and path_of(r) == "/mfa/setup"
    assert query(r)["next"] == ["/helpdesk/audit?action=login."]


def test_an_enrolled_staff_person_verifies_in_each_new_session(client, clock):
    desk = Desk.open(client, clock)
    assert desk.get("/helpdesk/").status_code == 200
    # a new login (another SSO session) needs the check again
    other = client.application.test_client()
    english(other)
    cas_login(other, STAFF_EMAIL, PASSWORD, service=None)
    r = other.get("/helpdesk/")
    assert path_of(r) == "/mfa/verify"


def test_admins_may_use_the_console_too(client, clock):
    desk = Desk.open(client, clock, role="admin")
    assert "Helpdesk console" in desk.page("/helpdesk/")


def test_a_revoked_role_shuts_the_console_at_once(desk):
    staff.revoke(desk.account, "helpdesk", actor="cli")
    r = desk.get("/helpdesk/")
    assert r.status_code == 403
    assert len(events("helpdesk.access.denied")) == 1


# --- re-authentication for destructive actions ----------------------------------------------------------

DESTRUCTIVE = ["/helpdesk/people/12345/temporary-password", "/helpdesk/people/12345/sessions/end",
               "/helpdesk/people/12345/merge", "/helpdesk/people/12345/recovery-code"]


@pytest.mark.parametrize("url", DESTRUCTIVE)
def test_destructive_actions_ask_for_the_second_factor_again_after_reauth_minutes(app, desk, person, url):
    minutes = app.extensions["idp.policy"].data["helpdesk"]["reauth_minutes"]
    assert desk.get(url).status_code == 200  # just verified
    desk.clock.advance(minutes=minutes, seconds=1)
    r = desk.get(url)
    assert r.status_code == 302 and path_of(r) == "/mfa/verify"
    assert query(r)["next"] == [url] and query(r)["reauth"] == ["1"]
    assert desk.get("/helpdesk/people/12345").status_code == 200  # looking needs no new check
    desk.verify(location(r))
    assert desk.get(url).status_code == 200


def test_a_stale_factor_refuses_the_post_itself_and_changes_nothing(app, desk, person):
    url = "/helpdesk/people/12345/temporary-password"
    token = csrf_token(desk.page(url))
    minutes = app.extensions["idp.policy"].data["helpdesk"]["reauth_minutes"]
    desk.clock.advance(minutes=minutes + 1)
    before = db.session.get(Account, person.id).password_hash
    r = desk.client.post(url, data={"csrf_token": token, "password": "Parowóz-Klarnet-Zima-1954",
                                    "confirm": "Parowóz-Klarnet-Zima-1954", "reason": "ticket 42"})
    assert r.status_code == 302 and path_of(r) == "/mfa/verify" and query(r)["reauth"] == ["1"]
    assert db.session.get(Account, person.id).password_hash == before
    assert events("helpdesk.set_temporary_password") == []


def test_unlock_needs_no_fresh_factor(app, desk, person):
    person.failed_logins = 3
    db.session.commit()
    desk.clock.advance(minutes=app.extensions["idp.policy"].data["helpdesk"]["reauth_minutes"] + 10)
    r = desk.post("/helpdesk/people/12345/unlock", {"reason": "ticket 7"})
    assert r.status_code == 302


# --- headers and page structure --------------------------------------------------------------------------

def _strict(r) -> None:
    csp = r.headers["Content-Security-Policy"]
    assert "form-action 'self'" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_console_pages_carry_strict_headers(desk, person):
    for url in ["/helpdesk/", "/helpdesk/people/12345", "/helpdesk/audit", "/helpdesk/people/12345/unlock"]:
        r = desk.get(url)
        assert r.status_code == 200
        _strict(r)
    r = desk.get("/helpdesk/?q=12345")  # a redirect too
    assert r.status_code == 302
    assert r.headers["Cache-Control"] == "no-store"


def test_the_refusal_page_carries_strict_headers(client, person):
    cas_login(client, STUDENT, PASSWORD, service=None)
    _strict(client.get("/helpdesk/"))


def test_pages_are_keyboard_friendly(desk, person):
    page = desk.page("/helpdesk/")
    assert '<a class="skip" href="#main">' in page
    assert '<label for="q">' in page and 'id="q"' in page
    assert '<button type="submit"' in page
    form = desk.page("/helpdesk/people/12345/unlock")
    assert '<label for="reason">' in form
    assert "autofocus" in form


def test_the_console_speaks_polish_too(desk, person):
    page = desk.page("/helpdesk/people/12345?lang=pl")
    assert '<html lang="pl">' in page


def test_unknown_people_are_404(desk):
    assert desk.get("/helpdesk/people/nobody").status_code == 404



def test_admins_see_the_services_link_and_helpdesk_people_do_not(client, clock, app):
    desk = Desk.open(client, clock)
    assert 'href="/helpdesk/services"' not in desk.page("/helpdesk/")
    staff.grant(desk.account, "admin", actor="cli")
    assert 'href="/helpdesk/services"' in desk.page("/helpdesk/")
