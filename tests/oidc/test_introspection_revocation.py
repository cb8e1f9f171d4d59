"""Token introspection (RFC 7662) and revocation (RFC 7009): both client-authenticated."""
from __future__ import annotations

import pytest

from tests.oidc.conftest import (
    ELEARNING,
    ISSUER,
    LIBRARY,
    MAIL,
    MOBILE,
    REPORTS,
    USER,
    error_of,
    exchange,
    get_code,
    introspect,
    pkce,
    refresh,
    revoke,
    timestamp,
    token_request,
    tokens,
    userinfo,
)

INACTIVE = {"active": False}


# --- introspection ----------------------------------------------------------------------------------------

def test_active_access_token(client, oidc, person, clock, app):
    body = tokens(client, MAIL, scope="openid profile")
    r = introspect(client, body["access_token"], client_id=LIBRARY)  # a resource server, not the token's client
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"
    info = r.get_json()
    assert info["active"] is True
    assert info["sub"] == person.subject
    assert info["client_id"] == MAIL
    assert set(info["scope"].split()) == {"openid", "profile"}
    assert info["exp"] == timestamp(clock.now) + app.config["OIDC_ACCESS_TOKEN_LIFETIME"]
    assert info["iat"] == timestamp(clock.now)
    assert info["iss"] == ISSUER
    assert info["token_type"] == "Bearer"
    assert info["username"] == USER


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_both_client_auth_methods(client, oidc, auth):
    body = tokens(client, MAIL)
    assert introspect(client, body["access_token"], auth=auth).get_json()["active"] is True


def test_hint_does_not_change_the_answer(client, oidc):
    body = tokens(client, MAIL)
    for hint in ("access_token", "refresh_token"):
        assert introspect(client, body["access_token"], token_type_hint=hint).get_json()["active"] is True
        assert introspect(client, body["refresh_token"], token_type_hint=hint).get_json()["active"] is True


def test_active_refresh_token_outlives_its_access_token(client, oidc, clock, app):
    body = tokens(client, MAIL)
    clock.advance(seconds=app.config["OIDC_ACCESS_TOKEN_LIFETIME"] + 1)
    assert introspect(client, body["access_token"]).get_json() == INACTIVE
    info = introspect(client, body["refresh_token"]).get_json()
    assert info["active"] is True and info["client_id"] == MAIL
    assert info["exp"] > timestamp(clock.now)
    # ... and it really still works.
    assert refresh(client, body["refresh_token"]).status_code == 200
    assert introspect(client, body["refresh_token"]).get_json() == INACTIVE  # rotated


def test_a_refresh_token_is_active_only_to_its_own_client(client, oidc):
    """A resource server (the mail server) learns about access tokens; a refresh token is not a credential
    for it — Dovecot, which checks only `active`, would otherwise let a refresh token open the mailbox."""
    body = tokens(client, MAIL)
    assert introspect(client, body["refresh_token"], client_id=LIBRARY).get_json() == INACTIVE
    assert introspect(client, body["access_token"], client_id=LIBRARY).get_json()["active"] is True
    assert introspect(client, body["refresh_token"], client_id=MAIL).get_json()["active"] is True


def test_revoked_token_is_inactive(client, oidc):
    body = tokens(client, MAIL)
    revoke(client, body["access_token"])
    assert introspect(client, body["access_token"]).get_json() == INACTIVE


def test_expired_token_is_inactive(client, oidc, clock, app):
    body = tokens(client, MAIL)
    clock.advance(seconds=app.config["OIDC_ACCESS_TOKEN_LIFETIME"])
    assert introspect(client, body["access_token"]).get_json() == INACTIVE


def test_unknown_token_is_inactive(client, oidc):
    r = introspect(client, "no-such-token")
    assert r.status_code == 200 and r.get_json() == INACTIVE


def test_token_of_an_ended_session_is_inactive(client, oidc):
    body = tokens(client, MAIL)
    client.get("/cas/logout")
    assert introspect(client, body["access_token"]).get_json() == INACTIVE
    assert introspect(client, body["refresh_token"]).get_json() == INACTIVE


def test_client_credentials_token(client, oidc):
    r = token_request(client, {"grant_type": "client_credentials", "scope": "profile"}, client_id=REPORTS)
    info = introspect(client, r.get_json()["access_token"]).get_json()
    assert info["active"] is True and info["client_id"] == REPORTS and "sub" not in info


def test_introspection_requires_client_authentication(client, oidc):
    body = tokens(client, MAIL)
    r = client.post("/oidc/introspect", data={"token": body["access_token"]})
    assert error_of(r, 401) == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    r = introspect(client, body["access_token"], auth="none")
    assert error_of(r, 401) == "invalid_client"
    r = client.post("/oidc/introspect", data={"token": body["access_token"], "client_id": MAIL,
                                              "client_secret": "wrong"})
    assert error_of(r, 401) == "invalid_client"
    assert "active" not in r.get_json()


