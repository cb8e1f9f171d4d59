"""The self-service account page GET /account: identifiers, linked upstream identities (unlink), active
sessions (log out one or all others), recent logins. Read in English (Accept-Language)."""
from __future__ import annotations

import datetime as dt
import html as html_mod
import re
from urllib.parse import urlsplit

import pytest

from idp.core import audit, linking, registry, sso
from idp.core.clock import utcnow
from idp.core.tickets import digest
from idp.extensions import db
from idp.models import Account, AuditEvent, SsoSession, UpstreamIdentity
from tests.conftest import SERVICES, USOSWEB, FreshContextClient, cas_login, csrf_token
from tests.factories import PASSWORD, create_account

USER = "lukasz.zolkiewski@student.example.edu.pl"
OTHER_USER = "anna.nowak@student.example.edu.pl"
UPSTREAM = [{"name": "poczta", "label": "University mail", "issuer": "https://mail.example.edu.pl",
             "client_id": "idp"}]


@pytest.fixture
def client(client):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    return client


@pytest.fixture
def browser(app):
    """browser() -> another browser with its own cookies (a second device)."""
    def make() -> FreshContextClient:
        c = FreshContextClient(app, app.response_class, use_cookies=True)
        c.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
        return c

    return make


@pytest.fixture
def other(app):
    """A second person, with a linked identity of their own."""
    return create_account("67890", first_name="Anna", last_name="Nowak", university_email=OTHER_USER,
                          private_email="anna@example.com", aliases=())


def text(r) -> str:
    return r.get_data(as_text=True)


def login(c, username: str = USER, password: str = PASSWORD, service: str | None = None):
    r = cas_login(c, username, password, service=service)
    assert r.status_code in (200, 302), text(r)
    return r


def tgt(c) -> str | None:
    cookie = c.get_cookie("idp_tgc", domain="localhost")
    return cookie.value if cookie else None


def session_of(c) -> SsoSession:
    return db.session.get(SsoSession, digest(tgt(c)))


def section(page: str, title: str) -> str:
    """The HTML of one <section>, found by its <h2>."""
    m = re.search(r"<section[^>]*>\s*<h2[^>]*>" + re.escape(title) + r"</h2>(.*?)</section>", page, re.S)
    assert m, f"no section {title!r}"
    return m.group(1)


