"""Helpers for the second-factor tests: English pages, a frozen clock (TOTP steps move only when told),
reading the enrolment page, and codes computed with pyotp as an authenticator app would."""
from __future__ import annotations

import datetime as dt
import html as html_mod
import re
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from idp.core.tickets import digest
from idp.extensions import db
from idp.models import AuditEvent, SsoSession
from tests.conftest import FreshContextClient, cas_login, csrf_token
from tests.factories import PASSWORD

USER = "lukasz.zolkiewski@student.example.edu.pl"


@pytest.fixture
def client(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def browser(app):
    """browser() -> another browser with its own cookies."""
    def make() -> FreshContextClient:
        c = FreshContextClient(app, app.response_class, use_cookies=True)
        c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        return c

    return make


def text(r) -> str:
    return r.get_data(as_text=True)


def location(r) -> str:
    return r.headers.get("Location", "")


def path_of(url: str) -> str:
    return urlsplit(url).path


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def login(c, username: str = USER, password: str = PASSWORD, service: str | None = None, *, renew: bool = False):
    return cas_login(c, username, password, service=service, extra={"renew": "true"} if renew else None)


def tgt(c) -> str | None:
    cookie = c.get_cookie("idp_tgc", domain="localhost")
    return cookie.value if cookie else None


def session_of(c) -> SsoSession | None:
    value = tgt(c)
    return db.session.get(SsoSession, digest(value)) if value else None


def secret_from(page: str) -> str:
    m = re.search(r'id="totp-secret"[^>]*data-secret="([A-Z2-7]+)"[^>]*>([^<]+)<', page)
    assert m, "no secret on the enrolment page"
    assert m.group(2).replace(" ", "") == m.group(1)  # shown in groups for typing
    return m.group(1)


def code_at(secret: str, when: dt.datetime) -> str:
    """What the authenticator app shows at `when` (naive UTC)."""
    return pyotp.TOTP(secret).at(when.replace(tzinfo=dt.UTC))


def recovery_codes_from(page: str) -> list[str]:
    block = re.search(r'id="recovery-codes"[^>]*>(.*?)</ul>', page, re.S)
    assert block, "no recovery codes on the page"
    return re.findall(r"<code[^>]*>([a-z0-9-]+)</code>", block.group(1))


def continue_url(page: str) -> str:
    m = re.search(r'href="([^"]+)" id="continue"', page)
    assert m, "no continue link"
    return html_mod.unescape(m.group(1))


def post_form(c, url: str, data: dict, *, page_url: str | None = None):
    """POST a form with the CSRF token of the page it is on (GET page_url, default url)."""
    page = c.get(page_url or url)
    return c.post(url, data={"csrf_token": csrf_token(text(page)), **data})


def enrol_totp(c, clock, *, next_url: str | None = None):
    """Set up an authenticator app in browser `c` (logged in or pending). Returns (secret, codes page)."""
    url = "/mfa/setup" + (f"?next={next_url}" if next_url else "")
    page = c.get(url)
    assert page.status_code == 200, text(page)
    secret = secret_from(text(page))
    r = c.post(url, data={"csrf_token": csrf_token(text(page)), "code": code_at(secret, clock.now)})
    return secret, r


def verify_totp(c, code: str, *, next_url: str | None = None, reauth: bool = False):
    url = "/mfa/verify"
    params = {k: v for k, v in (("next", next_url), ("reauth", "1" if reauth else None)) if v}
    page = c.get(url, query_string=params)
    return c.post(url, query_string=params,
                  data={"csrf_token": csrf_token(text(page)), "method": "totp", "code": code})


def use_recovery(c, code: str, *, next_url: str | None = None):
    params = {"next": next_url} if next_url else {}
    page = c.get("/mfa/verify", query_string=params)
    return c.post("/mfa/verify", query_string=params,
                  data={"csrf_token": csrf_token(text(page)), "method": "recovery_code", "code": code})


def events(action: str, account_id: int | None = None) -> list[AuditEvent]:
    query = db.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    if account_id is not None:
        query = query.where(AuditEvent.account_id == account_id)
    return list(db.session.scalars(query))
