"""Every answer of the admin API is JSON {"error", "message"}, never an HTML page: unknown paths, wrong
methods, bodies that are not JSON, unknown people, crashes, rate limits."""
from __future__ import annotations

import pytest

from idp.api import views
from idp.core import helpdesk
from idp.extensions import db
from idp.models import AuditEvent
from tests.api.conftest import PREFIX, reason


def _json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == code and body["message"]
    return body


@pytest.mark.parametrize("path", ["/nothing-here", "/people/12345/nothing", "", "/people/12345/identifiers/x"])
def test_unknown_paths(api, path):
    _json_error(api.get(path), 404, "not_found")


def test_unknown_paths_without_a_token_too(api):
    _json_error(api.post("/nothing-here", json={}, token=None), 404, "not_found")


def test_wrong_method(api, person):
    r = api.get("/people/12345/unlock")
    _json_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]
    _json_error(api.delete("/people/12345"), 405, "method_not_allowed")


def test_pages_outside_the_api_keep_their_html_errors(client):
    r = client.get("/no-such-page")
    assert r.status_code == 404 and r.mimetype == "text/html"


def test_malformed_json(api, person):
    person.failed_logins = 3
    db.session.commit()
    r = api.post("/people/12345/unlock", data='{"reason": "broken', headers={"Content-Type": "application/json"})
    _json_error(r, 400, "invalid_json")
    _json_error(api.post("/people/12345/unlock", data='["a list"]', headers={"Content-Type": "application/json"}),
                400, "invalid_json")
    db.session.refresh(person)
    assert person.failed_logins == 3


def test_a_body_without_a_content_type_is_read_as_json(api, person):
    """`curl -d '{...}'` sends application/x-www-form-urlencoded: the body is still what the script meant."""
    person.failed_logins = 3
    db.session.commit()
    r = api.post("/people/12345/unlock", data='{"reason": "Ticket #1: locked out"}')
    assert r.status_code == 200
    db.session.refresh(person)
    assert person.failed_logins == 0


def test_a_field_of_the_wrong_type(api, person):
    body = _json_error(api.post("/people/12345/identifiers", json={**reason(), "kind": "alias", "value": 42}),
                       400, "invalid_request")
    assert body["field"] == "value"


def test_unknown_person(api):
    _json_error(api.get("/people/99999"), 404, "unknown_person")
    _json_error(api.post("/people/99999/unlock", json=reason()), 404, "unknown_person")


def test_a_crash_is_json_with_a_reference(client, token, person, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("database on fire")

    monkeypatch.setattr(helpdesk, "unlock", boom)
    r = client.post(PREFIX + "/people/12345/unlock", json=reason(), headers={"Authorization": f"Bearer {token}"})
    body = _json_error(r, 500, "internal_error")
    assert "fire" not in r.get_data(as_text=True)
    event = db.session.get(AuditEvent, int(body["reference"][1:]))
    assert event.action == "api.error" and event.data["path"] == "/api/v1/people/12345/unlock"


def test_too_large_a_body(api, person):
    _json_error(api.post("/people/12345/unlock", data="x" * (3 * 1024 * 1024)), 413, "too_large")


def test_actions_are_rate_limited_per_token(api, person):
    """Refused actions count too: a script stuck in a loop stops at the limit, and the answer says so."""
    per_minute = int(views.LIMIT_ACTIONS.split()[0])
    for _ in range(per_minute):
        assert api.post("/people/12345/unlock", json=reason()).status_code == 409  # not locked
    r = api.post("/people/12345/reset-link", json=reason())
    _json_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) > 0
    # reading goes on
    assert api.get("/people/12345").status_code == 200


def test_reading_is_rate_limited_per_token(api, person, admin_token):
    per_minute = int(views.LIMIT_PER_CALLER.split()[0])
    for _ in range(per_minute):
        assert api.get("/me").status_code == 200
    _json_error(api.get("/people/12345"), 429, "rate_limited")
    # another token from the same address is counted on its own
    assert api.get("/me", token=admin_token).status_code == 200
