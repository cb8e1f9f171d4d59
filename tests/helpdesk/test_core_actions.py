"""Every helpdesk action (core/helpdesk.py): its effect, its one audit event (who, why, via, before/after),
ReasonRequired on a blank reason with nothing changed, and the cases it refuses."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from idp.core import accounts, authn, helpdesk, recovery, sso, staff
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import (
    Account,
    AuditEvent,
    Identifier,
    OutboxMessage,
    PendingLink,
    ResetRequest,
    SsoSession,
    UpstreamIdentity,
)
from tests.factories import PASSWORD, create_account
from tests.recovery.helpers import ALIAS, PRIVATE, USER, outbox_rows, queued_link, token_of
from tests.smtp_sink import link_in

UPSTREAM = [{"name": "mail", "label": "Poczta uczelniana", "issuer": "http://127.0.0.1:9", "client_id": "idp",
             "client_secret": "s"}]
TEMPORARY = "Parowóz-Klarnet-Zima-1954"
WHY = "caller verified by phone, ticket #4711"


def policy(app):
    return app.extensions["idp.policy"]


@pytest.fixture
def staffer(app) -> Account:
    account = create_account("900", first_name="Helena", last_name="Pomocna", university_email="helena@example.edu.pl",
                             private_email=None, aliases=(), pesel=None)
    staff.grant(account, "helpdesk", actor="cli")
    return account


@pytest.fixture
def actor(staffer) -> helpdesk.Actor:
    return helpdesk.Actor.of(staffer, client_ip="10.9.8.7", via="console")


@pytest.fixture
def other(app) -> Account:
    return create_account("777", first_name="Anna", last_name="Nowak", university_email="anna.nowak@student.example.edu.pl",
                          private_email="anna@example.com", aliases=(), pesel=None)


def helpdesk_events(name: str | None = None) -> list[AuditEvent]:
    db.session.expire_all()
    action = f"helpdesk.{name}" if name else "helpdesk."
    return list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.action.startswith(action))
                                   .order_by(AuditEvent.id)))


def the_event(name: str, account: Account, actor: helpdesk.Actor) -> AuditEvent:
    """The one event the action recorded, with the fields every helpdesk event has."""
    [event] = helpdesk_events()
    assert event.action == f"helpdesk.{name}"
    assert (event.actor, event.account_id, event.client_ip) == ("helena@example.edu.pl", account.id, "10.9.8.7")
    assert event.data["why"] == WHY and event.data["via"] == "console"
    assert event.data["staff_id"] == actor.account_id
    assert "before" in event.data and "after" in event.data
    return event


def live_sessions(account: Account) -> list:
    db.session.expire_all()
    return list(db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == account.id,
                                                                  SsoSession.ended_at.is_(None))))


def state(account: Account) -> dict:
    """What an action may change on an account, to prove a refused or reasonless one changed nothing."""
    db.session.expire_all()
    account = db.session.get(Account, account.id)
    return {"identifiers": sorted((i.kind, i.value) for i in account.identifiers), "hash": account.password_hash,
            "temporary": account.password_temporary, "failed": account.failed_logins, "locked": account.locked_until,
            "links": sorted(i.subject for i in db.session.scalars(db.select(UpstreamIdentity)
                                                                 .where(UpstreamIdentity.account_id == account.id))),
            "sessions": len(live_sessions(account)), "status": account.status, "merged": account.merged_into_id,
            "outbox": len(outbox_rows()), "resets": db.session.scalar(db.select(db.func.count(ResetRequest.id))),
            "pending": sorted((p.id, p.resolution) for p in db.session.scalars(db.select(PendingLink)))}


# --- a reason is required, and nothing changes without one ----------------------------------------------

@pytest.mark.settings(UPSTREAM=UPSTREAM)
@pytest.mark.parametrize("reason", ["", "   ", "ok", None])
@pytest.mark.parametrize("action", ["send_reset_link", "set_temporary_password", "unlock", "add_identifier",
                                    "remove_identifier", "link_identity", "unlink_identity", "resolve_pending",
                                    "merge", "end_sessions"])
def test_every_action_needs_a_reason_and_changes_nothing_without_one(app, person, other, actor, action, reason):
    person.failed_logins, person.locked_until = 3, utcnow() + dt.timedelta(minutes=5)
    identity = UpstreamIdentity(account_id=person.id, provider="mail", subject="sub-1", linked_by="mail",
                                linked_at=utcnow())
    pending = PendingLink(kind="exists", account_id=person.id, provider="mail", subject="sub-2", created_at=utcnow(),
                          expires_at=utcnow() + dt.timedelta(hours=1))
    db.session.add_all([identity, pending])
    db.session.commit()
    sso.start(person, policy(app), warn=False, client_ip=None)
    before, before_other = state(person), state(other)
    calls = {
        "send_reset_link": lambda: helpdesk.send_reset_link(person, PRIVATE, actor=actor, reason=reason,
                                                            policy=policy(app), lang="pl"),
        "set_temporary_password": lambda: helpdesk.set_temporary_password(person, TEMPORARY, actor=actor,
                                                                          reason=reason, policy=policy(app)),
        "unlock": lambda: helpdesk.unlock(person, actor=actor, reason=reason),
        "add_identifier": lambda: helpdesk.add_identifier(person, "alias", "new@example.edu.pl", actor=actor,
                                                          reason=reason),
        "remove_identifier": lambda: helpdesk.remove_identifier(person, person.identifiers[-1].id, actor=actor,
                                                                reason=reason),
        "link_identity": lambda: helpdesk.link_identity(person, "mail", "sub-3", None, actor=actor, reason=reason),
        "unlink_identity": lambda: helpdesk.unlink_identity(person, identity.id, actor=actor, reason=reason),
        "resolve_pending": lambda: helpdesk.resolve_pending(pending.id, "link", actor=actor, reason=reason),
        "merge": lambda: helpdesk.merge(person, other, actor=actor, reason=reason),
        "end_sessions": lambda: helpdesk.end_sessions(person, actor=actor, reason=reason),
    }
    with pytest.raises(helpdesk.ReasonRequired) as caught:
        calls[action]()
    assert caught.value.code == "reason_required"
    assert (state(person), state(other)) == (before, before_other)
    assert helpdesk_events() == []


# --- send a reset link ---------------------------------------------------------------------------------

def test_a_reset_link_goes_to_the_chosen_address_only(app, person, actor):
    assert recovery.destinations(person, policy(app)) == [USER]  # the policy's own choice would be USER
    with app.test_request_context():  # the link is built like the reset page builds it
        sent = helpdesk.send_reset_link(person, " Lukasz.Z@Example.com ", actor=actor, reason=WHY,
                                        policy=policy(app), lang="en")
    assert sent == PRIVATE
    [row] = outbox_rows()
    assert (row.to_addr, row.purpose, row.account_id) == (PRIVATE, "reset_link", person.id)
    state_ = recovery.check_link(token_of(queued_link(PRIVATE)), policy(app))
    assert (state_.status, state_.account) == ("ok", person)
    event = the_event("send_reset_link", person, actor)
    assert event.data["address"] == PRIVATE
    assert event.data["before"] == {"open_links": 0} and event.data["after"]["open_links"] == 1


def test_the_mail_is_the_one_the_reset_page_sends_and_older_links_end(app, person, actor):
    with app.test_request_context():
        assert recovery.request_reset(USER, policy(app), lang="en", client_ip=None).kind == "sent"
        first = token_of(queued_link(USER))
        helpdesk.send_reset_link(person, ALIAS, actor=actor, reason=WHY, policy=policy(app), lang="en")
    page_mail, helpdesk_mail = outbox_rows()
    assert helpdesk_mail.to_addr == ALIAS
    assert helpdesk_mail.subject == page_mail.subject
    assert helpdesk_mail.body_text.replace(link_in(helpdesk_mail.body_text), "LINK") == \
        page_mail.body_text.replace(link_in(page_mail.body_text), "LINK")
    assert recovery.check_link(first, policy(app)).status == "superseded"
    assert helpdesk_events("send_reset_link")[0].data["before"] == {"open_links": 1}


def test_a_reset_link_is_refused_to_an_address_not_of_the_account(app, person, other, actor):
    for address in ("anna@example.com", "stranger@example.com", ""):
        with pytest.raises(helpdesk.Refused) as caught:
            helpdesk.send_reset_link(person, address, actor=actor, reason=WHY, policy=policy(app), lang="pl")
        assert caught.value.code == "not_an_address"
    assert outbox_rows() == [] and helpdesk_events() == []


def test_a_reset_link_is_refused_for_a_person_who_left(app, actor):
    gone = create_account("31", status="left", university_email="gone@uni.example.edu.pl", private_email=None,
                          aliases=())
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.send_reset_link(gone, "gone@uni.example.edu.pl", actor=actor, reason=WHY, policy=policy(app),
                                 lang="pl")
    assert caught.value.code == "not_active"
    assert outbox_rows() == []


# --- temporary password --------------------------------------------------------------------------------

def test_a_temporary_password_works_must_be_changed_and_ends_sessions(app, person, actor):
    sso.start(person, policy(app), warn=False, client_ip=None)
    helpdesk.set_temporary_password(person, TEMPORARY, actor=actor, reason=WHY, policy=policy(app))
    db.session.expire_all()
    assert person.password_temporary is True
    assert authn.authenticate(USER, TEMPORARY, policy(app), client_ip=None).ok
    assert not authn.authenticate(USER, PASSWORD, policy(app), client_ip=None).ok
    assert live_sessions(person) == []
    event = the_event("set_temporary_password", person, actor)
    assert event.data["before"]["temporary"] is False and event.data["after"]["temporary"] is True
    assert TEMPORARY not in json.dumps([e.data for e in db.session.scalars(db.select(AuditEvent))])
    password_set = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "password.set"))
    assert (password_set.actor, password_set.reason) == ("helena@example.edu.pl", "temporary")


def test_a_weak_temporary_password_is_rejected_and_nothing_changes(app, person, actor):
    before = state(person)
    with pytest.raises(accounts.PasswordRejected):
        helpdesk.set_temporary_password(person, "abc", actor=actor, reason=WHY, policy=policy(app))
    assert state(person) == before
    assert helpdesk_events() == []


def test_a_temporary_password_also_lifts_a_lockout(app, person, actor):
    person.failed_logins, person.locked_until = 5, utcnow() + dt.timedelta(minutes=10)
    db.session.commit()
    helpdesk.set_temporary_password(person, TEMPORARY, actor=actor, reason=WHY, policy=policy(app))
    event = the_event("set_temporary_password", person, actor)
    assert event.data["before"]["failed_logins"] == 5 and event.data["after"]["locked_until"] is None


# --- unlock --------------------------------------------------------------------------------------------

@pytest.mark.policy(login__delay_after=0)  # the lockout at one moment, without the delays before it
def test_unlock_lifts_a_lockout(app, person, actor):
    for _ in range(policy(app).data["login"]["lockout_threshold"]):
        authn.authenticate(USER, "wrong", policy(app), client_ip=None)
    assert authn.authenticate(USER, PASSWORD, policy(app), client_ip=None).reason == "locked"
    until = person.locked_until
    helpdesk.unlock(person, actor=actor, reason=WHY)
    assert authn.authenticate(USER, PASSWORD, policy(app), client_ip=None).ok
    [event] = helpdesk_events()
    assert event.action == "helpdesk.unlock" and event.data["why"] == WHY
    assert event.data["before"] == {"locked_until": until.isoformat(timespec="seconds"),
                                    "failed_logins": policy(app).data["login"]["lockout_threshold"],
                                    "lockouts": 1, "locked_permanently": False}
    assert event.data["after"] == {"locked_until": None, "failed_logins": 0, "lockouts": 0,
                                   "locked_permanently": False}


def test_unlock_clears_a_run_of_wrong_passwords_below_the_threshold(app, person, actor):
    authn.authenticate(USER, "wrong", policy(app), client_ip=None)
    helpdesk.unlock(person, actor=actor, reason=WHY)
    assert db.session.get(Account, person.id).failed_logins == 0
    assert the_event("unlock", person, actor).data["before"]["failed_logins"] == 1


def test_unlock_is_refused_when_nothing_is_locked(app, person, actor, clock):
    person.locked_until, person.failed_logins = clock.now - dt.timedelta(minutes=1), 0  # ran out already
    db.session.commit()
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.unlock(person, actor=actor, reason=WHY)
    assert caught.value.code == "not_locked"
    assert helpdesk_events() == []


# --- identifiers ---------------------------------------------------------------------------------------

def test_an_added_alias_logs_in(app, person, actor):
    ident = helpdesk.add_identifier(person, "alias", "  L.Zolkiewski@Student.Example.edu.pl ", actor=actor, reason=WHY)
    assert (ident.kind, ident.value, ident.account_id) == ("alias", "l.zolkiewski@student.example.edu.pl", person.id)
    assert authn.authenticate("l.zolkiewski@student.example.edu.pl", PASSWORD, policy(app), client_ip=None).account \
        == person
    event = the_event("add_identifier", person, actor)
    assert event.data["identifier"] == {"kind": "alias", "value": "l.zolkiewski@student.example.edu.pl"}
    assert {"kind": "alias", "value": "l.zolkiewski@student.example.edu.pl"} in event.data["after"]["identifiers"]
    assert {"kind": "alias", "value": "l.zolkiewski@student.example.edu.pl"} not in event.data["before"]["identifiers"]


@pytest.mark.parametrize(("kind", "value", "code"), [
    ("alias", "anna@example.com", "taken"),
    ("private_email", "ANNA.NOWAK@student.example.edu.pl", "taken"),
    ("alias", ALIAS, "already_present"),
    ("alias", "not an address", "bad_address"),
    ("university_email", "", "bad_address"),
    ("album", "x@example.com", "bad_kind"),
])
def test_adding_an_identifier_is_refused(app, person, other, actor, kind, value, code):
    before = state(person)
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.add_identifier(person, kind, value, actor=actor, reason=WHY)
    assert caught.value.code == code
    if code == "taken":
        assert "777" in str(caught.value)  # the owner's album, so the helpdesk can look there
    assert state(person) == before and helpdesk_events() == []


def test_a_removed_identifier_no_longer_logs_in(app, person, actor):
    alias = next(i for i in person.identifiers if i.kind == "alias")
    assert helpdesk.remove_identifier(person, alias.id, actor=actor, reason=WHY) == ALIAS
    assert authn.authenticate(ALIAS, PASSWORD, policy(app), client_ip=None).reason == "unknown_identifier"
    event = the_event("remove_identifier", person, actor)
    assert event.data["identifier"] == {"kind": "alias", "value": ALIAS}
    assert len(event.data["before"]["identifiers"]) == 3 and len(event.data["after"]["identifiers"]) == 2


def test_removing_another_accounts_identifier_is_refused(app, person, other, actor):
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.remove_identifier(person, other.identifiers[0].id, actor=actor, reason=WHY)
    assert caught.value.code == "not_found"
    assert db.session.get(Identifier, other.identifiers[0].id) is not None


@pytest.mark.policy(login__identifiers=["university_email"])
def test_the_last_identifier_that_logs_in_is_not_removed(app, person, actor):
    university = next(i for i in person.identifiers if i.kind == "university_email")
    private = next(i for i in person.identifiers if i.kind == "private_email")
    helpdesk.remove_identifier(person, private.id, actor=actor, reason=WHY)  # does not log in anyway: fine
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.remove_identifier(person, university.id, actor=actor, reason=WHY)
    assert caught.value.code == "last_way_to_log_in"
    assert authn.authenticate(USER, PASSWORD, policy(app), client_ip=None).ok


def test_with_album_login_the_last_address_may_go(app, actor):
    account = create_account("4242", university_email="only@uni.example.edu.pl", private_email=None, aliases=())
    helpdesk.remove_identifier(account, account.identifiers[0].id, actor=actor, reason=WHY)
    assert authn.authenticate("4242", PASSWORD, policy(app), client_ip=None).ok


# --- upstream identities ------------------------------------------------------------------------------

@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_link_an_upstream_identity(app, person, actor):
    waiting = PendingLink(kind="exists", account_id=person.id, provider="mail", subject="sub-1", created_at=utcnow(),
                          expires_at=utcnow() + dt.timedelta(hours=1))
    db.session.add(waiting)
    db.session.commit()
    identity = helpdesk.link_identity(person, "mail", " sub-1 ", "Lukasz@Mail.example", actor=actor, reason=WHY)
    assert (identity.account_id, identity.subject, identity.email, identity.linked_by) == \
        (person.id, "sub-1", "lukasz@mail.example", "helpdesk")
    assert db.session.get(PendingLink, waiting.id).resolution == "linked"
    event = the_event("link_identity", person, actor)
    assert event.data["before"] == {"identities": []}
    assert event.data["after"]["identities"] == [{"id": identity.id, "provider": "mail",
                                                  "email": "lukasz@mail.example"}]
    linked = db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "upstream.linked"))
    assert (linked.actor, linked.reason) == ("helena@example.edu.pl", "helpdesk")


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_linking_is_refused_for_an_unknown_provider_or_someone_elses_identity(app, person, other, actor):
    helpdesk.link_identity(other, "mail", "sub-1", None, actor=actor, reason=WHY)
    cases = [("google", "sub-9", "unknown_provider"), ("mail", "  ", "bad_subject"), ("mail", "sub-1", "taken")]
    for provider, subject, code in cases:
        with pytest.raises(helpdesk.Refused) as caught:
            helpdesk.link_identity(person, provider, subject, None, actor=actor, reason=WHY)
        assert caught.value.code == code
        if code == "taken":
            assert "777" in str(caught.value)  # the album of the account that has it
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.link_identity(other, "mail", "sub-1", None, actor=actor, reason=WHY)
    assert caught.value.code == "already_linked"
    assert len(helpdesk_events()) == 1


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_unlink_an_upstream_identity(app, person, actor):
    identity = helpdesk.link_identity(person, "mail", "sub-1", "l@mail.example", actor=actor, reason=WHY)
    helpdesk.unlink_identity(person, identity.id, actor=actor, reason=WHY)
    assert db.session.scalars(db.select(UpstreamIdentity)).all() == []
    event = helpdesk_events("unlink_identity")[0]
    assert event.data["before"]["identities"] == [{"id": identity.id, "provider": "mail", "email": "l@mail.example"}]
    assert event.data["after"] == {"identities": []}
    assert event.data["identity"]["provider"] == "mail"


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_the_only_way_to_log_in_is_not_unlinked(app, person, other, actor):
    lone = create_account("5050", password=None, university_email="lone@uni.example.edu.pl", private_email=None,
                          aliases=())
    identity = helpdesk.link_identity(lone, "mail", "sub-1", None, actor=actor, reason=WHY)
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.unlink_identity(lone, identity.id, actor=actor, reason=WHY)
    assert caught.value.code == "last_way_to_log_in"
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.unlink_identity(person, identity.id, actor=actor, reason=WHY)  # not this account's link
    assert caught.value.code == "not_found"
    assert db.session.get(UpstreamIdentity, identity.id) is not None
    assert [e.action for e in helpdesk_events()] == ["helpdesk.link_identity"]


# --- pending links -------------------------------------------------------------------------------------

def _pending(account: Account | None, subject: str, kind: str = "exists", email: str | None = None) -> PendingLink:
    row = PendingLink(kind=kind, account_id=account.id if account else None, provider="mail", subject=subject,
                      email=email, created_at=utcnow(), expires_at=utcnow() + dt.timedelta(hours=1))
    db.session.add(row)
    db.session.commit()
    return row


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_a_pending_link_is_linked_to_its_account(app, person, actor):
    waiting = _pending(person, "sub-1", email="l@mail.example")
    resolved = helpdesk.resolve_pending(waiting.id, "link", actor=actor, reason=WHY)
    assert resolved.resolution == "linked"
    identity = db.session.scalar(db.select(UpstreamIdentity))
    assert (identity.account_id, identity.subject, identity.linked_by) == (person.id, "sub-1", "helpdesk")
    event = the_event("resolve_pending", person, actor)
    assert (event.data["decision"], event.data["pending"]) == ("link", waiting.id)
    assert event.data["before"]["resolution"] is None and event.data["after"]["resolution"] == "linked"


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_a_not_recognized_login_is_linked_to_the_account_the_helpdesk_names(app, person, actor):
    waiting = _pending(None, "sub-2", kind="unknown", email="someone@gmail.example")
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.resolve_pending(waiting.id, "link", actor=actor, reason=WHY)
    assert caught.value.code == "no_account"
    helpdesk.resolve_pending(waiting.id, "link", actor=actor, reason=WHY, account=person)
    assert db.session.scalar(db.select(UpstreamIdentity)).account_id == person.id
    assert the_event("resolve_pending", person, actor).data["after"]["account_id"] == person.id


def test_a_pending_link_is_rejected_and_then_is_decided(app, person, actor):
    waiting = _pending(person, "sub-3")
    assert helpdesk.resolve_pending(waiting.id, "reject", actor=actor, reason=WHY).resolution == "rejected"
    assert db.session.scalars(db.select(UpstreamIdentity)).all() == []
    assert the_event("resolve_pending", person, actor).data["after"]["resolution"] == "rejected"
    for decision, code in (("link", "resolved"), ("reject", "resolved"), ("maybe", "bad_decision")):
        with pytest.raises(helpdesk.Refused) as caught:
            helpdesk.resolve_pending(waiting.id, decision, actor=actor, reason=WHY)
        assert caught.value.code == code
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.resolve_pending(987654, "reject", actor=actor, reason=WHY)
    assert caught.value.code == "not_found"
    assert len(helpdesk_events()) == 1


@pytest.mark.settings(UPSTREAM=UPSTREAM)
def test_a_pending_link_whose_identity_another_account_has_is_refused(app, person, other, actor):
    helpdesk.link_identity(other, "mail", "sub-4", None, actor=actor, reason=WHY)
    waiting = _pending(person, "sub-4")
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.resolve_pending(waiting.id, "link", actor=actor, reason=WHY)
    assert caught.value.code == "taken" and "777" in str(caught.value)
    assert db.session.get(PendingLink, waiting.id).resolution is None


# --- sessions ------------------------------------------------------------------------------------------

def test_end_one_session_then_all(app, person, actor):
    first = sso.start(person, policy(app), warn=False, client_ip=None).session
    second = sso.start(person, policy(app), warn=False, client_ip=None).session
    sids = sorted([first.sid, second.sid])
    assert helpdesk.end_sessions(person, actor=actor, reason=WHY, sid=first.sid) == 1
    assert [s.sid for s in live_sessions(person)] == [second.sid]
    event = the_event("end_sessions", person, actor)
    assert sorted(event.data["before"]["sessions"]) == sids
    assert event.data["after"]["sessions"] == [second.sid] and event.data["ended"] == [first.sid]
    ended = db.session.get(SsoSession, first.id)
    assert ended.end_reason == "ended_by_helpdesk"
    assert helpdesk.end_sessions(person, actor=actor, reason=WHY) == 1
    assert live_sessions(person) == []
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "sso.ended")
                             .order_by(AuditEvent.id.desc()).limit(1)).actor == "helena@example.edu.pl"


def test_ending_sessions_that_do_not_exist_is_refused(app, person, other, actor):
    theirs = sso.start(other, policy(app), warn=False, client_ip=None).session
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.end_sessions(person, actor=actor, reason=WHY)
    assert caught.value.code == "no_sessions"
    sso.start(person, policy(app), warn=False, client_ip=None)
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.end_sessions(person, actor=actor, reason=WHY, sid=theirs.sid)  # someone else's session
    assert caught.value.code == "not_found"
    assert len(live_sessions(other)) == 1 and helpdesk_events() == []


def test_an_api_actor_is_recorded_as_such(app, person, staffer):
    person.failed_logins = 2
    db.session.commit()
    helpdesk.unlock(person, actor=helpdesk.Actor.of(staffer, client_ip=None, via="api"), reason=WHY)
    [event] = helpdesk_events()
    assert (event.actor, event.data["via"], event.client_ip) == ("helena@example.edu.pl", "api", None)


def test_no_outbox_message_is_queued_by_actions_that_send_none(app, person, actor):
    person.failed_logins = 2
    db.session.commit()
    helpdesk.unlock(person, actor=actor, reason=WHY)
    helpdesk.add_identifier(person, "alias", "x@student.example.edu.pl", actor=actor, reason=WHY)
    assert db.session.scalars(db.select(OutboxMessage)).all() == []
