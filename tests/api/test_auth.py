"""Who may call the admin API: a bearer token (RFC 6750) of a person who holds the route's role, now."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import staff
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import ApiToken
from tests.api.conftest import make_staff, token_for


def _is_invalid_token(response) -> None:
    assert response.status_code == 401
    assert response.get_json()["error"] == "invalid_token"
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


def test_without_a_token(api, person):
    r = api.get("/people/12345", token=None)
    assert r.status_code == 401
    assert r.get_json()["error"] == "unauthorized"
    # RFC 6750 §3.1: a request without credentials gets a challenge without an error code
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="idp admin API"'
    assert "12345" not in r.get_data(as_text=True)


@pytest.mark.parametrize("header", ["Bearer idpat_not-a-real-token", "Bearer ", "Bearer something-else",
                                    "bearer idpat_" + "x" * 300])
def test_a_bad_token(api, header):
    _is_invalid_token(api.get("/people/12345", token=None, headers={"Authorization": header}))


def test_another_scheme_is_no_token(api, token):
    r = api.get("/me", token=None, headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 401 and r.get_json()["error"] == "unauthorized"


def test_a_token_in_the_query_string_is_not_read(api, token):
    """RFC 6750 §2.3 allows it but discourages it (URLs end up in logs): not accepted here."""
    r = api.get("/me", token=None, query_string={"access_token": token})
    assert r.status_code == 401


def test_a_valid_token(api, helpdesk_staff):
    r = api.get("/me")
    assert r.status_code == 200
    assert r.get_json() == {"actor": staff.actor_name(helpdesk_staff), "album": "H0001", "name": "Halina Pomocna",
                            "roles": ["helpdesk"]}


def test_a_revoked_token(api, token, helpdesk_staff):
    row = db.session.scalar(db.select(ApiToken).where(ApiToken.account_id == helpdesk_staff.id))
    assert staff.revoke_token(row.id, actor="test")
    db.session.commit()
    _is_invalid_token(api.get("/me"))


def test_an_expired_token(api, helpdesk_staff):
    old = token_for(helpdesk_staff, days=1, now=utcnow() - dt.timedelta(days=2))
    _is_invalid_token(api.get("/me", token=old))
    fresh = token_for(helpdesk_staff, days=1, now=utcnow() - dt.timedelta(hours=23))
    assert api.get("/me", token=fresh).status_code == 200


def test_the_token_of_a_person_whose_role_was_revoked_stops_working(api, token, helpdesk_staff, person):
    assert api.get("/people/12345").status_code == 200
    staff.revoke(helpdesk_staff, "helpdesk", actor="test")
    db.session.commit()
    _is_invalid_token(api.get("/people/12345"))
    # granting the role again does not bring the token back: revoking the last role revoked it
    staff.grant(helpdesk_staff, "helpdesk", actor="test")
    db.session.commit()
    _is_invalid_token(api.get("/people/12345"))


def test_admin_routes_refuse_a_helpdesk_token(api):
    r = api.get("/services")
    assert r.status_code == 403
    assert r.get_json()["error"] == "insufficient_role"
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]


def test_admin_routes_accept_an_admin_token(api, admin_token):
    r = api.get("/services", token=admin_token)
    assert r.status_code == 200
    assert [s["name"] for s in r.get_json()["items"]] == ["Moodle", "USOSweb"]


def test_an_admin_is_helpdesk_too(api, admin_token, person):
    assert api.get("/people/12345", token=admin_token).status_code == 200
    assert api.get("/me", token=admin_token).get_json()["roles"] == ["admin", "helpdesk"]


def test_losing_the_admin_role_keeps_helpdesk_routes(api, app):
    both = make_staff("A0002", "admin", first="Beata", last="Obie")
    staff.grant(both, "helpdesk", actor="test")
    db.session.commit()
    secret = token_for(both)
    staff.revoke(both, "admin", actor="test")
    db.session.commit()
    assert api.get("/services", token=secret).status_code == 403
    assert api.get("/me", token=secret).status_code == 200


def test_people_without_a_role_get_no_token(app):
    nobody = make_staff("N0001", None)
    with pytest.raises(Exception, match="console role"):
        token_for(nobody)


def test_the_openapi_document_needs_no_token(api):
    r = api.get("/openapi.json", token=None)
    assert r.status_code == 200
    assert r.get_json()["openapi"] == "3.1.0"
