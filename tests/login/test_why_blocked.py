""""Why can't I log in?" — after a correct password only.

When the password is right but something else blocks the way (locked, left the university, password
expired, not provisioned for the app), the page says exactly that and what to do; with a wrong password
the page is the generic one an unknown identifier gets, so no page reveals whether an account exists.
"""
from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import pytest

from idp.core import registry
from idp.extensions import db
from idp.http.errors import error_page
from idp.models import AuditEvent
from tests.cas.conftest import page_error, tgc
from tests.conftest import SERVICES, USOSWEB, cas_login, csrf_token
from tests.factories import PASSWORD, create_account
from tests.oidc.conftest import CLIENTS, MAIL, auth_params, local

USER = "lukasz.zolkiewski@student.example.edu.pl"
UNKNOWN = "nobody@student.example.edu.pl"
WRONG = "Not-The-Password-123"
#: 13:20 UTC = 14:20 in Warsaw; the default schedule's next run is 16:30 local (15:30 UTC) the same day.
NOW = dt.datetime(2026, 1, 15, 13, 20)
NEXT_MIGRATION = "Next data migration: 1/15/26, 4:30 PM"  # English, short, Warsaw time
HELP = [{"label_pl": "Pomoc USOS", "label_en": "USOS helpdesk", "email": "pomoc-usos@example.edu.pl"}]


