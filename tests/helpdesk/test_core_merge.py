"""Merging two accounts of one person (core/helpdesk.merge): what moves to the survivor, that the merged
account no longer logs in, and that the next SIS import still accepts a file listing the merged album."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import authn, helpdesk, sso, staff
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.core.provisioning import import_csv
from idp.extensions import db
from idp.models import (
    Account,
    ApiToken,
    AuditEvent,
    OAuthToken,
    PendingLink,
    ResetRequest,
    SsoSession,
    UpstreamIdentity,
)
from tests.core.helpers import csv_bytes, person
from tests.factories import PASSWORD

WHY = "the same student imported twice (ticket #88)"
OTHER_PASSWORD = "Parowóz-Klarnet-Zima-1954"
ACTOR = helpdesk.Actor("helena@example.edu.pl", None, "10.9.8.7", "console")


def policy(app):
    return app.extensions["idp.policy"]


def load(album: str) -> Account:
    db.session.expire_all()
    return db.session.scalar(db.select(Account).where(Account.album == album))


def run_import(app, rows, now=None):
    return import_csv(csv_bytes(rows), "people.csv", app.config["PESEL_KEY"], now=now)


@pytest.fixture
def pair(app):
    """Two accounts of one person from the SIS: 1001 (survivor, password PASSWORD) and 1002 (to merge)."""
    result = run_import(app, [person(1), person(2)])
    assert result.ok, result.errors
    survivor, other = load("1001"), load("1002")
    survivor.password_hash = hasher().hash(PASSWORD)
    other.password_hash = hasher().hash(OTHER_PASSWORD)
    db.session.commit()
    return survivor, other


def test_merge_moves_identifiers_links_pending_and_history(app, pair):
    survivor, other = pair
    now = utcnow()
    db.session.add_all([
        UpstreamIdentity(account_id=other.id, provider="mail", subject="sub-2", email="jk2@mail.example",
                         linked_by="mail", linked_at=now),
        PendingLink(kind="exists", account_id=other.id, provider="mail", subject="sub-9", created_at=now,
                    expires_at=now + dt.timedelta(hours=1)),
    ])
    db.session.commit()
    authn.authenticate("jan.kowalski2@student.example.edu.pl", "wrong", policy(app), client_ip=None)
    history = db.session.scalar(db.select(db.func.count(AuditEvent.id)).where(AuditEvent.account_id == other.id))
    assert history >= 1

    moved = helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)

    survivor, other = load("1001"), load("1002")
    assert sorted(i.value for i in survivor.identifiers) == sorted([
        "jan.kowalski1@student.example.edu.pl", "jk1@example.com", "s1001@student.example.edu.pl",
        "jan.kowalski2@student.example.edu.pl", "jk2@example.com", "s1002@student.example.edu.pl"])
    # the survivor's own addresses stay first of their kind (what `mail` and the canonical username read)
    assert survivor.identifier("university_email") == "jan.kowalski1@student.example.edu.pl"
    assert survivor.identifier("private_email") == "jk1@example.com"
    assert other.identifiers == []
    assert [i.subject for i in db.session.scalars(db.select(UpstreamIdentity)
                                                  .where(UpstreamIdentity.account_id == survivor.id))] == ["sub-2"]
    assert db.session.scalar(db.select(PendingLink)).account_id == survivor.id
    assert db.session.scalar(db.select(db.func.count(AuditEvent.id)).where(AuditEvent.account_id == other.id)) == 0
    assert (other.merged_into_id, other.status, other.password_hash) == (survivor.id, "merged", None)
    assert survivor.password_hash is not None and survivor.status == "active"
    assert sorted(moved["identifiers"]) == ["jan.kowalski2@student.example.edu.pl", "jk2@example.com",
                                            "s1002@student.example.edu.pl"]
    assert len(moved["identities"]) == 1 and len(moved["pending"]) == 1 and moved["events"] >= history

    [event] = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action.startswith("helpdesk.")))
    assert (event.action, event.actor, event.account_id, event.client_ip) == \
        ("helpdesk.merge", "helena@example.edu.pl", survivor.id, "10.9.8.7")
    assert (event.data["why"], event.data["via"]) == (WHY, "console")
    assert event.data["other"] == {"id": other.id, "album": "1002"}
    assert event.data["before"]["other"]["status"] == "active" and event.data["after"]["other"]["status"] == "merged"
    assert len(event.data["before"]["survivor"]["identifiers"]) == 3
    assert len(event.data["after"]["survivor"]["identifiers"]) == 6
    assert event.data["moved"]["identifiers"] == moved["identifiers"]


def test_the_merged_account_no_longer_logs_in_and_its_addresses_log_into_the_survivor(app, pair):
    survivor, other = pair
    assert authn.authenticate("1002", OTHER_PASSWORD, policy(app), client_ip=None).account == other
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    for identifier in ("1002", "jan.kowalski2@student.example.edu.pl", "s1002@student.example.edu.pl"):
        assert not authn.authenticate(identifier, OTHER_PASSWORD, policy(app), client_ip=None).ok
    assert authn.authenticate("1002", PASSWORD, policy(app), client_ip=None).reason == "unknown_identifier"
    for identifier in ("jan.kowalski2@student.example.edu.pl", "s1002@student.example.edu.pl", "1001"):
        result = authn.authenticate(identifier, PASSWORD, policy(app), client_ip=None)
        assert result.ok and result.account.id == survivor.id


def test_the_merged_accounts_sessions_tokens_and_links_end(app, pair):
    survivor, other = pair
    session = sso.start(other, policy(app), warn=False, client_ip=None).session
    kept = sso.start(survivor, policy(app), warn=False, client_ip=None).session
    now = utcnow()
    db.session.add_all([
        OAuthToken(client_id="app", account_id=other.id, access_token_hash="a" * 64, refresh_token_hash="r" * 64,
                   issued_at=now, access_expires_at=now + dt.timedelta(hours=1), family="f1"),
        ResetRequest(account_id=other.id, created_at=now, expires_at=now + dt.timedelta(hours=1)),
    ])
    db.session.commit()
    staff.grant(other, "helpdesk", actor="cli")
    token = staff.create_token(other, "script", actor="cli").token

    assert helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)["sessions"] == 1

    db.session.expire_all()
    ended = db.session.get(SsoSession, session.id)
    assert (ended.ended_at is not None, ended.end_reason) == (True, "merged")
    assert db.session.get(SsoSession, kept.id).ended_at is None
    assert db.session.scalar(db.select(OAuthToken)).revoked_at is not None
    assert db.session.get(ApiToken, token.id).revoked_at is not None
    assert db.session.scalar(db.select(ResetRequest)).ended_reason == "merged"
    # the session's end is part of the history that moved to the survivor
    assert db.session.scalar(db.select(AuditEvent).where(AuditEvent.action == "sso.ended")).account_id == survivor.id


def test_merge_refuses_itself_and_merged_accounts(app, pair):
    survivor, other = pair
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.merge(survivor, survivor, actor=ACTOR, reason=WHY)
    assert caught.value.code == "same_account"
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    third = load("1001")
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.merge(load("1002"), third, actor=ACTOR, reason=WHY)  # into a merged account
    assert caught.value.code == "merged"
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.merge(third, load("1002"), actor=ACTOR, reason=WHY)  # an already merged one again
    assert caught.value.code == "merged"
    assert db.session.scalar(db.select(db.func.count(AuditEvent.id))
                             .where(AuditEvent.action == "helpdesk.merge")) == 1


def test_a_merge_into_an_account_that_is_merged_later_points_at_the_last_survivor(app):
    assert run_import(app, [person(1), person(2), person(3)]).ok
    helpdesk.merge(load("1002"), load("1003"), actor=ACTOR, reason=WHY)
    helpdesk.merge(load("1001"), load("1002"), actor=ACTOR, reason=WHY)
    first = load("1001")
    assert load("1003").merged_into_id == first.id and load("1002").merged_into_id == first.id
    assert len(first.identifiers) == 9
    view = helpdesk.overview(first, policy(app))
    assert [a.album for a in view.merged_from] == ["1002", "1003"]
    merged_view = helpdesk.overview(load("1003"), policy(app))
    assert merged_view.status[0] == "merged" and merged_view.merged_into.album == "1001"


def test_actions_on_a_merged_account_are_refused(app, pair):
    survivor, other = pair
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    other = load("1002")
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.set_temporary_password(other, OTHER_PASSWORD, actor=ACTOR, reason=WHY, policy=policy(app))
    assert caught.value.code == "merged"
    with pytest.raises(helpdesk.Refused) as caught:
        helpdesk.add_identifier(other, "alias", "new@example.edu.pl", actor=ACTOR, reason=WHY)
    assert caught.value.code == "merged"


# --- the next SIS import ------------------------------------------------------------------------------

def test_an_import_listing_the_merged_album_is_accepted(app, pair, clock):
    survivor, other = pair
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    before = sorted((i.kind, i.value) for i in load("1001").identifiers)

    result = run_import(app, [person(1), person(2), person(3)], now=clock.now)

    assert result.ok, [str(e) for e in result.errors]
    # the survivor counts as updated once: the export lists the moved addresses, so they are the SIS's again
    assert (result.added, result.updated, result.unchanged, result.left) == (1, 1, 1, 0)
    survivor, other = load("1001"), load("1002")
    assert sorted((i.kind, i.value) for i in survivor.identifiers) == before  # moved addresses stay
    assert (other.status, other.merged_into_id, other.password_hash, other.identifiers) == \
        ("merged", survivor.id, None, [])
    assert other.left_at is None and survivor.left_at is None
    assert authn.authenticate("jk2@example.com", PASSWORD, policy(app), client_ip=None).account is None  # policy
    assert authn.authenticate("s1002@student.example.edu.pl", PASSWORD, policy(app), client_ip=None).account \
        == survivor
    assert authn.authenticate("1002", OTHER_PASSWORD, policy(app), client_ip=None).reason == "unknown_identifier"
    assert run_import(app, [person(1), person(2), person(3)]).unchanged == 3  # and again: nothing to do


def test_a_new_address_on_the_merged_albums_row_goes_to_the_survivor(app, pair):
    survivor, other = pair
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    result = run_import(app, [person(1), person(2, aliases="s1002@student.example.edu.pl;jk.new@student.example.edu.pl")])
    assert result.ok, [str(e) for e in result.errors]
    assert "jk.new@student.example.edu.pl" in [i.value for i in load("1001").identifiers]
    assert load("1002").identifiers == []


def test_the_survivor_listed_only_under_the_merged_album_has_not_left(app, pair):
    survivor, other = pair
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    result = run_import(app, [person(2)])
    assert result.ok, [str(e) for e in result.errors]
    assert (result.unchanged, result.left) == (1, 0)
    assert load("1001").left_at is None and load("1002").status == "merged"


def test_the_merged_albums_address_still_belongs_to_nobody_else(app, pair):
    survivor, other = pair
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    # a new person's row with an address the survivor now has is still refused, naming the survivor
    result = run_import(app, [person(1), person(2), person(4, private_email="jk2@example.com")])
    assert not result.ok
    assert "line 4: jk2@example.com belongs to another account (album 1001)" in [str(e) for e in result.errors]
    assert load("1002").status == "merged" and load("1004") is None


def test_the_survivors_and_the_merged_albums_rows_may_share_an_address(app, pair):
    survivor, other = pair
    helpdesk.merge(survivor, other, actor=ACTOR, reason=WHY)
    # the SIS now gives the survivor the address the old record had: one person, not a conflict
    result = run_import(app, [person(1, private_email="jk2@example.com"), person(2)])
    assert result.ok, [str(e) for e in result.errors]
    survivor = load("1001")
    assert survivor.identifier("private_email") == "jk2@example.com"
    assert "jk1@example.com" not in [i.value for i in survivor.identifiers]
    assert "jan.kowalski2@student.example.edu.pl" in [i.value for i in survivor.identifiers]
    # two different people's rows sharing an address are still refused
    assert not run_import(app, [person(1), person(3, private_email="jk1@example.com")]).ok
