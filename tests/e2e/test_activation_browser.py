"""Activation for new students in a real browser against a real `idp serve` process.

A first-year student imported from the SIS without a password goes from the login page's "New student?
Activate your account" to /activate, types the data wrongly once (the mismatch message), and — the
address has now used its free attempt — the browser solves the proof-of-work challenge (idp/static/pow.js,
Web Crypto) before the right data are sent; then the first password with the live checklist, the "account
is active" page, and a login with that password. Without JavaScript the page says JavaScript is needed.

This file serves its own IdP: a policy with a low difficulty and one free attempt (IDP_POLICY), and its own
database, so its failed attempts from 127.0.0.1 never count against the other e2e tests.
Screenshots: test-artifacts/e2e/activation-*.png.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import (
    START_TIMEOUT,
    _answers,
    _tail,
    clean_env,
    free_port,
    idp_executable,
    own_database,
    run_idp,
    stop_process_group,
)
from tests.e2e.helpers import submit_login

pytestmark = pytest.mark.e2e

ALBUM = "31337"
PESEL = "02070803628"
WRONG_PESEL = "44051401359"
LAST_NAME = "Wiśniewska-Łęcka"
LOGIN = "zofia.wisniewska@student.example.edu.pl"
NEW = "Parowóz-Klarnet-Zima-1954"
#: ~2^12 SHA-256 digests: well under a second, yet a real search.
CHALLENGE_BITS = 12
POW_TIMEOUT_MS = 20_000
VERDICT_TIMEOUT_MS = 8_000


@dataclass
class Served:
    url: str
    log: Path


@pytest.fixture(scope="module")
def activation_idp(tmp_path_factory, artifacts: Path) -> Iterator[Served]:
    """An IdP with a policy of one free attempt and a cheap challenge; one student without a password."""
    folder = tmp_path_factory.mktemp("activation-idp")
    instance = folder / "instance"
    instance.mkdir()
    policy = folder / "activation-policy.toml"
    policy.write_text(f"[activation]\nfree_attempts = 1\nchallenge_bits = {CHALLENGE_BITS}\n", encoding="utf-8")
    people = folder / "people.csv"
    people.write_text("album,pesel,first_name,last_name,university_email,private_email,role,aliases\n"
                      f"{ALBUM},{PESEL},Zofia,{LAST_NAME},{LOGIN},,student,\n", encoding="utf-8")
    with own_database("idp_e2e_activation") as database_env:
        env = clean_env(IDP_INSTANCE=str(instance), IDP_POLICY=str(policy), CI=os.environ.get("CI", "true"),
                        IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                        IDP_MAIL_SERVER="127.0.0.1", IDP_MAIL_PORT=str(free_port()), PYTHONUNBUFFERED="1",
                        **database_env)
        run_idp(["init"], env)
        out = run_idp(["users", "import", str(people)], env)
        assert "added 1" in out, out
        log = artifacts / "idp-serve-activation.log"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("w", encoding="utf-8") as fh:
            proc = subprocess.Popen(
                [str(idp_executable()), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                env=dict(env, IDP_BASE_URL=url, XDG_RUNTIME_DIR=str(instance)), stdin=subprocess.DEVNULL,
                stdout=fh, stderr=subprocess.STDOUT, cwd=str(instance), start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None and not _answers(f"{url}/activate"):
                time.sleep(0.2)
            if proc.poll() is not None or not _answers(f"{url}/activate"):
                pytest.fail(f"`idp serve` did not answer on {url}/activate within {START_TIMEOUT} s; "
                            f"last log lines:\n{_tail(log)}", pytrace=False)
            yield Served(url=url, log=log)
        finally:
            stop_process_group(proc)


def _fill(page: Page, secret: str) -> None:
    page.locator("#album").fill(ALBUM)
    page.locator("#secret").fill(secret)
    page.locator("#surname").fill("wisniewska lecka")  # no diacritics, a space for the hyphen


def test_a_new_student_solves_the_challenge_sets_a_password_and_logs_in(activation_idp, new_context, artifacts):
    url = activation_idp.url
    ctx = new_context(locale="en-US")
    page = ctx.new_page()
    csp_errors: list[str] = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

    # The login page links to the activation page.
    page.goto(f"{url}/cas/login")
    with page.expect_navigation():
        page.get_by_role("link", name="New student? Activate your account").click()
    assert page.url == f"{url}/activate"
    expect(page.locator("h1")).to_have_text("Activate your account")
    expect(page.locator("#pow")).to_have_count(0)  # no failures yet: no challenge
    page.screenshot(path=artifacts / "activation-start.png", full_page=True)

    # Wrong data once: the one mismatch message, who corrects the data, when a correction shows.
    _fill(page, WRONG_PESEL)
    with page.expect_navigation() as nav:
        page.locator('form button[type="submit"]').click()
    assert nav.value.status == 400
    main = page.locator("main")
    expect(main).to_contain_text("The data you entered do not match the records.")
    expect(main).to_contain_text("dean's office")
    expect(main).to_contain_text("Next data migration:")
    expect(main.locator(".ref")).to_have_text(re.compile(r"^E\d+$"))

    # The free attempt is used: the browser solves the challenge before the form can be sent.
    pow_box = page.locator("#pow")
    expect(pow_box).to_have_attribute("data-bits", str(CHALLENGE_BITS))
    expect(pow_box).to_have_attribute("data-state", "done", timeout=POW_TIMEOUT_MS)
    expect(page.locator("#pow-status")).to_have_text("Check complete: you can send the form.")
    expect(page.locator("#pow-nojs")).to_be_hidden()  # pow.js ran
    solution = page.locator('input[name="solution"]').input_value()
    assert solution.isdigit(), solution
    expect(page.locator('form button[type="submit"]')).to_be_enabled()
    page.screenshot(path=artifacts / "activation-challenge.png", full_page=True)
    _fill(page, PESEL)
    with page.expect_navigation(url=f"{url}/activate/password"):
        page.locator('form button[type="submit"]').click()

    # The first password, with the live checklist (POST /password/check?for=activation).
    expect(page.locator("h1")).to_have_text("Set your password")
    page.locator("#new_password").fill(NEW)
    expect(page.locator("#new_password-strength")).to_have_attribute("data-state", "ok", timeout=VERDICT_TIMEOUT_MS)
    page.locator("#confirm").fill(NEW)
    with page.expect_navigation() as nav:
        page.locator('form button[type="submit"]').click()
    assert nav.value.status == 200
    expect(page.locator("h1")).to_have_text("Your account is active")
    page.screenshot(path=artifacts / "activation-done.png", full_page=True)

    # Log in with it.
    with page.expect_navigation():
        page.locator("main").get_by_role("link", name="Log in").click()
    response = submit_login(page, LOGIN, NEW)
    assert response.status == 200, page.locator("main").inner_text()
    expect(page.locator("h1")).to_have_text("You are logged in")
    assert csp_errors == [], csp_errors

    # Without JavaScript, after failed attempts the page says JavaScript is needed.
    plain = new_context(locale="en-US", java_script_enabled=False).new_page()
    plain.goto(f"{url}/activate")
    expect(plain.locator("#pow-nojs")).to_be_visible()
    expect(plain.locator("#pow-nojs")).to_contain_text("needs JavaScript")
