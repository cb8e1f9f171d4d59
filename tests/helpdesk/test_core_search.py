"""The helpdesk's search (album, address, alias, name without diacritics, PESEL by keyed hash, reference
code) and the person overview (core/helpdesk.py)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from idp.core import audit, authn, helpdesk, registry, sso
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.core.provisioning import import_csv
from idp.extensions import db
from idp.models import Account, AuditEvent, PendingLink, UpstreamIdentity
from tests.conftest import SERVICES, USOSWEB
from tests.core.helpers import csv_bytes, make_pesel, person
from tests.factories import PASSWORD, PESEL, create_account


def find(app, query: str, **kwargs) -> helpdesk.SearchResult:
    return helpdesk.search(query, pesel_key=app.config["PESEL_KEY"], **kwargs)


def albums(result: helpdesk.SearchResult) -> list[str]:
    return [a.album for a in result.accounts]


def policy(app):
    return app.extensions["idp.policy"]


@pytest.fixture
def people(app):
    """Three people with distinct names, addresses and PESELs."""
    return [
        create_account("12345"),  # Łukasz Żółkiewski (factories' defaults)
        create_account("A77b", first_name="Łukasz", last_name="Żółć", university_email="lukasz.zolc@uni.example.edu.pl",
                       private_email="lz@example.com", aliases=("zolc@uni.example.edu.pl",),
                       pesel=make_pesel(dt.date(1999, 5, 17))),
        create_account("30001", first_name="Anna", last_name="Nowak", university_email="anna.nowak@uni.example.edu.pl",
                       private_email=None, aliases=(), pesel=make_pesel(dt.date(2001, 2, 3), "4562")),
    ]


# --- search -------------------------------------------------------------------------------------------

def test_an_album_number_is_found_exactly_and_case_insensitively(app, people):
    result = find(app, "a77B")
    assert (result.kind, albums(result), result.total) == ("album", ["A77b"], 1)
    assert find(app, " 12345 ").accounts == [people[0]]
    missing = find(app, "1234")  # no prefix match on albums
    assert (missing.kind, missing.accounts, missing.total) == ("album", [], 0)


@pytest.mark.parametrize("query", ["lukasz.zolc@uni.example.edu.pl", "LZ@Example.com", "  zolc@uni.example.edu.pl "])
def test_any_address_or_alias_finds_its_account(app, people, query):
    result = find(app, query)
    assert (result.kind, albums(result)) == ("identifier", ["A77b"])


def test_an_address_of_a_linked_upstream_identity_finds_the_account(app, people):
    db.session.add(UpstreamIdentity(account_id=people[2].id, provider="mail", subject="sub-1",
                                    email="anna@gmail.example", linked_by="password", linked_at=utcnow()))
    db.session.commit()
    assert albums(find(app, "Anna@Gmail.example")) == ["30001"]
    assert find(app, "nobody@example.com").accounts == []


@pytest.mark.parametrize("query", ["lukasz zolc", "ŁUKASZ ŻÓŁĆ", "zolc lukasz", "żółć", "zol  luk"])
def test_a_name_is_found_without_diacritics_every_word_anywhere(app, people, query):
    result = find(app, query)
    assert result.kind == "name"
    assert "A77b" in albums(result)
    assert "30001" not in albums(result)


def test_a_name_search_is_ordered_by_last_then_first_name_and_paginated(app, people):
    for n, (first, last) in enumerate([("Zenon", "Kowalski"), ("Ewa", "Kowalczyk"), ("Adam", "Kowalski"),
                                       ("Anna", "Kowalska")]):
        create_account(f"4000{n}", first_name=first, last_name=last, university_email=f"k{n}@uni.example.edu.pl",
                       private_email=None, aliases=(), pesel=None)
    everyone = find(app, "kowal")
    assert everyone.total == 4
    assert albums(everyone) == ["40001", "40003", "40002", "40000"]
    first = find(app, "kowal", limit=3)
    second = find(app, "kowal", limit=3, offset=3)
    assert (albums(first), first.total) == (["40001", "40003", "40002"], 4)
    assert (albums(second), second.total) == (["40000"], 4)
    assert albums(find(app, "kowalski ad")) == ["40002"]  # every word must match: Adam, not Zenon


def test_wildcards_in_a_name_are_taken_literally(app, people):
    assert find(app, "%").accounts == []
    assert find(app, "_").accounts == []


def test_a_pesel_is_compared_by_its_keyed_hash_and_never_kept(app, people):
    result = find(app, PESEL)
    assert (result.kind, albums(result)) == ("pesel", ["12345"])
    # Nothing anywhere holds the PESEL itself: not the accounts, not the audit log.
    for event in db.session.scalars(db.select(AuditEvent)):
        assert PESEL not in json.dumps(audit.as_dict(event))
    for account in db.session.scalars(db.select(Account)):
        assert PESEL not in json.dumps({c.name: str(getattr(account, c.name)) for c in Account.__table__.columns})


def test_a_valid_pesel_of_nobody_finds_nobody_and_a_wrong_check_digit_is_an_album(app, people):
    nobody = make_pesel(dt.date(1980, 1, 1))
    assert (find(app, nobody).kind, find(app, nobody).accounts) == ("pesel", [])
    wrong = PESEL[:10] + str((int(PESEL[10]) + 1) % 10)
    assert find(app, wrong).kind == "album"


def test_two_accounts_with_one_pesel_are_both_found(app, people):
    create_account("99999", first_name="Łukasz", last_name="Żółkiewski", university_email="lz2@uni.example.edu.pl",
                   private_email=None, aliases=())  # the same PESEL: one person imported twice
    assert albums(find(app, PESEL)) == ["12345", "99999"]


def test_a_reference_code_finds_the_event_and_its_account(app, people):
    failed = authn.authenticate("lz@example.com", "wrong", policy(app), client_ip="10.0.0.9")
    assert failed.reason == "unknown_identifier"  # private addresses do not log in under this policy
    failed = authn.authenticate("zolc@uni.example.edu.pl", "wrong", policy(app), client_ip="10.0.0.9")
    code = audit.reference(failed.event)
    result = find(app, code.lower())
    assert (result.kind, albums(result), result.event) == ("reference", ["A77b"], failed.event)
    nobody = authn.authenticate("ghost@example.com", "x", policy(app), client_ip=None)
    result = find(app, audit.reference(nobody.event))
    assert (result.kind, result.accounts, result.event) == ("reference", [], nobody.event)
    assert (find(app, "E999999").kind, find(app, "E999999").accounts) == ("reference", [])


def test_an_empty_query_finds_nothing(app, people):
    assert find(app, "   ") == helpdesk.SearchResult("empty", [], 0)


def test_a_merged_account_is_still_found_by_its_album(app, people):
    actor = helpdesk.Actor("helpdesk@example.edu.pl", None, None, "console")
    helpdesk.merge(people[0], people[1], actor=actor, reason="one person, two records")
    assert albums(find(app, "A77b")) == ["A77b"]
    assert albums(find(app, "lz@example.com")) == ["12345"]  # its addresses moved to the survivor


# --- overview -----------------------------------------------------------------------------------------

def test_overview_of_an_active_person(app, person):
    view = helpdesk.overview(person, policy(app))
    assert view.status == ["active"]
    assert (view.locked_until, view.left_at, view.merged_into, view.merged_from) == (None, None, None, [])
    assert view.roles == set()
    assert view.addresses == ["lukasz.zolkiewski@student.example.edu.pl", "lukasz.z@example.com",
                              "s12345@student.example.edu.pl"]
    assert (view.identities, view.pending, view.sessions, view.last_import) == ([], [], [], None)


@pytest.mark.policy(login__delay_after=0)  # the lockout at one moment, without the delays before it
def test_overview_status_locked_temporary_and_leaving(app, clock):
    account = create_account("55555", temporary=True, university_email="t@uni.example.edu.pl", private_email=None,
                             aliases=())
    for _ in range(policy(app).data["login"]["lockout_threshold"]):
        authn.authenticate("t@uni.example.edu.pl", "wrong", policy(app), client_ip=None)
    account.left_at = clock.now
    db.session.commit()
    view = helpdesk.overview(account, policy(app))
    assert view.status == ["active", "left_grace", "locked", "temporary_password"]
    assert view.locked_until == account.locked_until and view.locked_until > clock.now
    assert view.failed_streak == policy(app).data["login"]["lockout_threshold"]
    assert [(e.action, e.reason) for e in view.events][:2] == [("login.failed", "wrong_password"),
                                                               ("account.locked", "too_many_wrong_passwords")]
    clock.advance(days=policy(app).data["migration"]["left_grace_days"] + 1)
    assert helpdesk.overview(account, policy(app)).status[0] == "left"
    no_password = create_account("55556", password=None, university_email=None, private_email=None, aliases=())
    assert helpdesk.overview(no_password, policy(app)).status == ["active", "no_password"]


def test_overview_lists_entitlements_sessions_pending_and_the_last_import(app, clock):
    registry.replace_all([dict(s) for s in SERVICES] + [
        {"name": "Wirtualny Dziekanat", "protocol": "cas", "service_pattern": r"^https://wd\.example\.edu\.pl/.*",
         "requires_entitlement": True, "default_roles": ["teacher"]},
        {"name": "Biblioteka", "protocol": "cas", "service_pattern": r"^https://lib\.example\.edu\.pl/.*",
         "requires_entitlement": True, "default_roles": ["student"]}])
    result = import_csv(csv_bytes([person(1)]), "people.csv", app.config["PESEL_KEY"], now=clock.now)
    assert result.ok
    account = db.session.scalar(db.select(Account).where(Account.album == "1001"))
    account.password_hash = hasher().hash(PASSWORD)
    db.session.commit()
    started = sso.start(account, policy(app), warn=False, client_ip="10.1.1.1")
    sso.add_participant(started.session, service_id=None, service_name="USOSweb", service_url=USOSWEB,
                        ticket="ST-1", now=clock.now)
    db.session.commit()
    waiting = PendingLink(kind="unknown", provider="mail", subject="s-9", email="jk1@example.com",
                          created_at=clock.now, expires_at=clock.now + dt.timedelta(days=30))
    done = PendingLink(kind="exists", account_id=account.id, provider="mail", subject="s-8", created_at=clock.now,
                       expires_at=clock.now + dt.timedelta(days=1), resolution="linked", resolved_at=clock.now)
    db.session.add_all([waiting, done])
    db.session.commit()

    view = helpdesk.overview(account, policy(app))
    assert [(s.name, ok) for s, ok in view.entitlements] == [("Biblioteka", True), ("Wirtualny Dziekanat", False)]
    assert view.last_import is not None and view.last_import.id == result.run.id
    assert view.pending == [waiting]
    [(session, apps)] = view.sessions
    assert session.id == started.session.id and [p.service_name for p in apps] == ["USOSweb"]
    assert authn.authenticate("1001", PASSWORD, policy(app), client_ip=None).ok
    assert helpdesk.overview(account, policy(app)).events[0].action == "login.succeeded"
