"""The token endpoint: client authentication, the code grant's checks, grant types, client_credentials."""
from __future__ import annotations

import base64

import pytest

from tests.oidc.conftest import (
    ELEARNING,
    LIBRARY,
    MAIL,
    MAIL_CB,
    MAIL_CB2,
    MOBILE,
    MOBILE_CB,
    REPORTS,
    audit_events,
    error_of,
    exchange,
    get_code,
    introspect,
    pkce,
    token_request,
    userinfo,
)


def assert_token_response(r) -> dict:
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.mimetype == "application/json"
    assert r.headers["Cache-Control"] == "no-store"  # RFC 6749 §5.1
    assert r.headers["Pragma"] == "no-cache"
    body = r.get_json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] > 0
    assert body["access_token"]
    return body


def assert_invalid_client(r):
    assert error_of(r, 401) == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert "access_token" not in r.get_json()


# --- client authentication ---------------------------------------------------------------------------------

def test_client_secret_basic(client, oidc):
    code, _ = get_code(client, MAIL)
    body = assert_token_response(exchange(client, code, MAIL, auth="basic"))
    assert body["id_token"] and body["refresh_token"]
    assert body["scope"] == "openid"


def test_client_secret_post(client, oidc):
    code, _ = get_code(client, MAIL)
    body = assert_token_response(exchange(client, code, MAIL, auth="post"))
    assert body["id_token"]


def test_basic_credentials_are_form_urlencoded(client, oidc, register):
    """RFC 6749 §2.3.1: client_id and secret are form-urlencoded before Basic encoding (so a ':' in
    either one cannot break the user:password split)."""
    secret = "s3cr3t:with/special%chars&=" + "x" * 20
    register({"name": "Special", "protocol": "oidc", "client_id": "special:client", "client_secret": secret,
              "redirect_uris": ["https://special.example.edu.pl/cb"], "scopes": ["openid"], "first_party": True})
    from urllib.parse import quote_plus

    from tests.oidc.conftest import auth_params, authorize, code_from

    params = auth_params("special:client", redirect_uri="https://special.example.edu.pl/cb")
    code = code_from(authorize(client, params))
    raw = f"{quote_plus('special:client')}:{quote_plus(secret)}".encode()
    r = client.post("/oidc/token", data={"grant_type": "authorization_code", "code": code,
                                         "redirect_uri": "https://special.example.edu.pl/cb"},
                    headers={"Authorization": "Basic " + base64.b64encode(raw).decode()})
    assert_token_response(r)


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_wrong_secret_is_invalid_client(client, oidc, auth):
    code, _ = get_code(client, MAIL)
    assert_invalid_client(exchange(client, code, MAIL, auth=auth, secret="wrong-secret"))
    # The code was not used up by a request that failed client authentication.
    assert_token_response(exchange(client, code, MAIL))


@pytest.mark.parametrize("auth", ["basic", "post"])
def test_unknown_client_is_invalid_client(client, oidc, auth):
    code, _ = get_code(client, MAIL)
    r = exchange(client, code, "no-such-client", redirect_uri=MAIL_CB, auth=auth, secret="whatever")
    assert_invalid_client(r)


def test_unknown_client_and_wrong_secret_look_the_same(client, oidc):
    """Nothing in the answer tells whether a client_id exists."""
    data = {"grant_type": "authorization_code", "code": "x", "redirect_uri": MAIL_CB}
    answers = []
    for client_id in (MAIL, "no-such-client"):
        for auth in ("basic", "post"):
            r = token_request(client, data, client_id=client_id, secret="wrong", auth=auth)
            answers.append((r.status_code, r.get_json(), r.headers.get("WWW-Authenticate")))
    assert len(set(map(repr, answers))) == 1, answers


def test_confidential_client_without_authentication_is_invalid_client(client, oidc):
    code, _ = get_code(client, MAIL)
    assert_invalid_client(exchange(client, code, MAIL, auth="none"))
    r = client.post("/oidc/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": MAIL_CB})
    assert_invalid_client(r)


