"""Findings of the security review of the console, each pinned by the way it was found."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import helpdesk, mfa, sso, staff
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import Account, AuditEvent, PendingLink, SsoSession
from tests.factories import PESEL, create_account
from tests.helpdesk.console import Desk, location, text

WHY = "review: pinned behaviour"


@pytest.fixture
def desk(client, clock, person) -> Desk:
    return Desk.open(client, clock)


def test_a_pesel_with_spaces_never_lands_in_a_url(desk):
    spaced = f"{PESEL[:4]} {PESEL[4:8]} {PESEL[8:]}"
    r = desk.post("/helpdesk/", {"q": spaced})
    assert PESEL not in r.headers.get("Location", "") and spaced.replace(" ", "+") not in r.headers.get("Location", "")
    assert "Location" not in r.headers or "/helpdesk/people/" in location(r)


def test_merge_without_the_other_account_is_a_form_error(desk):
    from tests.conftest import csrf_token

    token = csrf_token(desk.page("/helpdesk/people/12345/merge?other=12345"))
    r = desk.client.post("/helpdesk/people/12345/merge", data={"csrf_token": token, "reason": WHY})
    assert r.status_code in (200, 400)


@pytest.mark.parametrize("query", [{"until": "9999-12-31"}, {"since": "0001-01-01"}])
def test_extreme_audit_dates_are_no_crash(desk, query):
    assert desk.get("/helpdesk/audit", query_string=query).status_code == 200


def test_a_pending_link_is_decided_only_from_its_persons_page(desk, person):
    stranger = create_account("55555", first_name="Ewa", last_name="Obca", university_email="ewa@example.edu.pl",
                              private_email=None, aliases=(), pesel=None)
    now = utcnow()
    pending = PendingLink(kind="exists", account_id=stranger.id, provider="poczta", subject="s-1",
                          email="ewa@example.edu.pl", name="Ewa", created_at=now, expires_at=now + dt.timedelta(hours=1))
    db.session.add(pending)
    db.session.commit()
    assert desk.get(f"/helpdesk/people/12345/pending/{pending.id}").status_code == 404


def test_rejecting_a_link_waiting_for_an_admin_needs_the_admin_role(app, person):
    helper = create_account("901", first_name="Hel", last_name="Pdesk", university_email="hel@example.edu.pl",
                            private_email=None, aliases=(), pesel=None)
    staff.grant(helper, "helpdesk", actor="cli")
    staff.grant(person, "admin", actor="cli")
    now = utcnow()
    pending = PendingLink(kind="exists", account_id=person.id, provider="poczta", subject="s-2", email=None,
                          name=None, created_at=now, expires_at=now + dt.timedelta(hours=1))
    db.session.add(pending)
    db.session.commit()
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.resolve_pending(pending.id, "reject", actor=helpdesk.Actor.of(helper, client_ip=None, via="console"),
                                 reason=WHY)
    assert caught.value.code == "staff_account"


def test_resetting_the_second_factor_ends_the_persons_sessions(app, person):
    policy = app.extensions["idp.policy"]
    sso.start(person, policy, warn=False, client_ip=None)
    mfa.issue_recovery_codes(person, 10)
    helpdesk.reset_second_factor(person, actor=helpdesk.Actor(name="cli", account_id=None, client_ip=None,
                                                             via="cli"), reason=WHY)
    live = db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == person.id,
                                                          SsoSession.ended_at.is_(None))).all()
    assert live == []


def test_a_token_of_a_person_who_left_stops_working(app, person):
    staff.grant(person, "helpdesk", actor="cli")
    issued = staff.create_token(person, "script", actor="cli")
    db.session.commit()
    assert staff.authenticate_token(issued.secret).id == person.id
    db.session.get(Account, person.id).status = "left"
    db.session.commit()
    assert staff.authenticate_token(issued.secret) is None


def test_a_pesel_typed_as_a_login_on_the_code_page_is_not_recorded(app, client):
    from tests.conftest import csrf_token

    page = client.get("/password/code")
    client.post("/password/code", data={"csrf_token": csrf_token(text(page)), "identifier": PESEL,
                                        "code": "ABCD-EFGH-JKMN"})
    recorded = " ".join(str(e.data) for e in db.session.scalars(db.select(AuditEvent)))
    assert PESEL not in recorded
