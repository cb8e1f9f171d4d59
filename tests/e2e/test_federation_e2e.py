"""Two real `idp serve` processes: one acts as the upstream OpenID Connect provider (the university mail
system), the other is the IdP under test with it configured in instance/idp.toml. A real browser walks:

(a) link after proof — a person with a local account logs in with the upstream, meets "Konto z adresem …
    już istnieje", types the local password, and lands in the CAS app; the next time the upstream alone
    is enough;
(b) not recognized, then imported — a person the upstream knows but the IdP does not yet: the "not
    recognized" page with a reference code; `idp users import` brings them and links the remembered
    login (a notice mail arrives); the same upstream login now reaches the app;
(c) not provisioned — a CAS service with requires_entitlement: a person without the entitlement gets the
    "logged in, but no account in …" page and a reference code that `idp events show` finds, and the app
    gets no ticket.
Screenshots: test-artifacts/e2e/federation-*.png.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import clean_env, own_database, run_idp, serve, stop_process_group
from tests.e2e.relying_app import RelyingApp
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.e2e

UPSTREAM_PASSWORD = "Skrzynka-Pocztowa-Jesień-88"
LOCAL_PASSWORD = "Kasztany-Przy-Rynku-Opole-61"
LINKED = ("71001", "Marta", "Nowicka", "marta.nowicka@student.example.edu.pl")
NEWCOMER = ("71002", "Jan", "Zieliński", "jan.zielinski@student.example.edu.pl")
LABEL = "Poczta uczelniana"
HEADER = "album,pesel,birth_date,first_name,last_name,university_email,private_email,role,aliases,entitlements\n"
CLIENT_SECRET = "e2e-upstream-client-secret"


@dataclass
class Federation:
    upstream_url: str
    url: str
    env: dict[str, str]
    app: RelyingApp


def _row(person, entitlements: str = "") -> str:
    album, first, last, email = person
    return f"{album},,1999-03-14,{first},{last},{email},,student,,{entitlements}\n"


@pytest.fixture(scope="module")
def federation(tmp_path_factory, artifacts: Path, mail_sink: SmtpSink) -> Iterator[Federation]:
    app = RelyingApp().start()
    procs = []
    databases = ExitStack()
    database_env = databases.enter_context(own_database("idp_e2e_federation"))
    base = dict(IDP_ARGON2_TIME_COST="2", IDP_ARGON2_MEMORY_COST="19456", IDP_ARGON2_PARALLELISM="1",
                IDP_MAIL_SERVER=mail_sink.host, IDP_MAIL_PORT=str(mail_sink.port), IDP_MAIL_WORKER_INTERVAL="0.5",
                PYTHONUNBUFFERED="1", CI=os.environ.get("CI", "true"))
    try:
        # The upstream: its own SQLite database and cookie names (another system on the same host).
        up_dir = tmp_path_factory.mktemp("upstream-instance")
        up_env = clean_env(IDP_INSTANCE=str(up_dir), IDP_COOKIE_PREFIX="mailidp", **base)
        run_idp(["init"], up_env)
        inputs = tmp_path_factory.mktemp("federation-input")
        (inputs / "upstream-people.csv").write_text(HEADER + _row(LINKED) + _row(NEWCOMER), encoding="utf-8")
        run_idp(["users", "import", str(inputs / "upstream-people.csv")], up_env)
        for person in (LINKED, NEWCOMER):
            run_idp(["users", "set-password", person[3]], up_env, stdin=UPSTREAM_PASSWORD + "\n")
        up_proc, up_url, _ = serve(up_dir, up_env, artifacts / "idp-upstream.log", workers=1)
        procs.append(up_proc)

        # The IdP under test, with the upstream in its idp.toml.
        dn_dir = tmp_path_factory.mktemp("downstream-instance")
        (dn_dir / "idp.toml").write_text(
            "[[upstream]]\n"
            'name = "mail"\n'
            f'label = "{LABEL}"\n'
            f'issuer = "{up_url}"\n'
            'client_id = "idp-e2e"\n'
            f'client_secret = "{CLIENT_SECRET}"\n', encoding="utf-8")
        dn_env = clean_env(IDP_INSTANCE=str(dn_dir), **base, **database_env)
        run_idp(["init"], dn_env)
        (inputs / "people.csv").write_text(HEADER + _row(LINKED, "Aplikacja"), encoding="utf-8")
        run_idp(["users", "import", str(inputs / "people.csv")], dn_env)
        run_idp(["users", "set-password", LINKED[3]], dn_env, stdin=LOCAL_PASSWORD + "\n")
        (inputs / "services.toml").write_text(
            "[[service]]\n"
            'name = "Aplikacja"\n'
            'protocol = "cas"\n'
            f"service_pattern = '^http://127\\.0\\.0\\.1:{app.port}/app/open/.*$'\n"
            'attributes = ["mail", "album", "given_name", "family_name"]\n'
            "\n[[service]]\n"
            'name = "USOSweb E2E"\n'
            'protocol = "cas"\n'
            f"service_pattern = '^http://127\\.0\\.0\\.1:{app.port}/app/usos/.*$'\n"
            'attributes = ["mail"]\n'
            "requires_entitlement = true\n", encoding="utf-8")
        run_idp(["services", "load", str(inputs / "services.toml")], dn_env)
        dn_proc, dn_url, _ = serve(dn_dir, dn_env, artifacts / "idp-downstream.log")
        procs.append(dn_proc)
        app.state.idp_url = dn_url

        # Now that the IdP under test has its address, register it at the upstream as a client.
        (inputs / "upstream-services.toml").write_text(
            "[[service]]\n"
            'name = "Centralne logowanie"\n'
            'protocol = "oidc"\n'
            'client_id = "idp-e2e"\n'
            f'client_secret = "{CLIENT_SECRET}"\n'
            f'redirect_uris = ["{dn_url}/federation/mail/callback"]\n'
            'scopes = ["openid", "profile", "email"]\n'
            "first_party = true\n", encoding="utf-8")
        run_idp(["services", "load", str(inputs / "upstream-services.toml")], up_env)
        yield Federation(upstream_url=up_url, url=dn_url, env=dn_env, app=app)
    finally:
        for proc in reversed(procs):
            stop_process_group(proc)
        app.stop()
        databases.close()


def _upstream_button(page: Page, fed: Federation) -> None:
    """On the IdP's login page: the upstream's button, then (if asked) the upstream's own login form."""
    expect(page.get_by_role("link", name=LABEL)).to_be_visible()
    with page.expect_navigation():
        page.get_by_role("link", name=LABEL).click()


