"""The console's audit log (/helpdesk/audit): newest first, filtered by action prefix, person, actor,
reason code and days (Polish time), paginated with the filters kept."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import audit
from tests.factories import create_account
from tests.helpdesk.console import Desk, plain, rows, text

PER_PAGE = 50


@pytest.fixture
def desk(client, clock):
    return Desk.open(client, clock)


@pytest.fixture
def history(app, person):
    other = create_account("67890", first_name="Anna", last_name="Nowak", university_email="anna@example.edu.pl",
                           private_email=None, aliases=())
    base = dt.datetime(2024, 3, 10, 12, 0)
    audit.record("login.failed", account_id=person.id, reason="wrong_password", client_ip="192.0.2.1",
                 now=base, data={"service": "USOSweb"})
    # 23:30 UTC on 10 March is 00:30 on 11 March in Warsaw
    audit.record("login.failed", account_id=other.id, reason="unknown_identifier", now=base + dt.timedelta(hours=11, minutes=30))
    audit.record("helpdesk.unlock", actor="jan.pomocny@example.edu.pl", account_id=person.id, now=base + dt.timedelta(days=2),
                 data={"why": "ticket 17", "via": "console", "before": {"failed_logins": 3},
                       "after": {"failed_logins": 0}})
    return person, other


def shown(page: str) -> list[tuple[str, str]]:
    """(action code, person album) of each row."""
    out = []
    for row in rows(page):
        action = row[1].split()[-1] if "Reason given" not in row[1] else row[1].split(" Reason given")[0].split()[-1]
        out.append((action, row[2].split()[-1] if row[2] else ""))
    return out


def test_filters_by_action_prefix(desk, history):
    page = desk.page("/helpdesk/audit", query_string={"action": "login.failed"})
    assert [a for a, _p in shown(page)] == ["login.failed", "login.failed"]
    page = desk.page("/helpdesk/audit", query_string={"action": "helpdesk."})
    assert shown(page) == [("helpdesk.unlock", "12345")]
    words = plain(page)
    assert "Helpdesk unlocked the account" in words and "Reason given: ticket 17" in words
    assert "jan.pomocny@example.edu.pl" in words and "failed_logins: 3" in words


def test_filters_by_person_actor_and_reason(desk, history):
    page = desk.page("/helpdesk/audit", query_string={"person": "67890"})
    assert shown(page) == [("login.failed", "67890")]
    assert "unknown login" in plain(page)
    page = desk.page("/helpdesk/audit", query_string={"person": "anna@example.edu.pl", "action": "login."})
    assert shown(page) == [("login.failed", "67890")]
    page = desk.page("/helpdesk/audit", query_string={"actor": "Jan.Pomocny@example.edu.pl"})
    assert shown(page) == [("helpdesk.unlock", "12345")]
    page = desk.page("/helpdesk/audit", query_string={"reason": "wrong_password"})
    assert shown(page) == [("login.failed", "12345")]
    assert "wrong password" in plain(page) and "USOSweb" in plain(page)


def test_an_unknown_person_is_said_so(desk, history):
    r = desk.get("/helpdesk/audit", query_string={"person": "99999"})
    assert r.status_code == 400
    assert "No account has the album number or address 99999." in plain(text(r))


def test_days_are_polish_days(desk, history):
    page = desk.page("/helpdesk/audit", query_string={"since": "2024-03-11", "until": "2024-03-11", "action": "login."})
    assert shown(page) == [("login.failed", "67890")]  # 23:30 UTC on the 10th
    page = desk.page("/helpdesk/audit", query_string={"until": "2024-03-10"})
    assert shown(page) == [("login.failed", "12345")]
    page = desk.page("/helpdesk/audit", query_string={"since": "2024-03-12", "until": "2024-03-12"})
    assert shown(page) == [("helpdesk.unlock", "12345")]


def test_a_bad_date_is_a_form_error(desk, history):
    r = desk.get("/helpdesk/audit", query_string={"since": "yesterday"})
    assert r.status_code == 400 and 'id="since-err"' in text(r)


def test_pages_keep_the_filters(desk, person):
    for n in range(PER_PAGE + 7):
        audit.record("test.event", account_id=person.id, reason="r", data={"n": n})
    first = desk.page("/helpdesk/audit", query_string={"action": "test.", "reason": "r"})
    assert len(rows(first)) == PER_PAGE
    assert "57 events." in plain(first) and "Page 1 of 2" in plain(first)
    assert 'href="/helpdesk/audit?action=test.&amp;reason=r&amp;page=2" rel="next"' in first
    assert "n: 56" in plain(first)  # newest first
    second = desk.page("/helpdesk/audit", query_string={"action": "test.", "reason": "r", "page": 2})
    assert len(rows(second)) == 7 and "n: 0" in plain(second)
    assert 'rel="prev"' in second and 'rel="next"' not in second


def test_the_unfiltered_log_shows_the_console_visit_itself(desk):
    page = desk.page("/helpdesk/audit")
    actions = [a for a, _p in shown(page)]
    assert "mfa.verified" in actions and "login.succeeded" in actions
    assert '<label for="action">' in page and 'type="date"' in page
