"""Whole stories as a person walks them, in a real browser (Chromium) against a real `idp serve`, each in
Polish and in English (the browser's language), each leaving numbered screenshots in
test-artifacts/journeys/<journey>-<lang>/ and each page the IdP shows checked with axe-core (WCAG 2.1 AA):

- temporary-password: first login with the temporary password from the dean's office → choose one's own
  (the checklist follows the typing) → USOSweb;
- wrong-password: a wrong password (the generic message, nothing kept), then the right one → USOSweb;
- reset: "Forgot your password?" → the address → the mail (read from the SMTP server) → its link → PESEL and a
  new password → the login page says so → log in with the new password → USOSweb;
- upstream-link: "log in with Poczta uczelniana" → the upstream's login → "an account with this address
  already exists" → the local password links the two → USOSweb; the account page lists the link;
- not-provisioned: Moodle requires an entitlement the person lacks → "logged in, but no account in Moodle"
  with a reference code, no ticket for Moodle; USOSweb still lets the person in without a password;
- helpdesk-unlock: three wrong passwords lock the account → the right one is refused too, under the hint
  that a lock does that → a helpdesk person logs in to the console (setting up the second factor on the first
  visit), finds the student, unlocks with a reason → the student logs in → USOSweb.
"""
from __future__ import annotations

import re

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import submit_login, ticket_of
from tests.journeys.conftest import LANGS, LOCALES, LOCKOUT, UPSTREAM_LABEL, UPSTREAM_PASSWORD, World
from tests.smtp_sink import link_in

pytestmark = pytest.mark.e2e

#: What the person reads, in each language (idp/translations); a wrong language fails the journey.
TEXT = {
    "pl": {
        "login": "Zaloguj się",
        "logging_in_to": "Logujesz się do USOSweb.",
        "invalid": "Niepoprawne dane logowania",
        "temporary": "Twoje hasło jest tymczasowe.",
        "forgot": "Nie pamiętasz hasła? Zresetuj je",
        "reset": "Resetuj hasło",
        "mailbox": "Sprawdź skrzynkę pocztową",
        "subject": "Ustaw nowe hasło",
        "changed": "Hasło zostało zmienione. Zaloguj się nowym hasłem.",
        "exists": "już istnieje",
        "link": "Połącz i zaloguj",
        "linked_accounts": "Połączone konta innych dostawców",
        "not_provisioned": "Jesteś zalogowany, lecz nie posiadasz konta w Moodle",
        "lock_hint": "nawet przy poprawnym haśle",
        "mfa_setup": "Skonfiguruj drugi składnik",
        "code": "Kod z aplikacji uwierzytelniającej",
        "confirm": "Potwierdź",
        "recovery_codes": "Twoje kody odzyskiwania",
        "saved": "Kody zapisane, przejdź dalej",
        "console": "Konsola pomocy technicznej",
        "find": "Znajdź osobę",
        "unlock": "Odblokuj",
        "unlock_title": "Odblokuj konto",
        "reason": "Powód",
        "unlocked": "Konto zostało odblokowane.",
    },
    "en": {
        "login": "Log in",
        "logging_in_to": "You are logging in to USOSweb.",
        "invalid": "Invalid login or password",
        "temporary": "Your password is temporary.",
        "forgot": "Forgot your password? Reset it",
        "reset": "Reset password",
        "mailbox": "Check your mailbox",
        "subject": "Set a new password",
        "changed": "Your password has been changed. Log in with the new password.",
        "exists": "already exists",
        "link": "Link and log in",
        "linked_accounts": "Linked accounts of other providers",
        "not_provisioned": "You are logged in, but you do not have an account in Moodle",
        "lock_hint": "even with the right password",
        "mfa_setup": "Set up a second factor",
        "code": "Code from your authenticator app",
        "confirm": "Confirm",
        "recovery_codes": "Your recovery codes",
        "saved": "I have saved them, continue",
        "console": "Helpdesk console",
        "find": "Find a person",
        "unlock": "Unlock",
        "unlock_title": "Unlock the account",
        "reason": "Reason",
        "unlocked": "The account was unlocked.",
    },
}
NEW_PASSWORD = "Parowóz-Klarnet-Zima-1954"
WEAK = "haslo123"
MAIL_TIMEOUT = 15
VERDICT_TIMEOUT_MS = 8_000


