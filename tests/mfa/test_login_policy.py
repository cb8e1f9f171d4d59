"""Policy [mfa] required_for: "everyone" puts the second factor into every login, right after the password
and before any ticket (enrolment first for people without one); "staff" (default) leaves logins as they were."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from flask import redirect

from idp.core import mfa, sso
from idp.extensions import db
from idp.models import Account
from tests.conftest import USOSWEB, csrf_token, ticket_from
from tests.factories import create_account
from tests.mfa.conftest import (
    USER,
    code_at,
    continue_url,
    enrol_totp,
    events,
    location,
    login,
    path_of,
    query_of,
    recovery_codes_from,
    session_of,
    text,
    tgt,
    verify_totp,
)

EVERYONE = pytest.mark.policy(mfa__required_for="everyone")


def verified_sid(c) -> str | None:
    """The SSO session id this browser's passed second factor is bound to."""
    with c.session_transaction() as flask_session:
        return (flask_session.get("idp_mfa") or {}).get("sid")


def _enrol_directly(account: Account, clock) -> str:
    secret, _ = mfa.totp_begin(account)
    assert mfa.totp_confirm(account, code_at(secret, clock.now))
    mfa.issue_recovery_codes(account, 10)
    clock.advance(seconds=30)
    return secret


def test_staff_policy_leaves_logins_alone(client, person, clock):
    _enrol_directly(person, clock)  # even a person with a factor: the console asks for it, not the login
    r = login(client, service=USOSWEB)
    assert r.status_code == 302 and location(r).startswith(USOSWEB) and ticket_from(r)
    assert events("mfa.verified") == []


@EVERYONE
def test_everyone_without_factor_enrols_before_the_ticket(client, person, clock):
    r = login(client, service=USOSWEB)
    assert r.status_code == 302 and path_of(location(r)) == "/mfa/setup"
    assert tgt(client) is None  # no SSO session before the second factor
    # Still not logged in: the login page asks for the password again.
    page = client.get("/cas/login", query_string={"service": USOSWEB})
    assert 'name="password"' in text(page)
    r = login(client, service=USOSWEB)
    page = client.get(location(r))
    assert "Logging in here needs a second factor" in text(page)
    secret, r = enrol_totp(client, clock)
    assert r.status_code == 200 and len(recovery_codes_from(text(r))) == 10
    assert tgt(client) is not None  # the session started with the codes page
    assert verified_sid(client) == session_of(client).id
    nxt = continue_url(text(r))
    assert path_of(nxt) == "/cas/login" and query_of(nxt)["service"] == USOSWEB
    r = client.get(nxt)
    assert r.status_code == 302 and location(r).startswith(USOSWEB) and ticket_from(r)
    assert events("sso.started", person.id)


@EVERYONE
def test_everyone_with_factor_verifies_before_the_ticket(client, person, clock):
    secret = _enrol_directly(person, clock)
    r = login(client, service=USOSWEB)
    assert r.status_code == 302 and path_of(location(r)) == "/mfa/verify"
    assert tgt(client) is None
    wrong = "000000" if code_at(secret, clock.now) != "000000" else "999999"
    r = verify_totp(client, wrong)
    assert r.status_code == 400 and tgt(client) is None
    r = verify_totp(client, code_at(secret, clock.now))
    assert r.status_code == 302 and path_of(location(r)) == "/cas/login"
    assert tgt(client) is not None
    r = client.get(location(r))
    assert r.status_code == 302 and location(r).startswith(USOSWEB) and ticket_from(r)
    # The same SSO session needs no second check for the next app.
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 302 and ticket_from(r)
    # renew=true is a new login: password and second factor again.
    r = login(client, service=USOSWEB, renew=True)
    assert path_of(location(r)) == "/mfa/verify"


@EVERYONE
def test_everyone_pending_login_cannot_reach_the_account_page(client, person, clock):
    _enrol_directly(person, clock)
    login(client)
    r = client.get("/account")
    assert r.status_code == 302 and path_of(location(r)) == "/cas/login"
    r = client.get("/mfa")  # the management page needs a finished login
    assert path_of(location(r)) == "/mfa/verify"


@EVERYONE
def test_everyone_second_factor_comes_before_a_temporary_password_change(client, clock):
    person = create_account(temporary=True)
    secret = _enrol_directly(person, clock)
    r = login(client, service=USOSWEB)
    assert path_of(location(r)) == "/mfa/verify"
    r = verify_totp(client, code_at(secret, clock.now))
    assert r.status_code == 302 and path_of(location(r)) == "/login/change-password"
    assert tgt(client) is None
    page = client.get("/login/change-password")
    new = "Zielony-Parasol-Fregata-2031"
    r = client.post("/login/change-password", data={"csrf_token": csrf_token(text(page)), "new_password": new,
                                                    "confirm": new})
    assert r.status_code == 302, text(r)
    assert verified_sid(client) == session_of(client).id  # the check passed before the change carried over
    r = client.get(location(r))
    assert r.status_code == 302 and location(r).startswith(USOSWEB) and ticket_from(r)


@EVERYONE
def test_everyone_session_that_never_passed_the_factor_is_asked(client, person, clock):
    """A session from before the policy asked for the factor: the next ticket waits for it."""
    started = sso.start(person, client.application.extensions["idp.policy"], warn=False, client_ip=None)
    client.set_cookie("idp_tgc", started.tgt, domain="localhost", path="/")
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 302 and path_of(location(r)) == "/mfa/verify"
    assert query_of(location(r))["next"].startswith("/cas/login?service=")
    r = client.get(location(r))  # no factor yet: enrol
    assert r.status_code == 302 and path_of(location(r)) == "/mfa/setup"
    secret, r = enrol_totp(client, clock, next_url=query_of(location(r)).get("next"))
    nxt = continue_url(text(r))
    assert path_of(nxt) == "/cas/login"
    r = client.get(nxt)
    assert r.status_code == 302 and ticket_from(r)


UPSTREAM = [{"name": "mail", "label": "University mail", "issuer": "https://mail.example.edu.pl", "client_id": "idp"}]


@EVERYONE
@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_everyone_upstream_login_needs_the_second_factor_too(client, person, clock, monkeypatch):
    from idp.federation import client as upstream_client
    from idp.federation import views as federation_views

    secret = _enrol_directly(person, clock)
    monkeypatch.setattr(upstream_client, "authorize_redirect", lambda *a, **k: redirect("/federation/mail/callback"))
    monkeypatch.setattr(upstream_client, "finish", lambda name: SimpleNamespace(email=USER))
    monkeypatch.setattr(federation_views.linking, "resolve",
                        lambda claims, policy, client_ip=None: SimpleNamespace(kind="linked", account=db.session.get(Account, person.id)))
    r = client.get("/federation/mail/start", query_string={"service": USOSWEB})
    r = client.get(location(r))
    assert r.status_code == 302 and path_of(location(r)) == "/mfa/verify"
    assert tgt(client) is None
    r = verify_totp(client, code_at(secret, clock.now))
    r = client.get(location(r))
    assert r.status_code == 302 and location(r).startswith(USOSWEB) and ticket_from(r)
