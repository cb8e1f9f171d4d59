"""Every console action over HTTP, the way a browser posts it (its form page first, for the CSRF token):
what it changes, the message on the person's page, its audit event (who, what, why, before/after), and
that a missing reason or a refusal is a 400 form error that changes nothing."""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from idp.core import linking, mfa
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.extensions import db
from idp.models import (
    Account,
    AssistedRecovery,
    Identifier,
    OutboxMessage,
    PendingLink,
    SsoSession,
    UpstreamIdentity,
)
from tests.conftest import FreshContextClient, cas_login
from tests.factories import PASSWORD, create_account
from tests.helpdesk.console import (
    STAFF_EMAIL,
    UPSTREAM,
    Desk,
    english,
    events,
    location,
    plain,
    rows,
    section,
    text,
)

STUDENT = "lukasz.zolkiewski@student.example.edu.pl"
PRIVATE = "lukasz.z@example.com"
TEMPORARY = "Parowóz-Klarnet-Zima-1954"
WHY = "ticket HD-1234: phoned the helpdesk"

pytestmark = pytest.mark.settings(UPSTREAM=UPSTREAM)


@dataclass
class Scene:
    desk: Desk
    student: Account
    other: Account
    identity: UpstreamIdentity
    pending: PendingLink
    student_browser: FreshContextClient

    def fresh(self) -> Account:
        return db.session.get(Account, self.student.id)

    def live_sessions(self) -> list[SsoSession]:
        return list(db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == self.student.id,
                                                                  SsoSession.ended_at.is_(None))))


@pytest.fixture
def scene(app, client, clock, person) -> Scene:
    desk = Desk.open(client, clock)
    student_browser = english(FreshContextClient(app, app.response_class, use_cookies=True))
    assert cas_login(student_browser, STUDENT, PASSWORD, service=None).status_code == 200
    other = create_account("67890", first_name="Łukasz", last_name="Żółkiewski", university_email=None,
                           private_email="l.zolkiewski@example.com", aliases=(), password=None)
    account = db.session.get(Account, person.id)
    account.failed_logins, account.locked_until = 10, utcnow() + dt.timedelta(minutes=15)
    identity = linking.link(account, "poczta", "sub-1", "lz@mail.example.edu.pl", linked_by="password",
                            actor="self", client_ip=None)
    now = utcnow()
    pending = PendingLink(kind="exists", account_id=person.id, provider="poczta", subject="sub-2", email=STUDENT,
                          name="Łukasz Ż.", created_at=now, expires_at=now + dt.timedelta(hours=1))
    db.session.add(pending)
    db.session.commit()
    mfa.issue_recovery_codes(account, 10)  # a second factor for the helpdesk to reset
    return Scene(desk, account, other, identity, pending, student_browser)


def the_event(name: str, account_id: int | None = None):
    [event] = events(f"helpdesk.{name}")
    assert event.actor == STAFF_EMAIL
    assert event.data["why"] == WHY and event.data["via"] == "console"
    assert "before" in event.data and "after" in event.data
    assert event.client_ip == "127.0.0.1"
    if account_id is not None:
        assert event.account_id == account_id
    return event


def done(scene: Scene, r, message: str) -> str:
    """The action redirected to the person's page, which shows its result."""
    assert r.status_code == 302, text(r)[:3000]
    assert location(r) == "/helpdesk/people/12345"
    page = scene.desk.page(location(r))
    assert message in plain(page), plain(page)[:1500]
    return page


# --- each action ------------------------------------------------------------------------------------------

def test_send_a_reset_link_to_a_chosen_address(scene):
    url = "/helpdesk/people/12345/reset-link"
    form = scene.desk.page(url)
    assert f'<option value="{PRIVATE}">' in form and f'<option value="{STUDENT}"' in form
    r = scene.desk.post(url, {"address": PRIVATE, "lang": "en", "reason": WHY})
    done(scene, r, f"A password reset link was sent to {PRIVATE}.")
    [mail] = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.purpose == "reset_link")).all()
    assert mail.to_addr == PRIVATE and "/password/reset/" in mail.body_text
    event = the_event("send_reset_link", scene.student.id)
    assert event.data["address"] == PRIVATE


def test_the_reset_link_goes_only_to_an_address_of_the_account(scene):
    r = scene.desk.post("/helpdesk/people/12345/reset-link", {"address": "attacker@example.com", "lang": "en",
                                                               "reason": WHY})
    assert r.status_code == 400
    assert "Not a valid choice" in text(r)
    assert db.session.scalars(db.select(OutboxMessage)).all() == []


