"""The helpdesk console in a real browser against a real `idp serve`, mail through the SMTP sink.

A helpdesk person (role granted with `idp staff grant`) opens the console, logs in, sets up the second
factor (reads the key shown as text, computes the code with pyotp), finds a student by album number,
reads why the student's last logins failed (wrong passwords until the account locked), unlocks the
account and sends a reset link to the address the student asked for; the student receives the mail and
the link opens the reset page. Then: the audit log shows both actions with their reasons, a name search
lists the student's two records, the merge page shows them side by side (cancelled), and a one-time
recovery code is shown once. No page of the console trips its Content-Security-Policy.
The IdP is this file's own, with a policy whose growing delays after wrong passwords last one second
(the default's 2 s doubling to 60 s would make the ten wrong passwords take three minutes): the guesser
waits them out, and a stranger who does not is refused with 429 before the password is checked.
Screenshots: test-artifacts/e2e/helpdesk-*.png.
"""
from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    MAIL_WORKER_INTERVAL,
    Idp,
    clean_env,
    own_database,
    run_idp,
    serve,
    stop_process_group,
)
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
#: After this many wrong passwords in a row each attempt waits DELAY seconds (this file's policy).
DELAY_AFTER = 3
DELAY = 1
MAIL_TIMEOUT = 15


@pytest.fixture(scope="module")
def idp(tmp_path_factory, artifacts: Path, mail_sink) -> Iterator[Idp]:
    """This file's own IdP (the shared one keeps the default policy): one-second delays."""
    folder = tmp_path_factory.mktemp("helpdesk-idp")
    instance = folder / "instance"
    instance.mkdir()
    policy = folder / "policy.toml"
    policy.write_text(f"[login]\ndelay_after = {DELAY_AFTER}\ndelay_seconds = {DELAY}\n"
                      f"delay_max_seconds = {DELAY}\n", encoding="utf-8")
    with own_database("idp_e2e_helpdesk") as database_env:
        env = clean_env(IDP_INSTANCE=str(instance), IDP_POLICY=str(policy), CI=os.environ.get("CI", "true"),
                        IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                        IDP_MAIL_SERVER=mail_sink.host, IDP_MAIL_PORT=str(mail_sink.port),
                        IDP_MAIL_WORKER_INTERVAL=MAIL_WORKER_INTERVAL, PYTHONUNBUFFERED="1", **database_env)
        run_idp(["init"], env)
        log = artifacts / "idp-serve-helpdesk.log"
        proc, url, port = serve(instance, env, log)
        try:
            yield Idp(url=url, port=port, instance=instance, log=log, process=proc, env=env)
        finally:
            stop_process_group(proc)


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
    """Somebody types wrong passwords for the student until the account locks, waiting out the delays."""
    page = new_context(locale="pl-PL").new_page()
    for n in range(LOCKOUT):
        if n >= DELAY_AFTER:
            time.sleep(DELAY + 0.1)
        page.goto(f"{idp.url}/cas/login")
        response = submit_login(page, STUDENT_LOGIN, "zle-haslo-123")
        assert response.status == 401
    # Now even the right password is refused, answered as a wrong one (a lock tells a guesser nothing).
    time.sleep(DELAY + 0.1)
    page.goto(f"{idp.url}/cas/login")
    response = submit_login(page, STUDENT_LOGIN, STUDENT_PASSWORD)
    assert response.status == 401
    expect(page.locator("#form-errors")).to_contain_text("Niepoprawne dane logowania")
    expect(page.locator("#error-detail")).to_contain_text("nawet przy poprawnym haśle")


def _current_code(secret: str, after: str | None = None) -> str:
    """The authenticator's code now; a different one than `after` (a code is accepted once)."""
    totp = pyotp.TOTP(secret)
    code = totp.now()
    deadline = time.monotonic() + 35
    while code == after and time.monotonic() < deadline:
        time.sleep(0.5)
        code = totp.now()
    return code


def _a_stranger_is_made_to_wait(idp, new_context, artifacts) -> None:
    """Guessing without waiting: the fourth attempt is refused before any password check — 429, the
    form again with the login kept, and how long to wait — exactly as for an existing account."""
    page = new_context(locale="en-GB").new_page()
    page.goto(f"{idp.url}/cas/login")
    for _ in range(DELAY_AFTER):
        assert submit_login(page, "nobody@student.example.edu.pl", "zgaduje-123").status == 401
    response = submit_login(page, "nobody@student.example.edu.pl", "zgaduje-123")
    assert response.status == 429 and response.headers["retry-after"] == str(DELAY)
    expect(page.locator(".alert")).to_have_text(re.compile(r"Too many failed attempts\. Try again in 1 s\."))
    expect(page.locator('input[name="username"]')).to_have_value("nobody@student.example.edu.pl")
    expect(page.locator('input[name="password"]')).to_have_value("")
    page.screenshot(path=artifacts / "helpdesk-login-throttled.png", full_page=True)


def test_helpdesk_finds_unlocks_and_sends_a_reset_link(idp, mail_sink, new_context, artifacts, tmp_path):
    _set_up_people(idp, tmp_path)
    _a_stranger_is_made_to_wait(idp, new_context, artifacts)
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
    expect(page.locator("#last-failure")).to_contain_text(
        "right password, but the account is temporarily locked after too many wrong passwords")
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
