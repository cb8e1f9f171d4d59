"""The helpdesk console in a real browser against a real `idp serve`, mail through the SMTP sink.

A helpdesk person (role granted with `idp staff grant`) opens the console, logs in, sets up the second
factor (reads the key shown as text, computes the code with pyotp), finds a student by album number,
reads why the student's last logins failed (wrong passwords until the account locked), unlocks the
account and sends a reset link to the address the student asked for; the student receives the mail and
the link opens the reset page. Then: the audit log shows both actions with their reasons, a name search
lists the student's two records, the merge page shows them side by side (cancelled), and a one-time
recovery code is shown once. No page of the console trips its Content-Security-Policy.
Screenshots: test-artifacts/e2e/helpdesk-*.png.
"""
from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import run_idp
from tests.e2e.helpers import submit_login
from tests.smtp_sink import link_in

pytestmark = pytest.mark.e2e

STAFF_LOGIN = "hanna.pomocna@example.edu.pl"
STAFF_PASSWORD = "Latarnik-Bursztyn-Mewa-2031"
STUDENT_ALBUM = "88123"
STUDENT_LOGIN = "zofia.nalkowska@student.example.edu.pl"
STUDENT_PRIVATE = "zofia.n@example.com"
STUDENT_PASSWORD = "Granica-Medaliony-Pustka-1935"
#: A second record of the same student (a duplicate from the records system), for the merge page.
DUPLICATE_ALBUM = "88124"
#: The default policy's lockout_threshold: this many wrong passwords in a row lock password logins.
LOCKOUT = 10
MAIL_TIMEOUT = 15


def _set_up_people(idp, tmp_path) -> None:
    """Through the command line only: import both people, set their passwords, grant the console role."""
    people = tmp_path / "helpdesk-people.csv"
    people.write_text(
        "album,pesel,birth_date,first_name,last_name,university_email,private_email,role,aliases\n"
        f"P9001,,1980-02-03,Hanna,Pomocna,{STAFF_LOGIN},,staff,\n"
        f"{STUDENT_ALBUM},,2001-05-06,Zofia,Nałkowska,{STUDENT_LOGIN},{STUDENT_PRIVATE},student,\n"
        f"{DUPLICATE_ALBUM},,2001-05-06,Zofia,Nałkowska,,zofia.nalkowska.2@example.com,student,\n",
        encoding="utf-8")
    out = run_idp(["users", "import", str(people)], idp.env)
    assert "added 3" in out, out
    run_idp(["users", "set-password", STAFF_LOGIN], idp.env, stdin=STAFF_PASSWORD + "\n")
    run_idp(["users", "set-password", STUDENT_LOGIN], idp.env, stdin=STUDENT_PASSWORD + "\n")
    out = run_idp(["staff", "grant", STAFF_LOGIN, "helpdesk"], idp.env)
    assert "helpdesk" in out, out


def _lock_the_student(idp, new_context) -> None:
    """Somebody types wrong passwords for the student until the account locks."""
    page = new_context(locale="pl-PL").new_page()
    for _ in range(LOCKOUT):
        page.goto(f"{idp.url}/cas/login")
        response = submit_login(page, STUDENT_LOGIN, "zle-haslo-123")
        assert response.status == 401
    # Now even the right password is refused, with the lock explained to its owner.
    page.goto(f"{idp.url}/cas/login")
    response = submit_login(page, STUDENT_LOGIN, STUDENT_PASSWORD)
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("Twoje konto jest zablokowane")


def _current_code(secret: str, after: str | None = None) -> str:
    """The authenticator's code now; a different one than `after` (a code is accepted once)."""
    totp = pyotp.TOTP(secret)
    code = totp.now()
    deadline = time.monotonic() + 35
    while code == after and time.monotonic() < deadline:
        time.sleep(0.5)
        code = totp.now()
    return code


