"""Each action of the admin API: its effect, the one audit event it leaves (via "api", with the reason and
who), its refusals, and — without a reason — a 400 with nothing changed."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import accounts, assisted_recovery, sso, staff
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import (
    Account,
    AssistedRecovery,
    AuditEvent,
    Identifier,
    OutboxMessage,
    PendingLink,
    SsoSession,
    UpstreamIdentity,
)
from tests.api.conftest import reason
from tests.factories import create_account

WHY = "Ticket #4711: the student phoned"
STRONG = "Wiatrak-Pomidor-Latarnia-42"


def _audited(body: dict, action: str, staff_account, account: Account | None) -> AuditEvent:
    """The answer names the one helpdesk event of the action: via api, the reason, the staff person."""
    assert body["event"] is not None, body
    assert body["event"]["action"] == f"helpdesk.{action}"
    event = db.session.get(AuditEvent, body["event"]["id"])
    assert event.action == f"helpdesk.{action}"
    assert event.actor == staff.actor_name(staff_account)
    assert event.data["via"] == "api" and event.data["why"] == WHY
    assert "before" in event.data and "after" in event.data
    if account is not None:
        assert event.account_id == account.id
    helpdesk_events = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action.startswith("helpdesk.")))
    assert [e.id for e in helpdesk_events] == [event.id]  # exactly one
    return event


def _lock(account: Account) -> None:
    account.failed_logins = 10
    account.locked_until = utcnow() + dt.timedelta(minutes=15)
    db.session.commit()


@pytest.fixture
def twin(app):
    """A duplicate account of the same person (another album), as an old import left it."""
    return create_account("54321", university_email=None, private_email="lukasz.old@example.com",
                          aliases=("lz54321@student.example.edu.pl",), pesel=None)


@pytest.fixture
def pending(person):
    row = PendingLink(kind="exists", account_id=person.id, provider="mail", subject="upstream-sub-7",
                      email="lukasz.zolkiewski@student.example.edu.pl", name="Łukasz Żółkiewski",
                      created_at=utcnow(), expires_at=utcnow() + dt.timedelta(hours=1))
    db.session.add(row)
    db.session.commit()
    return row


def _sessions(app, account, n: int) -> list[SsoSession]:
    return [sso.start(account, app.extensions["idp.policy"], warn=False, client_ip="192.0.2.9").session
            for _ in range(n)]


# --- each action ---------------------------------------------------------------------------------------

def test_send_reset_link(api, person, helpdesk_staff):
    r = api.post("/people/12345/reset-link", json={**reason(WHY), "address": "Lukasz.Z@example.com", "lang": "en"})
    assert r.status_code == 200
    assert r.get_json()["sent_to"] == "lukasz.z@example.com"
    mails = list(db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.account_id == person.id)))
    assert [m.to_addr for m in mails] == ["lukasz.z@example.com"]
    assert "/password/reset/" in mails[0].body_text
    event = _audited(r.get_json(), "send_reset_link", helpdesk_staff, person)
    assert event.data["address"] == "lukasz.z@example.com"


def test_send_reset_link_to_the_first_address_by_default(api, person):
    r = api.post("/people/12345/reset-link", json=reason(WHY))
    assert r.get_json()["sent_to"] == "lukasz.zolkiewski@student.example.edu.pl"


def test_send_reset_link_only_to_the_persons_addresses(api, person):
    r = api.post("/people/12345/reset-link", json={**reason(WHY), "address": "attacker@example.com"})
    assert r.status_code == 409 and r.get_json()["error"] == "not_an_address"
    assert db.session.scalar(db.select(db.func.count(OutboxMessage.id))) == 0


def test_set_temporary_password(api, person, helpdesk_staff):
    _lock(person)
    r = api.post("/people/12345/temporary-password", json={**reason(WHY), "password": STRONG})
    assert r.status_code == 200 and r.get_json()["temporary"] is True
    db.session.refresh(person)
    assert person.password_temporary and accounts.verify_password(person, STRONG)
    assert person.locked_until is None
    event = _audited(r.get_json(), "set_temporary_password", helpdesk_staff, person)
    assert STRONG not in str(event.data)


def test_a_temporary_password_the_policy_refuses(api, person):
    before = person.password_hash
    r = api.post("/people/12345/temporary-password", json={**reason(WHY), "password": "12345"})
    assert r.status_code == 422
    body = r.get_json()
    assert body["error"] == "password_rejected" and body["violations"]
    assert all(v["code"] and v["message"] for v in body["violations"])
    db.session.refresh(person)
    assert person.password_hash == before and not person.password_temporary


def test_unlock(api, person, helpdesk_staff):
    _lock(person)
    r = api.post("/people/12345/unlock", json=reason(WHY))
    assert r.status_code == 200 and r.get_json()["unlocked"] is True
    db.session.refresh(person)
    assert (person.failed_logins, person.locked_until) == (0, None)
    event = _audited(r.get_json(), "unlock", helpdesk_staff, person)
    assert event.data["before"]["failed_logins"] == 10


def test_unlock_an_account_that_is_not_locked(api, person):
    r = api.post("/people/12345/unlock", json=reason(WHY))
    assert r.status_code == 409 and r.get_json()["error"] == "not_locked"


def test_reset_second_factor(api, person, helpdesk_staff):
    from idp.core import mfa

    mfa.issue_recovery_codes(person, 10)  # codes only: still something to forget
    r = api.post("/people/12345/second-factor/reset", json=reason(WHY))
    assert r.status_code == 200
    assert r.get_json()["removed"] == {"totp": 0, "keys": 0, "recovery_codes": 10}
    assert mfa.recovery_codes_left(person) == 0
    _audited(r.get_json(), "reset_second_factor", helpdesk_staff, person)
    again = api.post("/people/12345/second-factor/reset", json=reason(WHY))
    assert again.status_code == 409 and again.get_json()["error"] == "no_second_factor"


def test_add_identifier(api, person, helpdesk_staff):
    r = api.post("/people/12345/identifiers", json={**reason(WHY), "kind": "alias",
                                                    "value": " L.Zolkiewski@Student.Example.edu.pl "})
    assert r.status_code == 201
    added = r.get_json()["identifier"]
    assert (added["kind"], added["value"], added["logs_in"], added["source"]) == (
        "alias", "l.zolkiewski@student.example.edu.pl", True, "helpdesk")
    assert accounts.find_any("l.zolkiewski@student.example.edu.pl").id == person.id
    _audited(r.get_json(), "add_identifier", helpdesk_staff, person)


def test_add_identifier_refusals(api, person, twin):
    taken = api.post("/people/12345/identifiers", json={**reason(WHY), "kind": "alias",
                                                        "value": "lz54321@student.example.edu.pl"})
    assert taken.status_code == 409 and taken.get_json()["error"] == "taken"
    assert "54321" in taken.get_json()["message"]
    bad = api.post("/people/12345/identifiers", json={**reason(WHY), "kind": "nickname", "value": "a@b.pl"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "bad_kind"
    not_mail = api.post("/people/12345/identifiers", json={**reason(WHY), "kind": "alias", "value": "lukasz"})
    assert not_mail.status_code == 400 and not_mail.get_json()["error"] == "bad_address"
    missing = api.post("/people/12345/identifiers", json={**reason(WHY), "kind": "alias"})
    assert missing.status_code == 400 and missing.get_json()["field"] == "value"


def test_remove_identifier(api, person, helpdesk_staff):
    alias = next(i.id for i in person.identifiers if i.kind == "alias")
    r = api.delete(f"/people/12345/identifiers/{alias}", json=reason(WHY))
    assert r.status_code == 200 and r.get_json()["removed"] == "s12345@student.example.edu.pl"
    assert db.session.get(Identifier, alias) is None
    _audited(r.get_json(), "remove_identifier", helpdesk_staff, person)


def test_remove_someone_elses_identifier(api, person, twin):
    theirs = twin.identifiers[0].id
    r = api.delete(f"/people/12345/identifiers/{theirs}", json=reason(WHY))
    assert r.status_code == 404 and r.get_json()["error"] == "not_found"
    assert db.session.get(Identifier, theirs) is not None


def test_link_identity(api, person, helpdesk_staff):
    r = api.post("/people/12345/identities", json={**reason(WHY), "provider": "mail", "subject": "abc-123",
                                                   "email": "lukasz.zolkiewski@student.example.edu.pl"})
    assert r.status_code == 201
    linked = r.get_json()["identity"]
    assert (linked["provider"], linked["subject"], linked["linked_by"]) == ("mail", "abc-123", "helpdesk")
    row = db.session.get(UpstreamIdentity, linked["id"])
    assert row.account_id == person.id
    _audited(r.get_json(), "link_identity", helpdesk_staff, person)


def test_link_identity_of_an_unknown_provider(api, person):
    r = api.post("/people/12345/identities", json={**reason(WHY), "provider": "facebook", "subject": "x"})
    assert r.status_code == 409 and r.get_json()["error"] == "unknown_provider"


def test_unlink_identity(api, person, helpdesk_staff):
    row = UpstreamIdentity(account_id=person.id, provider="mail", subject="abc", email=None, linked_by="mail",
                           linked_at=utcnow())
    db.session.add(row)
    db.session.commit()
    row_id = row.id
    r = api.delete(f"/people/12345/identities/{row_id}", json=reason(WHY))
    assert r.status_code == 200 and r.get_json()["unlinked"] == row_id
    assert db.session.get(UpstreamIdentity, row_id) is None
    _audited(r.get_json(), "unlink_identity", helpdesk_staff, person)


def test_resolve_pending_by_linking(api, person, pending, helpdesk_staff):
    r = api.post(f"/pending-links/{pending.id}/resolve", json={**reason(WHY), "decision": "link"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["pending_link"]["resolution"] == "linked"
    assert body["pending_link"]["account"] == {"album": "12345", "name": "Łukasz Żółkiewski"}
    identity = db.session.scalar(db.select(UpstreamIdentity).where(UpstreamIdentity.subject == "upstream-sub-7"))
    assert identity.account_id == person.id and identity.linked_by == "helpdesk"
    _audited(body, "resolve_pending", helpdesk_staff, person)


def test_resolve_pending_by_rejecting(api, person, pending, helpdesk_staff):
    r = api.post(f"/pending-links/{pending.id}/resolve", json={**reason(WHY), "decision": "reject"})
    assert r.status_code == 200 and r.get_json()["pending_link"]["resolution"] == "rejected"
    assert db.session.scalar(db.select(db.func.count(UpstreamIdentity.id))) == 0
    _audited(r.get_json(), "resolve_pending", helpdesk_staff, person)
    again = api.post(f"/pending-links/{pending.id}/resolve", json={**reason(WHY), "decision": "link"})
    assert again.status_code == 409 and again.get_json()["error"] == "resolved"


def test_resolve_pending_to_another_account(api, person, pending, twin):
    r = api.post(f"/pending-links/{pending.id}/resolve",
                 json={**reason(WHY), "decision": "link", "album": "54321"})
    assert r.status_code == 200
    identity = db.session.scalar(db.select(UpstreamIdentity).where(UpstreamIdentity.subject == "upstream-sub-7"))
    assert identity.account_id == twin.id


def test_resolve_an_unknown_pending_link(api, person):
    r = api.post("/pending-links/999999/resolve", json={**reason(WHY), "decision": "link"})
    assert r.status_code == 404


def test_merge(api, app, person, twin, helpdesk_staff):
    _sessions(app, twin, 1)
    r = api.post("/people/12345/merge", json={**reason(WHY), "duplicate": "54321"})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["survivor"]["album"] == "12345" and body["merged"]["album"] == "54321"
    assert sorted(body["moved"]["identifiers"]) == ["lukasz.old@example.com", "lz54321@student.example.edu.pl"]
    db.session.refresh(twin)
    assert twin.merged_into_id == person.id and twin.password_hash is None
    assert accounts.find_any("lz54321@student.example.edu.pl").id == person.id
    assert db.session.scalar(db.select(db.func.count(SsoSession.id)).where(SsoSession.account_id == twin.id,
                                                                           SsoSession.ended_at.is_(None))) == 0
    _audited(body, "merge", helpdesk_staff, person)
    # the merged account now says where it went
    assert api.get("/people/54321").get_json()["merged_into"]["album"] == "12345"


def test_merge_refusals(api, person, twin):
    same = api.post("/people/12345/merge", json={**reason(WHY), "duplicate": "12345"})
    assert same.status_code == 409 and same.get_json()["error"] == "same_account"
    unknown = api.post("/people/12345/merge", json={**reason(WHY), "duplicate": "00000"})
    assert unknown.status_code == 404 and unknown.get_json()["error"] == "unknown_person"


def test_end_one_session_then_all(api, app, person, helpdesk_staff):
    first, second = _sessions(app, person, 2)
    r = api.post("/people/12345/sessions/end", json={**reason(WHY), "sid": first.sid})
    assert r.status_code == 200 and r.get_json()["ended"] == 1
    db.session.refresh(first)
    db.session.refresh(second)
    assert first.ended_at is not None and first.end_reason == "ended_by_helpdesk" and second.ended_at is None
    _audited(r.get_json(), "end_sessions", helpdesk_staff, person)
    gone = api.post("/people/12345/sessions/end", json={**reason(WHY), "sid": first.sid})
    assert gone.status_code == 404
    rest = api.post("/people/12345/sessions/end", json=reason(WHY))
    assert rest.status_code == 200 and rest.get_json()["ended"] == 1
    none = api.post("/people/12345/sessions/end", json=reason(WHY))
    assert none.status_code == 409 and none.get_json()["error"] == "no_sessions"


def test_issue_recovery_code(api, person, helpdesk_staff):
    r = api.post("/people/12345/recovery-code", json=reason(WHY))
    assert r.status_code == 201
    body = r.get_json()
    record = db.session.scalar(db.select(AssistedRecovery).where(AssistedRecovery.account_id == person.id))
    assert record.code_hash == assisted_recovery.code_hash(body["code"])
    assert body["expires_at"] == record.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event = _audited(body, "recovery_code", helpdesk_staff, person)
    assert body["code"] not in str(event.data)
    # shown once: the person's page never shows it again
    assert body["code"] not in api.get("/people/12345").get_data(as_text=True)


# --- without a reason nothing happens ----------------------------------------------------------------------

def _state(person: Account) -> tuple:
    db.session.expire_all()
    account = db.session.get(Account, person.id)
    return (account.password_hash, account.password_temporary, account.failed_logins, account.locked_until,
            account.merged_into_id, sorted(i.value for i in account.identifiers),
            db.session.scalar(db.select(db.func.count(UpstreamIdentity.id))),
            db.session.scalar(db.select(db.func.count(OutboxMessage.id))),
            db.session.scalar(db.select(db.func.count(AssistedRecovery.id))),
            db.session.scalar(db.select(db.func.count(SsoSession.id)).where(SsoSession.ended_at.is_(None))),
            db.session.scalar(db.select(db.func.count(PendingLink.id)).where(PendingLink.resolution.is_(None))))


ACTIONS = {
    "reset-link": lambda ids: ("POST", "/people/12345/reset-link", {"address": "lukasz.z@example.com"}),
    "temporary-password": lambda ids: ("POST", "/people/12345/temporary-password", {"password": STRONG}),
    "unlock": lambda ids: ("POST", "/people/12345/unlock", {}),
    "add-identifier": lambda ids: ("POST", "/people/12345/identifiers",
                                   {"kind": "alias", "value": "x@example.edu.pl"}),
    "remove-identifier": lambda ids: ("DELETE", f"/people/12345/identifiers/{ids['alias']}", {}),
    "link-identity": lambda ids: ("POST", "/people/12345/identities", {"provider": "mail", "subject": "new-sub"}),
    "unlink-identity": lambda ids: ("DELETE", f"/people/12345/identities/{ids['identity']}", {}),
    "resolve-pending": lambda ids: ("POST", f"/pending-links/{ids['pending']}/resolve", {"decision": "link"}),
    "merge": lambda ids: ("POST", "/people/12345/merge", {"duplicate": "54321"}),
    "end-sessions": lambda ids: ("POST", "/people/12345/sessions/end", {}),
    "recovery-code": lambda ids: ("POST", "/people/12345/recovery-code", {}),
    "second-factor-reset": lambda ids: ("POST", "/people/12345/second-factor/reset", {}),
}


@pytest.mark.parametrize("missing", [None, "   ", "ok"])
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_an_action_without_a_reason_changes_nothing(api, app, person, twin, pending, action, missing):
    _lock(person)
    identity = UpstreamIdentity(account_id=person.id, provider="mail", subject="abc", email=None,
                                linked_by="mail", linked_at=utcnow())
    db.session.add(identity)
    db.session.commit()
    _sessions(app, person, 1)
    ids = {"alias": next(i.id for i in person.identifiers if i.kind == "alias"), "identity": identity.id,
           "pending": pending.id}
    method, path, fields = ACTIONS[action](ids)
    body = dict(fields) if missing is None else {**fields, "reason": missing}
    before = _state(person)
    events = db.session.scalar(db.select(db.func.count(AuditEvent.id)))
    r = api.call(method, path, json=body)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"] == "reason_required" and r.get_json()["field"] == "reason"
    assert _state(person) == before
    assert db.session.scalar(db.select(db.func.count(AuditEvent.id))) == events


@pytest.mark.parametrize("given", ["", 42, ["a reason in a list"], {"text": "a reason"}])
def test_a_reason_must_be_words(api, person, given):
    _lock(person)
    r = api.post("/people/12345/unlock", json={"reason": given})
    assert r.status_code == 400 and r.get_json()["error"] == "reason_required"
    db.session.refresh(person)
    assert person.failed_logins == 10


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_an_action_without_a_body_changes_nothing(api, person, action):
    method, path, _fields = ACTIONS[action]({"alias": 1, "identity": 1, "pending": 1})
    before = _state(person)
    r = api.call(method, path)
    assert r.status_code in (400, 404)
    if r.status_code == 400:
        assert r.get_json()["error"] == "reason_required"
    assert _state(person) == before


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_an_action_needs_a_token(api, person, action):
    method, path, fields = ACTIONS[action]({"alias": 1, "identity": 1, "pending": 1})
    before = _state(person)
    r = api.call(method, path, json={**fields, **reason(WHY)}, token=None)
    assert r.status_code == 401
    assert _state(person) == before
