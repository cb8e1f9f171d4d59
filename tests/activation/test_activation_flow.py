"""/activate end to end with Flask's test client: the data, the password, the messages, the rate limit and
the proof-of-work challenge."""
from __future__ import annotations

import re

import pytest

from idp.core import activation
from idp.extensions import db
from idp.models import Account, AuditEvent
from tests.activation.conftest import NEWCOMER
from tests.activation.helpers import (
    EN,
    NEW,
    OTHER_PESEL,
    challenge_of,
    form_data,
    main_text,
    set_password,
    solve,
    submit,
    text,
    wrong_solution,
)
from tests.conftest import cas_login, csrf_token
from tests.factories import PESEL

#: A cheap challenge for every test here (the tests solve it in Python).
pytestmark = pytest.mark.policy(activation__challenge_bits=8)

MISMATCH = "The data you entered do not match the records."


def events(action: str = activation.FAILED) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def reloaded(account: Account) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account.id)


def test_the_login_page_links_to_activation(client):
    page = client.get("/cas/login", query_string=EN)
    assert 'href="/activate"' in text(page)


def test_data_then_password_then_login(client, newcomer):
    start = client.get("/activate", query_string=EN)
    assert start.status_code == 200
    assert "Activate your account" in main_text(text(start))
    assert challenge_of(text(start)) is None  # no failures yet: no challenge
    assert "pow.js" not in text(start)

    r = submit(client, "12345", PESEL, "Żółkiewski")
    assert r.status_code == 302 and r.headers["Location"].endswith("/activate/password")
    [verified] = events(activation.VERIFIED)
    assert verified.account_id == newcomer.id and verified.client_ip == "127.0.0.1"

    page = client.get("/activate/password", query_string=EN)
    html = text(page)
    assert page.status_code == 200
    assert "Requirements for the new password:" in html
    assert 'data-live-check="/password/check?for=activation"' in html
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)
    check = client.post("/password/check?for=activation", json={"password": NEW}, headers={"X-CSRFToken": token})
    assert check.status_code == 200 and check.get_json()["ok"] is True

    done = set_password(client)
    assert done.status_code == 200, main_text(text(done))
    body = main_text(text(done))
    assert "Your account is active" in body
    assert 'href="/cas/login"' in text(done)
    assert reloaded(newcomer).password_hash is not None
    [completed] = events(activation.COMPLETED)
    assert completed.account_id == newcomer.id
    assert not events()  # no failure on the way

    # The password step is over: its page and the live check no longer know the person.
    again = client.get("/activate/password", query_string=EN)
    assert again.status_code == 302 and again.headers["Location"].endswith("/activate")
    assert client.post("/password/check?for=activation", json={"password": NEW},
                       headers={"X-CSRFToken": token}).status_code == 401

    login = cas_login(client, NEWCOMER, NEW)
    assert login.status_code == 302 and "ticket=ST-" in login.headers["Location"]


@pytest.mark.policy(activation__free_attempts=10)
def test_wrong_surname_wrong_pesel_unknown_album_get_the_same_answer(client, newcomer):
    answers = [submit(client, "12345", PESEL, "Kowalski"),
               submit(client, "12345", OTHER_PESEL, "Żółkiewski"),
               submit(client, "99999", PESEL, "Żółkiewski"),
               submit(client, "12345", "2004-03-15", "Żółkiewski")]  # a PESEL on record: the date does not do
    statuses = {r.status_code for r in answers}
    bodies = {re.sub(r"E\d+", "E#", main_text(text(r))) for r in answers}
    assert statuses == {400}
    assert len(bodies) == 1, bodies
    body = bodies.pop()
    assert MISMATCH in body
    assert "dean's office" in body
    assert "A correction becomes visible here after the next data migration from USOS." in body
    assert "Next data migration:" in body and "06:30, 16:30" in body  # policies/default.toml schedule
    failed = events()
    assert [e.reason for e in failed] == [activation.DATA_MISMATCH] * 4
    refs = [re.search(r'class="ref">(E\d+)<', text(r)).group(1) for r in answers]
    assert refs == [f"E{e.id}" for e in failed]
    assert [e.data["wrong"] for e in failed] == [["surname"], ["secret"], ["album"], ["secret"]]
    for e in failed:
        assert PESEL not in repr(e.data) and OTHER_PESEL not in repr(e.data)
    assert reloaded(newcomer).password_hash is None
    assert not events(activation.VERIFIED)


