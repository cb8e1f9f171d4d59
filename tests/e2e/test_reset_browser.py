"""Password reset by e-mailed link in a real browser against a real `idp serve` process, its mail going
through a real SMTP server (aiosmtpd, tests/smtp_sink.py) that the outbox worker inside `idp serve` sends to.

(a) A person walks the manuals' path: the login page's "Nie pamiętasz hasła? Zresetuj je" → types the
address → the confirmation → the link read from the received message → the PESEL → the new password twice
(the checklist ticks) → back at the login page with the success message → logs in to the CAS app with the
new password. Screenshots: test-artifacts/e2e/reset-request.png, reset-sent.png, reset-link.png,
reset-done.png. (b) The SMTP server is down while the reset is requested, then comes back: exactly one
message arrives.
"""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import run_idp
from tests.e2e.helpers import all_ok, submit_login, ticket_of
from tests.smtp_sink import link_in

pytestmark = pytest.mark.e2e

OLD = "Stary-Kasztan-Pod-Oknem-1960"
NEW = "Parowóz-Klarnet-Zima-1954"
#: The masked form every person made by make_person has (osoba…@student.example.edu.pl).
MASKED = "o***@student.example.edu.pl"
#: Bounded waits: the worker delivers every 0.5 s (conftest MAIL_WORKER_INTERVAL).
MAIL_TIMEOUT = 15
VERDICT_TIMEOUT_MS = 8_000
#: The outbox's wait before the second try (idp.core.mail.backoff(1)).
FIRST_RETRY_SECONDS = 30


def pesel_born_1999_03_14(serial: str = "4242") -> str:
    """A valid PESEL (check digit included) for someone born on 14 March 1999."""
    digits = "990314" + serial
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    check = (10 - sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 10) % 10
    return digits + str(check)


def _verdict_shown(page: Page) -> None:
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", re.compile(r"^(ok|fail)$"),
                                                                      timeout=VERDICT_TIMEOUT_MS)
    expect(page.locator("#password-rules")).not_to_have_attribute("aria-busy", "true", timeout=VERDICT_TIMEOUT_MS)


def _checklist(page: Page) -> dict[str, str]:
    return {li.get_attribute("data-rule"): li.get_attribute("data-state")
            for li in page.locator("#password-rules li[data-rule]").all() if li.is_visible()}


def _request_reset(page: Page, idp_url: str, address: str) -> None:
    """From the login page's link to the confirmation."""
    page.goto(f"{idp_url}/cas/login")
    link = page.get_by_role("link", name="Nie pamiętasz hasła? Zresetuj je")
    expect(link).to_be_visible()
    with page.expect_navigation():
        link.click()
    assert page.url == f"{idp_url}/password/reset", page.url
    expect(page.locator("h1")).to_have_text("Resetuj hasło")
    page.locator('input[name="identifier"]').fill(address)


