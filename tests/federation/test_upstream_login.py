"""Upstream login against a real second IdP: known link, "already exists" → proof → link, "not recognized"
→ a later import links it, and the failures a person can meet on the way."""
from __future__ import annotations

import re

import pytest
import requests

from idp.core import audit, provisioning
from idp.extensions import db
from idp.models import AuditEvent, OutboxMessage, PendingLink, UpstreamIdentity
from tests.conftest import USOSWEB, csrf_token, ticket_from
from tests.factories import PASSWORD, create_account
from tests.federation.conftest import UNVERIFIED_LOGIN, upstream_login

LUKASZ = "lukasz.zolkiewski@student.example.edu.pl"
NOWY = "nowy.student@student.example.edu.pl"
HEADER = "album,pesel,birth_date,first_name,last_name,university_email,private_email,role,aliases\n"


def _links():
    return db.session.scalars(db.select(UpstreamIdentity)).all()


def _exists_page(client, upstream, **kwargs):
    response = upstream_login(client, upstream, LUKASZ, **kwargs)
    assert response.status_code == 302 and response.headers["Location"].endswith("/federation/link")
    return client.get("/federation/link")


def _prove(client, page, password):
    html = page.get_data(as_text=True)
    return client.post("/federation/link", data={"pw-csrf_token": _field(html, "pw-csrf_token"),
                                                 "pw-password": password, "pw-submit": "y"})


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]+)"', html) or re.search(
        rf'id="{re.escape(name)}"[^>]*value="([^"]+)"', html)
    assert match, f"no {name} on the page"
    return match.group(1)


def test_login_page_offers_the_upstream_and_keeps_the_service(client):
    html = client.get("/cas/login", query_string={"service": USOSWEB}).get_data(as_text=True)
    assert "Poczta uczelniana" in html
    assert "/federation/mail/start?service=https" in html


def test_existing_account_gets_the_already_exists_page_and_nothing_is_linked(client, upstream):
    create_account()
    page = _exists_page(client, upstream)
    html = page.get_data(as_text=True)
    assert page.status_code == 409
    assert f"Konto z adresem {LUKASZ} już istnieje" in html
    assert "Poczta uczelniana" in html
    assert _links() == []  # never a silent merge
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "upstream.login.link_needed"))
    assert event.reason == "already_exists"


def test_link_after_password_proof_logs_in_and_returns_to_the_service(client, upstream):
    account = create_account()
    response = upstream_login(client, upstream, LUKASZ, start=f"/federation/mail/start?service={USOSWEB}")
    page = client.get(response.headers["Location"])
    done = _prove(client, page, PASSWORD)
    assert done.status_code == 302 and done.headers["Location"].startswith("/cas/login?service=")
    granted = client.get(done.headers["Location"])
    assert granted.status_code == 302 and ticket_from(granted)
    [link] = _links()
    assert (link.account_id, link.provider, link.linked_by, link.email) == (account.id, "mail", "password", LUKASZ)
    assert link.last_login_at == link.linked_at  # "Link and log in": /account shows this login, not "never"


@pytest.mark.policy(login__delay_after=0)  # five at one moment: the growing delays would refuse some
def test_wrong_password_links_nothing_and_the_form_stops_after_five(client, upstream):
    create_account()
    page = _exists_page(client, upstream)
    for _ in range(5):
        wrong = _prove(client, page, "not-the-password")
        assert wrong.status_code == 400
    html = wrong.get_data(as_text=True)
    assert 'name="pw-password"' not in html
    assert _links() == []
    assert db.session.scalar(db.select(db.func.count()).select_from(AuditEvent)
                             .where(AuditEvent.action == "upstream.link.failed")) == 5


