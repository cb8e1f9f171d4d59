"""WCAG 2.1 AA (axe-core) and reflow on the pages no journey walks through, in Polish and in English: the
public forms and their error states, activation, the error pages, the logged-in person's pages, the
second-factor pages and the helpdesk console. Screenshots: test-artifacts/journeys/pages-*-<lang>/.

Each page is reached the way a person reaches it (links, forms, redirects), and the test asserts it is the
page meant (its heading, its status) before it is checked, so a broken route cannot pass as accessible.
"""
from __future__ import annotations

import re
from urllib.parse import urlencode

import pyotp
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import submit_login
from tests.journeys.conftest import LANGS, LIBRARY, LIBRARY_CLIENT_ID, LOCALES, World

pytestmark = pytest.mark.e2e

TEXT = {
    "pl": {
        "not_found": "Nie znaleziono strony",
        "unknown_service": "Nieznana aplikacja",
        "link_invalid": "Link nie działa",
        "mismatch": "Wpisane dane nie zgadzają się z danymi uczelni.",
        "active": "Twoje konto jest aktywne",
        "logged_in": "Jesteś zalogowany",
        "logged_out": "Wylogowano Cię",
        "your_account": "Twoje konto",
        "change_password": "Zmień hasło",
        "warn": "Za chwilę zalogujesz się do USOSweb",
        "continue": "Dalej",
        "consent": f"{LIBRARY} prosi o dostęp",
        "logout_confirm": "Wylogować?",
        "denied": "Brak dostępu do konsoli pomocy technicznej",
        "mfa_setup": "Skonfiguruj drugi składnik",
        "second_factor": "Drugi składnik uwierzytelniania",
        "recovery_codes": "Twoje kody odzyskiwania",
        "console": "Konsola pomocy technicznej",
        "find": "Znajdź osobę",
        "audit": "Dziennik audytu",
        "services": "Zarejestrowane usługi",
        "verify": "Drugi składnik uwierzytelniania",
        "recovery_code": "Kod odzyskiwania",
        "app_code": "Kod z aplikacji uwierzytelniającej",
        "recovery_code_summary": "Nie masz telefonu lub klucza? Użyj jednego z kodów odzyskiwania.",
    },
    "en": {
        "not_found": "Page not found",
        "unknown_service": "Unknown application",
        "link_invalid": "The link does not work",
        "mismatch": "The data you entered do not match the records.",
        "active": "Your account is active",
        "logged_in": "You are logged in",
        "logged_out": "You have been logged out",
        "your_account": "Your account",
        "change_password": "Change password",
        "warn": "You are about to log in to USOSweb",
        "continue": "Continue",
        "consent": f"{LIBRARY} asks for access",
        "logout_confirm": "Log out?",
        "denied": "No access to the helpdesk console",
        "mfa_setup": "Set up a second factor",
        "second_factor": "Second factor",
        "recovery_codes": "Your recovery codes",
        "console": "Helpdesk console",
        "find": "Find a person",
        "audit": "Audit log",
        "services": "Registered services",
        "verify": "Second factor",
        "recovery_code": "Recovery code",
        "app_code": "Code from your authenticator app",
        "recovery_code_summary": "Lost your phone or key? Use one of your recovery codes.",
    },
}
NEW_PASSWORD = "Parowóz-Klarnet-Zima-1954"
VERDICT_TIMEOUT_MS = 8_000


def _h1(page: Page, text: str | re.Pattern) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(text)


def _submit(page: Page):
    with page.expect_navigation() as nav:
        page.locator('main form button[type="submit"]').first.click()
    return nav.value


