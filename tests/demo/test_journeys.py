"""`idp demo` as a person tries it, in headless Chromium: log in to USOSweb (CAS), walk into e-learning
(OpenID Connect) without a password, log out in one app and find both asking for the password again;
"forgot password" and the link in the demo's mail viewer opening the IdP's reset page.

The people and passwords are those the demo prints (idp/demo/people.csv, the Makefile's demo-data).
"""
from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.e2e.helpers import Documents, submit_login

STUDENT = "lukasz.zolkiewski@student.example.edu.pl"
STUDENT_PASSWORD = "Korsarz-Wisła-1987-Tramwaj"
TEACHER_ALIAS = "akowalska@wfis.example.edu.pl"
TEACHER_MAILBOX = "anna.kowalska@example.edu.pl"
#: The mail viewer reloads itself every few seconds; the IdP's outbox delivers every half second.
MAIL_TIMEOUT_MS = 20_000


def _banner_mentions(demo, *texts: str) -> None:
    out = demo.output()
    for text in texts:
        assert text in out, f"{text!r} not in the banner:\n{out}"


def _log_in_to_usosweb(page: Page, demo) -> None:
    """USOSweb → its login button → the IdP's login page → the password → back in USOSweb."""
    page.goto(demo.usosweb + "/")
    expect(page.locator("#user")).to_have_count(0)
    with page.expect_navigation():
        page.locator("#login").click()
    assert page.url.startswith(demo.idp + "/cas/login?service="), page.url
    expect(page.locator('input[name="password"]')).to_be_visible()
    response = submit_login(page, STUDENT, STUDENT_PASSWORD)
    assert response.status == 200
    assert page.url == demo.usosweb + "/", page.url
    expect(page.locator("#user")).to_have_text(STUDENT)
    expect(page.locator("#attr-album")).to_have_text("12345")
    expect(page.locator("#attr-family_name")).to_have_text("Żółkiewski")


def _walk_into_elearning(page: Page, demo) -> None:
    """e-learning's login button → the IdP → straight back, shown nothing on the way: no password asked."""
    page.goto(demo.elearning + "/")
    expect(page.locator("#userinfo")).to_have_count(0)
    documents = Documents(page)
    with page.expect_navigation(url=demo.elearning + "/"):
        page.locator("#login").click()
    hops = documents.since(0)
    assert [status for _url, status in hops[:-1]] and all(300 <= s < 400 for _url, s in hops[:-1]), hops
    assert any(url.startswith(demo.idp + "/oidc/authorize") for url, _s in hops), hops
    assert hops[-1] == (demo.elearning + "/", 200), hops
    expect(page.locator("#claim-email")).to_have_text(STUDENT)
    expect(page.locator("#claim-name")).to_have_text("Łukasz Żółkiewski")
    expect(page.locator("#claim-album")).to_have_text("12345")


def _asks_for_password(page: Page, app_url: str, demo) -> None:
    """The app shows nobody logged in, and its login button leads to the IdP's password form."""
    page.goto(app_url + "/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#user, #userinfo")).to_have_count(0)
    with page.expect_navigation():
        page.locator("#login").click()
    assert page.url.startswith(demo.idp + "/"), page.url
    expect(page.locator('input[name="password"]')).to_be_visible()


def test_the_banner_tells_urls_and_credentials(demo):
    _banner_mentions(demo, demo.idp + "/cas/login", demo.idp + "/helpdesk", demo.usosweb + "/",
                     demo.elearning + "/", demo.mail + "/", STUDENT, STUDENT_PASSWORD,
                     "olena.shevchenko@student.example.edu.pl", "marta.nowicka@example.edu.pl", TEACHER_ALIAS)


def test_login_in_usosweb_then_elearning_without_password_then_logout_in_elearning(demo, page: Page):
    _log_in_to_usosweb(page, demo)
    _walk_into_elearning(page, demo)

    # RP-initiated logout from e-learning: the IdP ends the session and returns to e-learning.
    with page.expect_navigation(url=re.compile("^" + re.escape(demo.elearning + "/logged-out"))):
        page.locator("#logout").click()
    expect(page.locator("#login")).to_be_visible()

    # USOSweb heard of it through the back channel: both apps ask for the password again.
    _asks_for_password(page, demo.usosweb, demo)
    _asks_for_password(page, demo.elearning, demo)


def test_logout_in_usosweb_logs_out_of_elearning_too(demo, page: Page):
    _log_in_to_usosweb(page, demo)
    _walk_into_elearning(page, demo)

    page.goto(demo.usosweb + "/")
    with page.expect_navigation(url=demo.usosweb + "/"):  # /cas/logout?service=… brings the person back
        page.locator("#logout").click()
    expect(page.locator("#login")).to_be_visible()

    _asks_for_password(page, demo.elearning, demo)
    _asks_for_password(page, demo.usosweb, demo)


def test_a_reset_mail_shows_up_in_the_viewer_and_its_link_opens_the_reset_page(demo, page: Page):
    # "Forgot your password?" on the IdP's login page, with the teacher's second address.
    page.goto(demo.idp + "/cas/login")
    with page.expect_navigation():
        page.get_by_role("link", name=re.compile("Forgot your password")).click()
    page.locator('input[name="identifier"]').fill(TEACHER_ALIAS)
    with page.expect_navigation() as nav:
        page.locator('form button[type="submit"]').click()
    assert nav.value.status == 200

    # The viewer (reloading itself) lists the message, sent to her university mailbox.
    page.goto(demo.mail + "/")
    message = page.locator("#messages tr", has=page.locator("td.to", has_text=TEACHER_MAILBOX)).locator("a.message")
    expect(message).to_have_count(1, timeout=MAIL_TIMEOUT_MS)
    # (a reload of the list may come first: wait for the message page itself)
    with page.expect_navigation(url=re.compile("^" + re.escape(demo.mail) + r"/messages/\d+$")):
        message.click()
    expect(page.locator("#to")).to_have_text(TEACHER_MAILBOX)

    # The link in the message is clickable and opens the IdP's page for a new password.
    link = page.locator("#body a", has_text=demo.idp + "/password/reset/")
    expect(link).to_have_count(1)
    with page.expect_navigation() as nav:
        link.click()
    assert nav.value.status == 200, page.locator("main").inner_text()
    assert page.url.startswith(demo.idp + "/password/reset/"), page.url
    expect(page.locator('input[name="new_password"]')).to_be_visible()
    expect(page.locator('input[name="answer"]')).to_be_visible()  # the security question: her PESEL
