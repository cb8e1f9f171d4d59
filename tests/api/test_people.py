"""Finding people and reading their situation through the API: what the console's person page shows, as
JSON — never a PESEL, its hash, a birth date or a password hash."""
from __future__ import annotations

import datetime as dt

from idp.core import audit, sso
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import PendingLink, UpstreamIdentity
from tests.factories import PESEL, create_account


def test_search_by_album(api, person):
    body = api.get("/people", query_string={"q": "12345"}).get_json()
    assert body["kind"] == "album" and body["total"] == 1
    assert body["items"] == [{"album": "12345", "name": "Łukasz Żółkiewski", "first_name": "Łukasz",
                              "last_name": "Żółkiewski", "role": "student", "status": "active",
                              "university_email": "lukasz.zolkiewski@student.example.edu.pl",
                              "merged_into": False}]


def test_search_by_alias_and_by_name_without_diacritics(api, person):
    assert api.get("/people", query_string={"q": "S12345@student.example.edu.pl"}).get_json()["items"][0][
        "album"] == "12345"
    body = api.get("/people", query_string={"q": "zolkiewski lukasz"}).get_json()
    assert body["kind"] == "name" and [p["album"] for p in body["items"]] == ["12345"]


def test_search_by_pesel_does_not_echo_it(api, person):
    r = api.get("/people", query_string={"q": PESEL})
    assert r.get_json()["kind"] == "pesel" and r.get_json()["total"] == 1
    assert PESEL not in r.get_data(as_text=True)


def test_search_by_pesel_in_the_body_keeps_it_out_of_the_url(api, person):
    r = api.post("/people/search", json={"q": PESEL})
    assert r.status_code == 200
    assert r.get_json()["kind"] == "pesel" and r.get_json()["items"][0]["album"] == "12345"
    assert PESEL not in r.get_data(as_text=True)
    bad = api.post("/people/search", json={"query": PESEL})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_request"


def test_search_by_reference_code(api, person):
    event = audit.record("login.failed", account_id=person.id, reason="wrong_password")
    body = api.get("/people", query_string={"q": audit.reference(event)},
                   headers={"Accept-Language": "en"}).get_json()
    assert body["kind"] == "reference" and body["items"][0]["album"] == "12345"
    assert body["event"]["reference"] == audit.reference(event)
    assert body["event"]["reason_words"] == "wrong password"
    # the words follow Accept-Language; the policy's language (Polish) without one
    polish = api.get("/people", query_string={"q": audit.reference(event)}).get_json()
    assert polish["event"]["reason_words"] == "błędne hasło"


def test_search_pages(api, app):
    for n in range(7):
        create_account(f"2000{n}", first_name="Anna", last_name=f"Nowak{n}", university_email=None,
                       private_email=None, aliases=(), pesel=None)
    first = api.get("/people", query_string={"q": "anna nowak", "per_page": 3}).get_json()
    assert (first["total"], first["pages"], first["page"]) == (7, 3, 1)
    last = api.get("/people", query_string={"q": "anna nowak", "per_page": 3, "page": 3}).get_json()
    assert [p["album"] for p in last["items"]] == ["20006"]
    assert api.get("/people", query_string={"q": "anna", "page": "x"}).status_code == 400


def test_empty_search(api, person):
    assert api.get("/people").get_json() == {"kind": "empty", "total": 0, "page": 1, "per_page": 25, "pages": 1,
                                             "items": [], "event": None}


def test_person_overview(api, app, person, clock):
    policy = app.extensions["idp.policy"]
    person.failed_logins = 10
    person.locked_until = clock.now + dt.timedelta(minutes=15)
    person.password_temporary = True
    db.session.add(UpstreamIdentity(account_id=person.id, provider="mail", subject="sub-1", email=None,
                                    linked_by="import", linked_at=clock.now))
    db.session.add(PendingLink(kind="exists", account_id=person.id, provider="mail", subject="sub-2",
                               email="lukasz.z@example.com", created_at=clock.now,
                               expires_at=clock.now + dt.timedelta(hours=1)))
    db.session.commit()
    started = sso.start(person, policy, warn=False, client_ip="192.0.2.5")
    sso.add_participant(started.session, service_id=None, service_name="USOSweb",
                        service_url="https://usosweb.example.edu.pl/", ticket="ST-1-secret", now=clock.now)
    db.session.commit()
    audit.record("login.failed", account_id=person.id, reason="wrong_password", client_ip="192.0.2.5")

    r = api.get("/people/12345", headers={"Accept-Language": "en"})
    body = r.get_json()
    assert body["album"] == "12345" and body["name"] == "Łukasz Żółkiewski"
    assert body["status"] == ["active", "locked", "temporary_password"]
    assert body["locked_until"] == (clock.now + dt.timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["failed_logins"] == 10
    assert [(i["kind"], i["value"], i["logs_in"]) for i in body["identifiers"]] == [
        ("university_email", "lukasz.zolkiewski@student.example.edu.pl", True),
        ("private_email", "lukasz.z@example.com", False),
        ("alias", "s12345@student.example.edu.pl", True)]
    assert [(u["provider"], u["subject"], u["linked_by"]) for u in body["identities"]] == [
        ("mail", "sub-1", "import")]
    assert [(p["kind"], p["subject"]) for p in body["pending_links"]] == [("exists", "sub-2")]
    assert len(body["sessions"]) == 1
    session = body["sessions"][0]
    assert session["sid"] == started.session.sid and session["client_ip"] == "192.0.2.5"
    assert session["apps"] == [{"service": "USOSweb", "tickets": 1, "logout_status": None}]
    failed = next(e for e in body["events"] if e["action"] == "login.failed")
    assert failed["reason"] == "wrong_password" and failed["reason_words"] == "wrong password"
    text = r.get_data(as_text=True)
    for secret in (PESEL, person.pesel_hash, person.password_hash, started.session.id, started.tgt, "ST-1-secret",
                   person.birth_date.isoformat()):
        assert secret not in text


def test_entitlements(api, app, person):
    from idp.core import registry
    from tests.conftest import SERVICES

    registry.replace_all([{**SERVICES[0], "requires_entitlement": True}, SERVICES[1]])
    body = api.get("/people/12345").get_json()
    assert body["entitlements"] == [{"service": "USOSweb", "protocol": "cas", "entitled": False}]


def test_album_is_matched_case_insensitively(api, app):
    create_account("T0042", first_name="Anna", last_name="Kowalska", university_email="anna.k@example.edu.pl",
                   private_email=None, aliases=(), pesel=None)
    assert api.get("/people/t0042").get_json()["album"] == "T0042"


def test_a_merged_account_says_where_it_went(api, app, person):
    other = create_account("54321", university_email=None, private_email=None, aliases=(), pesel=None)
    other.merged_into_id, other.status = person.id, "merged"
    other.updated_at = utcnow()
    db.session.commit()
    body = api.get("/people/54321").get_json()
    assert body["status"][0] == "merged"
    assert body["merged_into"] == {"album": "12345", "name": "Łukasz Żółkiewski"}
    assert api.get("/people/12345").get_json()["merged_from"] == [{"album": "54321", "name": "Łukasz Żółkiewski"}]