@pytest.fixture
def client(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def now(clock):
    clock.now = NOW
    return clock


def text(r) -> str:
    return r.get_data(as_text=True)


def main_text(r) -> str:
    body = re.search(r"<main[^>]*>(.*?)</main>", text(r), re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", body).split())


def ref_event(r) -> AuditEvent:
    code = re.search(r'<strong class="ref">E(\d+)</strong>', text(r)).group(1)
    db.session.expire_all()
    return db.session.get(AuditEvent, int(code))


def assert_same_as_unknown(client, username: str, password: str = WRONG, service: str | None = USOSWEB):
    """What `username`/`password` get is exactly what an unknown identifier gets: status and message."""
    blocked = cas_login(client, username, password, service)
    unknown = cas_login(client, UNKNOWN, password, service)
    assert blocked.status_code == unknown.status_code == 401
    assert page_error(text(blocked)) == page_error(text(unknown)) == "Invalid login or password"
    assert main_text(blocked).replace(username, "X") == main_text(unknown).replace(UNKNOWN, "X")
    assert tgc(client) is None


def left(account, *, days_ago: int = 31):
    account.left_at = NOW - dt.timedelta(days=days_ago)
    db.session.commit()
    return account


# --- left the university -----------------------------------------------------------------------------------

@pytest.mark.policy(help__contacts=HELP)
def test_left_after_the_grace_period_says_so_with_a_correct_password(client, person, now):
    left(person)  # left on 15 Dec 2025; the default grace is 30 days
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 403 and "Location" not in r.headers and tgc(client) is None
    page = main_text(r)
    assert "Your account is no longer active" in page
    assert "The university records show that you left the university on Dec 15, 2025." in page
    assert "You could still log in for 30 days after that; that grace period ended on Jan 14, 2026." in page
    assert "ask your dean's office" in page and "student records system (USOS)" in page
    assert NEXT_MIGRATION in page
    assert "USOS helpdesk" in page and "pomoc-usos@example.edu.pl" in page
    event = ref_event(r)
    assert (event.action, event.reason, event.account_id) == ("login.failed", "account_left", person.id)


def test_left_with_a_wrong_password_is_the_generic_page(client, person, now):
    left(person)
    assert_same_as_unknown(client, USER)


@pytest.mark.policy(migration__left_grace_days=7)
def test_the_grace_period_shown_is_the_policys(client, person, now):
    left(person, days_ago=8)
    page = main_text(cas_login(client, USER, PASSWORD))
    assert "You could still log in for 7 days after that; that grace period ended on Jan 14, 2026." in page


def test_during_the_grace_period_the_person_still_logs_in(client, person, now):
    left(person, days_ago=29)
    assert cas_login(client, USER, PASSWORD).status_code == 302


def test_marked_as_left_by_staff_without_a_date(client, now):
    create_account(status="left")
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 403
    page = main_text(r)
    assert "The university records show that you no longer study or work at the university." in page
    assert "grace period" not in page and NEXT_MIGRATION in page
    assert_same_as_unknown(client, USER)


@pytest.mark.policy(migration__schedule=[])
def test_without_a_schedule_no_next_migration_is_promised(client, person, now):
    left(person)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 403 and "Next data migration" not in text(r)


@pytest.mark.policy(login__lockout_threshold=2)
def test_left_and_locked_tells_nothing_until_the_lock_runs_out(client, person, now):
    """The lock first: the "no longer active" page after the right password would confirm a guess."""
    left(person)
    for _ in range(2):
        cas_login(client, USER, WRONG)
    assert_same_as_unknown(client, USER, PASSWORD)
    now.advance(hours=1)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 403 and "no longer active" in text(r) and "locked" not in main_text(r)


# --- locked (the lockout itself: tests/login/test_lockout.py) ------------------------------------------------

@pytest.mark.policy(login__lockout_threshold=3, login__delay_after=0, help__contacts=HELP)
def test_a_lock_is_told_to_nobody_not_even_the_correct_password(client, person, now):
    for _ in range(3):
        cas_login(client, USER, WRONG)
    assert_same_as_unknown(client, USER)
    assert_same_as_unknown(client, USER, PASSWORD)  # the right password: the very same page


@pytest.mark.policy(login__lockout_threshold=3, login__delay_after=0)
def test_oidc_authorize_then_locked_person_with_the_correct_password_is_refused_until_the_lock_runs_out(
        app, client, person, now):
    registry.replace_all([dict(s) for s in SERVICES] + [dict(c) for c in CLIENTS])
    params = auth_params(MAIL)
    r = client.get("/oidc/authorize", query_string=params)
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/cas/login"
    login_path = local(r.headers["Location"])
    for password in (WRONG, WRONG, WRONG):
        page = client.get(login_path)
        r = client.post(login_path, data={"csrf_token": csrf_token(text(page)), "username": USER,
                                          "password": password})
        assert r.status_code == 401 and page_error(text(r)) == "Invalid login or password"
    page = client.get(login_path)
    assert "Poczta" in text(page)  # still the login for the OIDC client
    r = client.post(login_path, data={"csrf_token": csrf_token(text(page)), "username": USER,
                                      "password": PASSWORD})
    assert r.status_code == 401 and "Location" not in r.headers
    assert page_error(text(r)) == "Invalid login or password"
    # Once the lock has run out, the same login goes back to /authorize and on to the app.
    now.advance(minutes=15)
    page = client.get(login_path)
    r = client.post(login_path, data={"csrf_token": csrf_token(text(page)), "username": USER,
                                      "password": PASSWORD})
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/oidc/authorize"


# --- password expired: the change form says why -------------------------------------------------------------

@pytest.mark.policy(password__max_age_days=90)
def test_an_expired_password_leads_to_the_change_form_that_says_why(client, person, now):
    person.password_changed_at = NOW - dt.timedelta(days=91)
    db.session.commit()
    assert_same_as_unknown(client, USER)  # a wrong one: nothing about expiry
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302 and r.headers["Location"].endswith("/login/change-password")
    page = client.get("/login/change-password")
    assert page.status_code == 200
    assert ("Your password has expired: passwords here are valid for 90 days. Choose a new password before "
            "you continue.") in main_text(page)
    assert "temporary" not in main_text(page)


def test_a_temporary_password_leads_to_the_change_form_that_says_why(client, now):
    create_account(temporary=True)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302 and r.headers["Location"].endswith("/login/change-password")
    page = main_text(client.get("/login/change-password"))
    assert "Your password is temporary. Choose your own password before you continue." in page
    assert "expired" not in page


# --- not provisioned for the app ----------------------------------------------------------------------------

def _usosweb_needs_entitlement(person):
    registry.replace_all([dict(s) for s in SERVICES[1:]] + [dict(SERVICES[0], requires_entitlement=True)])
    person.entitlements = ["Moodle"]
    db.session.commit()


def test_not_provisioned_is_shown_only_after_a_correct_password(client, person, now):
    _usosweb_needs_entitlement(person)
    assert_same_as_unknown(client, USER)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 403
    page = main_text(r)
    assert "You are logged in, but you do not have an account in USOSweb" in page
    assert NEXT_MIGRATION in page
    assert ref_event(r).action == "cas.login.not_provisioned"


# --- the generic error page can name the next migration ---------------------------------------------------

def test_error_page_shows_the_next_migration_when_given(app):
    with app.test_request_context("/x", headers={"Accept-Language": "en"}):
        html, status = error_page("No record", "We have no record of you yet.", 404, record=False,
                                  next_migration=dt.datetime(2026, 1, 15, 15, 30))
        assert status == 404 and NEXT_MIGRATION in " ".join(html.split())  # CLDR puts U+202F before PM
        html, _ = error_page("No record", "We have no record of you yet.", 404, record=False)
        assert "Next data migration" not in html
