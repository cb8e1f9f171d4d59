"""Helpers for the console's HTTP tests (tests/helpdesk/test_console_*.py): a staff person with a real TOTP
authenticator (enrolled through idp.core.mfa, codes computed with pyotp), logged in through /cas/login
and verified through /mfa/verify, as a browser would; pages read in English."""
from __future__ import annotations

import datetime as dt
import html as html_mod
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import pyotp

from idp.core import mfa, staff
from idp.extensions import db
from idp.models import Account, AuditEvent
from tests.conftest import Clock, cas_login, csrf_token
from tests.factories import PASSWORD, create_account

STAFF_EMAIL = "hanna.pomocna@example.edu.pl"
STAFF_ALBUM = "P900"
UPSTREAM = [{"name": "poczta", "label": "University mail", "issuer": "https://mail.example.edu.pl",
             "client_id": "idp"}]


def english(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


def make_staff(role: str | None = "helpdesk", *, album: str = STAFF_ALBUM, email: str = STAFF_EMAIL) -> Account:
    account = create_account(album, first_name="Hanna", last_name="Pomocna", role="staff", university_email=email,
                             private_email=None, aliases=(), pesel=None)
    if role:
        staff.grant(account, role, actor="cli")
    return account


def code_at(secret: str, moment: dt.datetime) -> str:
    """The authenticator app's code at a (naive UTC) moment."""
    return pyotp.TOTP(secret).at(int(moment.replace(tzinfo=dt.UTC).timestamp()))


def enrol_totp(account: Account, clock: Clock) -> str:
    """Set up an authenticator app for the account the way /mfa/setup does; returns its secret."""
    secret, _uri = mfa.totp_begin(account, now=clock.now)
    assert mfa.totp_confirm(account, code_at(secret, clock.now), now=clock.now)
    return secret


def text(r) -> str:
    return r.get_data(as_text=True)


def location(r) -> str:
    return r.headers.get("Location", "")


def path_of(r) -> str:
    return urlsplit(location(r)).path


def plain(html: str) -> str:
    """Visible text of a page, whitespace-normalised."""
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(html_mod.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def rows(html: str) -> list[list[str]]:
    out = []
    for body in re.findall(r"<tbody>(.*?)</tbody>", html, re.S):
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
            out.append([" ".join(html_mod.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells])
    return out


def section(page: str, title: str) -> str:
    m = re.search(r"<section[^>]*>\s*<h2[^>]*>" + re.escape(title) + r"</h2>(.*?)</section>", page, re.S)
    assert m, f"no section {title!r}"
    return m.group(1)


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == action)
                                   .order_by(AuditEvent.id)))


@dataclass
class Desk:
    """A staff person's browser in the console."""

    client: object
    account: Account
    secret: str
    clock: Clock

    @classmethod
    def open(cls, client, clock: Clock, role: str = "helpdesk") -> Desk:
        english(client)
        account = make_staff(role)
        secret = enrol_totp(account, clock)
        r = cas_login(client, STAFF_EMAIL, PASSWORD, service=None)
        assert r.status_code in (200, 302), text(r)
        desk = cls(client, account, secret, clock)
        r = client.get("/helpdesk/")
        assert r.status_code == 302 and path_of(r) == "/mfa/verify", (r.status_code, location(r))
        desk.verify(location(r))
        r = client.get("/helpdesk/")
        assert r.status_code == 200, (r.status_code, location(r))
        return desk

    def verify(self, url: str = "/mfa/verify?next=/helpdesk/"):
        """Pass the second factor on /mfa/verify with the app's next code (each code works once)."""
        self.clock.advance(seconds=30)
        page = self.client.get(url)
        assert page.status_code == 200, (page.status_code, location(page))
        r = self.client.post(url, data={"csrf_token": csrf_token(text(page)), "method": "totp",
                                        "code": code_at(self.secret, self.clock.now)})
        assert r.status_code == 302, text(r)
        return r

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def page(self, url: str, **kwargs) -> str:
        r = self.client.get(url, **kwargs)
        assert r.status_code == 200, (r.status_code, location(r), text(r)[:2000])
        return text(r)

    def post(self, url: str, data: dict | None = None, *, token: bool = True):
        """POST a console form the way a browser does: its page first (GET, for the CSRF token)."""
        body = dict(data or {})
        if token:
            body["csrf_token"] = csrf_token(self.page(url))
        return self.client.post(url, data=body)
