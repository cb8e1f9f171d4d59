"""Lockout after too many wrong passwords in a row (`[login] lockout_threshold`, `lockout_minutes`).

A locked account answers every password, the right one too, exactly as an unknown identifier is
answered: the lock is neither an oracle for whether an account exists nor for whether a guess was right
(told only to the right password, it would let guessing go on through the lock and confirm the hit — as
Keycloak answers). The audit log keeps which it was; the owner's own logged-in page may name the lock. One
argon2 verification whatever happens; unknown identifiers never lock anything.
"""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import accounts, authn
from idp.extensions import db
from idp.models import Account, AuditEvent
from tests.cas.conftest import page_error, tgc
from tests.conftest import USOSWEB, cas_login
from tests.factories import PASSWORD, create_account
from tests.recovery.helpers import NEW, RIGHT_PESEL, queued_link, request_link, submit_answer

USER = "lukasz.zolkiewski@student.example.edu.pl"
WRONG = "Not-The-Password-123"
#: 13:20 UTC in January is 14:20 in Warsaw (CET): a 15-minute lock runs until 14:35 local time.
WINTER_AFTERNOON = dt.datetime(2026, 1, 15, 13, 20)

#: The lockout alone: the growing delays before it (which would refuse attempts made at one frozen moment)
#: have their own tests in test_throttle.py.
pytestmark = pytest.mark.policy(login__delay_after=0)


