"""Userinfo (OIDC Core §5.3): claims by scope, exactly; Bearer errors per RFC 6750 §3."""
from __future__ import annotations

import pytest

from tests.oidc.conftest import MAIL, revoke, tokens, userinfo

PROFILE = {"name": "Łukasz Żółkiewski", "given_name": "Łukasz", "family_name": "Żółkiewski",
           "preferred_username": "lukasz.zolkiewski@student.example.edu.pl"}
EMAIL = {"email": "lukasz.zolkiewski@student.example.edu.pl", "email_verified": True}
UNIVERSITY = {"album": "12345", "role": "student", "affiliations": ["student", "member"]}


@pytest.mark.parametrize("scope, expected", [
    ("openid", {}),
    ("openid profile", PROFILE),
    ("openid email", EMAIL),
    ("openid university", UNIVERSITY),
    ("openid profile email university", {**PROFILE, **EMAIL, **UNIVERSITY}),
])
def test_claims_by_scope_exactly(client, oidc, person, scope, expected):
    body = tokens(client, MAIL, scope=scope)
    r = userinfo(client, body["access_token"])
    assert r.status_code == 200
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    assert r.get_json() == {"sub": person.subject, **expected}


def test_post_with_bearer_header(client, oidc, person):
    body = tokens(client, MAIL, scope="openid email")
    r = client.post("/oidc/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200 and r.get_json()["email"] == EMAIL["email"]


def test_bearer_scheme_is_case_insensitive(client, oidc, person):
    body = tokens(client, MAIL)
    r = client.get("/oidc/userinfo", headers={"Authorization": f"bearer {body['access_token']}"})
    assert r.status_code == 200 and r.get_json() == {"sub": person.subject}


def test_email_verified_false_for_a_private_address(client, clients):
    from tests.factories import create_account

    create_account(university_email=None, private_email="lukasz.private@example.com")
    from tests.oidc.conftest import auth_params, authorize, code_from, exchange

    code = code_from(authorize(client, auth_params(MAIL, scope="openid email"), username="12345"))
    body = exchange(client, code, MAIL).get_json()
    assert userinfo(client, body["access_token"]).get_json()["email_verified"] is False


def test_teacher_affiliations(client, clients):
    from tests.factories import create_account

    create_account(role="teacher")
    body = tokens(client, MAIL, scope="openid university")
    info = userinfo(client, body["access_token"]).get_json()
    assert info["role"] == "teacher" and info["affiliations"] == ["faculty", "employee", "member"]


def assert_bearer_refusal(r, error: str | None = "invalid_token", status: int = 401):
    assert r.status_code == status, r.get_data(as_text=True)[:500]
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    if error:
        assert f'error="{error}"' in challenge
    body = r.get_json(silent=True) or {}
    assert "sub" not in body


def test_missing_token(client, oidc):
    r = userinfo(client, None)
    assert_bearer_refusal(r, error=None)
    # RFC 6750 §3.1: no error code when the request carried no credentials.
    assert "error=" not in r.headers["WWW-Authenticate"]


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc"])
def test_other_schemes_or_empty_token(client, oidc, header):
    r = client.get("/oidc/userinfo", headers={"Authorization": header})
    assert_bearer_refusal(r, error=None)


def test_invalid_token(client, oidc):
    assert_bearer_refusal(userinfo(client, "not-a-token"))


def test_token_in_the_query_string_is_not_accepted(client, oidc):
    body = tokens(client, MAIL)
    assert_bearer_refusal(client.get("/oidc/userinfo", query_string={"access_token": body["access_token"]}),
                          error=None)


def test_refresh_token_is_not_an_access_token(client, oidc):
    body = tokens(client, MAIL)
    assert_bearer_refusal(userinfo(client, body["refresh_token"]))


def test_expired_token(client, oidc, clock, app):
    body = tokens(client, MAIL)
    clock.advance(seconds=app.config["OIDC_ACCESS_TOKEN_LIFETIME"] - 1)
    assert userinfo(client, body["access_token"]).status_code == 200
    clock.advance(seconds=2)
    assert_bearer_refusal(userinfo(client, body["access_token"]))


def test_revoked_token(client, oidc):
    body = tokens(client, MAIL)
    assert revoke(client, body["access_token"]).status_code == 200
    assert_bearer_refusal(userinfo(client, body["access_token"]))


def test_token_after_logout(client, oidc):
    body = tokens(client, MAIL)
    client.get("/cas/logout")
    assert_bearer_refusal(userinfo(client, body["access_token"]))


def test_token_of_a_person_who_left(client, oidc, person):
    from idp.extensions import db

    body = tokens(client, MAIL)
    person.status = "left"
    db.session.commit()
    assert_bearer_refusal(userinfo(client, body["access_token"]))


def test_token_without_openid_scope_is_insufficient_scope(client, oidc):
    body = tokens(client, MAIL, scope="profile")
    assert_bearer_refusal(userinfo(client, body["access_token"]), error="insufficient_scope", status=403)
