"""The ID token, verified with joserfc from /oidc/jwks only (as a relying party would)."""
from __future__ import annotations

import base64
import hashlib

import pytest

from tests.oidc.conftest import (
    ALGS,
    ISSUER,
    LIBRARY,
    MAIL,
    MOBILE,
    USER,
    WIKI,
    auth_params,
    authorize,
    code_from,
    exchange,
    get_code,
    id_token_claims,
    jose_header,
    jwks,
    pkce,
    timestamp,
    tokens,
    userinfo,
    verify_jwt,
)


def half_hash(value: str, alg: str) -> str:
    """OIDC Core §3.1.3.6 at_hash: left half of the hash the alg uses (SHA-512 for Ed25519)."""
    digest = (hashlib.sha512 if alg == "EdDSA" else hashlib.sha256)(value.encode()).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def sid_of_session() -> str:
    from idp.extensions import db
    from idp.models import SsoSession

    db.session.expire_all()
    [session] = db.session.scalars(db.select(SsoSession).where(SsoSession.ended_at.is_(None))).all()
    return session.sid


def test_standard_claims(client, oidc, app, clock):
    code, _ = get_code(client, MAIL, nonce="n-0S6_WzA2Mj")
    body = exchange(client, code, MAIL).get_json()
    claims = id_token_claims(client, body["id_token"], MAIL, nonce="n-0S6_WzA2Mj", now=clock.now)
    assert claims["iss"] == ISSUER
    assert claims["aud"] == [MAIL] or claims["aud"] == MAIL
    assert claims["azp"] == MAIL
    assert claims["iat"] == timestamp(clock.now)
    assert claims["exp"] - claims["iat"] == app.config["OIDC_ID_TOKEN_LIFETIME"]
    assert claims["auth_time"] == timestamp(clock.now)
    assert claims["acr"] == "urn:idp:acr:password"
    assert claims["amr"] == ["pwd"]
    assert claims["sid"] == sid_of_session()
    assert claims["at_hash"] == half_hash(body["access_token"], "RS256")
    assert "c_hash" not in claims  # code flow: no code in the token response
    header = jose_header(body["id_token"])
    assert header["alg"] == "RS256"
    assert header["kid"] in {k["kid"] for k in jwks(client)["keys"] if k["alg"] == "RS256"}


def test_sub_is_the_stable_random_subject(client, browser, oidc, person):
    first = tokens(client, MAIL, scope="openid email")
    claims = id_token_claims(client, first["id_token"], MAIL)
    assert claims["sub"] == person.subject
    assert "@" not in claims["sub"] and claims["sub"] != person.album
    assert USER not in claims["sub"]
    # The same person, another client, same session.
    other = tokens(client, LIBRARY)
    assert id_token_claims(client, other["id_token"], LIBRARY)["sub"] == claims["sub"]
    # A new session in another browser.
    again = tokens(browser(), MAIL)
    assert id_token_claims(client, again["id_token"], MAIL)["sub"] == claims["sub"]
    # After logout and a new login.
    client.get("/cas/logout")
    later = tokens(client, MAIL)
    assert id_token_claims(client, later["id_token"], MAIL)["sub"] == claims["sub"]
    assert userinfo(client, later["access_token"]).get_json()["sub"] == claims["sub"]


def test_sub_stays_when_the_email_changes(client, oidc, person):
    from idp.extensions import db

    before = id_token_claims(client, tokens(client, MAIL)["id_token"], MAIL)["sub"]
    client.get("/cas/logout")
    for ident in person.identifiers:
        if ident.kind == "university_email":
            ident.value = "l.zolkiewski@student.example.edu.pl"
    db.session.commit()
    code = code_from(authorize(client, auth_params(MAIL, scope="openid email"),
                               username="l.zolkiewski@student.example.edu.pl"))
    after = exchange(client, code, MAIL).get_json()
    assert id_token_claims(client, after["id_token"], MAIL)["sub"] == before
    assert userinfo(client, after["access_token"]).get_json()["email"] == "l.zolkiewski@student.example.edu.pl"


def test_two_people_have_different_subjects(client, browser, oidc):
    from tests.factories import create_account

    create_account("54321", first_name="Anna", last_name="Nowak", university_email="anna.nowak@student.example.edu.pl",
                   private_email=None, aliases=(), pesel=None)
    a = id_token_claims(client, tokens(client, MAIL)["id_token"], MAIL)["sub"]
    other = browser()
    code = code_from(authorize(other, auth_params(MAIL), username="anna.nowak@student.example.edu.pl"))
    b = id_token_claims(client, exchange(other, code, MAIL).get_json()["id_token"], MAIL)["sub"]
    assert a != b