def rows(html: str) -> list[list[str]]:
    """Body rows of the tables in `html`, each a list of cell texts (whitespace-normalised)."""
    out = []
    for body in re.findall(r"<tbody>(.*?)</tbody>", html, re.S):
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr, re.S)
            out.append([" ".join(html_mod.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells])
    return out


def overview(c) -> str:
    r = c.get("/account")
    assert r.status_code == 200, text(r)
    return text(r)


def post(c, url: str, *, token: bool = True):
    data = {"csrf_token": csrf_token(overview(c))} if token else {}
    return c.post(url, data=data)


def gets_ticket(c) -> bool:
    r = c.get("/cas/login", query_string={"service": USOSWEB})
    return r.status_code == 302 and "ticket=ST-" in r.headers.get("Location", "")


def link(account: Account, provider: str = "poczta", subject: str = "sub-1", email: str | None = None,
         linked_by: str = "password") -> UpstreamIdentity:
    now = utcnow()
    row = UpstreamIdentity(account_id=account.id, provider=provider, subject=subject,
                           email=email or account.identifier("university_email"), linked_by=linked_by,
                           linked_at=now - dt.timedelta(days=3), last_login_at=now - dt.timedelta(hours=1))
    db.session.add(row)
    db.session.commit()
    return row


# --- getting there --------------------------------------------------------------------------------------

def test_not_logged_in_goes_to_login_and_comes_back(client, person):
    r = client.get("/account")
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/cas/login"
    r = cas_login(client, USER, PASSWORD, service=None)
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/account"
    assert "<h1>Your account</h1>" in overview(client)


def test_an_ordinary_login_still_lands_on_the_logged_in_page(client, person):
    r = login(client)
    assert r.status_code == 200
    assert '<a class="button" href="/account">Your account</a>' in text(r)


def test_posts_need_a_login(client, person):
    r = client.post("/account/sessions/end-others")
    assert r.status_code in (302, 400)


# --- identifiers ----------------------------------------------------------------------------------------

def test_identifiers_are_listed_with_kind_and_whether_they_log_in(client, person):
    login(client)
    page = overview(client)
    part = section(page, "Identifiers")
    assert "Łukasz Żółkiewski" in part
    assert "12345" in part and "you can log in with it" in part  # default policy: album logs in
    assert "Student" in part
    # default policy: university e-mail and aliases log in, the private address does not
    assert rows(part) == [[USER, "University e-mail", "yes"],
                          ["lukasz.z@example.com", "Private e-mail", "no"],
                          ["s12345@student.example.edu.pl", "Alias", "yes"]]
    assert 'href="/account/password"' in part and "Last changed:" in part


@pytest.mark.policy(login__identifiers=["private_email"])
def test_what_logs_in_follows_the_policy(client, person):
    login(client, "lukasz.z@example.com")
    part = section(overview(client), "Identifiers")
    assert [r[2] for r in rows(part)] == ["no", "yes", "no"]
    assert "you can log in with it" not in part


# --- linked upstream identities -------------------------------------------------------------------------

@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_linked_identities_are_listed_with_the_providers_label(client, person):
    link(person)
    link(person, provider="gone-provider", subject="sub-2", email="old@example.com", linked_by="helpdesk")
    login(client)
    table = rows(section(overview(client), "Linked accounts of other providers"))
    assert [r[0] for r in table] == ["University mail", "gone-provider"]  # unknown provider: its name
    assert table[0][1] == USER and "with your password" in table[0][2]
    assert "by the helpdesk" in table[1][2]
    assert table[0][4].startswith("Unlink")


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_unlink_own_identity(client, person):
    row_id = link(person).id
    login(client)
    r = post(client, f"/account/identities/{row_id}/unlink")
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/account"
    assert db.session.get(UpstreamIdentity, row_id) is None
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "upstream.unlinked"))
    assert event.account_id == person.id and event.actor == "self"
    assert event.data == {"provider": "poczta", "email": USER}
    page = overview(client)
    assert "The identity was unlinked." in page
    assert "No accounts of other providers are linked." in page
    # and it shows among the recent events
    assert ["Identity unlinked", "via University mail"] == rows(section(page, "Recent logins"))[0][1:3]


def test_unlink_someone_elses_identity_is_refused(client, person, other):
    theirs = link(other, subject="anna").id
    login(client)
    r = post(client, f"/account/identities/{theirs}/unlink")
    assert r.status_code == 404
    assert db.session.get(UpstreamIdentity, theirs) is not None
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "upstream.unlinked")) is None


def test_unlinking_the_last_way_to_log_in_without_a_password_is_refused(client, person):
    only = link(person).id
    login(client)
    person.password_hash = None  # e.g. an account that has only ever logged in upstream
    db.session.commit()
    r = post(client, f"/account/identities/{only}/unlink")
    assert r.status_code == 302
    assert db.session.get(UpstreamIdentity, only) is not None
    page = overview(client)
    assert "This is the only way to log in to your account" in page and 'role="alert"' in page
    assert "Your account has no password." in page
    # with a second link, one of them may go
    second = link(person, subject="sub-2").id
    assert post(client, f"/account/identities/{second}/unlink").status_code == 302
    assert db.session.get(UpstreamIdentity, second) is None
    assert db.session.get(UpstreamIdentity, only) is not None


