"""Security keys (WebAuthn): options, registration and authentication through the JSON endpoints with a
software key (tests/mfa/authenticator.py), and every refusal: stale or missing challenge, wrong origin or
RP id, a signature counter that did not go up, an unknown key, a missing CSRF header."""
from __future__ import annotations

import json
import re

import pytest

from idp.core import mfa
from idp.extensions import db
from idp.models import WebAuthnCredential
from tests.conftest import USOSWEB, csrf_token, ticket_from
from tests.mfa.authenticator import SoftKey
from tests.mfa.conftest import (
    enrol_totp,
    events,
    location,
    login,
    path_of,
    recovery_codes_from,
    text,
    tgt,
)

ORIGIN = "http://127.0.0.1:8000"  # the tests' BASE_URL


def meta_token(page: str) -> str:
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert m, "no csrf meta on the page"
    return m.group(1)


def post_json(c, url: str, token: str | None, body: dict | None = None):
    headers = {"X-CSRFToken": token} if token else {}
    return c.post(url, data=json.dumps(body or {}), content_type="application/json", headers=headers)


def register(c, key: SoftKey, *, page_url: str = "/mfa/setup", name: str = "YubiKey", **sign_kw):
    token = meta_token(text(c.get(page_url)))
    r = post_json(c, "/mfa/webauthn/register/options", token)
    assert r.status_code == 200, text(r)
    options = r.get_json()
    return options, post_json(c, "/mfa/webauthn/register", token,
                              {"credential": key.register(options, **sign_kw), "name": name})


def authenticate(c, key: SoftKey, *, page_url: str = "/mfa/verify", **sign_kw):
    token = meta_token(text(c.get(page_url)))
    r = post_json(c, "/mfa/webauthn/authenticate/options", token)
    assert r.status_code == 200, text(r)
    options = r.get_json()
    return options, post_json(c, "/mfa/webauthn/authenticate", token,
                              {"credential": key.sign(options, **sign_kw)})


def test_relying_party_from_base_url(app):
    rp = mfa.relying_party("Uczelnia")
    assert (rp.id, rp.origin, rp.name) == ("127.0.0.1", ORIGIN, "Uczelnia")
    rp = mfa.relying_party(base_url="https://Login.Example.edu.pl:443/idp")
    assert (rp.id, rp.origin) == ("login.example.edu.pl", "https://login.example.edu.pl")
    rp = mfa.relying_party(base_url="https://login.example.edu.pl:8443/")
    assert rp.origin == "https://login.example.edu.pl:8443"


def test_registration_options(app, person):
    options, state = mfa.registration_options(person, mfa.relying_party("Uczelnia"))
    options = json.loads(options)
    assert options["rp"] == {"name": "Uczelnia", "id": "127.0.0.1"}
    assert options["user"]["name"] == "lukasz.zolkiewski@student.example.edu.pl"
    assert options["user"]["displayName"] == person.display_name
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none" and options["excludeCredentials"] == []
    assert state["purpose"] == "register" and state["challenge"] == options["challenge"]
    # The same opaque user handle for every key of the account; nothing personal in it.
    again, _ = mfa.registration_options(person, mfa.relying_party())
    assert json.loads(again)["user"]["id"] == options["user"]["id"]
    assert len(options["user"]["id"]) == 43  # 32 random-looking bytes, base64url


def test_authentication_options_need_a_key(app, person):
    with pytest.raises(mfa.WebAuthnRefused) as exc:
        mfa.authentication_options(person, mfa.relying_party())
    assert exc.value.code == "webauthn_no_credentials"


def test_register_as_first_factor_then_codes(client, person):
    login(client)
    key = SoftKey(ORIGIN)
    options, r = register(client, key)
    assert r.status_code == 200, text(r)
    assert r.get_json()["redirect"] == "/mfa/recovery-codes"
    row = db.session.scalar(db.select(WebAuthnCredential).where(WebAuthnCredential.account_id == person.id))
    assert row.credential_id == key.id and row.name == "YubiKey" and row.transports == ["usb"]
    assert mfa.enrolled(person)
    assert events("mfa.enrolled", person.id)[0].data["method"] == "webauthn"
    page = client.get("/mfa/recovery-codes")
    assert page.status_code == 200 and "Create recovery codes" in text(page)
    r = client.post("/mfa/recovery-codes", data={"csrf_token": csrf_token(text(page))})
    assert len(recovery_codes_from(text(r))) == 10
    # The key is excluded from the next registration options.
    token = meta_token(text(client.get("/mfa")))
    again = post_json(client, "/mfa/webauthn/register/options", token).get_json()
    assert [c["id"] for c in again["excludeCredentials"]] == [key.id]


def test_authenticate_updates_sign_count_and_refuses_a_replay(client, person, browser):
    login(client)
    key = SoftKey(ORIGIN)
    register(client, key)
    other = browser()
    login(other)
    options, r = authenticate(other, key)
    assert r.status_code == 200, text(r)
    assert r.get_json()["redirect"] == "/mfa"
    assert options["userVerification"] == "preferred"
    assert [c["id"] for c in options["allowCredentials"]] == [key.id]
    row = db.session.scalar(db.select(WebAuthnCredential).where(WebAuthnCredential.credential_id == key.id))
    assert row.sign_count == 1 and row.last_used_at is not None
    assert events("mfa.verified", person.id)[-1].data["method"] == "webauthn"
    # A cloned key (or a replayed answer) does not raise the counter: refused.
    third = browser()
    login(third)
    _, r = authenticate(third, key, bump=False)
    assert r.status_code == 400 and "not accepted" in r.get_json()["error"]
    assert events("mfa.failed", person.id)[-1].reason == "webauthn_sign_count"