@pytest.mark.parametrize("client_id", [LIBRARY, WIKI])
def test_client_chosen_algorithm(client, oidc, client_id):
    alg = ALGS[client_id]
    body = tokens(client, client_id)
    header = jose_header(body["id_token"])
    assert header["alg"] == alg
    published = {k["kid"]: k for k in jwks(client)["keys"]}
    assert header["kid"] in published and published[header["kid"]]["alg"] == alg
    claims = id_token_claims(client, body["id_token"], client_id)
    assert claims["at_hash"] == half_hash(body["access_token"], alg)


def test_id_token_does_not_verify_with_another_algorithm(client, oidc):
    from joserfc.errors import JoseError

    body = tokens(client, MAIL)
    with pytest.raises((JoseError, AssertionError, ValueError)):
        verify_jwt(client, body["id_token"], "ES256")


def test_tampered_id_token_fails_verification(client, oidc):
    from joserfc.errors import BadSignatureError

    body = tokens(client, MAIL)
    head, payload, sig = body["id_token"].split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(b'"mail"', b'"evil"')
    forged = ".".join([head, base64.urlsafe_b64encode(claims).rstrip(b"=").decode(), sig])
    with pytest.raises(BadSignatureError):
        verify_jwt(client, forged, "RS256")


def test_public_client_id_token(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    body = exchange(client, code, MOBILE, verifier=verifier).get_json()
    claims = id_token_claims(client, body["id_token"], MOBILE)
    assert claims["azp"] == MOBILE


def test_id_token_carries_no_personal_claims(client, oidc):
    """docs/oidc.md: profile, e-mail and university claims come from userinfo only (the ID token travels
    back in logout URLs as id_token_hint), whatever scope was granted."""
    body = tokens(client, MAIL, scope="openid profile email university")
    claims = id_token_claims(client, body["id_token"], MAIL)
    assert set(claims) <= {"iss", "sub", "aud", "azp", "exp", "iat", "auth_time", "nonce", "sid", "acr", "amr",
                           "at_hash"}, sorted(claims)
    assert userinfo(client, body["access_token"]).get_json()["album"] == "12345"


def test_unregistered_scope_is_not_granted(client, oidc):
    """`library` is registered for openid + profile only: email and university are dropped."""
    body = tokens(client, LIBRARY, scope="openid profile email university")
    assert set(body["scope"].split()) == {"openid", "profile"}
    claims = id_token_claims(client, body["id_token"], LIBRARY)
    assert "email" not in claims and "album" not in claims
    info = userinfo(client, body["access_token"]).get_json()
    assert "email" not in info and "album" not in info and info["given_name"] == "Łukasz"


def test_no_id_token_without_openid_scope(client, oidc):
    body = tokens(client, MAIL, scope="profile")
    assert "id_token" not in body
    assert body["scope"] == "profile"


# --- key rotation, as a relying party sees it through the JWKS ---------------------------------------------------

def rotate(app, now, hours: int = 1) -> list[str]:
    """What `idp keys rotate` does (the test only sets the stage; verification uses /oidc/jwks)."""
    import datetime as dt
    from pathlib import Path

    from idp.oidc.keys import KeyStore

    return KeyStore(Path(app.instance_path)).rotate(now, dt.timedelta(hours=hours))


def test_rotation_old_tokens_verify_until_the_old_key_retires(client, oidc, app, clock):
    before = tokens(client, MAIL)
    old_kid = jose_header(before["id_token"])["kid"]
    new_kids = rotate(app, clock.now)
    published = {k["kid"] for k in jwks(client)["keys"]}
    assert old_kid in published and set(new_kids) <= published
    # Still verifiable from the JWKS (an RP that cached the old token or the old set keeps working).
    assert verify_jwt(client, before["id_token"], "RS256")["sub"]
    after = tokens(client, MAIL)
    assert jose_header(after["id_token"])["kid"] in new_kids
    assert id_token_claims(client, after["id_token"], MAIL, now=clock.now)
    # Past the retirement time the old key is gone from the JWKS, and its tokens no longer verify there.
    clock.advance(hours=1, seconds=1)
    published = {k["kid"] for k in jwks(client)["keys"]}
    assert old_kid not in published and set(new_kids) <= published
    with pytest.raises(AssertionError):
        verify_jwt(client, before["id_token"], "RS256")


def test_id_token_hint_signed_by_a_retired_key_is_refused(client, oidc, app, clock):
    from tests.oidc.conftest import MAIL_HOME

    old = tokens(client, MAIL)["id_token"]
    rotate(app, clock.now)
    clock.advance(minutes=30)
    r = client.get("/oidc/logout", query_string={"id_token_hint": old, "post_logout_redirect_uri": MAIL_HOME})
    assert r.status_code == 302  # retiring, still published: accepted
    tokens(client, MAIL)
    clock.advance(minutes=31)
    r = client.get("/oidc/logout", query_string={"id_token_hint": old, "post_logout_redirect_uri": MAIL_HOME})
    assert r.status_code == 400 and "Location" not in r.headers