def test_set_a_temporary_password(scene):
    r = scene.desk.post("/helpdesk/people/12345/temporary-password",
                        {"password": TEMPORARY, "confirm": TEMPORARY, "reason": WHY})
    done(scene, r, "A temporary password was set.")
    account = scene.fresh()
    assert account.password_temporary and hasher().verify(account.password_hash, TEMPORARY)
    event = the_event("set_temporary_password", account.id)
    assert TEMPORARY not in str(event.data)
    assert scene.live_sessions() == []  # every session of the person ended


def test_a_temporary_password_the_rules_refuse_is_a_form_error(scene):
    before = scene.fresh().password_hash
    r = scene.desk.post("/helpdesk/people/12345/temporary-password",
                        {"password": "haslo123", "confirm": "haslo123", "reason": WHY})
    assert r.status_code == 400
    assert 'class="field-error"' in text(r)
    assert scene.fresh().password_hash == before
    assert events("helpdesk.set_temporary_password") == []


def test_mismatched_temporary_passwords_are_refused(scene):
    r = scene.desk.post("/helpdesk/people/12345/temporary-password",
                        {"password": TEMPORARY, "confirm": TEMPORARY + "x", "reason": WHY})
    assert r.status_code == 400 and "The passwords do not match." in text(r)


def test_unlock(scene):
    form = plain(scene.desk.page("/helpdesk/people/12345/unlock"))
    assert "10 wrong passwords in a row." in form and "Locked until" in form
    r = scene.desk.post("/helpdesk/people/12345/unlock", {"reason": WHY})
    done(scene, r, "The account was unlocked.")
    account = scene.fresh()
    assert account.locked_until is None and account.failed_logins == 0
    event = the_event("unlock", account.id)
    assert event.data["before"]["failed_logins"] == 10 and event.data["after"]["failed_logins"] == 0


def test_unlocking_an_account_that_is_not_locked_is_refused(scene):
    scene.student.failed_logins, scene.student.locked_until = 0, None
    db.session.commit()
    r = scene.desk.post("/helpdesk/people/12345/unlock", {"reason": WHY})
    assert r.status_code == 400
    assert "Not done:" in plain(text(r)) and "This account is not locked." in plain(text(r))
    assert events("helpdesk.unlock") == []


def test_add_an_alias(scene):
    r = scene.desk.post("/helpdesk/people/12345/identifiers/add",
                        {"kind": "alias", "value": "L.Zolkiewski@Student.Example.edu.pl", "reason": WHY})
    done(scene, r, "l.zolkiewski@student.example.edu.pl was added.")
    assert "l.zolkiewski@student.example.edu.pl" in scene.fresh().aliases()
    event = the_event("add_identifier", scene.student.id)
    assert event.data["identifier"] == {"kind": "alias", "value": "l.zolkiewski@student.example.edu.pl"}


def test_an_address_of_another_account_is_refused_naming_it(scene):
    r = scene.desk.post("/helpdesk/people/12345/identifiers/add",
                        {"kind": "private_email", "value": "l.zolkiewski@example.com", "reason": WHY})
    assert r.status_code == 400
    assert "belongs to another account (album 67890)" in plain(text(r))
    assert events("helpdesk.add_identifier") == []


def test_remove_an_identifier(scene):
    ident_id = next(i.id for i in scene.student.identifiers if i.value == PRIVATE)
    url = f"/helpdesk/people/12345/identifiers/{ident_id}/remove"
    assert f"Remove {PRIVATE}" in plain(scene.desk.page(url))
    r = scene.desk.post(url, {"reason": WHY})
    done(scene, r, f"{PRIVATE} was removed.")
    assert db.session.get(Identifier, ident_id) is None
    assert the_event("remove_identifier", scene.student.id).data["identifier"]["value"] == PRIVATE


def test_an_identifier_of_someone_else_is_404(scene):
    foreign = scene.other.identifiers[0]
    assert scene.desk.get(f"/helpdesk/people/12345/identifiers/{foreign.id}/remove").status_code == 404


def test_link_an_identity(scene):
    page = scene.desk.page("/helpdesk/people/12345/identities/link")
    assert '<option value="poczta">University mail</option>' in page
    r = scene.desk.post("/helpdesk/people/12345/identities/link",
                        {"provider": "poczta", "subject": "sub-77", "email": "inne@mail.example.edu.pl",
                         "reason": WHY})
    done(scene, r, "The University mail identity was linked.")
    row = db.session.scalar(db.select(UpstreamIdentity).where(UpstreamIdentity.subject == "sub-77"))
    assert row.account_id == scene.student.id and row.linked_by == "helpdesk"
    the_event("link_identity", scene.student.id)