def test_link_by_mailed_confirmation(client, upstream):
    account = create_account()
    page = _exists_page(client, upstream)
    html = page.get_data(as_text=True)
    sent = client.post("/federation/link", data={"mail-csrf_token": _field(html, "mail-csrf_token"),
                                                 "mail-send": "y"})
    assert sent.status_code == 200
    assert "l***@student.example.edu.pl" in sent.get_data(as_text=True) or "@student.example.edu.pl" in \
        sent.get_data(as_text=True)
    messages = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.purpose == "link_confirm")).all()
    assert {m.to_addr for m in messages} == {LUKASZ, "lukasz.z@example.com"}
    link_url = re.search(r"http://127\.0\.0\.1:8000(/federation/confirm/\S+)", messages[0].body_text).group(1)
    other_browser = client.application.test_client()  # the mail may be opened anywhere
    shown = other_browser.get(link_url)
    assert shown.status_code == 200 and _links() == []  # a GET (a mail scanner) links nothing
    confirmed = other_browser.post(link_url, data={"csrf_token": csrf_token(shown.get_data(as_text=True))})
    assert confirmed.status_code == 200
    [link] = _links()
    assert (link.account_id, link.linked_by) == (account.id, "mail")
    again = other_browser.get(link_url)
    assert again.status_code == 410


def test_a_known_link_logs_straight_in(client, upstream):
    create_account()
    page = _exists_page(client, upstream)
    _prove(client, page, PASSWORD)
    fresh = client.application.test_client()
    response = upstream_login(fresh, upstream, LUKASZ, start=f"/federation/mail/start?service={USOSWEB}")
    assert response.status_code == 302 and response.headers["Location"].startswith("/cas/login?service=")
    assert ticket_from(fresh.get(response.headers["Location"]))
    link = _links()[0]
    assert link.last_login_at is not None
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "login.succeeded")).data[
        "method"] == "upstream"


def test_not_recognized_then_an_import_links_it_and_mails_a_notice(client, upstream, runner, tmp_path):
    response = upstream_login(client, upstream, NOWY)
    html = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "Twoje konto nie zostało rozpoznane" in html
    assert NOWY in html
    ref = re.search(r'class="ref">(E\d+)<', html).group(1)
    event = audit.find_by_reference(ref)
    assert event.action == "upstream.login.failed" and event.reason == "not_recognized"
    pending = db.session.scalar(db.select(PendingLink))
    assert (pending.kind, pending.email, pending.resolution) == ("unknown", NOWY, None)

    export = tmp_path / "export.csv"
    export.write_text(HEADER + f"99001,,2005-02-03,Nowy,Student,{NOWY},,student,\n", encoding="utf-8")
    result = provisioning.import_file(export, client.application.config["PESEL_KEY"])
    assert result.ok and result.linked == 1
    [link] = _links()
    assert link.linked_by == "import"
    notice = db.session.scalar(db.select(OutboxMessage).where(OutboxMessage.purpose == "upstream_linked"))
    assert notice.to_addr == NOWY and "Poczta uczelniana" in notice.body_text
    db.session.expire_all()
    assert db.session.get(PendingLink, pending.id).resolution == "linked"

    fresh = client.application.test_client()
    again = upstream_login(fresh, upstream, NOWY)
    assert again.status_code == 302 and again.headers["Location"] == "/cas/login"


def test_an_unverified_address_is_not_trusted(client, upstream):
    create_account()  # has lukasz.z@example.com as its private address
    response = upstream_login(client, upstream, UNVERIFIED_LOGIN)
    assert response.status_code == 403
    assert "nie potwierdziła adresu e-mail" in response.get_data(as_text=True)
    assert db.session.scalar(db.select(PendingLink)).email is None  # nothing an import could match


@pytest.mark.upstream(trust_email=True)
def test_trust_email_accepts_an_address_the_provider_does_not_mark_verified(client, upstream):
    create_account()
    response = upstream_login(client, upstream, UNVERIFIED_LOGIN)
    assert response.status_code == 302 and response.headers["Location"].endswith("/federation/link")