@pytest.mark.policy(help__contacts=[{"label_pl": "Dziekanat", "label_en": "Dean's office",
                                     "email": "dziekanat@example.edu.pl"}])
def test_the_mismatch_page_names_the_contacts_and_the_last_migration(client, newcomer):
    from idp.core.clock import utcnow
    from idp.models import ImportRun

    db.session.add(ImportRun(started_at=utcnow(), finished_at=utcnow(), source="sis.csv", status="ok"))
    db.session.commit()
    r = submit(client, "12345", PESEL, "Nowak")
    body = main_text(text(r))
    assert "If the data in USOS are right, contact the helpdesk (see Help below)." in body
    assert "Last data migration:" in body
    assert "dziekanat@example.edu.pl" in text(r)


def test_date_of_birth_for_a_person_without_pesel(client, no_pesel):
    assert submit(client, "77777", OTHER_PESEL, "Shevchenko").status_code == 400
    r = submit(client, "77777", "01.01.2000", "shevchenko")
    assert r.status_code == 302 and r.headers["Location"].endswith("/activate/password")
    assert set_password(client).status_code == 200
    assert reloaded(no_pesel).password_hash is not None
    assert events(activation.VERIFIED)[0].data["by"] == "birth_date"


def test_a_wrong_date_of_birth_is_a_mismatch(client, no_pesel):
    r = submit(client, "77777", "2000-01-02", "Shevchenko")
    assert r.status_code == 400 and MISMATCH in main_text(text(r))


@pytest.mark.parametrize("surname", ["zolkiewski", " ŻÓŁKIEWSKI ", "Zolkiewski", "żółkiewski"])
def test_the_surname_is_compared_without_case_spaces_or_diacritics(client, newcomer, surname):
    r = submit(client, "12345", PESEL, surname)
    assert r.status_code == 302, main_text(text(r))


def test_the_album_number_is_case_insensitive(client, app):
    from tests.factories import create_account

    create_account("AB-123", password=None, university_email="ab@student.example.edu.pl", private_email=None,
                   aliases=())
    assert submit(client, " ab-123 ", PESEL, "Żółkiewski").status_code == 302


def test_an_active_account_is_told_so_only_when_all_three_match(client, person):
    wrong = submit(client, "12345", OTHER_PESEL, "Żółkiewski")
    assert wrong.status_code == 400 and MISMATCH in main_text(text(wrong))
    r = submit(client, "12345", PESEL, "Zolkiewski")
    assert r.status_code == 409
    assert "The account is already active" in main_text(text(r))
    assert 'href="/password/reset"' in text(r)
    assert [e.reason for e in events()] == [activation.DATA_MISMATCH, activation.ALREADY_ACTIVE]
    assert client.get("/activate/password").status_code == 302


def test_malformed_pesel_or_date_is_explained_and_not_counted(client, newcomer):
    r = submit(client, "12345", "04231512340", "Żółkiewski")  # wrong check digit
    assert r.status_code == 400
    assert "This is not a valid PESEL number" in main_text(text(r))
    r = submit(client, "12345", "yesterday", "Żółkiewski")
    assert r.status_code == 400
    assert "your date of birth as YYYY-MM-DD" in main_text(text(r))
    assert 'value="yesterday"' not in text(r)  # the secret field is never echoed back
    assert events() == []


def test_policy_violations_of_the_new_password_are_listed(client, newcomer):
    assert submit(client, "12345", PESEL, "Żółkiewski").status_code == 302
    r = set_password(client, "haslo123")
    assert r.status_code == 400
    body = main_text(text(r))
    assert "The password was not accepted:" in body
    assert 'role="alert"' in text(r)
    r = set_password(client, "Zolkiewski-Lukasz-2004-abc")
    assert r.status_code == 400 and "The password was not accepted:" in main_text(text(r))
    r = set_password(client, NEW, confirm=NEW + "x")
    assert r.status_code == 400 and "The passwords do not match." in main_text(text(r))
    assert reloaded(newcomer).password_hash is None
    assert set_password(client).status_code == 200