def test_unlink_core_function(app, person, other):
    mine, theirs = link(person), link(other, subject="anna")
    assert linking.identities_of(person) == [mine]
    assert linking.unlink(person, theirs.id, actor="self", client_ip=None) is False
    assert linking.unlink(person, 999999, actor="self", client_ip=None) is False
    other.password_hash = None
    db.session.commit()
    with pytest.raises(linking.LastWayToLogIn):
        linking.unlink(other, theirs.id, actor="self", client_ip=None)
    assert linking.unlink(person, mine.id, actor="helpdesk:jan", client_ip="10.0.0.1") is True
    assert linking.identities_of(person) == []
    event = audit.recent(account_id=person.id, action_prefix="upstream.")[0]
    assert event.actor == "helpdesk:jan" and event.client_ip == "10.0.0.1"


# --- active sessions ------------------------------------------------------------------------------------

def test_sessions_are_listed_with_this_browser_marked(client, person, browser):
    login(client)
    phone = browser()
    login(phone, service=USOSWEB)
    table = rows(section(overview(client), "Active sessions"))
    assert len(table) == 2
    mine = [r for r in table if "(this browser)" in r[0]]
    theirs = [r for r in table if "(this browser)" not in r[0]]
    assert len(mine) == 1 and len(theirs) == 1
    assert theirs[0][2] == "127.0.0.1" and theirs[0][3] == "USOSweb"
    assert mine[0][3] == "none yet"
    assert "Log out everywhere else" in overview(client)


def test_log_out_one_session_ends_it_and_tells_its_apps(client, person, browser, callback_server):
    registry.replace_all([dict(s) for s in SERVICES] + [{
        "name": "Kalendarz", "protocol": "cas", "service_pattern": "^" + re.escape(callback_server.url) + "/.*",
        "logout_url": callback_server.url + "/slo"}])
    login(client)
    phone = browser()
    login(phone, service=callback_server.url + "/home")
    assert gets_ticket(phone)
    target = session_of(phone)
    r = post(client, f"/account/sessions/{target.sid}/end")
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/account"
    db.session.refresh(target)
    assert target.ended_at is not None and target.end_reason == "ended_by_user"
    assert not gets_ticket(phone)  # its TGT no longer works
    assert text(phone.get("/cas/login")).count('name="password"') == 1
    slo = [c for c in callback_server.calls if c["method"] == "POST"]
    assert [c["path"] for c in slo] == ["/slo"] and "logoutRequest" in slo[0]["form"]
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "sso.ended"))
    assert event.reason == "ended_by_user" and event.account_id == person.id
    # this browser stays logged in, and the session is gone from the list
    assert gets_ticket(client)
    page = overview(client)
    assert "That session was logged out." in page
    assert len(rows(section(page, "Active sessions"))) == 1


def test_log_out_everywhere_else_keeps_this_browser(client, person, browser):
    phone, laptop = browser(), browser()
    for c in (phone, laptop, client):
        login(c)
    r = post(client, "/account/sessions/end-others")
    assert r.status_code == 302
    assert not gets_ticket(phone) and not gets_ticket(laptop)
    assert gets_ticket(client)
    page = overview(client)
    assert "Every other session was logged out." in page
    table = rows(section(page, "Active sessions"))
    assert len(table) == 1 and "(this browser)" in table[0][0]
    assert "Log out everywhere else" not in page


def test_logging_out_this_browser_from_the_page_logs_it_out(client, person):
    login(client)
    mine = session_of(client)
    r = post(client, f"/account/sessions/{mine.sid}/end")
    assert r.status_code == 200 and "You have been logged out" in text(r)
    assert any(h.startswith("idp_tgc=;") for h in r.headers.getlist("Set-Cookie"))
    assert tgt(client) is None
    db.session.refresh(mine)
    assert mine.end_reason == "ended_by_user"
    assert client.get("/account").status_code == 302