@pytest.mark.parametrize("tamper, reason", [
    ({"origin": "https://evil.example"}, "webauthn_invalid"),
    ({"rp_id": "evil.example"}, "webauthn_invalid"),
])
def test_authenticate_refuses_wrong_origin_or_rp(client, person, browser, tamper, reason):
    login(client)
    key = SoftKey(ORIGIN)
    register(client, key)
    other = browser()
    login(other)
    _, r = authenticate(other, key, **tamper)
    assert r.status_code == 400
    assert events("mfa.failed", person.id)[-1].reason == reason


def test_authenticate_refuses_unknown_key_and_missing_challenge(client, person, browser):
    login(client)
    register(client, SoftKey(ORIGIN))
    other = browser()
    login(other)
    _, r = authenticate(other, SoftKey(ORIGIN))  # a key that was never registered
    assert r.status_code == 400
    assert events("mfa.failed", person.id)[-1].reason == "webauthn_unknown_credential"
    # The answer without asking for options first (the challenge is used once).
    token = meta_token(text(other.get("/mfa/verify")))
    r = post_json(other, "/mfa/webauthn/authenticate", token, {"credential": {"id": "x"}})
    assert r.status_code == 400
    assert events("mfa.failed", person.id)[-1].reason == "webauthn_no_challenge"


def test_challenge_expires(app, person, clock):
    rp = mfa.relying_party()
    key = SoftKey(ORIGIN)
    options, state = mfa.registration_options(person, rp)
    clock.advance(minutes=6)
    with pytest.raises(mfa.WebAuthnRefused) as exc:
        mfa.register_credential(person, state, key.register(json.loads(options)), rp)
    assert exc.value.code == "webauthn_expired"
    options, state = mfa.registration_options(person, rp)
    with pytest.raises(mfa.WebAuthnRefused) as exc:  # an answer to other options
        other_options = dict(json.loads(options), challenge="AAAA")
        mfa.register_credential(person, state, key.register(other_options), rp)
    assert exc.value.code == "webauthn_invalid"
    assert mfa.register_credential(person, state, key.register(json.loads(options)), rp).sign_count == 0
    with pytest.raises(mfa.WebAuthnRefused) as exc:  # the same key twice
        options, state = mfa.registration_options(person, rp)
        mfa.register_credential(person, state, key.register(json.loads(options)), rp)
    assert exc.value.code == "webauthn_already_registered"


def test_json_endpoints_need_the_csrf_header(client, person):
    login(client)
    r = post_json(client, "/mfa/webauthn/register/options", None)
    assert r.status_code == 400 and "expired" in r.get_json()["error"]


def test_json_endpoints_need_a_login(client, person, browser):
    login(client)
    token = meta_token(text(client.get("/mfa/setup")))
    client.get("/cas/logout")
    for url in ("/mfa/webauthn/register/options", "/mfa/webauthn/authenticate/options"):
        r = post_json(client, url, token)
        assert r.status_code in (400, 403), url  # the logout also ended the CSRF token's session


def test_adding_a_key_to_an_enrolled_account_needs_the_factor(client, person, clock, browser):
    login(client)
    enrol_totp(client, clock)
    other = browser()
    login(other)
    token = meta_token(text(other.get("/mfa/verify")))
    r = post_json(other, "/mfa/webauthn/register/options", token)
    assert r.status_code == 403


def test_remove_key_needs_fresh_check(client, person, clock):
    login(client)
    key = SoftKey(ORIGIN)
    register(client, key)
    row = db.session.scalar(db.select(WebAuthnCredential).where(WebAuthnCredential.credential_id == key.id))
    page = text(client.get("/mfa"))
    assert "YubiKey" in page
    clock.advance(minutes=6)
    r = client.post(f"/mfa/keys/{row.id}/remove", data={"csrf_token": csrf_token(page)})
    assert path_of(location(r)) == "/mfa/verify"
    _, r = authenticate(client, key, page_url="/mfa/verify?reauth=1&next=/mfa")
    assert r.status_code == 200
    r = client.post(f"/mfa/keys/{row.id}/remove", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302 and not mfa.enrolled(person)
    assert events("mfa.removed", person.id)[0].data == {"method": "webauthn", "name": "YubiKey"}


@pytest.mark.policy(mfa__required_for="everyone")
def test_everyone_login_with_a_security_key(client, person, browser):
    login(client)  # pending: no factor yet, so enrol — with a security key this time
    key = SoftKey(ORIGIN)
    _, r = register(client, key)
    assert r.get_json()["redirect"] == "/mfa/recovery-codes"
    assert tgt(client) is None
    page = client.get("/mfa/recovery-codes")
    r = client.post("/mfa/recovery-codes", data={"csrf_token": csrf_token(text(page))})
    assert len(recovery_codes_from(text(r))) == 10 and tgt(client) is not None
    # Another browser: password, then the key, then the ticket.
    other = browser()
    r = login(other, service=USOSWEB)
    assert path_of(location(r)) == "/mfa/verify"
    page = text(other.get("/mfa/verify"))
    assert "Use security key" in page
    _, r = authenticate(other, key)
    assert r.status_code == 200 and tgt(other) is not None
    r = other.get(r.get_json()["redirect"])
    assert r.status_code == 302 and ticket_from(r)
