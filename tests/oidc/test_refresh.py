"""Refresh tokens: rotation, reuse detection (the whole family dies), the SSO session bound, scope."""
from __future__ import annotations

from tests.oidc.conftest import (
    LIBRARY,
    MAIL,
    MOBILE,
    audit_events,
    error_of,
    exchange,
    get_code,
    introspect,
    pkce,
    refresh,
    timestamp,
    token_request,
    tokens,
    userinfo,
)


def ok(r) -> dict:
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_rotation_new_refresh_token_each_time_old_one_invalid(client, oidc):
    first = tokens(client, MAIL, scope="openid profile")
    second = ok(refresh(client, first["refresh_token"]))
    assert second["refresh_token"] and second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["token_type"] == "Bearer"
    assert set(second["scope"].split()) == {"openid", "profile"}
    assert userinfo(client, second["access_token"]).status_code == 200
    third = ok(refresh(client, second["refresh_token"]))
    assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3
    assert introspect(client, second["refresh_token"]).get_json() == {"active": False}


def test_reuse_of_a_rotated_refresh_token_revokes_the_whole_family(client, oidc):
    first = tokens(client, MAIL)
    second = ok(refresh(client, first["refresh_token"]))
    third = ok(refresh(client, second["refresh_token"]))
    assert userinfo(client, third["access_token"]).status_code == 200

    # The leaked first refresh token is presented again (by an attacker or a confused client).
    assert error_of(refresh(client, first["refresh_token"])) == "invalid_grant"

    # Everything that descends from the same login is dead, the newest pair included.
    for token in (third["access_token"], third["refresh_token"], second["access_token"]):
        assert introspect(client, token).get_json() == {"active": False}
    assert userinfo(client, third["access_token"]).status_code == 401
    assert error_of(refresh(client, third["refresh_token"])) == "invalid_grant"
    [event] = audit_events("oidc.refresh.reused")
    assert event.reason == "refresh_token_reuse"
    assert event.data["client_id"] == MAIL and event.data["revoked"] >= 1


def test_reuse_does_not_touch_other_logins(client, oidc):
    """Another family (another code, same person and client) survives a reuse in the first one."""
    a = tokens(client, MAIL)
    b = tokens(client, MAIL)
    ok(refresh(client, a["refresh_token"]))
    assert error_of(refresh(client, a["refresh_token"])) == "invalid_grant"
    assert userinfo(client, b["access_token"]).status_code == 200
    ok(refresh(client, b["refresh_token"]))


def test_refresh_token_of_another_client_is_invalid_grant(client, oidc):
    body = tokens(client, MAIL)
    assert error_of(refresh(client, body["refresh_token"], client_id=LIBRARY)) == "invalid_grant"
    ok(refresh(client, body["refresh_token"]))  # still good for its owner


def test_refresh_needs_client_authentication(client, oidc):
    body = tokens(client, MAIL)
    r = token_request(client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      client_id=MAIL, secret="wrong")
    assert error_of(r, 401) == "invalid_client"
    r = token_request(client, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      client_id=MAIL, auth="none")
    assert error_of(r, 401) == "invalid_client"
    ok(refresh(client, body["refresh_token"]))


def test_unknown_or_missing_refresh_token(client, oidc):
    assert error_of(refresh(client, "no-such-token")) == "invalid_grant"
    assert error_of(token_request(client, {"grant_type": "refresh_token"})) == "invalid_request"


def test_access_token_is_not_a_refresh_token(client, oidc):
    body = tokens(client, MAIL)
    assert error_of(refresh(client, body["access_token"])) == "invalid_grant"