@pytest.fixture
def client(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def browser(app):
    """browser() -> another, independent browser (own cookie jar), English like `client`."""
    from tests.conftest import FreshContextClient

    def make():
        c = FreshContextClient(app, app.response_class, use_cookies=True)
        c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        return c

    return make


@pytest.fixture
def afternoon(clock):
    clock.now = WINTER_AFTERNOON
    return clock


def text(r) -> str:
    return r.get_data(as_text=True)


def fresh(account: Account) -> Account:
    db.session.expire_all()
    return db.session.get(Account, account.id)


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def wrong(client, times: int = 1, username: str = USER):
    for _ in range(times):
        r = cas_login(client, username, WRONG)
        assert r.status_code == 401 and page_error(text(r)) == "Invalid login or password", text(r)[:2000]
    return r


def refused_like_any_wrong_password(r) -> bool:
    return (r.status_code == 401 and page_error(text(r)) == "Invalid login or password"
            and "Location" not in r.headers and "locked" not in text(r).replace("lockout", "").lower())


# --- locking --------------------------------------------------------------------------------------------

@pytest.mark.policy(login__lockout_threshold=3, login__lockout_minutes=15)
def test_the_threshold_of_wrong_passwords_in_a_row_locks(client, person, afternoon):
    wrong(client, 2)
    assert fresh(person).failed_logins == 2 and fresh(person).locked_until is None
    assert events("account.locked") == []
    wrong(client)  # the third: locked, and still only the generic message
    account = fresh(person)
    assert account.failed_logins == 3
    assert account.locked_until == WINTER_AFTERNOON + dt.timedelta(minutes=15)
    [locked] = events("account.locked")
    assert locked.account_id == person.id and locked.reason == "too_many_wrong_passwords"
    assert locked.data == {"failed_logins": 3, "until": "2026-01-15T13:35:00", "lockouts": 1}


def test_the_default_policy_locks_after_ten(client, person, afternoon):
    wrong(client, 9)
    assert fresh(person).locked_until is None
    wrong(client)
    assert fresh(person).locked_until == WINTER_AFTERNOON + dt.timedelta(minutes=15)


@pytest.mark.policy(login__lockout_threshold=0)
def test_threshold_zero_never_locks(client, person, afternoon):
    wrong(client, 12)
    assert fresh(person).locked_until is None
    assert cas_login(client, USER, PASSWORD).status_code == 302


@pytest.mark.policy(login__lockout_threshold=3)
def test_the_right_password_while_locked_is_answered_as_any_wrong_one(client, browser, person, afternoon):
    wrong(client, 3)
    right = cas_login(client, USER, PASSWORD)
    unknown = cas_login(browser(), "nobody@student.example.edu.pl", PASSWORD)
    assert refused_like_any_wrong_password(right), (right.status_code, text(right)[:2000])
    assert refused_like_any_wrong_password(unknown)
    assert tgc(client) is None  # no session, no ticket
    # The same hint under every failed login: a lock refuses the right password too, and what to do. The
    # alert the form focuses is described by it (a screen reader reads both).
    assert 'aria-describedby="error-detail"' in text(right)
    hint = ("After 3 wrong passwords in a row, an account refuses password logins for at least 15 minutes, even "
            "with the right password. If you are sure of yours, wait, or set a new one with the reset link below.")
    assert hint in text(right) and hint in text(unknown)
    assert 'href="/password/reset"' in text(right)
    # The audit log tells the helpdesk it was the right password; the lock is neither extended nor counted.
    event = events("login.failed")[-2]
    assert (event.reason, event.account_id) == ("locked", person.id)
    assert fresh(person).locked_until == WINTER_AFTERNOON + dt.timedelta(minutes=15)
    assert fresh(person).failed_logins == 3 and len(events("account.locked")) == 1


@pytest.mark.policy(login__lockout_threshold=3)
def test_the_right_password_while_locked_in_polish(client, person, afternoon):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pl"
    answers = [cas_login(client, USER, pw) for pw in (WRONG, WRONG, WRONG, PASSWORD)]
    assert all(r.status_code == 401 and page_error(text(r)) == "Niepoprawne dane logowania" for r in answers)
    assert ("Po 3 błędnych hasłach z rzędu konto blokuje logowanie hasłem na co najmniej 15 minut — nawet przy "
            "poprawnym haśle.") in text(answers[-1])
    assert '<html lang="pl">' in text(answers[-1])


@pytest.mark.parametrize("polish", [
    pytest.param(f"{n} {word}", marks=pytest.mark.policy(login__lockout_minutes=n, login__lockout_max_minutes=240))
    for n, word in ((1, "minutę"), (2, "minuty"), (22, "minuty"), (25, "minut"))])
def test_the_hint_counts_minutes_in_polish(client, person, afternoon, polish):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "pl"
    assert f"co najmniej {polish} — nawet" in text(cas_login(client, USER, WRONG))


@pytest.mark.policy(login__lockout_threshold=2, login__permanent_lockout_after=3)
def test_with_permanent_locks_the_hint_names_the_helpdesk(client, person, afternoon):
    assert ("After 2 wrong passwords in a row, an account refuses password logins for at least 15 minutes, "
            "even with the right password. If you are sure of yours, wait, or set a new one with the reset link "
            "below; after repeated locks, only the helpdesk can unlock the account.") in text(wrong(client))


@pytest.mark.policy(login__lockout_threshold=0)
def test_without_lockout_the_failed_login_carries_no_lock_hint(client, person, afternoon):
    r = wrong(client)
    assert 'id="error-detail"' not in text(r)


@pytest.mark.policy(login__lockout_threshold=3)
def test_wrong_password_while_locked_is_identical_to_an_unknown_identifier(client, browser, person, afternoon):
    wrong(client, 3)
    locked = cas_login(browser(), USER, WRONG)
    unknown = cas_login(browser(), "nobody@student.example.edu.pl", WRONG)
    assert locked.status_code == unknown.status_code == 401
    assert page_error(text(locked)) == page_error(text(unknown)) == "Invalid login or password"
    assert "locked" not in text(locked).lower()
    # The audit log keeps the real reason; guessing on never extends the lock.
    assert events("login.failed")[-2].reason == "locked_wrong_password"
    assert fresh(person).locked_until == WINTER_AFTERNOON + dt.timedelta(minutes=15)
    assert fresh(person).failed_logins == 3
    assert len(events("account.locked")) == 1


@pytest.mark.policy(login__lockout_threshold=3, login__lockout_minutes=15)
def test_the_lock_runs_out_after_lockout_minutes(client, person, afternoon):
    wrong(client, 3)
    afternoon.advance(minutes=14, seconds=59)
    assert refused_like_any_wrong_password(cas_login(client, USER, PASSWORD))
    afternoon.advance(seconds=1)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]
    account = fresh(person)
    assert account.failed_logins == 0 and account.locked_until is None


@pytest.mark.policy(login__lockout_threshold=3, login__lockout_minutes=15)
def test_after_the_lock_runs_out_the_count_starts_again(client, person, afternoon):
    wrong(client, 3)
    afternoon.advance(minutes=16)
    wrong(client)  # one wrong password after the lock ran out does not lock again at once
    assert fresh(person).failed_logins == 1 and fresh(person).locked_until is None
    wrong(client, 2)
    # the second lock without a successful login in between lasts twice as long
    assert fresh(person).locked_until == afternoon.now + dt.timedelta(minutes=30)


@pytest.mark.policy(login__lockout_threshold=3)
def test_a_correct_password_resets_the_count(client, person, afternoon):
    wrong(client, 2)
    assert cas_login(client, USER, PASSWORD).status_code == 302
    assert fresh(person).failed_logins == 0
    client.get("/cas/logout")
    wrong(client, 2)
    assert fresh(person).locked_until is None
    assert cas_login(client, USER, PASSWORD).status_code == 302


@pytest.mark.policy(login__lockout_threshold=3)
def test_wrong_passwords_count_across_identifiers_of_the_same_account(client, person, afternoon):
    wrong(client, username="12345")
    wrong(client, username="s12345@student.example.edu.pl")
    wrong(client, username=USER.upper())
    assert fresh(person).locked_until is not None


