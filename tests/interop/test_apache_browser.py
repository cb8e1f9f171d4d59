"""A person in a real browser walks through two apps behind a real Apache httpd: /cas-app/ protected by
mod_auth_cas, /oidc-app/ by mod_auth_openidc, both logging in through a real `idp serve`.

app 1 → the IdP's login page → app 1 shows the person (and attributes) → app 2 shows the same person
without asking for the password → logout (the IdP's CAS logout, or the OIDC app's own logout) → both
apps ask for the login again. The last step holds only if the IdP's back-channel messages reached Apache
and each module ended its own session: Apache's session cookies are still in the browser.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.helpers import Documents, submit_login
from tests.interop.conftest import CANONICAL_USER, CAS_SERVICE, OIDC_SERVICE, PASSWORD, STUDENT, Interop

pytestmark = pytest.mark.e2e


def attribute(page: Page, name: str):
    """One row of the app page's table of what Apache passed on (CGI environment variable `name`)."""
    return page.locator(f'#attributes tr[data-name="{name}"] td')


def on_login_form(page: Page, interop: Interop) -> bool:
    return page.url.startswith(f"{interop.idp_url}/cas/login") and page.locator('input[name="password"]').count() == 1


def shown_login_form(docs: Documents, mark: int, interop: Interop) -> bool:
    """Whether the browser was shown the IdP's login form (a 200 page at /cas/login) since `mark`."""
    return any(url.startswith(f"{interop.idp_url}/cas/login") and status == 200 for url, status in docs.since(mark))


def log_in_at_cas_app(page: Page, interop: Interop, artifacts, prefix: str) -> None:
    """app 1 → login page → app 1 shows the person, with the attributes mod_auth_cas passed on."""
    page.goto(interop.cas_app)
    assert on_login_form(page, interop), f"/cas-app/ did not send the browser to the login form: {page.url}"
    assert parse_qs(urlsplit(page.url).query)["service"] == [interop.cas_app]
    expect(page.locator("main")).to_contain_text(CAS_SERVICE)
    submit_login(page, STUDENT["aliases"], PASSWORD)
    # mod_auth_cas validates the ticket, opens its own session and sends the browser on without it.
    page.wait_for_url(interop.cas_app)
    expect(page.locator("#user")).to_have_text(CANONICAL_USER)
    expect(attribute(page, "HTTP_CAS_MAIL")).to_have_text(CANONICAL_USER)
    expect(attribute(page, "HTTP_CAS_ALBUM")).to_have_text(STUDENT["album"])
    expect(attribute(page, "HTTP_CAS_GIVEN_NAME")).to_have_text(STUDENT["first_name"])
    expect(attribute(page, "HTTP_CAS_FAMILY_NAME")).to_have_text(STUDENT["last_name"])
    page.screenshot(path=artifacts / f"{prefix}-1-cas-app.png", full_page=True)


def sso_into_oidc_app(page: Page, interop: Interop, artifacts, prefix: str) -> None:
    """app 2 → through the IdP and back without a password: the same person, with the ID token's claims."""
    docs = Documents(page)
    mark = docs.mark()
    page.goto(interop.oidc_app)
    page.wait_for_url(interop.oidc_app)
    assert not shown_login_form(docs, mark, interop), f"the login form was shown again: {docs.since(mark)}"
    authorize = [url for url, _ in docs.since(mark) if url.startswith(f"{interop.idp_url}/oidc/authorize?")]
    assert len(authorize) == 1, docs.since(mark)
    # mod_auth_openidc found the endpoint by discovery and uses the code flow with PKCE.
    asked = parse_qs(urlsplit(authorize[0]).query)
    assert asked["response_type"] == ["code"] and asked["code_challenge_method"] == ["S256"], asked
    expect(page.locator("#user")).to_have_text(CANONICAL_USER)
    expect(page.locator("#auth-type")).to_have_text("openid-connect")
    expect(attribute(page, "OIDC_CLAIM_email")).to_have_text(CANONICAL_USER)
    expect(attribute(page, "OIDC_CLAIM_given_name")).to_have_text(STUDENT["first_name"])
    expect(attribute(page, "OIDC_CLAIM_family_name")).to_have_text(STUDENT["last_name"])
    page.screenshot(path=artifacts / f"{prefix}-2-oidc-app.png", full_page=True)


def both_served_from_apache_sessions(page: Page, interop: Interop) -> None:
    """Before logout: each app answers from its module's own session, without a trip to the IdP."""
    docs = Documents(page)
    for app in (interop.cas_app, interop.oidc_app):
        mark = docs.mark()
        page.goto(app)
        assert docs.since(mark) == [(app, 200)], f"{app} was not served from Apache's session: {docs.since(mark)}"
        expect(page.locator("#user")).to_have_text(CANONICAL_USER)