def test_the_password_page_needs_the_data_first(client, newcomer):
    r = client.get("/activate/password", query_string=EN)
    assert r.status_code == 302 and r.headers["Location"].endswith("/activate")
    page = client.get("/activate", query_string=EN)
    assert "The time to choose a password has run out" in main_text(text(page))
    assert client.post("/password/check?for=activation", json={"password": NEW}).status_code in (400, 401)


def test_the_verified_state_expires(client, newcomer, monkeypatch):
    import time

    from idp.http import authflow

    assert submit(client, "12345", PESEL, "Żółkiewski").status_code == 302
    later = time.time() + authflow.ACTIVATION_SECONDS + 5
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.get("/activate/password").status_code == 302


def test_an_account_activated_meanwhile_is_not_overwritten(client, newcomer):
    from idp.core.passwords import hasher

    assert submit(client, "12345", PESEL, "Żółkiewski").status_code == 302
    page = client.get("/activate/password", query_string=EN)
    newcomer.password_hash = hasher().hash("Inne-Haslo-Od-Helpdesku-99")
    db.session.commit()
    r = client.post("/activate/password", query_string=EN,
                    data={"csrf_token": csrf_token(text(page)), "new_password": NEW, "confirm": NEW})
    assert r.status_code == 302  # the person is no longer waiting for a password: back to the start
    assert cas_login(client, NEWCOMER, NEW).status_code == 401


@pytest.mark.policy(activation__attempts_per_hour=3, activation__free_attempts=10)
def test_too_many_failures_from_one_address_get_429_until_the_hour_passes(client, newcomer, clock):
    for _ in range(3):
        last = submit(client, "12345", OTHER_PESEL, "Żółkiewski")
        assert last.status_code == 400
    page = client.get("/activate", query_string=EN)
    assert page.status_code == 429
    assert "Too many attempts" in main_text(text(page))
    assert "Try again after" in main_text(text(page))
    assert int(page.headers["Retry-After"]) > 3000
    refused = client.post("/activate", query_string=EN, data={"csrf_token": csrf_token(text(last)), "album": "12345",
                                                              "secret": PESEL, "surname": "Żółkiewski"})
    assert refused.status_code == 429
    assert [e.reason for e in events()][-1] == activation.RATE_LIMITED
    assert re.search(r'class="ref">E\d+<', text(refused))
    # Refused attempts do not extend the block; an hour after the first failure one more attempt is allowed.
    clock.advance(minutes=61)
    assert client.get("/activate", query_string=EN).status_code == 200
    assert submit(client, "12345", PESEL, "Żółkiewski").status_code == 302


@pytest.mark.policy(activation__attempts_per_hour=2, activation__free_attempts=10)
def test_the_limit_is_per_client_address(client, newcomer):
    for _ in range(2):
        assert submit(client, "12345", OTHER_PESEL, "Żółkiewski").status_code == 400
    assert client.get("/activate").status_code == 429
    other = {"REMOTE_ADDR": "192.0.2.7"}
    page = client.get("/activate", query_string=EN, environ_base=other)
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(text(page)), "album": "12345", "secret": PESEL, "surname": "Żółkiewski"}
    assert client.post("/activate", query_string=EN, data=data, environ_base=other).status_code == 302


@pytest.mark.policy(activation__free_attempts=2)
def test_a_challenge_is_required_after_the_free_attempts_and_a_solution_is_accepted(client, newcomer):
    for _ in range(2):
        r = submit(client, "12345", OTHER_PESEL, "Żółkiewski")
        assert r.status_code == 400
    # The mismatch page of the last free attempt already carries the challenge for the next one.
    html = text(r)
    assert challenge_of(html) is not None
    assert re.search(r'<script src="/static/pow.js" nonce="[^"]+" defer></script>', html)
    assert "Checking your browser…" in html
    assert re.search(r'<p class="warn" id="pow-nojs">[^<]*needs JavaScript', html)  # pow.js hides it
    token, bits = challenge_of(html)
    assert bits == 8
    r = client.post("/activate", query_string=EN,
                    data={"csrf_token": csrf_token(html), "album": "12345", "secret": PESEL,
                          "surname": "Żółkiewski", "challenge": token, "solution": solve(token, bits)})
    assert r.status_code == 302, main_text(text(r))
    [verified] = events(activation.VERIFIED)
    assert verified.data["challenge"]