def _log_in_upstream(page: Page, fed: Federation, email: str) -> None:
    assert page.url.startswith(fed.upstream_url), page.url
    page.locator('input[name="username"]').fill(email)
    page.locator('input[name="password"]').fill(UPSTREAM_PASSWORD)
    with page.expect_navigation():  # back through the IdP under test: a page of it, or the app itself
        page.locator('form button[type="submit"]').click()
    assert not page.url.startswith(fed.upstream_url), page.url


def test_link_after_proof_then_the_upstream_alone(federation: Federation, new_context, artifacts: Path):
    page = new_context(locale="pl-PL").new_page()
    page.goto(f"{federation.app.url}/app/open/start")
    assert page.url.startswith(federation.url + "/cas/login")
    _upstream_button(page, federation)
    _log_in_upstream(page, federation, LINKED[3])

    expect(page.get_by_role("heading", level=1)).to_contain_text("już istnieje")
    expect(page.locator("main")).to_contain_text(LABEL)
    page.screenshot(path=str(artifacts / "federation-already-exists.png"), full_page=True)
    page.locator('input[name="pw-password"]').fill(LOCAL_PASSWORD)
    with page.expect_navigation(url=re.compile(re.escape(federation.app.url))):
        page.get_by_role("button", name="Połącz i zaloguj").click()
    expect(page.locator("#user")).to_have_text(LINKED[3])
    page.screenshot(path=str(artifacts / "federation-linked-app.png"), full_page=True)

    # Another browser, later: the upstream alone logs in (no local password, no question).
    other = new_context(locale="pl-PL").new_page()
    other.goto(f"{federation.app.url}/app/open/again")
    _upstream_button(other, federation)
    _log_in_upstream(other, federation, LINKED[3])
    other.wait_for_url(re.compile(re.escape(federation.app.url) + "/app/open/again"))
    expect(other.locator("#user")).to_have_text(LINKED[3])


def test_not_recognized_then_an_import_links_it(federation: Federation, new_context, artifacts: Path,
                                                 mail_sink: SmtpSink, tmp_path: Path):
    page = new_context(locale="pl-PL").new_page()
    page.goto(f"{federation.app.url}/app/open/newcomer")
    _upstream_button(page, federation)
    _log_in_upstream(page, federation, NEWCOMER[3])
    expect(page.get_by_role("heading", level=1)).to_have_text("Twoje konto nie zostało rozpoznane")
    expect(page.locator("main")).to_contain_text(NEWCOMER[3])
    ref = page.locator(".ref").inner_text()
    assert re.fullmatch(r"E\d+", ref)
    page.screenshot(path=str(artifacts / "federation-not-recognized.png"), full_page=True)
    shown = run_idp(["events", "show", ref], federation.env)
    assert "not_recognized" in shown

    people = tmp_path / "people.csv"
    people.write_text(HEADER + _row(LINKED, "Aplikacja") + _row(NEWCOMER, "Aplikacja"), encoding="utf-8")
    out = run_idp(["users", "import", str(people)], federation.env)
    assert "added 1" in out and "linked" in out, out
    [notice] = mail_sink.wait_for(NEWCOMER[3])
    assert LABEL in notice.text

    # The same browser, still logged in at the upstream: one click and the app.
    page.goto(f"{federation.app.url}/app/open/newcomer")
    _upstream_button(page, federation)
    page.wait_for_url(re.compile(re.escape(federation.app.url) + "/app/open/newcomer"))
    expect(page.locator("#user")).to_have_text(NEWCOMER[3])


def test_not_provisioned_for_a_cas_service(federation: Federation, new_context, artifacts: Path):
    page = new_context(locale="pl-PL").new_page()
    page.goto(f"{federation.app.url}/app/usos/index")
    page.locator('input[name="username"]').fill(LINKED[3])
    page.locator('input[name="password"]').fill(LOCAL_PASSWORD)
    with page.expect_navigation():
        page.locator('form button[type="submit"]').click()
    assert page.url.startswith(federation.url)  # no ticket went to the app
    expect(page.get_by_role("heading", level=1)).to_contain_text("nie posiadasz konta w USOSweb E2E")
    ref = page.locator(".ref").inner_text()
    page.screenshot(path=str(artifacts / "federation-not-provisioned.png"), full_page=True)
    shown = run_idp(["events", "show", ref], federation.env)
    assert "not_entitled" in shown and "USOSweb E2E" in shown
    assert not [v for v in federation.app.state.validations if "/app/usos/" in v.service_url]
