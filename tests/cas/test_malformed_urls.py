"""Service URLs that a registered pattern matches but that cannot be redirected to or called: a pattern with a
wildcard host (common in CAS registries) matches `https://a..wild.example/` or a port out of range. They get
the "unknown application" page or a CAS failure, never a 500, and never a stored ticket."""
from __future__ import annotations

import pytest

from tests.cas.conftest import audit_events, failure_code, login_ticket, validate
from tests.conftest import USOSWEB, csrf_token
from tests.factories import PASSWORD

WILD = {"name": "Wildcard host", "protocol": "cas", "service_pattern": r"^https://.*\.wild\.example(:\d+)?/.*"}
BAD = ["https://a..wild.example/p", "https://x.wild.example:99999/p", "https://[x.wild.example/p",
       "https://" + "a" * 64 + ".wild.example/p"]
USER = "lukasz.zolkiewski@student.example.edu.pl"


def _tickets_stored() -> int:
    from idp.extensions import db
    from idp.models import Ticket

    return db.session.scalar(db.select(db.func.count()).select_from(Ticket))


@pytest.mark.parametrize("url", BAD)
def test_login_page_for_a_malformed_service_url_is_the_unknown_application_page(client, register, url):
    register(WILD)
    r = client.get("/cas/login", query_string={"service": url})
    assert r.status_code == 400
    assert "Unknown application" in r.get_data(as_text=True)


@pytest.mark.parametrize("url", BAD)
def test_sso_session_gets_no_ticket_for_a_malformed_service_url(client, person, register, url):
    register(WILD)
    login_ticket(client)  # an SSO session
    before = _tickets_stored()
    r = client.get("/cas/login", query_string={"service": url})
    assert r.status_code == 400 and "Location" not in r.headers
    r = client.get("/cas/login", query_string={"service": url, "gateway": "true"})
    assert r.status_code == 400 and "Location" not in r.headers
    assert _tickets_stored() == before


def test_posting_credentials_for_a_malformed_service_url(client, person, register):
    register(WILD)
    token = csrf_token(client.get("/cas/login", query_string={"service": USOSWEB}).get_data(as_text=True))
    before = _tickets_stored()
    r = client.post("/cas/login", query_string={"service": BAD[0]},
                    data={"csrf_token": token, "username": USER, "password": PASSWORD, "service": BAD[0]})
    assert r.status_code == 400 and "Location" not in r.headers
    assert _tickets_stored() == before


@pytest.mark.parametrize("url", BAD)
def test_logout_does_not_redirect_to_a_malformed_service_url(client, person, register, url):
    register(WILD)
    login_ticket(client)
    r = client.get("/cas/logout", query_string={"service": url})
    assert r.status_code == 200 and "Location" not in r.headers


@pytest.mark.parametrize("url", BAD[:3])
def test_malformed_pgt_url_is_an_invalid_proxy_callback(client, person, register, url):
    register(WILD)
    t = login_ticket(client)
    r = validate(client, "/cas/serviceValidate", t, USOSWEB, pgtUrl=url)
    assert failure_code(r) == "INVALID_PROXY_CALLBACK"
    assert audit_events("cas.validate.failed")[-1].reason == "INVALID_PROXY_CALLBACK"


@pytest.mark.parametrize("url", BAD)
def test_callback_guard_names_a_malformed_url(url):
    from idp.core import callbacks

    assert callbacks.target_problem(url, allow_loopback=True, require_https=False) == "malformed URL"
    outcome = callbacks.post_form(url, {"logoutRequest": "x"}, timeout=1, allow_loopback=True)
    assert (outcome.ok, outcome.status, outcome.detail) == (False, "refused", "malformed URL")


def test_single_logout_ignores_any_error_of_a_back_channel_call(client, person, monkeypatch):
    """CAS 3.0 §2.3.3.1: whatever a logout notification raises, the person is logged out and the app's
    notification is recorded as failed."""
    from idp.core import callbacks
    from idp.extensions import db
    from idp.models import SessionParticipant

    login_ticket(client)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(callbacks, "post_form", broken)
    r = client.get("/cas/logout")
    assert r.status_code == 200
    db.session.expire_all()
    [p] = db.session.scalars(db.select(SessionParticipant)).all()
    assert (p.logout_status, p.logout_detail) == ("failed", "RuntimeError")
    assert client.get("/cas/login", query_string={"service": USOSWEB}).status_code == 200  # the form again