def test_a_linked_person_who_left_is_told_so(client, upstream):
    """(No frozen clock here: the upstream runs in this process too and would sign tokens in the future.)"""
    import datetime as dt

    from idp.core.clock import utcnow

    account = create_account()
    page = _exists_page(client, upstream)
    _prove(client, page, PASSWORD)
    account.left_at = utcnow() - dt.timedelta(days=31)  # the default grace period is 30 days
    db.session.commit()
    fresh = client.application.test_client()
    response = upstream_login(fresh, upstream, LUKASZ)
    assert response.status_code == 403
    assert "nie jest już aktywne" in response.get_data(as_text=True)


def test_cancelled_at_the_provider(client, upstream):
    start = client.get("/federation/mail/start")
    state = re.search(r"state=([^&]+)", start.headers["Location"]).group(1)
    response = client.get("/federation/mail/callback", query_string={"error": "access_denied", "state": state})
    assert response.status_code == 403
    assert "anulowane" in response.get_data(as_text=True)


def test_a_forged_state_is_refused(client, upstream):
    client.get("/federation/mail/start")
    response = client.get("/federation/mail/callback", query_string={"code": "x", "state": "forged"})
    assert response.status_code == 502
    event = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "upstream.login.failed"))
    assert event.reason == "mismatching_state"


def test_a_callback_without_a_start_is_refused(client, upstream):
    response = client.get("/federation/mail/callback", query_string={"code": "x", "state": "y"})
    assert response.status_code == 400


def test_unknown_provider_is_404(client):
    assert client.get("/federation/nope/start").status_code == 404


@pytest.mark.upstream(issuer="http://127.0.0.1:9/")
def test_an_unreachable_provider_gives_a_page_not_a_crash(client):
    response = client.get("/federation/mail/start")
    assert response.status_code == 502
    assert "Poczta uczelniana" in response.get_data(as_text=True)


def test_a_link_page_without_a_pending_link(client):
    assert client.get("/federation/link").status_code == 410


def test_a_forged_confirmation_link(client):
    assert client.get("/federation/confirm/nonsense").status_code == 410


def test_the_upstream_sso_session_is_reused(client, upstream):
    """Logged in at the provider once: the second start goes straight back (no password there)."""
    create_account()
    browser = requests.Session()
    _prove(client, _exists_page(client, upstream, browser=browser), PASSWORD)
    fresh = client.application.test_client()
    start = fresh.get("/federation/mail/start")
    hop = browser.get(start.headers["Location"], allow_redirects=False, timeout=10)
    while hop.status_code in (302, 303) and hop.headers["Location"].startswith(upstream.url):
        hop = browser.get(hop.headers["Location"], allow_redirects=False, timeout=10)
    assert hop.headers["Location"].startswith("http://127.0.0.1:8000/federation/mail/callback")


def test_an_oidc_request_resumes_after_the_upstream_login(client, upstream):
    """An OIDC app's /authorize waits while the person logs in through the upstream, then gets its code."""
    from idp.core import registry

    registry.replace_all([{"name": "Poczta", "protocol": "oidc", "client_id": "webmail",
                           "client_secret": "w" * 40, "redirect_uris": ["https://webmail.example.edu.pl/cb"],
                           "scopes": ["openid", "email"], "first_party": True}])
    create_account()
    _prove(client, _exists_page(client, upstream), PASSWORD)
    fresh = client.application.test_client()
    params = {"response_type": "code", "client_id": "webmail", "redirect_uri": "https://webmail.example.edu.pl/cb",
              "scope": "openid email", "state": "s1", "nonce": "n1"}
    to_login = fresh.get("/oidc/authorize", query_string=params)
    assert to_login.status_code == 302 and to_login.headers["Location"].startswith("/cas/login")
    back = upstream_login(fresh, upstream, LUKASZ)
    assert back.headers["Location"] == "/cas/login"
    resumed = fresh.get("/cas/login")
    assert resumed.status_code == 302 and resumed.headers["Location"].startswith("/oidc/authorize")
    code = fresh.get(resumed.headers["Location"])
    assert code.status_code == 302
    assert code.headers["Location"].startswith("https://webmail.example.edu.pl/cb?code=")