def test_helpdesk_finds_unlocks_and_sends_a_reset_link(idp, mail_sink, new_context, artifacts, tmp_path):
    _set_up_people(idp, tmp_path)
    _lock_the_student(idp, new_context)

    page = new_context(locale="en-GB", viewport={"width": 1280, "height": 900}).new_page()
    # The console's stricter Content-Security-Policy must not block anything its own pages use.
    blocked: list[str] = []
    page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)

    # The console sends an anonymous visitor to the login page, and back after it.
    page.goto(f"{idp.url}/helpdesk/")
    assert page.url.startswith(f"{idp.url}/cas/login"), page.url
    submit_login(page, STAFF_LOGIN, STAFF_PASSWORD)

    # First visit: set up the second factor. The key is on the page as text too.
    page.wait_for_url(re.compile(re.escape(f"{idp.url}/mfa/setup")))
    expect(page.locator("h1")).to_have_text("Set up a second factor")
    secret = page.locator("#totp-secret").get_attribute("data-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]+", secret), secret
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret
    page.screenshot(path=artifacts / "helpdesk-mfa-setup.png", full_page=True)
    first_code = _current_code(secret)
    page.get_by_label("Code from your authenticator app").fill(first_code)
    with page.expect_navigation():
        page.get_by_role("button", name="Confirm").click()
    expect(page.locator("h1")).to_have_text("Your recovery codes")
    assert page.locator("#recovery-codes li").count() == 10
    with page.expect_navigation():
        page.get_by_role("link", name="I have saved them, continue").click()

    # The console: find the student by album number with the keyboard only.
    page.wait_for_url(f"{idp.url}/helpdesk/")
    expect(page.locator("h1")).to_have_text("Helpdesk console")
    search = page.get_by_label("Find a person")
    expect(search).to_be_focused()
    page.screenshot(path=artifacts / "helpdesk-dashboard.png", full_page=True)
    search.fill(STUDENT_ALBUM)
    with page.expect_navigation():
        search.press("Enter")
    page.wait_for_url(f"{idp.url}/helpdesk/people/{STUDENT_ALBUM}")

    # Why the last logins failed, in plain words.
    expect(page.locator("h1")).to_have_text("Zofia Nałkowska")
    status = page.locator("section", has=page.locator("#status-title"))
    expect(status.locator(".badge-locked")).to_have_text("locked")
    expect(status).to_contain_text("Locked until")
    expect(status).to_contain_text(f"after {LOCKOUT} wrong passwords in a row")
    expect(page.locator("#last-failure")).to_contain_text("account temporarily locked after too many wrong passwords")
    events = page.locator("table.events tbody tr")
    expect(events.filter(has_text=f"wrong password ×{LOCKOUT}")).to_have_count(1)
    expect(events.filter(has_text="Account locked: too many wrong passwords")).to_have_count(1)
    page.screenshot(path=artifacts / "helpdesk-person-locked.png", full_page=True)

    # Unlock, with a reason.
    with page.expect_navigation():
        page.get_by_role("link", name="Unlock", exact=True).click()
    expect(page.locator("h1")).to_have_text("Unlock the account")
    reason = page.get_by_label("Reason")
    expect(reason).to_be_focused()
    reason.fill("Phone call: forgot the password, ticket HD-77")
    page.screenshot(path=artifacts / "helpdesk-unlock.png", full_page=True)
    with page.expect_navigation():
        page.get_by_role("button", name="Unlock").click()
    page.wait_for_url(f"{idp.url}/helpdesk/people/{STUDENT_ALBUM}")
    expect(page.locator("#result")).to_have_text("The account was unlocked.")
    expect(page.locator(".badge-locked")).to_have_count(0)

    # Send a reset link to the private address the student asked for.
    with page.expect_navigation():
        page.get_by_role("link", name="Send a reset link").click()
    expect(page.locator("h1")).to_have_text("Send a password reset link")
    page.get_by_label("Send the link to").select_option(STUDENT_PRIVATE)
    page.get_by_label("Language of the e-mail").select_option("pl")
    page.get_by_label("Reason").fill("Ticket HD-77: no access to the university mailbox")
    page.screenshot(path=artifacts / "helpdesk-reset-link.png", full_page=True)
    with page.expect_navigation():
        page.get_by_role("button", name="Send the link").click()
    expect(page.locator("#result")).to_have_text(f"A password reset link was sent to {STUDENT_PRIVATE}.")
    events = page.locator("table.events tbody tr")
    expect(events.filter(has_text="Helpdesk sent a reset link")).to_have_count(1)
    expect(events.filter(has_text="Helpdesk unlocked the account")).to_have_count(1)
    page.screenshot(path=artifacts / "helpdesk-person-done.png", full_page=True)

    # The student receives it at that address (and not at the university one), and the link works.
    [received] = mail_sink.wait_for(STUDENT_PRIVATE, timeout=MAIL_TIMEOUT)
    assert mail_sink.to(STUDENT_LOGIN) == []
    assert received.message["Subject"].startswith("Ustaw nowe hasło")
    link = link_in(received.text)
    assert link.startswith(f"{idp.url}/password/reset/"), link
    student = new_context(locale="pl-PL").new_page()
    response = student.goto(link)
    assert response.status == 200, student.locator("main").inner_text()
    expect(student.locator('label[for="answer"]')).to_have_text("Data urodzenia")  # no PESEL: the birth date
    student.screenshot(path=artifacts / "helpdesk-student-reset.png", full_page=True)

    # The audit log has both actions with the reasons given.
    page.goto(f"{idp.url}/helpdesk/audit?action=helpdesk.")
    log = page.locator("table.audit tbody")
    expect(log).to_contain_text("Ticket HD-77: no access to the university mailbox")
    expect(log).to_contain_text("Phone call: forgot the password, ticket HD-77")
    expect(log.locator("tr")).to_have_count(2)
    page.screenshot(path=artifacts / "helpdesk-audit.png", full_page=True)

    # A name search lists both records of the student; the merge page shows them side by side.
    page.goto(f"{idp.url}/helpdesk/")
    page.get_by_label("Find a person").fill("zofia nalkowska")
    with page.expect_navigation():
        page.get_by_label("Find a person").press("Enter")
    expect(page.locator("table.results tbody tr")).to_have_count(2)
    page.screenshot(path=artifacts / "helpdesk-search-name.png", full_page=True)
    page.goto(f"{idp.url}/helpdesk/people/{STUDENT_ALBUM}/merge?other={DUPLICATE_ALBUM}")
    expect(page.locator(".side")).to_have_count(2)
    expect(page.locator(".side").nth(1)).to_contain_text("zofia.nalkowska.2@example.com")
    page.screenshot(path=artifacts / "helpdesk-merge.png", full_page=True)
    with page.expect_navigation():
        page.get_by_role("link", name="Cancel").click()  # nothing merged
    expect(page.locator("h1")).to_have_text("Zofia Nałkowska")

    # A one-time recovery code, after the identity check at the desk: shown once, on the response page.
    with page.expect_navigation():
        page.get_by_role("link", name="Issue a one-time recovery code").click()
    page.get_by_label("I have checked the person's identity document in person").check()
    page.get_by_label("Reason").fill("Ticket HD-78: lost access to every mailbox, ID card checked")
    response = None
    with page.expect_navigation() as nav:
        page.get_by_role("button", name="Issue the code").click()
    response = nav.value
    assert response.status == 200 and response.headers["cache-control"] == "no-store"
    code = page.locator("#recovery-code strong").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code), code
    page.screenshot(path=artifacts / "helpdesk-recovery-code.png", full_page=True)
    with page.expect_navigation():
        page.get_by_role("link", name="Back to the person").click()
    assert code not in page.content()
    assert blocked == [], blocked
