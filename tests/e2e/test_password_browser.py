"""Live password feedback in a real browser against a real `idp serve` process.

(a) A person whose password is temporary logs in at the CAS app, is sent to the change form first, sees the
checklist and meter follow what they type (the server's verdict from POST /password/check), and reaches the
app with a ticket only after the change. (b) On /account/password the server accepts exactly what the
checklist calls acceptable. Screenshots go to test-artifacts/e2e/ (password-weak.png, password-strong.png).
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import all_ok, submit_login, ticket_of

pytestmark = pytest.mark.e2e

TEMPORARY = "Tymczasowe-Kasztany-Od-Dziekanatu-2024"
WEAK = "haslo123"
#: zxcvbn scores it "very strong", but it holds the person's last name: refused, so never shown as strong.
PERSONAL = "Wisniewska-Tramwaj-Parasol-77"
STRONG = "Parowóz-Klarnet-Zima-1954"
STRONG_2 = "Zielony Parasol Nad Odrą 1410"
#: The server's strength words, in either language (the meter shows them as the server sends them).
STRONG_WORDING = re.compile(r"\b(strong|silne)\b", re.I)
#: Long enough for the debounce, the request and zxcvbn; the whole test is bounded by conftest's time_limit.
VERDICT_TIMEOUT_MS = 8_000


def _verdict_shown(page: Page) -> None:
    """Wait until the page shows the server's verdict on what is in the field now."""
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", re.compile(r"^(ok|fail)$"),
                                                                      timeout=VERDICT_TIMEOUT_MS)
    expect(page.locator("#password-rules")).not_to_have_attribute("aria-busy", "true", timeout=VERDICT_TIMEOUT_MS)


def _type_new_password(page: Page, password: str) -> dict[str, str]:
    """Type into the live field; the checklist as shown afterwards: rule code -> ok / fail / pending."""
    page.locator("#new_password").fill(password)
    _verdict_shown(page)
    states = {}
    for li in page.locator("#password-rules li[data-rule]").all():
        if li.is_visible():
            states[li.get_attribute("data-rule")] = li.get_attribute("data-state")
    return states


def _strength(page: Page) -> str:
    return page.locator("#new_password-strength .strength-text").inner_text()


def test_temporary_password_is_changed_with_live_feedback_before_the_cas_app(
        idp, relying_app, make_person, new_context, artifacts):
    person = make_person(TEMPORARY, temporary=True)
    ctx = new_context(locale="pl-PL")
    page = ctx.new_page()
    home = f"{relying_app.url}/app/"

    page.goto(home)
    assert page.url.startswith(f"{idp.url}/cas/login?"), page.url
    submit_login(page, person.login, TEMPORARY)
    # Forced to the change form: no ticket for the app yet.
    assert page.url.startswith(f"{idp.url}/login/change-password"), page.url
    expect(page.locator("#why")).to_contain_text("tymczasowe")
    assert not [v for v in relying_app.state.validations if v.user == person.login]
    # Before anything is typed, the checklist is the server-rendered list with no rule claimed met.
    rules = page.locator("#password-rules li[data-rule]")
    assert rules.count() >= 4
    expect(page.locator('#password-rules li[data-state="ok"]')).to_have_count(0)
    expect(page.locator("#new_password-strength")).to_be_hidden()

    # A weak password: the failing rules are shown as such, in words and marks, and nothing says strong.
    states = _type_new_password(page, WEAK)
    for code in ("too_short", "context", "weak"):
        assert states.get(code) == "fail", states
    assert states.get("personal_data") == "ok", states
    too_short = page.locator('#password-rules li[data-rule="too_short"]')
    expect(too_short.locator(".mark")).to_have_text("✗")
    not_met = page.locator("#password-rules").get_attribute("data-text-fail")
    expect(too_short.locator(".rule-state")).to_have_text(f"({not_met})")  # the state in words too
    assert not STRONG_WORDING.search(_strength(page)), _strength(page)
    assert page.eval_on_selector("#new_password-meter", "m => m.value") < 3
    page.screenshot(path=artifacts / "password-weak.png", full_page=True)

    # Very strong to zxcvbn, but the server refuses it (personal data): the page does not call it strong.
    states = _type_new_password(page, PERSONAL)
    assert states.get("personal_data") == "fail", states
    assert not STRONG_WORDING.search(_strength(page)), _strength(page)
    assert page.eval_on_selector("#new_password-meter", "m => m.value") < 3
    page.screenshot(path=artifacts / "password-refused-not-strong.png", full_page=True)

    # A strong password: every rule ticks and the strength shows the server's "strong" wording.
    states = _type_new_password(page, STRONG)
    assert states and all_ok(states), states
    expect(page.locator("#new_password-strength .strength-value")).to_have_text(STRONG_WORDING)
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", "ok")
    all_met = page.locator("#new_password-strength").get_attribute("data-all-met")
    expect(page.locator("#new_password-live")).to_contain_text(all_met)  # announced politely
    assert page.locator("#new_password-live").get_attribute("aria-live") == "polite"
    page.screenshot(path=artifacts / "password-strong.png", full_page=True)

    # Submit: on to the CAS app with a ticket, issued only now.
    page.locator("#confirm").fill(STRONG)
    with page.expect_navigation(url=re.compile("^" + re.escape(home) + r"\?ticket=ST-")):
        page.locator('form button[type="submit"]').click()
    ticket = ticket_of(page.url)
    found = [v for v in relying_app.state.validations if v.ticket == ticket]
    assert len(found) == 1 and found[0].error is None and found[0].user == person.login, found

    # The temporary password no longer works; the new one does.
    other = new_context(locale="pl-PL").new_page()
    other.goto(home)
    response = submit_login(other, person.login, TEMPORARY)
    assert response.status == 401 and other.url.startswith(f"{idp.url}/cas/login"), (response.status, other.url)
    submit_login(other, person.login, STRONG)
    other.wait_for_url(re.compile("^" + re.escape(home) + r"\?ticket=ST-"))