def test_unlink_an_identity(scene):
    identity_id = scene.identity.id
    url = f"/helpdesk/people/12345/identities/{identity_id}/unlink"
    r = scene.desk.post(url, {"reason": WHY})
    done(scene, r, "University mail lz@mail.example.edu.pl was unlinked.")
    assert db.session.get(UpstreamIdentity, identity_id) is None
    the_event("unlink_identity", scene.student.id)


@pytest.mark.parametrize("decision", ["link", "reject"])
def test_resolve_a_waiting_link(scene, decision):
    url = f"/helpdesk/people/12345/pending/{scene.pending.id}"
    page = scene.desk.page(url)
    assert '<legend>Decision</legend>' in page
    r = scene.desk.post(url, {"decision": decision, "reason": WHY})
    done(scene, r, "linked to this account" if decision == "link" else "rejected")
    pending = db.session.get(PendingLink, scene.pending.id)
    assert pending.resolution == ("linked" if decision == "link" else "rejected")
    assert the_event("resolve_pending").data["decision"] == decision
    linked = db.session.scalar(db.select(UpstreamIdentity).where(UpstreamIdentity.subject == "sub-2"))
    assert (linked is not None) == (decision == "link")


def test_end_one_session_then_every_session(scene):
    [session] = scene.live_sessions()
    page = scene.desk.page("/helpdesk/people/12345")
    assert f'href="/helpdesk/people/12345/sessions/end?sid={session.sid}"' in page
    form = plain(scene.desk.page(f"/helpdesk/people/12345/sessions/end?sid={session.sid}"))
    assert "End a session" in form and "Session started" in form
    r = scene.desk.post(f"/helpdesk/people/12345/sessions/end?sid={session.sid}", {"sid": session.sid, "reason": WHY})
    done(scene, r, "1 session was ended.")
    assert scene.live_sessions() == []
    assert the_event("end_sessions", scene.student.id).data["ended"] == [session.sid]
    # the student's browser is logged out
    assert scene.student_browser.get("/account").status_code == 302
    # nothing left to end
    r = scene.desk.post("/helpdesk/people/12345/sessions/end", {"reason": WHY})
    assert r.status_code == 400 and "This person has no active sessions." in plain(text(r))


def test_merge_shows_both_accounts_side_by_side_then_merges(scene):
    pick = scene.desk.page("/helpdesk/people/12345/merge")
    assert 'name="other"' in pick and "Compare the accounts" in pick
    r = scene.desk.get("/helpdesk/people/12345/merge", query_string={"other": "nobody-99"})
    assert r.status_code == 404 and "No account has the album number or address nobody-99." in plain(text(r))
    confirm = scene.desk.page("/helpdesk/people/12345/merge?other=67890")
    words = plain(confirm)
    assert "Stays (survivor)" in words and "Goes into it (can no longer log in)" in words
    assert "12345" in words and "67890" in words and "l.zolkiewski@example.com" in words
    assert 'href="/helpdesk/people/67890/merge?other=12345"' in confirm  # the other way round
    assert 'name="other" type="hidden" value="67890"' in confirm
    r = scene.desk.post("/helpdesk/people/12345/merge?other=67890", {"other": "67890", "reason": WHY})
    page = done(scene, r, "Łukasz Żółkiewski (67890) was merged into this account.")
    assert "l.zolkiewski@example.com" in plain(section(page, "Identifiers"))
    other = db.session.get(Account, scene.other.id)
    assert other.merged_into_id == scene.student.id and other.status == "merged"
    event = the_event("merge", scene.student.id)
    assert event.data["other"]["album"] == "67890"


def test_merging_into_itself_is_refused(scene):
    r = scene.desk.post("/helpdesk/people/12345/merge?other=12345", {"other": "12345", "reason": WHY})
    assert r.status_code == 400 and "cannot be merged into itself" in plain(text(r))
    assert events("helpdesk.merge") == []


def test_issue_a_recovery_code_shown_once(scene):
    url = "/helpdesk/people/12345/recovery-code"
    r = scene.desk.post(url, {"reason": WHY})
    assert r.status_code == 400  # the identity check is confirmed first
    assert "in-person identity check" in text(r)
    r = scene.desk.post(url, {"id_checked": "y", "reason": WHY})
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    code = re.search(r'<strong class="ref">([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</strong>', text(r)).group(1)
    assert "shown only this once" in plain(text(r))
    assert "http://127.0.0.1:8000/password/code" in text(r)
    [issued] = db.session.scalars(db.select(AssistedRecovery)).all()
    assert issued.account_id == scene.student.id and code.replace("-", "") not in issued.code_hash
    event = the_event("recovery_code", scene.student.id)
    assert code not in str(event.data)
    page = scene.desk.page("/helpdesk/people/12345")
    assert code not in page and "One-time recovery code" in plain(page)