def test_a_person_resets_the_password_from_the_login_page_to_the_cas_app(
        idp, relying_app, make_person, mail_sink, new_context, artifacts):
    pesel = pesel_born_1999_03_14()
    person = make_person(OLD, pesel=pesel)
    page = new_context(locale="pl-PL").new_page()

    # The login page → "Nie pamiętasz hasła? Zresetuj je" → type the address.
    _request_reset(page, idp.url, person.login)
    page.screenshot(path=artifacts / "reset-request.png", full_page=True)
    with page.expect_navigation() as nav:
        page.locator('form button[type="submit"]').click()
    assert nav.value.status == 200

    # The confirmation, worded like the manuals, names the address masked.
    main = page.locator("main")
    expect(page.locator("h1")).to_have_text("Sprawdź skrzynkę pocztową")
    expect(main).to_contain_text(f"Link do ustawienia nowego hasła został wysłany na adres {MASKED}.")
    expect(main).to_contain_text("SPAM")
    assert person.login not in main.inner_text()
    page.screenshot(path=artifacts / "reset-sent.png", full_page=True)

    # The worker inside `idp serve` delivers it; read the link from the received message.
    [received] = mail_sink.wait_for(person.login, timeout=MAIL_TIMEOUT)
    assert received.message["Auto-Submitted"] == "auto-generated"
    assert received.message["Subject"].startswith("Ustaw nowe hasło")
    link = link_in(received.text)
    assert link.startswith(f"{idp.url}/password/reset/"), link
    assert link_in(received.html) == link

    # Open it: the PESEL, then the new password twice while the checklist ticks.
    response = page.goto(link)
    assert response.status == 200, page.locator("main").inner_text()
    expect(page.locator('label[for="answer"]')).to_have_text("PESEL")
    page.locator("#answer").fill(pesel)
    expect(page.locator('#password-rules li[data-state="ok"]')).to_have_count(0)
    page.locator("#new_password").fill("haslo123")
    _verdict_shown(page)
    assert "fail" in _checklist(page).values(), _checklist(page)
    page.locator("#new_password").fill(NEW)
    _verdict_shown(page)
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", "ok", timeout=VERDICT_TIMEOUT_MS)
    states = _checklist(page)
    assert states and all_ok(states), states
    page.locator("#confirm").fill(NEW)
    page.screenshot(path=artifacts / "reset-link.png", full_page=True)
    with page.expect_navigation(url=re.compile("^" + re.escape(f"{idp.url}/cas/login"))):
        page.locator('form button[type="submit"]').click()

    # Back at the login page, greeted with the success message.
    expect(page.locator(".notice")).to_contain_text("Hasło zostało zmienione. Zaloguj się nowym hasłem.")
    page.screenshot(path=artifacts / "reset-done.png", full_page=True)

    # "Your password was changed" reaches the person's address too.
    mail_sink.wait_for(person.login, count=2, timeout=MAIL_TIMEOUT)

    # The used link says so on its own page, offering a new one.
    response = page.goto(link)
    assert response.status == 410
    expect(page.locator("main")).to_contain_text("Link został już użyty")
    expect(page.locator('main a[href="/password/reset"]')).to_be_visible()

    # Log in at the CAS app with the new password.
    home = f"{relying_app.url}/app/"
    page.goto(home)
    assert page.url.startswith(f"{idp.url}/cas/login?"), page.url
    submit_login(page, person.login, NEW)
    page.wait_for_url(re.compile("^" + re.escape(home) + r"\?ticket=ST-"))
    found = [v for v in relying_app.state.validations if v.ticket == ticket_of(page.url)]
    assert len(found) == 1 and found[0].error is None and found[0].user == person.login, found

    # The old password no longer works.
    other = new_context(locale="pl-PL").new_page()
    other.goto(home)
    response = submit_login(other, person.login, OLD)
    assert response.status == 401 and other.url.startswith(f"{idp.url}/cas/login"), (response.status, other.url)


def _status_lines(idp) -> list[str]:
    return run_idp(["mail", "status"], idp.env).splitlines()


def test_smtp_down_during_the_request_then_back_exactly_one_message_arrives(
        idp, make_person, mail_sink, new_context, artifacts):
    person = make_person(OLD)
    page = new_context(locale="pl-PL").new_page()
    mail_sink.stop()
    try:
        # The reset request succeeds with the SMTP server down.
        _request_reset(page, idp.url, person.login)
        with page.expect_navigation() as nav:
            page.locator('form button[type="submit"]').click()
        assert nav.value.status == 200
        expect(page.locator("main")).to_contain_text(f"Link do ustawienia nowego hasła został wysłany na adres {MASKED}.")
        page.screenshot(path=artifacts / "reset-sent-smtp-down.png", full_page=True)

        # The worker tried and failed: the message waits in the outbox for its next try.
        deadline = time.monotonic() + MAIL_TIMEOUT
        waiting: list[str] = []
        while time.monotonic() < deadline:
            waiting = [line for line in _status_lines(idp)
                       if " queued reset_link " in line and re.search(r"tries [1-9]", line) and "Connection" in line]
            if waiting:
                break
            time.sleep(0.5)
        assert len(waiting) == 1, _status_lines(idp)
        assert MASKED in waiting[0] and person.login not in waiting[0]
        assert mail_sink.to(person.login) == []
    finally:
        mail_sink.start()  # the other tests need it running, whatever happened here

    # Back up: the next try (backoff after one failure) delivers it — once, though both gunicorn workers
    # keep delivering.
    [received] = mail_sink.wait_for(person.login, timeout=FIRST_RETRY_SECONDS + MAIL_TIMEOUT)
    time.sleep(3)  # several more rounds of both workers
    assert len(mail_sink.to(person.login)) == 1
    link = link_in(received.text)
    response = page.goto(link)
    assert response.status == 200
    expect(page.locator('label[for="answer"]')).to_have_text("Data urodzenia")  # no PESEL: the birth date
    status = _status_lines(idp)
    assert not [line for line in status if " queued reset_link " in line], status