def test_public_client_refreshes_with_rotation(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    first = ok(exchange(client, code, MOBILE, verifier=verifier))
    second = ok(token_request(client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                              client_id=MOBILE, auth="none"))
    assert second["refresh_token"] != first["refresh_token"]
    r = token_request(client, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                      client_id=MOBILE, auth="none")
    assert error_of(r) == "invalid_grant"
    assert userinfo(client, second["access_token"]).status_code == 401


def test_refresh_after_sso_logout_fails(client, oidc):
    body = tokens(client, MAIL)
    client.get("/cas/logout")
    assert error_of(refresh(client, body["refresh_token"])) == "invalid_grant"


def test_refresh_after_access_token_expiry(client, oidc, clock, app):
    body = tokens(client, MAIL)
    clock.advance(seconds=app.config["OIDC_ACCESS_TOKEN_LIFETIME"] + 5)
    assert userinfo(client, body["access_token"]).status_code == 401
    fresh = ok(refresh(client, body["refresh_token"]))
    assert userinfo(client, fresh["access_token"]).status_code == 200


def test_refresh_token_expires(client, oidc, clock, app):
    body = tokens(client, MAIL)
    # Keep the SSO session in use (idle timeout) while the refresh token ages, then let it expire.
    for _ in range(app.config["OIDC_REFRESH_TOKEN_LIFETIME"] // 3600):
        clock.advance(hours=1)
        assert client.get("/cas/login").status_code == 200  # the logged-in page touches the session
    clock.advance(seconds=1)
    assert error_of(refresh(client, body["refresh_token"])) == "invalid_grant"


def test_refresh_token_ends_with_its_sso_session(client, oidc, app):
    """A refresh lifetime longer than the SSO session is cut to the session's absolute end: the client
    sees it in the introspection's exp, from the code exchange on and after every rotation."""
    from idp.extensions import db
    from idp.models import SsoSession

    app.config["OIDC_REFRESH_TOKEN_LIFETIME"] = 30 * 24 * 3600
    body = tokens(client, MAIL)
    with app.app_context():
        [session] = db.session.scalars(db.select(SsoSession)).all()
        session_end = timestamp(session.expires_at)
    assert introspect(client, body["refresh_token"]).get_json()["exp"] == session_end
    rotated = ok(refresh(client, body["refresh_token"]))
    assert introspect(client, rotated["refresh_token"]).get_json()["exp"] == session_end


def test_scope_narrowing_allowed(client, oidc):
    body = tokens(client, MAIL, scope="openid profile email")
    narrow = ok(refresh(client, body["refresh_token"], scope="openid email"))
    assert set(narrow["scope"].split()) == {"openid", "email"}
    info = userinfo(client, narrow["access_token"]).get_json()
    assert "email" in info and "name" not in info


def test_refresh_token_keeps_its_scope_after_a_narrowed_refresh(client, oidc):
    """RFC 6749 §6: a new refresh token's scope is identical to that of the one presented, so a narrowed
    access token does not shrink what the client may ask for next time."""
    body = tokens(client, MAIL, scope="openid profile email")
    narrow = ok(refresh(client, body["refresh_token"], scope="openid"))
    assert narrow["scope"] == "openid"
    assert userinfo(client, narrow["access_token"]).get_json().keys() == {"sub"}
    again = ok(refresh(client, narrow["refresh_token"], scope="openid profile email"))
    assert set(again["scope"].split()) == {"openid", "profile", "email"}
    default = ok(refresh(client, again["refresh_token"]))
    assert set(default["scope"].split()) == {"openid", "profile", "email"}


def test_scope_widening_refused(client, oidc):
    body = tokens(client, MAIL, scope="openid profile")
    assert error_of(refresh(client, body["refresh_token"], scope="openid profile email")) == "invalid_scope"
    assert error_of(refresh(client, body["refresh_token"], scope="openid university")) == "invalid_scope"
    # The refused request did not consume the token.
    ok(refresh(client, body["refresh_token"]))


def test_refresh_for_a_person_who_left_is_invalid_grant(client, oidc, person):
    from idp.extensions import db

    body = tokens(client, MAIL)
    person.status = "left"
    db.session.commit()
    assert error_of(refresh(client, body["refresh_token"])) == "invalid_grant"


def test_two_refreshes_racing_with_one_token_fork_nothing(client, oidc, monkeypatch):
    """The second of two parallel refreshes with the same token (it read the token before the first one
    rotated it) loses the conditional rotation: it gets invalid_grant, its new tokens are never stored,
    and the whole family is revoked as on any reuse."""
    from idp.extensions import db
    from idp.models import OAuthToken
    from idp.oidc import server
    from idp.oidc.server import digest

    first = tokens(client, MAIL)
    original = server.RefreshTokenGrant.authenticate_refresh_token

    def read_then_lose_the_race(self, refresh_token):
        row = original(self, refresh_token)
        # Meanwhile another worker's refresh with the same token commits its rotation.
        with db.engine.begin() as conn:
            conn.execute(db.update(OAuthToken).where(OAuthToken.refresh_token_hash == digest(refresh_token))
                         .values(rotated_at=row.issued_at))
        return row

    monkeypatch.setattr(server.RefreshTokenGrant, "authenticate_refresh_token", read_then_lose_the_race)
    assert error_of(refresh(client, first["refresh_token"])) == "invalid_grant"
    monkeypatch.undo()
    assert introspect(client, first["access_token"]).get_json() == {"active": False}
    assert db.session.scalar(db.select(db.func.count(OAuthToken.id))) == 1  # the loser's pair was not kept
    [event] = audit_events("oidc.refresh.reused")
    assert event.data["concurrent"] is True


def test_refresh_after_the_grace_for_people_who_left(client, oidc, person, app):
    """Missing from the imports for longer than `left_grace_days`: refresh, userinfo and introspection stop."""
    import datetime as dt

    from idp.core.clock import utcnow
    from idp.extensions import db

    body = tokens(client, MAIL)
    person.left_at = utcnow() - dt.timedelta(days=app.extensions["idp.policy"].data["migration"]["left_grace_days"] + 1)
    db.session.commit()
    assert error_of(refresh(client, body["refresh_token"])) == "invalid_grant"
    assert userinfo(client, body["access_token"]).status_code == 401
    assert introspect(client, body["access_token"]).get_json() == {"active": False}