def _checklist_verdict(page: Page, state: str) -> None:
    """Wait until the live checklist shows the server's verdict (`ok` or `fail`) on what was typed."""
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", state, timeout=VERDICT_TIMEOUT_MS)
    expect(page.locator("#password-rules")).not_to_have_attribute("aria-busy", "true", timeout=VERDICT_TIMEOUT_MS)


def _at_login_page(page: Page, world: World, lang: str) -> None:
    assert page.url.startswith(f"{world.url}/cas/login"), page.url
    expect(page.locator("h1")).to_have_text(TEXT[lang]["login"])


def _fill_login(page: Page, username: str, password: str) -> None:
    page.locator('input[name="username"]').fill(username)
    page.locator('input[name="password"]').fill(password)


def _in_usosweb(page: Page, world: World, login: str, path: str) -> None:
    """The CAS app shows the person: it got a ticket for this page and validated it."""
    page.wait_for_url(re.compile("^" + re.escape(world.usosweb(path)) + r"\?ticket=ST-"))
    expect(page.locator("#user")).to_have_text(login)
    found = [v for v in world.app.state.validations if v.ticket == ticket_of(page.url)]
    assert len(found) == 1 and found[0].error is None and found[0].user == login, found


@pytest.mark.parametrize("lang", LANGS)
def test_first_login_with_a_temporary_password(world: World, journey, new_context, lang: str):
    t, person = TEXT[lang], world.people[f"temporary-{lang}"]
    j = journey("temporary-password", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    page.goto(world.usosweb("start"))
    _at_login_page(page, world, lang)
    expect(page.locator("main")).to_contain_text(t["logging_in_to"])
    _fill_login(page, person.login, person.password)
    j.step(page, "login")
    with page.expect_navigation():
        page.locator('form button[type="submit"]').click()

    # Not to USOSweb yet: the temporary password must be replaced first.
    assert page.url.startswith(f"{world.url}/login/change-password"), page.url
    expect(page.locator("#why")).to_contain_text(t["temporary"])
    assert not [v for v in world.app.state.validations if v.user == person.login]
    j.step(page, "change-password")
    page.locator("#new_password").fill(WEAK)
    _checklist_verdict(page, "fail")
    expect(page.locator('#password-rules li[data-state="fail"]')).not_to_have_count(0)
    j.step(page, "weak-password")
    page.locator("#new_password").fill(NEW_PASSWORD)
    _checklist_verdict(page, "ok")
    page.locator("#confirm").fill(NEW_PASSWORD)
    j.step(page, "strong-password")
    with page.expect_navigation(url=re.compile("^" + re.escape(world.usosweb("start")))):
        page.locator('form button[type="submit"]').click()
    _in_usosweb(page, world, person.login, "start")
    j.step(page, "usosweb")
    j.assert_accessible()


@pytest.mark.parametrize("lang", LANGS)
def test_wrong_password_then_the_right_one(world: World, journey, new_context, lang: str):
    t, person = TEXT[lang], world.people[f"wrong-{lang}"]
    j = journey("wrong-password", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    page.goto(world.usosweb("grades"))
    _at_login_page(page, world, lang)
    j.step(page, "login")
    response = submit_login(page, person.login, "Korsarz-Wisla-1987-Tramwaj")  # no Polish letter: a typo
    assert response.status == 401
    expect(page.locator("#form-errors")).to_contain_text(t["invalid"])
    expect(page.locator('input[name="username"]')).to_have_value(person.login)
    expect(page.locator('input[name="password"]')).to_have_value("")  # never sent back
    j.step(page, "wrong-password")
    page.locator('input[name="password"]').fill(person.password)
    with page.expect_navigation(url=re.compile("^" + re.escape(world.usosweb("grades")))):
        page.locator('form button[type="submit"]').click()
    _in_usosweb(page, world, person.login, "grades")
    j.step(page, "usosweb")
    j.assert_accessible()


@pytest.mark.parametrize("lang", LANGS)
def test_reset_through_the_mailed_link_with_pesel(world: World, journey, new_context, lang: str):
    t, person = TEXT[lang], world.people[f"reset-{lang}"]
    j = journey("reset", lang)
    ctx = new_context(locale=LOCALES[lang])
    page = ctx.new_page()

    page.goto(world.usosweb("plan"))
    _at_login_page(page, world, lang)
    j.step(page, "login")
    with page.expect_navigation():
        page.get_by_role("link", name=t["forgot"]).click()
    assert page.url == f"{world.url}/password/reset", page.url
    expect(page.locator("h1")).to_have_text(t["reset"])
    page.locator('input[name="identifier"]').fill(person.login)
    j.step(page, "reset-request")
    with page.expect_navigation():
        page.locator('form button[type="submit"]').click()
    expect(page.locator("h1")).to_have_text(t["mailbox"])
    assert person.login not in page.locator("main").inner_text()  # the address is shown masked
    j.step(page, "reset-sent")

    # The mail, in the person's language, as it reached the SMTP server.
    [received] = world.mail.wait_for(person.login, timeout=MAIL_TIMEOUT)
    assert received.subject.startswith(t["subject"]), received.subject
    link = link_in(received.text)
    assert link.startswith(f"{world.url}/password/reset/") and link_in(received.html) == link
    mail_view = ctx.new_page()
    mail_view.set_content(received.html)
    j.step(mail_view, "mail", check=False)  # a mail client's rendering, not a page of the IdP
    mail_view.close()

    response = page.goto(link)
    assert response.status == 200
    expect(page.locator('label[for="answer"]')).to_have_text("PESEL")
    page.locator("#answer").fill(person.pesel)
    page.locator("#new_password").fill(NEW_PASSWORD)
    _checklist_verdict(page, "ok")
    page.locator("#confirm").fill(NEW_PASSWORD)
    j.step(page, "new-password")
    with page.expect_navigation(url=re.compile("^" + re.escape(f"{world.url}/cas/login"))):
        page.locator('form button[type="submit"]').click()
    expect(page.locator(".notice")).to_contain_text(t["changed"])
    j.step(page, "password-changed")

    # The old password is gone; the new one lets the person into USOSweb.
    page.goto(world.usosweb("plan"))
    _at_login_page(page, world, lang)
    assert submit_login(page, person.login, person.password).status == 401
    page.locator('input[name="password"]').fill(NEW_PASSWORD)
    with page.expect_navigation(url=re.compile("^" + re.escape(world.usosweb("plan")))):
        page.locator('form button[type="submit"]').click()
    _in_usosweb(page, world, person.login, "plan")
    j.step(page, "usosweb")
    j.assert_accessible()


@pytest.mark.parametrize("lang", LANGS)
def test_upstream_login_already_exists_then_link(world: World, journey, new_context, lang: str):
    t, person = TEXT[lang], world.people[f"link-{lang}"]
    j = journey("upstream-link", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    page.goto(world.usosweb("news"))
    _at_login_page(page, world, lang)
    with page.expect_navigation():
        page.get_by_role("link", name=UPSTREAM_LABEL).click()
    # The upstream (the university mail system) asks for its own password.
    assert page.url.startswith(world.upstream_url), page.url
    _fill_login(page, person.login, UPSTREAM_PASSWORD)
    j.step(page, "upstream-login")
    with page.expect_navigation():
        page.locator('form button[type="submit"]').click()

    # Back at the IdP: an account with that address exists; prove it is yours to link the two.
    assert page.url.startswith(world.url), page.url
    expect(page.get_by_role("heading", level=1)).to_contain_text(t["exists"])
    expect(page.get_by_role("heading", level=1)).to_contain_text(person.login)
    expect(page.locator("main")).to_contain_text(UPSTREAM_LABEL)
    j.step(page, "already-exists")
    page.locator('input[name="pw-password"]').fill(person.password)
    with page.expect_navigation(url=re.compile("^" + re.escape(world.usosweb("news")))):
        page.get_by_role("button", name=t["link"]).click()
    _in_usosweb(page, world, person.login, "news")
    j.step(page, "usosweb")

    # The account page lists the linked mail account.
    page.goto(f"{world.url}/account")
    section = page.locator("section", has=page.get_by_role("heading", name=t["linked_accounts"]))
    expect(section.locator("tbody tr")).to_have_count(1)
    expect(section.locator("tbody tr")).to_contain_text(UPSTREAM_LABEL)
    j.step(page, "account")
    j.assert_accessible()


@pytest.mark.parametrize("lang", LANGS)
def test_not_provisioned_page(world: World, journey, new_context, lang: str):
    t, person = TEXT[lang], world.people[f"noprov-{lang}"]
    j = journey("not-provisioned", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    page.goto(world.moodle("course/7"))
    _at_login_page(page, world, lang)
    expect(page.locator("main")).to_contain_text("Moodle")
    _fill_login(page, person.login, person.password)
    j.step(page, "login")
    with page.expect_navigation():
        page.locator('form button[type="submit"]').click()
    assert page.url.startswith(world.url), page.url  # no ticket went to Moodle
    expect(page.get_by_role("heading", level=1)).to_have_text(t["not_provisioned"])
    expect(page.locator(".ref")).to_have_text(re.compile(r"^E\d+$"))
    assert not [v for v in world.app.state.validations if "/app/moodle/" in v.service_url and v.user == person.login]
    j.step(page, "not-provisioned")

    # Logged in all the same: USOSweb, which needs no entitlement, lets the person in without a password.
    page.goto(world.usosweb("start"))
    _in_usosweb(page, world, person.login, "start")
    j.step(page, "usosweb-without-password")
    j.assert_accessible()


def _totp_code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


@pytest.mark.parametrize("lang", LANGS)
def test_helpdesk_unlocks_a_locked_student(world: World, journey, new_context, lang: str):
    t, student, staff = TEXT[lang], world.people[f"locked-{lang}"], world.people[f"staff-{lang}"]
    j = journey("helpdesk-unlock", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    # The student mistypes the password until the account locks; then even the right one is refused.
    page.goto(world.usosweb("start"))
    _at_login_page(page, world, lang)
    for attempt in range(1, LOCKOUT + 1):
        assert submit_login(page, student.login, f"Nie-to-haslo-{attempt}").status == 401
        expect(page.locator("#form-errors")).to_contain_text(t["invalid"])
    j.step(page, "wrong-passwords")
    response = submit_login(page, student.login, student.password)
    assert response.status == 401
    expect(page.locator("#form-errors")).to_contain_text(t["invalid"])
    expect(page.locator("#error-detail")).to_contain_text(t["lock_hint"])
    j.step(page, "locked")

    # The helpdesk person opens the console: login, then the second factor on the first visit.
    desk = new_context(locale=LOCALES[lang], viewport={"width": 1280, "height": 900}).new_page()
    desk.goto(f"{world.url}/helpdesk/")
    _at_login_page(desk, world, lang)
    submit_login(desk, staff.login, staff.password)
    desk.wait_for_url(re.compile(re.escape(f"{world.url}/mfa/setup")))
    expect(desk.locator("h1")).to_have_text(t["mfa_setup"])
    j.step(desk, "mfa-setup")
    secret = desk.locator("#totp-secret").get_attribute("data-secret")
    desk.get_by_label(t["code"]).fill(_totp_code(secret))
    with desk.expect_navigation():
        desk.get_by_role("button", name=t["confirm"]).click()
    expect(desk.locator("h1")).to_have_text(t["recovery_codes"])
    j.step(desk, "recovery-codes")
    with desk.expect_navigation():
        desk.get_by_role("link", name=t["saved"]).click()
    desk.wait_for_url(f"{world.url}/helpdesk/")
    expect(desk.locator("h1")).to_have_text(t["console"])
    search = desk.get_by_label(t["find"])
    search.fill(student.album)
    j.step(desk, "console")
    with desk.expect_navigation():
        search.press("Enter")
    desk.wait_for_url(f"{world.url}/helpdesk/people/{student.album}")
    expect(desk.locator("h1")).to_have_text(student.name)
    expect(desk.locator(".badge-locked")).to_have_count(1)
    j.step(desk, "person-locked")
    with desk.expect_navigation():
        desk.get_by_role("link", name=t["unlock"], exact=True).click()
    expect(desk.locator("h1")).to_have_text(t["unlock_title"])
    desk.get_by_label(t["reason"]).fill("HD-1207: phone call, identity checked")
    j.step(desk, "unlock-form")
    with desk.expect_navigation():
        desk.get_by_role("button", name=t["unlock"], exact=True).click()
    desk.wait_for_url(f"{world.url}/helpdesk/people/{student.album}")
    expect(desk.locator("#result")).to_have_text(t["unlocked"])
    expect(desk.locator(".badge-locked")).to_have_count(0)
    j.step(desk, "person-unlocked")

    # The student logs in with the right password.
    page.goto(world.usosweb("start"))
    _at_login_page(page, world, lang)
    _fill_login(page, student.login, student.password)
    with page.expect_navigation(url=re.compile("^" + re.escape(world.usosweb("start")))):
        page.locator('form button[type="submit"]').click()
    _in_usosweb(page, world, student.login, "start")
    j.step(page, "usosweb")
    j.assert_accessible()