@pytest.mark.policy(activation__free_attempts=0)
def test_without_a_solution_the_form_says_javascript_is_needed(client, newcomer):
    r = submit(client, "12345", PESEL, "Żółkiewski", solve_challenge=False)
    assert r.status_code == 400
    assert "This needs JavaScript" in main_text(text(r))
    assert [(e.reason, e.data["why"]) for e in events()] == [(activation.CHALLENGE_FAILED, "missing")]
    assert not events(activation.VERIFIED)  # the data were not even looked at
    assert challenge_of(text(r)) is not None  # a fresh challenge for the next try


@pytest.mark.policy(activation__free_attempts=0)
def test_a_wrong_solution_is_refused(client, newcomer):
    data = form_data(client, "12345", PESEL, "Żółkiewski")
    data["solution"] = wrong_solution(data["challenge"], 8)
    r = client.post("/activate", query_string=EN, data=data)
    assert r.status_code == 400
    assert "The browser check did not succeed." in main_text(text(r))
    assert events()[-1].data["why"] == "wrong"
    data = form_data(client, "12345", PESEL, "Żółkiewski")
    data["solution"] = "x" + data["solution"]
    assert client.post("/activate", query_string=EN, data=data).status_code == 400
    assert not events(activation.VERIFIED)


@pytest.mark.policy(activation__free_attempts=0)
def test_a_tampered_challenge_is_refused(client, newcomer):
    data = form_data(client, "12345", PESEL, "Żółkiewski", solve_challenge=False)
    token = data["challenge"]
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    data.update(challenge=forged, solution=solve(forged, 8))
    r = client.post("/activate", query_string=EN, data=data)
    assert r.status_code == 400 and events()[-1].data["why"] == "invalid"


@pytest.mark.policy(activation__free_attempts=0)
def test_a_replayed_solution_is_refused(client, newcomer):
    data = form_data(client, "12345", OTHER_PESEL, "Żółkiewski")
    assert client.post("/activate", query_string=EN, data=data).status_code == 400  # spent on a mismatch
    data.update(secret=PESEL)  # the right data, the same solved challenge
    r = client.post("/activate", query_string=EN, data=data)
    assert r.status_code == 400
    assert "The browser check did not succeed." in main_text(text(r))
    assert [e.data.get("why") for e in events()] == [None, "replayed"]
    assert not events(activation.VERIFIED)
    # A successful attempt spends its challenge too.
    fresh = form_data(client, "12345", PESEL, "Żółkiewski")
    assert client.post("/activate", query_string=EN, data=fresh).status_code == 302
    assert client.post("/activate", query_string=EN, data=fresh).status_code == 400
    assert events()[-1].data["why"] == "replayed"


@pytest.mark.policy(activation__free_attempts=0)
def test_an_expired_challenge_is_refused(client, newcomer, clock):
    data = form_data(client, "12345", PESEL, "Żółkiewski")
    clock.advance(seconds=activation.CHALLENGE_SECONDS + 1)
    r = client.post("/activate", query_string=EN, data=data)
    assert r.status_code == 400
    assert "The browser check has expired." in main_text(text(r))
    assert events()[-1].data["why"] == "expired"


def test_the_form_needs_its_csrf_token(client, newcomer):
    r = client.post("/activate", query_string=EN, data={"album": "12345", "secret": PESEL, "surname": "Żółkiewski"})
    assert r.status_code == 400
    assert "The form has expired" in main_text(text(r))
    assert not events(activation.VERIFIED)
    assert submit(client, "12345", PESEL, "Żółkiewski").status_code == 302
    r = client.post("/activate/password", query_string=EN, data={"new_password": NEW, "confirm": NEW})
    assert r.status_code == 400
    assert reloaded(newcomer).password_hash is None


@pytest.mark.policy(activation__enabled=False)
def test_disabled_by_the_policy(client, newcomer):
    assert client.get("/activate").status_code == 404
    assert client.post("/activate").status_code in (400, 404)
    assert client.get("/activate/password").status_code == 404
    assert 'href="/activate"' not in text(client.get("/cas/login", query_string=EN))


def test_a_person_who_left_cannot_activate(client, app):
    from tests.factories import create_account

    create_account(password=None, status="left")
    r = submit(client, "12345", PESEL, "Żółkiewski")
    assert r.status_code == 400 and MISMATCH in main_text(text(r))
