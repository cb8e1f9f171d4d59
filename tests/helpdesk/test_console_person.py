"""The console's person view (/helpdesk/people/<album>): one screen that says, in plain words, what state
the account is in and why the last logins failed."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from idp.core import linking, registry
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import Account, ImportRun, PendingLink
from tests.conftest import SERVICES, USOSWEB, FreshContextClient, cas_login
from tests.factories import PASSWORD, PESEL, create_account
from tests.helpdesk.console import UPSTREAM, Desk, english, plain, rows, section

STUDENT = "lukasz.zolkiewski@student.example.edu.pl"
MOODLE = "https://moodle.example.edu.pl/login/index.php"


@pytest.fixture
def desk(client, clock):
    return Desk.open(client, clock)


@pytest.fixture
def browser(app):
    def make() -> FreshContextClient:
        return english(FreshContextClient(app, app.response_class, use_cookies=True))
    return make


def test_the_person_page_explains_a_lockout_in_plain_words(app, desk, person, browser):
    # USOSweb needs provisioning the person lacks; Moodle is open to everyone.
    services = [dict(s) for s in SERVICES]
    services[0]["requires_entitlement"] = True
    registry.replace_all(services)
    student = browser()
    r = cas_login(student, STUDENT, PASSWORD, service=USOSWEB)
    assert r.status_code == 403  # "not provisioned for USOSweb"
    r = student.get("/cas/login", query_string={"service": MOODLE})  # the SSO session: straight in
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]
    stranger = browser()
    for _ in range(3):
        assert cas_login(stranger, STUDENT, "wrong-guess", service=None).status_code == 401

    page = desk.page("/helpdesk/people/12345")
    text = plain(page)
    assert "Łukasz Żółkiewski" in text and "Album number 12345" in text
    assert "Last refused attempt" in text
    status = plain(section(page, "Status"))
    assert "Login refused — wrong password ×3" in status
    events = rows(section(page, "Recent logins and events"))
    assert "Login refused: wrong password ×3" in events[0][1]
    assert any("not provisioned for USOSweb" in row[1] for row in events), events
    # the right password, then refused by USOSweb: both are there, in that order
    assert any(row[1] == "✓ Logged in" and row[2] == "USOSweb" for row in events), events
    assert events[0][0].count(":") == 1  # three attempts within one minute: one time, not a range
    apps = rows(section(page, "Applications"))
    assert ["USOSweb", "CAS", "no: not provisioned by the student records"] in apps
    sessions = rows(section(page, "Active sessions"))
    assert len(sessions) == 1 and sessions[0][3] == "Moodle"
    # the PESEL is never shown, not even as its hash
    assert PESEL not in page and db.session.get(Account, person.id).pesel_hash not in page


@pytest.mark.policy(login__lockout_threshold=3, login__lockout_minutes=15)
def test_locked_until_is_given_in_polish_time(app, desk, person, browser):
    stranger = browser()
    for _ in range(3):
        cas_login(stranger, STUDENT, "wrong-guess", service=None)
    account = db.session.get(Account, person.id)
    assert account.locked_until is not None
    local = account.locked_until.replace(tzinfo=dt.UTC).astimezone(ZoneInfo("Europe/Warsaw"))
    page = desk.page("/helpdesk/people/12345")
    status = plain(section(page, "Status"))
    assert "locked" in status
    assert f"Locked until {local.day} {local.strftime('%B')} {local.year}, {local.strftime('%H:%M')} (Polish time)" \
        in status, status
    assert "after 3 wrong passwords in a row" in status
    events = rows(section(page, "Recent logins and events"))
    assert [e[1] for e in events[:2]] == ["✗ Account locked: too many wrong passwords",
                                          "✗ Login refused: wrong password ×3"]
    assert 'href="/helpdesk/people/12345/unlock"' in page


def test_identifiers_links_pending_and_the_last_migration(app, desk, person):
    now = utcnow()
    run = ImportRun(started_at=now - dt.timedelta(days=2), finished_at=now - dt.timedelta(days=2),
                    source="usos-2024-10.csv", status="ok", added=0, updated=1)
    db.session.add(run)
    account = db.session.get(Account, person.id)
    account.imported_at = run.started_at
    linking.link(account, "poczta", "sub-1", "l.z@mail.example.edu.pl", linked_by="password", actor="self",
                 client_ip=None)
    db.session.add(PendingLink(kind="exists", account_id=person.id, provider="poczta", subject="sub-2",
                               email=STUDENT, name="Łukasz Ż.", created_at=now, expires_at=now + dt.timedelta(hours=1)))
    db.session.commit()
    page = desk.page("/helpdesk/people/12345")
    idents = rows(section(page, "Identifiers"))
    assert idents[0][:3] == ["12345", "Album number", "yes"]
    assert [STUDENT, "University e-mail", "yes"] == idents[1][:3]
    assert ["lukasz.z@example.com", "Private e-mail", "no"] == idents[2][:3]
    assert idents[1][3] == f"Remove {STUDENT}"
    assert "usos-2024-10.csv" in plain(section(page, "Status"))
    linked = rows(section(page, "Linked identities of other providers"))
    assert linked[0][0] == "poczta" and "l.z@mail.example.edu.pl" in linked[0][1]
    waiting = rows(section(page, "Waiting links"))
    assert waiting[0][0] == "poczta" and STUDENT in waiting[0][1]
    assert "Not logged in anywhere." in page


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_configured_providers_offer_linking(desk, person):
    page = desk.page("/helpdesk/people/12345")
    assert 'href="/helpdesk/people/12345/identities/link"' in page


def test_a_merged_account_says_where_it_went_and_offers_no_actions(desk, person):
    other = create_account("67890", first_name="Łukasz", last_name="Żółkiewski", university_email=None,
                           private_email="lz2@example.com", aliases=())
    other.merged_into_id, other.status = person.id, "merged"
    db.session.commit()
    page = desk.page("/helpdesk/people/67890")
    text = plain(page)
    assert "merged into another account" in text
    assert "Merged into Łukasz Żółkiewski (12345)" in text
    assert "/helpdesk/people/67890/unlock" not in page and "/helpdesk/people/67890/merge" not in page
    survivor = plain(desk.page("/helpdesk/people/12345"))
    assert "Accounts merged into this one Łukasz Żółkiewski (67890)" in survivor


def test_the_events_link_to_their_reference_and_the_audit_log(desk, person, browser):
    cas_login(browser(), STUDENT, "wrong", service=None)
    page = desk.page("/helpdesk/people/12345")
    assert 'href="/helpdesk/audit?person=12345"' in page
    assert 'href="/helpdesk/?q=E' in page
