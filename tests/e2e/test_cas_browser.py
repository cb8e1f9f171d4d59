"""A person in a real browser logs in to a CAS app through a real `idp serve` process.

The app (tests/e2e/relying_app.py) redirects to the IdP, gets a ticket back, and validates it with the
python-cas client library; the IdP runs as its own process, set up with the `idp` command (conftest.py).
Screenshots go to test-artifacts/e2e/.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cas import CASClient
from playwright.sync_api import expect

from tests.e2e.conftest import CANONICAL_USER, PASSWORD, SERVICE_NAME
from tests.e2e.helpers import redirect_chain as _redirect_chain
from tests.e2e.helpers import submit_login as _submit
from tests.e2e.helpers import ticket_of as _ticket

pytestmark = pytest.mark.e2e

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
#: INTEROP.md: CAS clients must accept 32 characters; mod_auth_cas reads SLO bodies through 1024 bytes.
MAX_TICKET = 32
MAX_SLO_BODY = 1024


def _validation(app, ticket: str):
    found = [v for v in app.state.validations if v.ticket == ticket]
    assert len(found) == 1, f"the app validated ticket {ticket} {len(found)} times"
    return found[0]


def _session_index(logout_request: str) -> str | None:
    node = ET.fromstring(logout_request).find(f"{SAMLP}SessionIndex")
    return node.text if node is not None else None


def test_login_sso_and_single_logout(idp, relying_app, new_context, artifacts):
    ctx = new_context(locale="pl-PL")
    page = ctx.new_page()
    home = f"{relying_app.url}/app/"

    # 1. The app sends the browser to the IdP, which shows the login form for this service.
    first = page.goto(home)
    login_prefix = f"{idp.url}/cas/login?"
    assert page.url.startswith(login_prefix), f"the app did not redirect to the IdP: {page.url}"
    assert parse_qs(urlsplit(page.url).query)["service"] == [home]
    assert first.status == 200
    assert "no-store" in first.headers.get("cache-control", "")
    expect(page.locator("main")).to_contain_text(SERVICE_NAME)
    expect(page.locator('input[name="password"]')).to_have_attribute("autocomplete", "current-password")

    # 2. Log in with the alias typed in mixed case; back on the app with a ticket it validates.
    _submit(page, "S12345@Student.Example.edu.pl", PASSWORD)
    page.wait_for_url(re.compile("^" + re.escape(home) + r"\?ticket=ST-"))
    ticket1 = _ticket(page.url)
    assert len(ticket1) <= MAX_TICKET, ticket1
    v = _validation(relying_app, ticket1)
    assert v.error is None, v.error
    assert v.service_url == home
    assert v.user == CANONICAL_USER
    assert v.attributes is not None, "no <cas:attributes> in the /p3/serviceValidate answer"
    assert v.attributes.get("album") == "12345"
    assert v.attributes.get("given_name") == "Łukasz"
    assert v.attributes.get("family_name") == "Żółkiewski"
    assert v.attributes.get("mail") == CANONICAL_USER
    expect(page.locator("#welcome")).to_have_text("Witaj, Łukasz Żółkiewski")
    expect(page.locator("#user")).to_have_text(CANONICAL_USER)
    page.screenshot(path=artifacts / "app-logged-in.png", full_page=True)
    cookies = {c["name"]: c for c in ctx.cookies(idp.url)}
    assert "idp_tgc" in cookies and cookies["idp_tgc"]["httpOnly"], sorted(cookies)

    # A service ticket is single use (CAS 3.0 section 3.1.2).
    replay = CASClient(version=3, server_url=idp.url + "/cas/", service_url=home)
    try:
        user, _attrs, _pgt = replay.verify_ticket(ticket1)
    finally:
        replay.session.close()
    assert user is None, "a used service ticket validated a second time"

    # 3. Another page of the app: single sign-on, no form, a new ticket.
    other = f"{relying_app.url}/app/other?tab=1"
    sso = page.goto(other)
    hops = _redirect_chain(sso)
    assert [s for _u, s in hops] == [302, 302, 200], hops
    assert hops[1][0].startswith(login_prefix), hops
    assert page.url.startswith(other + "&ticket=ST-"), page.url
    assert page.locator('input[name="password"]').count() == 0, "the password form was shown despite SSO"
    ticket2 = _ticket(page.url)
    assert ticket2 != ticket1
    v2 = _validation(relying_app, ticket2)
    assert v2.error is None, v2.error
    assert (v2.user, v2.service_url) == (CANONICAL_USER, other)
    expect(page.locator("#path")).to_have_text("/app/other")

    # 4. Logout at the IdP: the app's /slo gets one logoutRequest per ticket it was issued.
    seen = len(relying_app.state.slo_posts)
    page.goto(f"{idp.url}/cas/logout")
    posts = relying_app.state.slo_posts[seen:]
    page.screenshot(path=artifacts / "logout.png", full_page=True)
    assert len(posts) == 2, posts
    for post in posts:
        assert post.content_type.startswith("application/x-www-form-urlencoded"), post.content_type
        assert post.logout_request, "POST /slo without a logoutRequest parameter"
        assert len(urlencode({"logoutRequest": post.logout_request})) <= MAX_SLO_BODY
    assert sorted(_session_index(p.logout_request) for p in posts) == sorted([ticket1, ticket2])
    assert sorted(p.matched_ticket for p in posts) == sorted([ticket1, ticket2]), "python-cas did not accept it"
    assert ticket1 not in relying_app.state.sessions and ticket2 not in relying_app.state.sessions
    # The page lists the app with its delivery confirmed (however many tickets it got) and no failure.
    expect(page.locator("main ul.apps li").filter(has_text=SERVICE_NAME).first).to_be_visible()
    assert page.locator("main ul.apps .ok").count() >= 1
    assert page.locator("main ul.apps .warn").count() == 0, page.locator("main ul.apps").inner_text()
    assert "idp_tgc" not in {c["name"] for c in ctx.cookies(idp.url)}

    # 5. Back to the app: the IdP asks for the password again (no silent SSO).
    page.goto(home)
    assert page.url.startswith(login_prefix), page.url
    expect(page.locator('input[name="password"]')).to_be_visible()
    page.screenshot(path=artifacts / "login-after-logout.png", full_page=True)


def test_login_page_languages_wrong_password_and_toggle(idp, relying_app, new_context, artifacts):
    # German only: neither supported language is asked for, so the institution's default (Polish) applies.
    ctx = new_context(locale="de-DE")
    page = ctx.new_page()
    problems: list[str] = []  # language checks are gathered so every screenshot is taken first

    first = page.goto(f"{relying_app.url}/app/")
    assert page.url.startswith(f"{idp.url}/cas/login?"), page.url
    assert "no-store" in first.headers.get("cache-control", "")
    if page.locator("html").get_attribute("lang") != "pl":
        problems.append(f"default page language is {page.locator('html').get_attribute('lang')!r}, not 'pl'")
    page.screenshot(path=artifacts / "login-pl.png", full_page=True)
    # The inputs are reachable by their visible labels (the way a screen reader announces them).
    expect(page.get_by_label("Login", exact=True)).to_have_attribute("name", "username")
    expect(page.get_by_label("Hasło", exact=True)).to_have_attribute("name", "password")

    # Show-password toggle: the input becomes text and back.
    password = page.locator('input[name="password"]')
    toggle = page.locator('button.toggle-pw[data-target="password"]')
    password.fill("sekret")
    expect(password).to_have_attribute("type", "password")
    toggle.click()
    expect(password).to_have_attribute("type", "text")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(password).to_have_attribute("type", "password")

    # Wrong password, Polish.
    wrong = _submit(page, "12345", "to-nie-jest-moje-haslo")
    assert wrong.status == 401, wrong.status
    assert "no-store" in wrong.headers.get("cache-control", "")
    assert password.input_value() == "", "the wrong password was sent back to the browser"
    page.screenshot(path=artifacts / "wrong-password-pl.png", full_page=True)
    alert = page.locator("#form-errors").inner_text()
    if "Niepoprawne dane logowania" not in alert:
        problems.append(f"Polish wrong-password message: got {alert!r}, want 'Niepoprawne dane logowania'")

    # English via ?lang=en; the choice sticks.
    en = page.goto(f"{idp.url}/cas/login?" + urlencode({"service": f"{relying_app.url}/app/", "lang": "en"}))
    assert "no-store" in en.headers.get("cache-control", "")
    assert page.locator("html").get_attribute("lang") == "en"
    page.screenshot(path=artifacts / "login-en.png", full_page=True)
    wrong = _submit(page, "12345", "to-nie-jest-moje-haslo")
    assert wrong.status == 401, wrong.status
    page.screenshot(path=artifacts / "wrong-password-en.png", full_page=True)
    alert = page.locator("#form-errors").inner_text()
    if "Invalid login or password" not in alert:
        problems.append(f"English wrong-password message: got {alert!r}")
    page.goto(f"{relying_app.url}/app/")
    assert page.locator("html").get_attribute("lang") == "en", "the language choice did not stick"

    # No ticket was issued for any of this.
    assert "idp_tgc" not in {c["name"] for c in ctx.cookies(idp.url)}
    assert not problems, "\n".join(problems)