@pytest.mark.policy(login__lockout_threshold=3)
def test_unknown_identifiers_never_lock_anything(client, person, afternoon):
    wrong(client, 5, username="nobody@student.example.edu.pl")
    wrong(client, 5, username="99999")
    assert events("account.locked") == []
    assert fresh(person).failed_logins == 0
    assert cas_login(client, USER, PASSWORD).status_code == 302


@pytest.mark.policy(login__lockout_threshold=3)
def test_an_account_without_a_password_is_never_locked(client, afternoon):
    nobody = create_account(album="55555", university_email="no.password@student.example.edu.pl",
                            private_email=None, aliases=(), password=None)
    wrong(client, 4, username="no.password@student.example.edu.pl")
    assert fresh(nobody).locked_until is None and fresh(nobody).failed_logins == 0


# --- one argon2 verification in every branch --------------------------------------------------------------

@pytest.mark.policy(login__lockout_threshold=2)
@pytest.mark.parametrize("case", ["unknown", "wrong", "locking", "locked_wrong", "locked_right", "expired_lock",
                                  "left_right", "left_wrong", "ok"])
def test_exactly_one_verification_whatever_the_outcome(app, afternoon, monkeypatch, case):
    from idp.core.passwords import Passwords

    account = create_account(status="left" if case.startswith("left") else "active")
    if case == "locking":
        account.failed_logins = 1
    if case.startswith("locked") or case == "expired_lock":
        account.failed_logins = 2
        account.locked_until = afternoon.now + dt.timedelta(minutes=-1 if case == "expired_lock" else 5)
    db.session.commit()
    calls = []
    real = Passwords.verify
    monkeypatch.setattr(Passwords, "verify", lambda self, stored, pw: calls.append(stored) or real(self, stored, pw))
    identifier = "nobody@student.example.edu.pl" if case == "unknown" else USER
    password = PASSWORD if case in ("locked_right", "expired_lock", "left_right", "ok") else WRONG
    with app.test_request_context():
        result = authn.authenticate(identifier, password, app.extensions["idp.policy"], client_ip="192.0.2.1")
    assert len(calls) == 1
    expected = {"unknown": "unknown_identifier", "wrong": "wrong_password", "locking": "wrong_password",
                "locked_wrong": "locked_wrong_password", "locked_right": "locked", "expired_lock": None,
                "left_right": "account_left", "left_wrong": "wrong_password", "ok": None}[case]
    assert result.reason == expected
    assert result.password_was_correct is (case == "left_right")
    if case == "locking":
        assert fresh(account).locked_until is not None


# --- a new password lifts the lock ------------------------------------------------------------------------

@pytest.mark.policy(login__lockout_threshold=3)
def test_a_password_reset_by_link_unlocks(app, client, browser, person, afternoon):
    wrong(client, 3)
    assert fresh(person).locked_until is not None
    reset = browser()
    assert request_link(reset, USER).status_code == 200
    r = submit_answer(reset, queued_link(USER), RIGHT_PESEL)
    assert r.status_code in (200, 302, 303), text(r)[:2000]
    account = fresh(person)
    assert account.locked_until is None and account.failed_logins == 0
    r = cas_login(client, USER, NEW)
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]


@pytest.mark.policy(login__lockout_threshold=3)
def test_set_password_lifts_the_lock(app, person, afternoon):
    person.failed_logins, person.locked_until = 3, afternoon.now + dt.timedelta(minutes=15)
    db.session.commit()
    accounts.set_password(person, NEW, app.extensions["idp.policy"], actor="cli")
    account = fresh(person)
    assert account.failed_logins == 0 and account.locked_until is None


@pytest.mark.policy(login__lockout_threshold=3)
def test_a_locked_account_keeps_a_session_it_already_had(client, browser, person, afternoon):
    """The lock stops password logins; a session opened before it (the person's own) goes on."""
    assert cas_login(client, USER, PASSWORD).status_code == 302
    other = browser()
    for _ in range(3):
        cas_login(other, USER, WRONG)
    assert fresh(person).locked_until is not None
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]


@pytest.mark.policy(login__lockout_threshold=3)
def test_a_reset_tells_the_mailbox_owner_that_a_permanent_lock_stays(app, client, browser, person, afternoon):
    account = fresh(person)
    account.locked_permanently = True
    db.session.commit()
    reset = browser()
    assert request_link(reset, USER).status_code == 200
    r = submit_answer(reset, queued_link(USER), RIGHT_PESEL)
    assert r.status_code == 302 and r.headers["Location"].endswith("/cas/login")
    page = text(reset.get(r.headers["Location"]))
    assert "Your password has been changed, but your account stays locked until the helpdesk unlocks it" in page
    assert "Log in with the new password" not in page
    assert fresh(person).locked_permanently  # only the helpdesk lifts it
    assert refused_like_any_wrong_password(cas_login(client, USER, NEW))