def test_public_client_uses_auth_method_none(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    body = assert_token_response(exchange(client, code, MOBILE, verifier=verifier, auth="none"))
    assert body["id_token"]


def test_public_client_with_a_made_up_secret_is_refused(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    assert_invalid_client(exchange(client, code, MOBILE, verifier=verifier, auth="post", secret="guess"))
    assert_invalid_client(exchange(client, code, MOBILE, verifier=verifier, auth="basic", secret="guess"))


def test_token_endpoint_only_accepts_post(client, oidc):
    code, _ = get_code(client, MAIL)
    r = client.get("/oidc/token", query_string={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": MAIL_CB, "client_id": MAIL,
                                                "client_secret": "x"})
    assert r.status_code == 405
    assert_token_response(exchange(client, code, MAIL))


# --- the authorization code ----------------------------------------------------------------------------

def test_code_is_single_use_and_a_replay_revokes_the_first_tokens(client, oidc):
    code, _ = get_code(client, MAIL)
    first = assert_token_response(exchange(client, code, MAIL))
    assert userinfo(client, first["access_token"]).status_code == 200
    r = exchange(client, code, MAIL)
    assert error_of(r) == "invalid_grant"
    # RFC 6749 §4.1.2: the tokens issued from the code are revoked.
    assert introspect(client, first["access_token"]).get_json() == {"active": False}
    assert introspect(client, first["refresh_token"]).get_json() == {"active": False}
    r = userinfo(client, first["access_token"])
    assert r.status_code == 401 and "Bearer" in r.headers["WWW-Authenticate"]
    assert error_of(token_request(client, {"grant_type": "refresh_token",
                                           "refresh_token": first["refresh_token"]})) == "invalid_grant"
    [event] = audit_events("oidc.code.replayed")
    assert event.reason == "code_reuse"


def test_a_code_exchange_is_committed_before_the_id_token_is_signed(client, oidc, monkeypatch):
    """The claim and the tokens are committed before the RS256 signature, so on SQLite the claim does not hold
    the file's one write lock (which every other worker's writes wait for) through the signature: at the
    moment of signing, another connection already sees the code used and the tokens stored."""
    from idp.extensions import db
    from idp.models import AuthorizationCode, OAuthToken
    from idp.oidc.keys import KeyStore

    def committed() -> tuple[int, int]:
        with db.engine.connect() as other:  # not the request's connection: sees only what is committed
            used = other.scalar(db.select(db.func.count()).select_from(AuthorizationCode)
                                .where(AuthorizationCode.used_at.is_not(None)))
            stored = other.scalar(db.select(db.func.count()).select_from(OAuthToken))
        return used, stored

    code, _ = get_code(client, MAIL)
    used_before, stored_before = committed()
    seen = []
    original = KeyStore.sign

    def sign(self, payload, alg="RS256", typ=None):
        seen.append(committed())
        return original(self, payload, alg=alg, typ=typ)

    monkeypatch.setattr(KeyStore, "sign", sign)
    body = assert_token_response(exchange(client, code, MAIL))
    assert body["id_token"]
    assert seen == [(used_before + 1, stored_before + 1)]


def test_code_replay_also_revokes_tokens_refreshed_from_it(client, oidc):
    code, _ = get_code(client, MAIL)
    first = assert_token_response(exchange(client, code, MAIL))
    second = assert_token_response(token_request(client, {"grant_type": "refresh_token",
                                                          "refresh_token": first["refresh_token"]}))
    assert error_of(exchange(client, code, MAIL)) == "invalid_grant"
    assert introspect(client, second["access_token"]).get_json() == {"active": False}
    assert userinfo(client, second["access_token"]).status_code == 401
    assert error_of(token_request(client, {"grant_type": "refresh_token",
                                           "refresh_token": second["refresh_token"]})) == "invalid_grant"


def test_expired_code_is_invalid_grant(client, oidc, clock, app):
    code, _ = get_code(client, MAIL)
    clock.advance(seconds=app.config["OIDC_CODE_LIFETIME"] + 1)
    assert error_of(exchange(client, code, MAIL)) == "invalid_grant"


def test_code_just_before_expiry_works(client, oidc, clock, app):
    code, _ = get_code(client, MAIL)
    clock.advance(seconds=app.config["OIDC_CODE_LIFETIME"] - 1)
    assert_token_response(exchange(client, code, MAIL))


def test_code_of_client_a_used_by_client_b_is_invalid_grant(client, oidc):
    code, _ = get_code(client, MAIL)
    r = exchange(client, code, LIBRARY, redirect_uri=MAIL_CB)
    assert error_of(r) == "invalid_grant"
    # The stolen code did not burn the owner's exchange.
    assert_token_response(exchange(client, code, MAIL))


def test_code_of_a_confidential_client_used_by_a_public_client_is_invalid_grant(client, oidc):
    code, _ = get_code(client, MAIL)
    verifier, _ = pkce()
    r = exchange(client, code, MOBILE, redirect_uri=MAIL_CB, verifier=verifier)
    assert r.status_code in (400, 401)
    assert r.get_json()["error"] in ("invalid_grant", "invalid_request")
    assert "access_token" not in r.get_json()


def test_redirect_uri_mismatch_at_token_is_invalid_grant(client, oidc):
    code, _ = get_code(client, MAIL, redirect_uri=MAIL_CB)
    assert error_of(exchange(client, code, MAIL, redirect_uri=MAIL_CB2)) == "invalid_grant"


def test_redirect_uri_missing_at_token_is_invalid_grant(client, oidc):
    code, _ = get_code(client, MAIL, redirect_uri=MAIL_CB)
    assert error_of(exchange(client, code, MAIL, redirect_uri=None)) == "invalid_grant"


def test_unknown_or_missing_code(client, oidc):
    assert error_of(exchange(client, "no-such-code", MAIL)) == "invalid_grant"
    r = token_request(client, {"grant_type": "authorization_code", "redirect_uri": MAIL_CB})
    assert error_of(r) == "invalid_request"


def test_code_dies_with_the_sso_session(client, oidc):
    code, _ = get_code(client, MAIL)
    client.get("/cas/logout")
    assert error_of(exchange(client, code, MAIL)) == "invalid_grant"


# --- PKCE at the token endpoint -----------------------------------------------------------------------------

def test_code_verifier_without_a_challenge_is_invalid_request(client, oidc):
    """RFC 9700 §4.8.2: a verifier for a code issued without a challenge is refused (PKCE downgrade)."""
    code, _ = get_code(client, MAIL)
    verifier, _ = pkce()
    assert error_of(exchange(client, code, MAIL, verifier=verifier)) == "invalid_request"


def test_pkce_mismatch_is_invalid_grant(client, oidc):
    _, challenge = pkce()
    other_verifier, _ = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    assert error_of(exchange(client, code, MOBILE, verifier=other_verifier)) == "invalid_grant"


def test_public_client_without_verifier_is_invalid_request(client, oidc):
    _, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    assert error_of(exchange(client, code, MOBILE)) == "invalid_request"


def test_malformed_verifier_is_invalid_request(client, oidc):
    _, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    assert error_of(exchange(client, code, MOBILE, verifier="too-short")) == "invalid_request"


def test_code_with_failed_pkce_cannot_be_retried(client, oidc):
    """A wrong verifier used the code up: the right one afterwards is refused too."""
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    assert error_of(exchange(client, code, MOBILE, verifier=pkce()[0])) == "invalid_grant"
    assert error_of(exchange(client, code, MOBILE, verifier=verifier)) == "invalid_grant"


# --- grant types --------------------------------------------------------------------------------------------

def test_password_grant_is_unsupported(client, oidc):
    from tests.factories import PASSWORD
    from tests.oidc.conftest import USER

    r = token_request(client, {"grant_type": "password", "username": USER, "password": PASSWORD})
    assert error_of(r) == "unsupported_grant_type"


@pytest.mark.parametrize("grant_type", ["implicit", "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                        "urn:ietf:params:oauth:grant-type:device_code", ""])
def test_other_grant_types_are_unsupported(client, oidc, grant_type):
    assert error_of(token_request(client, {"grant_type": grant_type})) == "unsupported_grant_type"


def test_unauthorized_client_for_an_unregistered_grant_type(client, oidc):
    # mail is registered for authorization_code + refresh_token, not client_credentials.
    assert error_of(token_request(client, {"grant_type": "client_credentials"}, client_id=MAIL)) \
        == "unauthorized_client"
    # reports is registered for client_credentials only.
    code, _ = get_code(client, MAIL)
    r = token_request(client, {"grant_type": "authorization_code", "code": code, "redirect_uri": MAIL_CB},
                      client_id=REPORTS)
    assert error_of(r) == "unauthorized_client"
    r = token_request(client, {"grant_type": "refresh_token", "refresh_token": "x"}, client_id=REPORTS)
    assert error_of(r) == "unauthorized_client"


def test_client_without_refresh_grant_gets_no_refresh_token(client, oidc, register):
    from tests.oidc.conftest import auth_params, authorize, code_from

    register({"name": "No refresh", "protocol": "oidc", "client_id": "norefresh", "client_secret": "n" * 40,
              "redirect_uris": ["https://norefresh.example.edu.pl/cb"], "scopes": ["openid"],
              "grant_types": ["authorization_code"], "first_party": True})
    code = code_from(authorize(client, auth_params("norefresh", redirect_uri="https://norefresh.example.edu.pl/cb")))
    r = token_request(client, {"grant_type": "authorization_code", "code": code,
                               "redirect_uri": "https://norefresh.example.edu.pl/cb"},
                      client_id="norefresh", secret="n" * 40)
    body = assert_token_response(r)
    assert "refresh_token" not in body and body["id_token"]


def test_client_credentials_for_the_service_client(client, oidc):
    for auth in ("basic", "post"):
        r = token_request(client, {"grant_type": "client_credentials"}, client_id=REPORTS, auth=auth)
        body = assert_token_response(r)
        assert "id_token" not in body
        assert "refresh_token" not in body
        info = introspect(client, body["access_token"]).get_json()
        assert info["active"] is True and info["client_id"] == REPORTS
        assert "sub" not in info  # no person behind it
        # Not a person's token: userinfo refuses it (no openid scope: 403 insufficient_scope).
        r = userinfo(client, body["access_token"])
        assert r.status_code == 403 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    # Even with the openid scope there is nobody to describe.
    r = token_request(client, {"grant_type": "client_credentials", "scope": "openid"}, client_id=REPORTS)
    body = assert_token_response(r)
    assert "id_token" not in body
    r = userinfo(client, body["access_token"])
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert "sub" not in r.get_json()


def test_client_credentials_scope_limited_to_registration(client, oidc):
    r = token_request(client, {"grant_type": "client_credentials", "scope": "profile email"}, client_id=REPORTS)
    body = assert_token_response(r)
    assert body["scope"] == "profile"  # RFC 6749 §3.3: named when it differs from the request


def test_client_credentials_for_scopes_none_of_which_may_be_granted_is_invalid_scope(client, oidc):
    r = token_request(client, {"grant_type": "client_credentials", "scope": "email"}, client_id=REPORTS)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_scope"
    assert "access_token" not in r.get_json()


def test_client_credentials_refused_for_public_clients(client, oidc):
    r = token_request(client, {"grant_type": "client_credentials"}, client_id=MOBILE, auth="none")
    assert r.status_code in (400, 401)
    assert r.get_json()["error"] in ("invalid_client", "unauthorized_client")
    assert "access_token" not in r.get_json()


def test_client_credentials_needs_the_secret(client, oidc):
    assert_invalid_client(token_request(client, {"grant_type": "client_credentials"}, client_id=REPORTS,
                                        secret="wrong"))
    assert_invalid_client(token_request(client, {"grant_type": "client_credentials"}, client_id=REPORTS,
                                        auth="none"))


def test_third_party_code_exchange(client, oidc):
    code, _ = get_code(client, ELEARNING)
    body = assert_token_response(exchange(client, code, ELEARNING))
    assert body["id_token"]


def test_public_client_tokens(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge, redirect_uri=MOBILE_CB)
    body = assert_token_response(exchange(client, code, MOBILE, verifier=verifier))
    assert body["refresh_token"]


@pytest.mark.parametrize("path", ["/oidc/token", "/oidc/introspect", "/oidc/revoke"])
def test_basic_credentials_that_are_not_utf8_are_invalid_client(client, oidc, path):
    import base64

    header = "Basic " + base64.b64encode(b"\xff:\xff").decode()
    r = client.post(path, data={"grant_type": "authorization_code", "code": "x", "token": "x"},
                    headers={"Authorization": header})
    assert r.status_code == 401
    assert r.get_json()["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