def _submit_change(page: Page, current: str, new: str):
    page.locator("#current_password").fill(current)
    page.locator("#confirm").fill(new)
    with page.expect_navigation() as nav:
        page.locator('form button[type="submit"]').click()
    return nav.value


def test_account_page_server_accepts_exactly_what_the_checklist_calls_acceptable(idp, make_person, new_context,
                                                                                 artifacts):
    first = "Stary-Kasztan-Pod-Oknem-1960"
    person = make_person(first)
    page = new_context(locale="pl-PL").new_page()
    page.goto(f"{idp.url}/cas/login")
    submit_login(page, person.login, first)
    # From the landing page to the change-password page by its link.
    with page.expect_navigation():
        page.locator('main a[href$="/account/password"]').click()
    assert page.url == f"{idp.url}/account/password", page.url

    current = first
    for candidate in (PERSONAL, WEAK, STRONG_2):
        page.locator("#current_password").fill(current)
        states = _type_new_password(page, candidate)
        acceptable = bool(states) and all_ok(states)
        strength = _strength(page)
        assert bool(STRONG_WORDING.search(strength)) == acceptable, (candidate, strength, states)
        response = _submit_change(page, current, candidate)
        accepted = response.status == 200 and page.locator(".notice").count() == 1
        assert accepted == acceptable, (candidate, states, response.status, page.locator("main").inner_text())
        if accepted:
            current = candidate
            break
        expect(page.locator("#form-errors")).to_be_visible()
    assert current == STRONG_2


def test_checklist_pauses_on_429_and_falls_back_on_network_errors(idp, make_person, new_context, artifacts):
    """The browser side of the endpoint's limits, with the endpoint's answers stubbed in the browser."""
    password = "Stary-Kasztan-Pod-Oknem-1961"
    person = make_person(password)
    page = new_context(locale="pl-PL").new_page()
    page.goto(f"{idp.url}/cas/login")
    submit_login(page, person.login, password)
    page.goto(f"{idp.url}/account/password")
    check_url = f"{idp.url}/password/check?for=account"
    requests = []
    page.on("request", lambda r: requests.append(r) if r.url == check_url else None)

    # A real verdict first; the request carries the token from the page's meta tag.
    states = _type_new_password(page, STRONG)
    assert all_ok(states), states
    sent = requests[-1]
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert sent.method == "POST" and sent.headers.get("x-csrftoken") == token
    assert sent.post_data_json == {"password": STRONG}

    # Over the policy's maximum length the server judges only that: its rule is shown, failing, and the
    # rules it did not judge are not shown as met or failed.
    states = _type_new_password(page, "Długie-" * 30)
    assert states == {"too_long": "fail"}, states
    expect(page.locator('#password-rules li[data-rule="too_long"] .rule-label')).not_to_be_empty()
    states = _type_new_password(page, STRONG)
    assert "too_long" not in states and all_ok(states), states

    # 429: a short "paused" note, and no rule is left claimed met for the new input.
    page.route(check_url, lambda route: route.fulfill(status=429, headers={"Retry-After": "30"},
                                                      body="Too Many Requests"))
    page.locator("#new_password").fill(STRONG + "x")
    expect(page.locator("#new_password-paused")).to_be_visible(timeout=VERDICT_TIMEOUT_MS)
    expect(page.locator('#password-rules li[data-state="ok"]')).to_have_count(0)
    expect(page.locator("#new_password-strength")).to_be_hidden()
    page.screenshot(path=artifacts / "password-paused.png", full_page=True)
    # While paused, typing sends nothing.
    before = len(requests)
    page.locator("#new_password").fill(STRONG + "xy")
    page.wait_for_timeout(600)
    assert len(requests) == before

    # A network error: back to the server-rendered list, unjudged (the verdict shown was for older input).
    page.unroute(check_url)
    page.reload()
    states = _type_new_password(page, WEAK)
    assert "fail" in states.values(), states
    page.route(check_url, lambda route: route.abort())
    with page.expect_event("requestfailed", predicate=lambda r: r.url == check_url, timeout=VERDICT_TIMEOUT_MS):
        page.locator("#new_password").fill(STRONG)
    expect(page.locator("#password-rules li[data-rule]")).not_to_have_count(0)
    expect(page.locator('#password-rules li[data-state="ok"]')).to_have_count(0)
    expect(page.locator('#password-rules li[data-state="fail"]')).to_have_count(0)
    expect(page.locator("#new_password-strength")).to_be_hidden()