def test_ending_another_accounts_session_is_refused(client, person, other, browser):
    login(client)
    anna = browser()
    login(anna, OTHER_USER)
    theirs = session_of(anna)
    assert post(client, f"/account/sessions/{theirs.sid}/end").status_code == 404
    assert post(client, "/account/sessions/no-such-session/end").status_code == 404
    assert gets_ticket(anna)
    db.session.refresh(theirs)
    assert theirs.ended_at is None
    # "everywhere else" is about one's own sessions only
    assert post(client, "/account/sessions/end-others").status_code == 302
    assert gets_ticket(anna)
    assert theirs.sid not in overview(client)


def test_sessions_of_lists_only_live_sessions(app, person, other):
    policy = app.extensions["idp.policy"]
    now = utcnow()
    live = sso.start(person, policy, warn=False, client_ip="10.1.1.1", now=now).session
    ended = sso.start(person, policy, warn=False, client_ip=None, now=now).session
    sso.end(ended, reason="logout", now=now)
    idle = sso.start(person, policy, warn=False, client_ip=None, now=now).session
    idle.last_used_at = now - dt.timedelta(minutes=policy.data["session"]["idle_minutes"] + 1)
    db.session.commit()
    sso.start(other, policy, warn=False, client_ip=None, now=now)
    assert sso.sessions_of(person, policy, now) == [live]
    assert idle.end_reason == "expired"  # noticed, so ended properly


# --- recent logins --------------------------------------------------------------------------------------

@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_recent_logins_in_words(client, person, browser):
    r = cas_login(client, USER, "not-my-password", service=USOSWEB)
    assert r.status_code == 401
    login(client, service=USOSWEB)
    audit.record("login.failed", account_id=person.id, reason="locked", client_ip="10.9.9.9")
    audit.record("login.failed", account_id=person.id, reason="some_new_code")
    audit.record("upstream.linked", account_id=person.id, reason="mail",
                 data={"provider": "poczta", "email": USER})
    audit.record("login.succeeded", account_id=person.id, data={"method": "upstream", "provider": "poczta"})
    audit.record("upstream.login.failed", account_id=person.id, reason="email_not_verified",
                 data={"provider": "poczta"})
    audit.record("reset.requested", account_id=person.id)  # not a login: not listed
    table = rows(section(overview(client), "Recent logins"))
    assert [r[1:4] for r in table] == [
        ["Refused: the provider did not confirm the e-mail address", "via University mail", ""],
        ["Logged in", "via University mail", ""],
        ["Identity linked: by a confirmation e-mail", "via University mail", ""],
        ["Refused: some_new_code", "with password", ""],
        ["Refused: right password, but the account is temporarily locked after too many wrong passwords",
         "with password", ""],
        ["Logged in", "with password", "USOSweb"],
        ["Refused: wrong password", "with password", "USOSweb"],
    ]
    assert table[4][4] == "10.9.9.9" and table[5][4] == "127.0.0.1"
    assert all(re.search(r"\d{4}", r[0]) for r in table)  # a formatted date


def test_recent_logins_are_the_last_twenty_of_this_account_only(client, person, other):
    for _ in range(25):
        audit.record("login.failed", account_id=person.id, reason="wrong_password")
    audit.record("login.failed", account_id=other.id, reason="account_left")
    login(client)
    table = rows(section(overview(client), "Recent logins"))
    assert len(table) == 20 and table[0][1] == "Logged in"
    assert not any("left the university" in r[1] for r in table)


# --- CSRF -----------------------------------------------------------------------------------------------

@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_posts_need_the_csrf_token(client, person, browser):
    row_id = link(person).id
    login(client)
    phone = browser()
    login(phone)
    theirs = session_of(phone)
    for url in (f"/account/identities/{row_id}/unlink", f"/account/sessions/{theirs.sid}/end",
                "/account/sessions/end-others"):
        assert post(client, url, token=False).status_code == 400
        assert client.post(url, data={"csrf_token": "forged"}).status_code == 400
    assert db.session.get(UpstreamIdentity, row_id) is not None
    assert gets_ticket(phone)