@pytest.mark.parametrize("lang", LANGS)
def test_public_pages_and_error_pages(world: World, journey, new_context, lang: str):
    t = TEXT[lang]
    j = journey("pages-public", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    page.goto(f"{world.url}/cas/login")
    j.step(page, "login")
    response = _submit(page)  # nothing typed
    assert response.status in (400, 401), response.status
    expect(page.locator(".field-error, #form-errors").first).to_be_visible()
    j.step(page, "login-empty")

    page.goto(f"{world.url}/password/reset")
    j.step(page, "reset-request")
    _submit(page)
    expect(page.locator(".field-error").first).to_be_visible()
    j.step(page, "reset-request-empty")

    page.goto(f"{world.url}/password/code")
    j.step(page, "recovery-code")
    page.locator('input[name="identifier"]').fill(world.people[f"pages-{lang}"].login)
    page.locator('input[name="code"]').fill("AAAA-BBBB-CCCC")
    _submit(page)
    expect(page.locator("#form-errors")).to_be_visible()
    j.step(page, "recovery-code-wrong")

    response = page.goto(f"{world.url}/password/reset/not-a-real-token")
    assert response.status >= 400
    _h1(page, t["link_invalid"])
    j.step(page, "reset-link-invalid")

    # Activation: the data wrong once (the mismatch explained), then right; the first password.
    student = world.people[f"activate-{lang}"]
    page.goto(f"{world.url}/activate")
    j.step(page, "activate")
    page.locator("#album").fill(student.album)
    page.locator("#secret").fill(student.pesel)
    page.locator("#surname").fill("Curie")
    assert _submit(page).status == 400
    expect(page.locator("#form-errors")).to_contain_text(t["mismatch"])
    j.step(page, "activate-mismatch")
    expect(page.locator("#pow")).to_have_count(0)  # within the free attempts: no browser check
    page.locator("#album").fill(student.album)
    page.locator("#secret").fill(student.pesel)
    page.locator("#surname").fill(student.last_name)
    _submit(page)
    assert page.url == f"{world.url}/activate/password", page.url
    j.step(page, "activate-password")
    page.locator("#new_password").fill(NEW_PASSWORD)
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", "ok", timeout=VERDICT_TIMEOUT_MS)
    page.locator("#confirm").fill(NEW_PASSWORD)
    j.step(page, "activate-password-typed")
    assert _submit(page).status == 200
    _h1(page, t["active"])
    j.step(page, "activate-done")

    # Error pages.
    response = page.goto(f"{world.url}/no-such-page")
    assert response.status == 404
    _h1(page, t["not_found"])
    j.step(page, "not-found")
    response = page.goto(f"{world.url}/cas/login?" + urlencode({"service": "https://unknown.example.org/app"}))
    assert response.status >= 400
    _h1(page, t["unknown_service"])
    j.step(page, "unknown-service")
    response = page.goto(f"{world.url}/oidc/authorize?" + urlencode(
        {"client_id": "nobody", "response_type": "code", "scope": "openid", "redirect_uri": "https://x.example/cb"}))
    assert response.status >= 400
    expect(page.get_by_role("heading", level=1)).not_to_be_empty()
    j.step(page, "unknown-client")
    page.goto(f"{world.url}/cas/logout")
    _h1(page, t["logged_out"])
    j.step(page, "logged-out-without-session")
    j.assert_accessible()


@pytest.mark.parametrize("lang", LANGS)
def test_logged_in_pages(world: World, journey, new_context, lang: str):
    t, person = TEXT[lang], world.people[f"pages-{lang}"]
    j = journey("pages-account", lang)
    page = new_context(locale=LOCALES[lang]).new_page()

    # Log in with "warn me before logging me into other sites" ticked.
    page.goto(f"{world.url}/cas/login")
    page.locator('input[name="username"]').fill(person.login)
    page.locator('input[name="password"]').fill(person.password)
    page.locator('input[name="warn"]').check()
    _submit(page)
    _h1(page, t["logged_in"])
    j.step(page, "logged-in")

    page.goto(f"{world.url}/account")
    _h1(page, t["your_account"])
    j.step(page, "account")
    page.goto(f"{world.url}/account/password")
    _h1(page, t["change_password"])
    j.step(page, "change-password")
    page.locator("#current_password").fill("not-my-password-at-all")
    page.locator("#new_password").fill("haslo123")
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", "fail",
                                                                      timeout=VERDICT_TIMEOUT_MS)
    page.locator("#confirm").fill("haslo1234")
    j.step(page, "change-password-typed")
    response = _submit(page)
    assert response.status >= 400, response.status
    # Each refused field says why, and says it to a screen reader too (aria-invalid, aria-describedby).
    expect(page.locator("#confirm-err")).to_be_visible()
    expect(page.locator("#confirm")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#confirm")).to_have_attribute("aria-describedby", re.compile(r"(^| )confirm-err( |$)"))
    j.step(page, "change-password-refused")

    # The warning before a CAS app, then on to it.
    page.goto(world.usosweb("warned"))
    _h1(page, t["warn"])
    j.step(page, "warn")
    with page.expect_navigation(url=re.compile("^" + re.escape(world.usosweb("warned")))):
        page.get_by_role("button", name=t["continue"]).click()

    # An OpenID Connect app that is not the university's own asks for consent.
    page.goto(f"{world.url}/oidc/authorize?" + urlencode({
        "client_id": LIBRARY_CLIENT_ID, "response_type": "code", "scope": "openid profile email",
        "redirect_uri": f"{world.app.url}/app/library/callback", "state": "s-1", "nonce": "n-1"}))
    _h1(page, t["consent"])
    j.step(page, "consent")
    page.goto(f"{world.url}/oidc/logout")
    _h1(page, t["logout_confirm"])
    j.step(page, "oidc-logout-confirm")

    # The second-factor pages of someone who has none yet; the console is not for students.
    page.goto(f"{world.url}/mfa")
    _h1(page, t["second_factor"])
    j.step(page, "mfa-manage")
    page.goto(f"{world.url}/mfa/setup")
    _h1(page, t["mfa_setup"])
    j.step(page, "mfa-setup")
    response = page.goto(f"{world.url}/helpdesk/")
    assert response.status == 403
    _h1(page, t["denied"])
    j.step(page, "helpdesk-denied")

    page.goto(f"{world.url}/cas/logout")
    _h1(page, t["logged_out"])
    expect(page.locator("main ul.apps li")).not_to_have_count(0)
    j.step(page, "logged-out")
    j.assert_accessible()


@pytest.mark.parametrize("lang", LANGS)
def test_console_and_second_factor_pages(world: World, journey, new_context, lang: str):
    t, staff = TEXT[lang], world.people[f"pagestaff-{lang}"]
    student, other = world.people[f"pages-{lang}"], world.people[f"pages-{'en' if lang == 'pl' else 'pl'}"]
    j = journey("pages-console", lang)
    page = new_context(locale=LOCALES[lang], viewport={"width": 1280, "height": 900}).new_page()

    page.goto(f"{world.url}/helpdesk/")
    submit_login(page, staff.login, staff.password)
    page.wait_for_url(re.compile(re.escape(f"{world.url}/mfa/setup")))
    page.locator("#code").fill("000000")
    _submit(page)
    expect(page.locator("#form-errors, .field-error").first).to_be_visible()
    j.step(page, "mfa-setup-wrong-code")
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    page.locator("#code").fill(pyotp.TOTP(secret).now())
    _submit(page)
    _h1(page, t["recovery_codes"])
    codes = [c.strip() for c in page.locator("#recovery-codes li").all_inner_texts()]
    with page.expect_navigation():
        page.locator("#continue").click()
    _h1(page, t["console"])

    # Search: several results, none, a reference code.
    page.get_by_label(t["find"]).fill(student.name)
    with page.expect_navigation():
        page.get_by_label(t["find"]).press("Enter")
    expect(page.locator("table.results tbody tr")).to_have_count(2)
    j.step(page, "search-results")
    page.goto(f"{world.url}/helpdesk/?q=zzzyxw")
    expect(page.locator("main [role=status]")).to_be_visible()
    j.step(page, "search-nothing")
    page.goto(f"{world.url}/helpdesk/?q=E1")
    expect(page.get_by_role("heading", level=1)).to_contain_text("E1")
    j.step(page, "reference")

    # The person and every action page (not submitted, but one sent without a reason).
    page.goto(f"{world.url}/helpdesk/people/{student.album}")
    _h1(page, student.name)
    j.step(page, "person")
    base = f"{world.url}/helpdesk/people/{student.album}"
    for action in ("unlock", "reset-link", "temporary-password", "second-factor/reset", "identifiers/add",
                   "identities/link", "sessions/end", "recovery-code"):
        response = page.goto(f"{base}/{action}")
        assert response.status == 200, (action, response.status)
        expect(page.locator("main form.action-form")).to_be_visible()
        j.step(page, f"action-{action}")
    page.goto(f"{base}/unlock")
    assert _submit(page).status == 400
    expect(page.locator(".field-error").first).to_be_visible()
    j.step(page, "action-without-reason")
    page.goto(f"{base}/merge")
    j.step(page, "merge-pick")
    page.goto(f"{base}/merge?other={other.album}")
    expect(page.locator(".side")).to_have_count(2)
    j.step(page, "merge")

    page.goto(f"{world.url}/helpdesk/audit")
    _h1(page, t["audit"])
    expect(page.locator("table.audit tbody tr")).not_to_have_count(0)
    j.step(page, "audit")
    page.goto(f"{world.url}/helpdesk/services")
    _h1(page, t["services"])
    j.step(page, "services")
    page.goto(f"{world.url}/helpdesk/services/USOSweb")
    _h1(page, re.compile("USOSweb"))
    j.step(page, "service-usosweb")
    page.goto(f"{world.url}/helpdesk/services/{LIBRARY}")
    _h1(page, re.compile(LIBRARY))
    j.step(page, "service-oidc")

    # The second-factor pages of someone who has one; then a new login asks for it.
    page.goto(f"{world.url}/mfa")
    _h1(page, t["second_factor"])
    j.step(page, "mfa-manage")
    page.goto(f"{world.url}/mfa/recovery-codes")
    j.step(page, "mfa-recovery-codes")
    page.goto(f"{world.url}/cas/logout")
    page.goto(f"{world.url}/helpdesk/")
    submit_login(page, staff.login, staff.password)
    page.wait_for_url(re.compile(re.escape(f"{world.url}/mfa/verify")))
    _h1(page, t["verify"])
    j.step(page, "mfa-verify")
    page.get_by_text(t["recovery_code_summary"]).click()
    recovery = page.locator('form:has(input[name="method"][value="recovery_code"])')
    expect(recovery.get_by_label(t["recovery_code"])).to_be_visible()  # the field has its own label
    j.step(page, "mfa-verify-recovery-code")
    recovery.get_by_label(t["recovery_code"]).fill("0000-0000")
    with page.expect_navigation():
        recovery.locator('button[type="submit"]').click()
    expect(page.locator("#form-errors")).to_be_visible()
    # The refused code is shown where it was typed (the recovery part open), not in the app-code field.
    expect(recovery.get_by_label(t["recovery_code"])).to_be_focused()
    expect(page.get_by_label(t["app_code"])).to_have_value("")
    j.step(page, "mfa-verify-wrong")
    recovery.get_by_label(t["recovery_code"]).fill(codes[0])
    with page.expect_navigation():
        recovery.locator('button[type="submit"]').click()
    page.wait_for_url(f"{world.url}/helpdesk/")
    _h1(page, t["console"])
    j.assert_accessible()