def test_public_clients_may_not_introspect(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    body = exchange(client, code, MOBILE, verifier=verifier).get_json()
    r = introspect(client, body["access_token"], client_id=MOBILE, auth="none")
    assert error_of(r, 401) == "invalid_client"
    assert "active" not in r.get_json()


def test_introspection_missing_token_parameter(client, oidc):
    r = client.post("/oidc/introspect", data={}, headers={"Authorization": _basic(MAIL)})
    assert error_of(r) == "invalid_request"
    r = client.post("/oidc/revoke", data={}, headers={"Authorization": _basic(MAIL)})
    assert error_of(r) == "invalid_request"


def test_unknown_hint_is_ignored(client, oidc):
    """RFC 7662 §2.1 / RFC 7009 §2.1: the server may ignore the hint and searches every kind of token."""
    body = tokens(client, MAIL)
    r = introspect(client, body["access_token"], token_type_hint="id_token")
    assert r.status_code == 200 and r.get_json()["active"] is True
    r = revoke(client, body["access_token"], token_type_hint="something_else")
    assert r.status_code == 200
    assert userinfo(client, body["access_token"]).status_code == 401


def test_introspection_only_by_post(client, oidc):
    assert client.get("/oidc/introspect").status_code == 405


# --- revocation -----------------------------------------------------------------------------------------

def test_revoke_access_token(client, oidc):
    body = tokens(client, MAIL)
    r = revoke(client, body["access_token"], token_type_hint="access_token")
    assert r.status_code == 200
    assert r.headers["Cache-Control"] == "no-store"
    assert userinfo(client, body["access_token"]).status_code == 401
    assert introspect(client, body["access_token"]).get_json() == INACTIVE


def test_revoking_an_access_token_leaves_its_refresh_token_working(client, oidc):
    """RFC 7009 §2.1 lets a server revoke the refresh token too; this one revokes only what was sent."""
    body = tokens(client, MAIL)
    revoke(client, body["access_token"], token_type_hint="access_token")
    assert introspect(client, body["refresh_token"], token_type_hint="refresh_token").get_json()["active"] is True
    r = refresh(client, body["refresh_token"])
    assert r.status_code == 200, r.get_json()
    assert userinfo(client, r.get_json()["access_token"]).status_code == 200
    assert userinfo(client, body["access_token"]).status_code == 401


def test_revoke_access_token_leaves_other_families(client, oidc):
    a = tokens(client, MAIL)
    b = tokens(client, MAIL)
    revoke(client, a["access_token"])
    assert userinfo(client, b["access_token"]).status_code == 200


def test_revoke_refresh_token_kills_the_family(client, oidc):
    first = tokens(client, MAIL)
    second = refresh(client, first["refresh_token"]).get_json()
    assert revoke(client, second["refresh_token"], token_type_hint="refresh_token").status_code == 200
    assert error_of(refresh(client, second["refresh_token"])) == "invalid_grant"
    assert userinfo(client, second["access_token"]).status_code == 401
    for token in (second["access_token"], second["refresh_token"]):
        assert introspect(client, token).get_json() == INACTIVE


def test_revoke_with_a_wrong_hint_still_works(client, oidc):
    body = tokens(client, MAIL)
    assert revoke(client, body["refresh_token"], token_type_hint="access_token").status_code == 200
    assert error_of(refresh(client, body["refresh_token"])) == "invalid_grant"


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_revoke_unknown_token_is_200(client, oidc, auth):
    r = revoke(client, "no-such-token", auth=auth)
    assert r.status_code == 200


def test_revoke_twice_is_200(client, oidc):
    body = tokens(client, MAIL)
    assert revoke(client, body["access_token"]).status_code == 200
    assert revoke(client, body["access_token"]).status_code == 200


def test_revocation_requires_client_authentication(client, oidc):
    body = tokens(client, MAIL)
    r = client.post("/oidc/revoke", data={"token": body["access_token"]})
    assert error_of(r, 401) == "invalid_client"
    r = revoke(client, body["access_token"], auth="none")  # a confidential client must authenticate
    assert error_of(r, 401) == "invalid_client"
    r = client.post("/oidc/revoke", data={"token": body["access_token"], "client_id": MAIL, "client_secret": "x"})
    assert error_of(r, 401) == "invalid_client"
    assert userinfo(client, body["access_token"]).status_code == 200  # nothing was revoked


def test_a_client_cannot_revoke_another_clients_token(client, oidc):
    body = tokens(client, MAIL)
    r = revoke(client, body["access_token"], client_id=ELEARNING)
    assert r.status_code in (200, 400)
    assert userinfo(client, body["access_token"]).status_code == 200


def test_public_client_revokes_its_own_token(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    body = exchange(client, code, MOBILE, verifier=verifier).get_json()
    assert revoke(client, body["refresh_token"], client_id=MOBILE, auth="none").status_code == 200
    r = token_request(client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      client_id=MOBILE, auth="none")
    assert error_of(r) == "invalid_grant"


def _basic(client_id: str) -> str:
    import base64

    from tests.oidc.conftest import SECRETS

    return "Basic " + base64.b64encode(f"{client_id}:{SECRETS[client_id]}".encode()).decode()


def test_token_of_a_person_who_left_is_inactive(client, oidc, person):
    from idp.extensions import db

    body = tokens(client, MAIL)
    person.status = "left"
    db.session.commit()
    assert introspect(client, body["access_token"]).get_json() == INACTIVE
    assert introspect(client, body["refresh_token"]).get_json() == INACTIVE
