"""Brute-force protection over HTTP: the growing delay after wrong passwords, the blocked client address and
the endpoint rate limit answer 429 with the login form (username kept) and how long to wait, in the
person's language; unknown identifiers get byte-for-byte the same pages; every refusal is audited; the
helpdesk's unlock lifts it; a permanent lock is told only to the correct password, with whom to contact.
The password change page and its current password get the same protection."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from idp.extensions import db
from idp.models import Account, AuditEvent
from tests.cas.conftest import page_error, tgc
from tests.conftest import FreshContextClient, cas_login, csrf_token
from tests.factories import PASSWORD, create_account
from tests.helpdesk.console import Desk, plain

USER = "lukasz.zolkiewski@student.example.edu.pl"
UNKNOWN = "nobody@student.example.edu.pl"
WRONG = "Not-The-Password-123"
WINTER_AFTERNOON = dt.datetime(2026, 1, 15, 13, 20)
HELP = [{"label_pl": "Dział IT", "label_en": "IT department", "email": "pomoc@example.edu.pl"}]


@pytest.fixture
def client(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def browser(app):
    """browser(lang) -> another, independent browser (own cookie jar)."""
    def make(lang: str = "en"):
        c = FreshContextClient(app, app.response_class, use_cookies=True)
        c.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
        return c

    return make


@pytest.fixture
def afternoon(clock):
    clock.now = WINTER_AFTERNOON
    return clock


def text(r) -> str:
    return r.get_data(as_text=True)


def events(action: str) -> list[AuditEvent]:
    db.session.expire_all()
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)))


def wrong(client, times: int = 1, username: str = USER):
    for _ in range(times):
        r = cas_login(client, username, WRONG)
        assert r.status_code == 401, (r.status_code, page_error(text(r)))
    return r


def username_value(html: str) -> str | None:
    m = re.search(r'<input[^>]*name="username"[^>]*>', html)
    value = re.search(r'value="([^"]*)"', m.group(0)) if m else None
    return value.group(1) if value else None


def password_value(html: str) -> str | None:
    m = re.search(r'<input[^>]*name="password"[^>]*>', html)
    value = re.search(r'value="([^"]*)"', m.group(0)) if m else None
    return value.group(1) if value else None


# --- the growing delay ------------------------------------------------------------------------------------

def test_after_three_wrong_passwords_the_next_attempt_waits(client, person, afternoon):
    wrong(client, 3)
    r = cas_login(client, USER, PASSWORD)  # even the right password: not checked at all
    assert r.status_code == 429
    page = text(r)
    assert page_error(page) == "Too many failed attempts. Try again in 2 s."
    assert r.headers["Retry-After"] == "2"
    assert username_value(page) == USER and password_value(page) in (None, "")
    assert 'name="service"' in page and "USOSweb" in page  # still the login for the same app
    assert tgc(client) is None and "Location" not in r.headers
    [event] = events("login.throttled")
    assert (event.reason, event.account_id, event.client_ip) == ("throttled", person.id, "127.0.0.1")
    assert event.data == {"service": "USOSweb", "retry_after": 2}
    afternoon.advance(seconds=2)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]


def test_the_wait_grows_with_each_wrong_password_and_is_said_in_minutes_when_long(client, person, afternoon):
    wrong(client, 3)
    for wait in (2, 4, 8, 16, 32, 60, 60):
        afternoon.advance(seconds=wait)
        wrong(client)
    assert page_error(text(cas_login(client, USER, WRONG))) == "Too many failed attempts. Try again in 60 s."


@pytest.mark.policy(login__delay_seconds=90, login__delay_max_seconds=600)
def test_a_wait_of_two_minutes_or_more_is_said_in_minutes(client, person, afternoon):
    wrong(client, 3)
    afternoon.advance(seconds=90)
    wrong(client)
    assert page_error(text(cas_login(client, USER, WRONG))) == "Too many failed attempts. Try again in 3 min."


def test_the_wait_message_in_polish(browser, person, afternoon):
    client = browser("pl")
    for _ in range(3):
        assert cas_login(client, USER, WRONG).status_code == 401
    r = cas_login(client, USER, WRONG)
    assert r.status_code == 429 and '<html lang="pl">' in text(r)
    assert page_error(text(r)) == "Zbyt wiele nieudanych prób. Spróbuj ponownie za 2 s."


def test_unknown_and_known_identifiers_get_the_same_pages(browser, person, afternoon):
    """Same statuses, same bodies (but for the typed login and the CSRF token), same waits."""
    known, unknown = browser(), browser()

    def page(r, typed: str) -> tuple[int, str, str | None]:
        body = text(r).replace(typed, "TYPED")
        body = re.sub(r'(name="csrf_token"[^>]*value=")[^"]+', r"\1T", body)
        body = re.sub(r'nonce-[^\'"]+|nonce="[^"]+"', "N", body)
        return r.status_code, body, r.headers.get("Retry-After")

    for step in range(8):
        k = page(cas_login(known, USER, WRONG), USER)
        u = page(cas_login(unknown, UNKNOWN, WRONG), UNKNOWN)
        assert k == u, step
        afternoon.advance(seconds=1 + step)
    assert {e.reason for e in events("login.throttled")} == {"throttled"}
    assert len({e.account_id for e in events("login.throttled")}) == 2  # the account, and None


def test_a_delay_on_one_identifier_says_nothing_about_another_of_the_same_person(browser, person, afternoon):
    """Three wrong passwords on the album number, then a guessed e-mail address of the same person: it gets
    the wrong-password page (401) exactly as a stranger's address would — not the delay (429), which would
    confirm that the address belongs to the account. The lockout still counts both (test_lockout.py)."""
    attacker = browser()
    wrong(attacker, 3, username="12345")
    assert cas_login(attacker, "12345", WRONG).status_code == 429
    guessed = cas_login(attacker, USER, WRONG)
    stranger = cas_login(attacker, UNKNOWN, WRONG)
    assert guessed.status_code == stranger.status_code == 401 and "Retry-After" not in guessed.headers
    assert page_error(text(guessed)) == page_error(text(stranger)) == "Invalid login or password"
    assert db.session.get(Account, person.id).failed_logins == 4


def test_parallel_posts_get_no_more_checks_than_one_after_another(browser, person, afternoon, monkeypatch):
    """Six browsers post wrong passwords for one login at the same moment, each while the others are still
    being verified: three are checked (401), the other three wait (429) — as they would one by one."""
    import threading
    import time

    from idp.core.passwords import Passwords

    real, lock, verified = Passwords.verify, threading.Lock(), []

    def slow_verify(self, stored, pw):
        with lock:
            verified.append(1)
        time.sleep(0.3)
        return real(self, stored, pw)

    monkeypatch.setattr(Passwords, "verify", slow_verify)
    clients, statuses = [browser() for _ in range(6)], []
    pages = [c.get("/cas/login") for c in clients]

    def post(c, page):
        r = c.post("/cas/login", data={"csrf_token": csrf_token(text(page)), "username": USER, "password": WRONG})
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=post, args=pair) for pair in zip(clients, pages, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses) == [401] * 3 + [429] * 3
    assert len(verified) == 3


# --- the client address -----------------------------------------------------------------------------------

@pytest.mark.policy(login__address_failures=5, login__delay_after=0)
def test_spraying_from_one_address_blocks_that_address(client, person, afternoon):
    for n in range(5):
        wrong(client, username=f"guess{n}@student.example.edu.pl")
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 429
    assert page_error(text(r)) == "Too many failed attempts. Try again in 10 min."
    assert r.headers["Retry-After"] == "600"
    assert [e.reason for e in events("login.throttled")] == ["address_blocked"]
    [blocked] = events("address.blocked")
    assert blocked.client_ip == "127.0.0.1" and blocked.reason == "too_many_wrong_passwords"
    afternoon.advance(minutes=10)
    assert cas_login(client, USER, PASSWORD).status_code == 302


@pytest.mark.policy(login__address_failures=5, login__delay_after=0)
def test_an_operator_sees_and_lifts_an_address_block(client, person, afternoon):
    """`idp throttle address IP [--lift]` (the functions behind it): a blocked campus NAT need not wait."""
    from idp.core import throttle
    from idp.core.clock import utcnow

    for n in range(5):
        wrong(client, username=f"guess{n}@student.example.edu.pl")
    key, counter = throttle.address_state("127.0.0.1", utcnow())
    assert key == "addr:127.0.0.1" and counter.count == 5 and counter.until > utcnow()
    assert cas_login(client, USER, PASSWORD).status_code == 429
    assert throttle.lift_address_block("127.0.0.1") == "addr:127.0.0.1"
    db.session.commit()
    assert throttle.address_state("127.0.0.1", utcnow())[1] is None
    assert cas_login(client, USER, PASSWORD).status_code == 302
    assert throttle.address_state("not an address", utcnow()) is None


@pytest.mark.policy(login__address_failures=5, login__delay_after=0, login__exempt_networks=["127.0.0.0/8"])
def test_an_exempt_network_is_not_blocked(client, person, afternoon):
    for n in range(10):
        wrong(client, username=f"guess{n}@student.example.edu.pl")
    assert cas_login(client, USER, PASSWORD).status_code == 302
    assert events("address.blocked") == []


# --- the endpoint rate limit (Flask-Limiter's storage) ----------------------------------------------------

@pytest.mark.policy(login__address_rate_limit="3/minute")
def test_the_rate_limit_on_password_posts(client, person, afternoon):
    for _ in range(2):
        wrong(client)
    assert cas_login(client, USER, PASSWORD).status_code == 302
    client.get("/cas/logout")
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 429
    said = re.fullmatch(r"Too many login attempts from your network\. Try again in (\d+) s\.", page_error(text(r)))
    assert said is not None
    # The window is real time (Flask-Limiter's storage), so the wait is whatever is left of the minute: the
    # page and the header say the same number of seconds, within the minute.
    assert r.headers["Retry-After"] == said.group(1) and 1 <= int(said.group(1)) <= 60
    assert username_value(text(r)) == USER
    assert events("login.throttled") == []  # refused before any delay was claimed
    # Audited once a minute per address, not once per refusal: a flood must not fill the audit log.
    for _ in range(3):
        assert cas_login(client, USER, PASSWORD).status_code == 429
    [limited] = events("login.rate_limited")
    assert (limited.reason, limited.client_ip, limited.account_id) == ("address_rate_limit", "127.0.0.1", None)
    assert limited.data["limit"] == "3 per 1 minute" and 1 <= limited.data["retry_after"] <= 60
    assert client.get("/cas/login").status_code == 200  # only password posts are limited


@pytest.mark.policy(login__address_rate_limit="1/minute")
def test_the_rate_limit_page_in_polish(browser, person, afternoon):
    client = browser("pl")
    cas_login(client, USER, WRONG)
    r = cas_login(client, USER, WRONG)
    assert r.status_code == 429 and '<html lang="pl">' in text(r)
    assert page_error(text(r)).startswith("Zbyt wiele prób logowania z Twojej sieci.")


@pytest.mark.policy(login__address_rate_limit="1/minute", login__exempt_networks=["127.0.0.1/32"])
def test_the_rate_limit_spares_exempt_networks(client, person, afternoon):
    wrong(client, 2)
    assert cas_login(client, USER, PASSWORD).status_code == 302


@pytest.mark.policy(login__address_rate_limit="")
def test_an_empty_rate_limit_is_none(client, person, afternoon):
    for _ in range(3):
        wrong(client)
        afternoon.advance(minutes=2)
    assert cas_login(client, USER, PASSWORD).status_code == 302


# --- the helpdesk -----------------------------------------------------------------------------------------

@pytest.mark.policy(login__lockout_threshold=3)
def test_the_helpdesk_unlock_lifts_the_lock_and_the_delay(client, browser, person, clock):
    clock.now = WINTER_AFTERNOON
    wrong(client, 3)
    assert cas_login(client, USER, PASSWORD).status_code == 429
    desk = Desk.open(browser(), clock)  # passes its second factor: time moves on a little
    page = plain(desk.page("/helpdesk/people/12345"))
    assert "Next password attempt" in page or "Locked until" in page
    r = desk.post("/helpdesk/people/12345/unlock", {"reason": "ticket HD-1: phoned"})
    assert r.status_code == 302, text(r)[:2000]
    account = db.session.get(Account, person.id)
    assert (account.locked_until, account.failed_logins, account.lockouts) == (None, 0, 0)
    r = cas_login(client, USER, PASSWORD)
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]


@pytest.mark.policy(login__lockout_threshold=2, login__permanent_lockout_after=1, login__delay_after=0,
                    help__contacts=HELP)
def test_a_permanent_lock_refuses_even_the_correct_password_until_the_helpdesk_unlocks(client, browser, person,
                                                                                       afternoon):
    wrong(client, 2)  # the first lock: temporary
    afternoon.advance(minutes=15)
    wrong(client, 2)  # the second: for good
    assert db.session.get(Account, person.id).locked_permanently
    afternoon.advance(days=30)
    guess = cas_login(browser(), USER, WRONG)
    assert guess.status_code == 401 and page_error(text(guess)) == "Invalid login or password"
    r = cas_login(client, USER, PASSWORD)  # told nothing a guesser could use; the audit log knows
    assert r.status_code == 401 and page_error(text(r)) == "Invalid login or password"
    assert "locked" not in plain(text(r)).lower()
    event = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "login.failed")
                               .order_by(AuditEvent.id.desc())).first()
    assert (event.reason, event.account_id) == ("locked_permanently", person.id)
    # the console shows it as permanent
    desk = Desk.open(browser(), afternoon)
    person_page = plain(desk.page("/helpdesk/people/12345"))
    assert "permanently, until the helpdesk unlocks it" in person_page
    assert "Locked permanently, until the helpdesk unlocks it." in plain(desk.page("/helpdesk/people/12345/unlock"))
    assert desk.post("/helpdesk/people/12345/unlock", {"reason": "ticket HD-2: ID checked"}).status_code == 302
    assert cas_login(client, USER, PASSWORD).status_code == 302


# --- the password change page -----------------------------------------------------------------------------

def test_the_current_password_on_the_change_page_is_throttled(client, person, afternoon):
    assert cas_login(client, USER, PASSWORD, service=None).status_code == 200

    def change(current: str):
        page = client.get("/account/password")
        return client.post("/account/password", data={
            "csrf_token": csrf_token(text(page)), "current_password": current,
            "new_password": "Parowóz-Klarnet-Zima-1954", "confirm": "Parowóz-Klarnet-Zima-1954"})

    for _ in range(3):
        assert change(WRONG).status_code == 400
    r = change(PASSWORD)
    assert r.status_code == 429
    assert "Too many failed attempts. Try again in 2 s." in text(r)
    assert [e.reason for e in events("password.change.failed")] == ["wrong_current_password"] * 3 + ["throttled"]
    assert db.session.get(Account, person.id).failed_logins == 3  # counted like wrong logins
    afternoon.advance(seconds=2)
    assert change(PASSWORD).status_code == 200


@pytest.mark.policy(login__address_rate_limit="1/minute")
def test_the_change_page_shares_the_rate_limit(client, person, afternoon):
    assert cas_login(client, USER, PASSWORD, service=None).status_code == 200  # the one post this minute
    page = client.get("/account/password")
    r = client.post("/account/password", data={"csrf_token": csrf_token(text(page)), "current_password": WRONG,
                                               "new_password": "Parowóz-Klarnet-Zima-1954",
                                               "confirm": "Parowóz-Klarnet-Zima-1954"})
    assert r.status_code == 429 and "Too many login attempts from your network." in text(r)


def test_a_stranger_is_never_told_about_delays_of_someone_else(client, browser, afternoon):
    """Delays are the account's, not the browser's: a new browser waits too — and so does an unknown
    identifier typed in a new browser after its own three wrong passwords (the same rules for both)."""
    create_account()
    wrong(client, 3)
    assert cas_login(browser(), USER, PASSWORD).status_code == 429
    other = browser()
    wrong(other, 3, username=UNKNOWN)
    assert cas_login(browser(), UNKNOWN, WRONG).status_code == 429