#: The modules' session cookies (mod_auth_cas: CASCookie; mod_auth_openidc: OIDCCookie), both defaults.
CAS_COOKIE = "MOD_AUTH_CAS"
OIDC_COOKIE = "mod_auth_openidc_session"


def both_ask_for_login(page: Page, interop: Interop, artifacts, prefix: str, *, cookies_kept: set[str]) -> None:
    """After logout: each app sends the browser to the IdP, which shows the login form — although the
    browser still holds `cookies_kept`: the module ended that session on the server, told by the IdP."""
    held = {c["name"] for c in page.context.cookies([interop.cas_app, interop.oidc_app])}
    assert cookies_kept <= held, f"expected the browser to keep {sorted(cookies_kept)}, it holds {sorted(held)}"
    for n, app in enumerate((interop.cas_app, interop.oidc_app), start=1):
        page.goto(app)
        assert on_login_form(page, interop), (
            f"{app} did not ask for the login again (now at {page.url}):\n{interop.logs()}")
        page.screenshot(path=artifacts / f"{prefix}-after-logout-{n}.png", full_page=True)


def test_cas_logout_ends_both_apache_sessions(interop: Interop, new_context, artifacts):
    page = new_context(locale="en-US").new_page()
    log_in_at_cas_app(page, interop, artifacts, "cas-logout")
    sso_into_oidc_app(page, interop, artifacts, "cas-logout")
    both_served_from_apache_sessions(page, interop)

    # Log out from the CAS app: its link is the IdP's /cas/logout, which lists the apps it told.
    page.goto(interop.cas_app)
    page.locator("#logout").click()
    page.wait_for_url(f"{interop.idp_url}/cas/logout")
    page.screenshot(path=artifacts / "cas-logout-3-logged-out.png", full_page=True)
    apps = page.locator("ul.apps li")
    expect(apps).to_have_count(2)
    expect(apps.filter(has_text=OIDC_SERVICE).locator(".ok")).to_have_count(1)
    # mod_auth_cas answers every back-channel POST with its redirect to the login page (it reads the
    # logoutRequest while Apache discards the body of that 302); the IdP counts that as received, as
    # Apereo CAS does (docs/cas.md) — and the module did end its session: see below.
    expect(apps.filter(has_text=CAS_SERVICE).locator(".ok")).to_have_count(1)

    # Neither module saw the browser since: the IdP's back-channel messages ended both sessions.
    both_ask_for_login(page, interop, artifacts, "cas-logout", cookies_kept={CAS_COOKIE, OIDC_COOKIE})

    # And in again: the form, now on the way to the OIDC app, then the CAS app without a password.
    submit_login(page, STUDENT["album"], PASSWORD)
    page.wait_for_url(interop.oidc_app)
    expect(page.locator("#user")).to_have_text(CANONICAL_USER)
    docs = Documents(page)
    mark = docs.mark()
    page.goto(interop.cas_app)
    page.wait_for_url(interop.cas_app)
    assert not shown_login_form(docs, mark, interop), docs.since(mark)
    expect(page.locator("#user")).to_have_text(CANONICAL_USER)


def test_oidc_logout_ends_both_apache_sessions(interop: Interop, new_context, artifacts):
    page = new_context(locale="en-US").new_page()
    log_in_at_cas_app(page, interop, artifacts, "oidc-logout")
    sso_into_oidc_app(page, interop, artifacts, "oidc-logout")

    # Log out from the OIDC app: mod_auth_openidc ends its session and sends the browser to the IdP's
    # end_session_endpoint, which ends the SSO session, tells the CAS app, and returns to Apache.
    docs = Documents(page)
    mark = docs.mark()
    page.locator("#logout").click()
    page.wait_for_url(f"{interop.apache.url}/logged-out.html")
    expect(page.locator("#logged-out")).to_be_visible()
    end_session = [url for url, _ in docs.since(mark) if url.startswith(f"{interop.idp_url}/oidc/logout?")]
    assert len(end_session) == 1, f"the browser did not pass the IdP's end-session endpoint: {docs.since(mark)}"
    sent = parse_qs(urlsplit(end_session[0]).query)
    assert sent["post_logout_redirect_uri"] == [f"{interop.apache.url}/logged-out.html"], sent
    assert "id_token_hint" in sent, sent

    # mod_auth_openidc ended its own session; mod_auth_cas's ended by the IdP's logoutRequest.
    both_ask_for_login(page, interop, artifacts, "oidc-logout", cookies_kept={CAS_COOKIE})
