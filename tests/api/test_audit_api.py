"""GET /api/v1/audit: the audit log, newest first, with the console's filters."""
from __future__ import annotations

import datetime as dt

from idp.core import audit
from tests.factories import create_account

T0 = dt.datetime(2025, 3, 1, 12, 0, 0)


def _events(person):
    other = create_account("54321", university_email=None, private_email="inny@example.com", aliases=(),
                           pesel=None)
    rows = [
        audit.record("login.failed", account_id=person.id, reason="wrong_password", now=T0),
        audit.record("login.succeeded", account_id=person.id, now=T0 + dt.timedelta(hours=1)),
        audit.record("helpdesk.unlock", actor="halina@example.edu.pl", account_id=person.id,
                     data={"why": "phoned", "via": "console"}, now=T0 + dt.timedelta(days=1)),
        audit.record("login.failed", account_id=other.id, reason="locked", now=T0 + dt.timedelta(days=2)),
    ]
    return [e.id for e in rows]


def _ids(api, **params) -> list[int]:
    r = api.get("/audit", query_string=params)
    assert r.status_code == 200, r.get_json()
    return [e["id"] for e in r.get_json()["items"]]


def test_newest_first_with_every_field(api, person):
    ids = _events(person)
    r = api.get("/audit", query_string={"action": "helpdesk."}, headers={"Accept-Language": "en"})
    body = r.get_json()
    assert body["total"] == 1 and body["pages"] == 1
    assert body["items"] == [{"id": ids[2], "reference": f"E{ids[2]}", "at": "2025-03-02T12:00:00Z",
                              "action": "helpdesk.unlock", "actor": "halina@example.edu.pl",
                              "account_id": person.id, "reason": None, "client_ip": None,
                              "data": {"why": "phoned", "via": "console"}, "reason_words": None}]
    everything = _ids(api)
    assert set(ids) <= set(everything)
    assert everything == sorted(everything, reverse=True)


def test_filters(api, person):
    ids = _events(person)
    assert _ids(api, action="login.failed") == [ids[3], ids[0]]
    assert _ids(api, account="12345", action="login.") == [ids[1], ids[0]]
    assert _ids(api, account="inny@example.com") == [ids[3]]
    assert _ids(api, actor="halina@example.edu.pl") == [ids[2]]
    assert _ids(api, reason="wrong_password") == [ids[0]]
    assert _ids(api, since="2025-03-02", action="login.") == [ids[3]]
    assert _ids(api, until="2025-03-01", action="login.") == [ids[1], ids[0]]  # a bare date: the whole day
    assert _ids(api, since="2025-03-01T12:30:00Z", until="2025-03-02T13:30:00+01:00") == [ids[2], ids[1]]


def test_pages(api, person):
    ids = _events(person)
    first = api.get("/audit", query_string={"action": "login.", "per_page": 2}).get_json()
    assert (first["total"], first["pages"], [e["id"] for e in first["items"]]) == (3, 2, [ids[3], ids[1]])
    second = api.get("/audit", query_string={"action": "login.", "per_page": 2, "page": 2}).get_json()
    assert [e["id"] for e in second["items"]] == [ids[0]]


def test_bad_filters(api, person):
    r = api.get("/audit", query_string={"since": "yesterday"})
    assert r.status_code == 400 and r.get_json()["field"] == "since"
    assert api.get("/audit", query_string={"until": "2025-02-30"}).status_code == 400
    r = api.get("/audit", query_string={"account": "nobody@example.com"})
    assert r.status_code == 404 and r.get_json()["error"] == "unknown_person"