def test_reset_the_second_factor(scene):
    page = plain(scene.desk.page("/helpdesk/people/12345"))
    assert "Second factor" in page and "10 recovery codes left" in page
    r = scene.desk.post("/helpdesk/people/12345/second-factor/reset", {"reason": WHY})
    done(scene, r, "The second factor was reset.")
    assert mfa.recovery_codes_left(scene.fresh()) == 0
    event = the_event("reset_second_factor", scene.student.id)
    assert event.data["before"]["recovery_codes"] == 10
    page = scene.desk.page("/helpdesk/people/12345")
    assert "/second-factor/reset" not in page  # nothing left to reset: no button


# --- the reason: every action asks for one; without it nothing changes ------------------------------------

@dataclass(frozen=True)
class Action:
    name: str
    url: Callable[[Scene], str]
    data: Callable[[Scene], dict]


def _ident(scene: Scene) -> int:
    return next(i.id for i in scene.student.identifiers if i.value == PRIVATE)


ACTIONS = [
    Action("send_reset_link", lambda s: "/helpdesk/people/12345/reset-link", lambda s: {"address": STUDENT, "lang": "pl"}),
    Action("set_temporary_password", lambda s: "/helpdesk/people/12345/temporary-password",
           lambda s: {"password": TEMPORARY, "confirm": TEMPORARY}),
    Action("unlock", lambda s: "/helpdesk/people/12345/unlock", lambda s: {}),
    Action("add_identifier", lambda s: "/helpdesk/people/12345/identifiers/add",
           lambda s: {"kind": "alias", "value": "nowy@student.example.edu.pl"}),
    Action("remove_identifier", lambda s: f"/helpdesk/people/12345/identifiers/{_ident(s)}/remove", lambda s: {}),
    Action("link_identity", lambda s: "/helpdesk/people/12345/identities/link",
           lambda s: {"provider": "poczta", "subject": "sub-9"}),
    Action("unlink_identity", lambda s: f"/helpdesk/people/12345/identities/{s.identity.id}/unlink", lambda s: {}),
    Action("resolve_pending", lambda s: f"/helpdesk/people/12345/pending/{s.pending.id}", lambda s: {"decision": "link"}),
    Action("merge", lambda s: "/helpdesk/people/12345/merge?other=67890", lambda s: {"other": "67890"}),
    Action("end_sessions", lambda s: "/helpdesk/people/12345/sessions/end", lambda s: {}),
    Action("recovery_code", lambda s: "/helpdesk/people/12345/recovery-code", lambda s: {"id_checked": "y"}),
    Action("reset_second_factor", lambda s: "/helpdesk/people/12345/second-factor/reset", lambda s: {}),
]


def snapshot(scene: Scene) -> tuple:
    """Everything any action could change, to compare before and after."""
    db.session.expire_all()
    account = scene.fresh()
    other = db.session.get(Account, scene.other.id)
    return (account.password_hash, account.password_temporary, account.failed_logins, account.locked_until,
            sorted(i.value for i in account.identifiers), sorted(i.value for i in other.identifiers),
            other.merged_into_id, len(linking.identities_of(account)),
            db.session.get(PendingLink, scene.pending.id).resolution, len(scene.live_sessions()),
            db.session.scalar(db.select(db.func.count(OutboxMessage.id))),
            db.session.scalar(db.select(db.func.count(AssistedRecovery.id))), mfa.recovery_codes_left(account))


@pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
@pytest.mark.parametrize("reason", ["", "   ", "ok"], ids=["missing", "blank", "too-short"])
def test_without_a_reason_nothing_changes(scene, action, reason):
    before = snapshot(scene)
    r = scene.desk.post(action.url(scene), {**action.data(scene), "reason": reason})
    assert r.status_code == 400, text(r)[:2000]
    assert 'id="reason-err"' in text(r) or "Say why" in text(r)
    assert snapshot(scene) == before
    assert events(f"helpdesk.{action.name}") == []


@pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
def test_every_action_leaves_its_audit_event(scene, action):
    before = snapshot(scene)
    r = scene.desk.post(action.url(scene), {**action.data(scene), "reason": WHY})
    assert r.status_code in (200, 302), text(r)[:2000]
    assert snapshot(scene) != before
    the_event(action.name)
    # and the audit log shows it, with the reason given
    log = scene.desk.page("/helpdesk/audit", query_string={"action": f"helpdesk.{action.name}"})
    assert len(rows(log)) == 1 and WHY in plain(log)


@pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
def test_every_action_needs_the_csrf_token(scene, action):
    before = snapshot(scene)
    r = scene.desk.post(action.url(scene), {**action.data(scene), "reason": WHY}, token=False)
    assert r.status_code == 400
    assert snapshot(scene) == before
    assert events(f"helpdesk.{action.name}") == []
