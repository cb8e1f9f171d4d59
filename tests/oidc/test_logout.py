"""One logout ends every app of the SSO session: CAS /cas/logout and OIDC RP-initiated logout, with the
OpenID Connect Back-Channel Logout 1.0 token and the CAS SAML logoutRequest; the logout page."""
from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import csrf_token
from tests.oidc.conftest import (
    CALLBACKS,
    ELEARNING,
    ELEARNING_HOME,
    ISSUER,
    MAIL,
    MAIL_HOME,
    SECRETS,
    auth_params,
    authorize,
    code_from,
    exchange,
    id_token_claims,
    is_login_form,
    jose_header,
    location,
    query,
    refresh,
    tokens,
    userinfo,
    verify_jwt,
    without_query,
)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
PORTAL = "portal"
PORTAL_SECRET = "portal-secret-" + "p" * 40


@pytest.fixture
def rp(register, callback_server, monkeypatch):
    """An OIDC client with a back-channel logout URI and a CAS service, both on the recording server."""
    url = callback_server.url
    monkeypatch.setitem(SECRETS, PORTAL, PORTAL_SECRET)
    monkeypatch.setitem(CALLBACKS, PORTAL, url + "/oidc/callback")
    register(
        {"name": "Portal", "protocol": "oidc", "client_id": PORTAL, "client_secret": PORTAL_SECRET,
         "redirect_uris": [url + "/oidc/callback"], "scopes": ["openid", "profile"], "first_party": True,
         "backchannel_logout_uri": url + "/oidc/backchannel", "post_logout_redirect_uris": [url + "/bye"]},
        {"name": "Dziekanat", "protocol": "cas", "service_pattern": "^" + re.escape(url + "/cas/") + ".*"},
    )
    callback_server.cas_service = url + "/cas/home"
    return callback_server


def posts(server, path: str) -> list[dict]:
    return [c for c in server.calls if c["method"] == "POST" and urlsplit(c["path"]).path == path]


def apps_on_page(html: str) -> list[str]:
    m = re.search(r'<ul class="apps">(.*?)</ul>', html, re.S)
    if not m:
        return []
    return [" ".join(re.sub(r"<[^>]+>", " ", item).split()) for item in re.findall(r"<li>(.*?)</li>", m.group(1), re.S)]


def session_alive(client) -> bool:
    """Does this browser still have an SSO session? (prompt=none answers without side effects)."""
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none"))
    return "code" in query(r)


def cas_ticket(client, service: str) -> str:
    from tests.factories import PASSWORD
    from tests.oidc.conftest import USER

    r = client.get("/cas/login", query_string={"service": service})
    if r.status_code == 200:
        r = client.post("/cas/login", query_string={"service": service},
                        data={"csrf_token": csrf_token(r.get_data(as_text=True)), "username": USER,
                              "password": PASSWORD, "service": service})
    assert r.status_code == 302, r.get_data(as_text=True)[:1000]
    return parse_qs(urlsplit(r.headers["Location"]).query)["ticket"][0]


def verify_logout_token(client, token: str, *, sid: str, sub: str, aud: str = PORTAL) -> dict:
    """Back-Channel Logout 1.0 §2.4 and §2.6, as the relying party validates it."""
    header = jose_header(token)
    assert header["typ"] == "logout+jwt"
    claims = verify_jwt(client, token, header["alg"])
    assert header["alg"] == "RS256"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == aud or claims["aud"] == [aud]
    assert isinstance(claims["iat"], int)
    assert claims["exp"] > claims["iat"]
    assert claims["jti"]
    assert claims["sid"] == sid
    assert claims["sub"] == sub
    assert claims["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims
    return claims


def logout_token_of(call: dict) -> str:
    assert call["form"].keys() == {"logout_token"}, call["form"]
    return call["form"]["logout_token"][0]


# --- /cas/logout ends the OIDC side too ---------------------------------------------------------------------

def test_cas_logout_revokes_oidc_tokens_and_sends_the_logout_token(client, oidc, rp, person):
    body = tokens(client, PORTAL)
    id_claims = id_token_claims(client, body["id_token"], PORTAL)
    assert userinfo(client, body["access_token"]).status_code == 200

    r = client.get("/cas/logout")
    assert r.status_code == 200

    assert userinfo(client, body["access_token"]).status_code == 401
    assert refresh(client, body["refresh_token"], client_id=PORTAL).get_json()["error"] == "invalid_grant"
    [call] = posts(rp, "/oidc/backchannel")
    token = logout_token_of(call)
    verify_logout_token(client, token, sid=id_claims["sid"], sub=person.subject)
    assert id_claims["sub"] == person.subject


def test_one_logout_reaches_the_cas_service_and_the_oidc_client(client, oidc, rp, person):
    """CAS login at one app, OIDC at another (no password), /cas/logout: both are told."""
    ticket = cas_ticket(client, rp.cas_service)
    r = client.get("/oidc/authorize", query_string=auth_params(PORTAL))
    code = code_from(r, rp.url + "/oidc/callback")  # SSO: no login page
    body = exchange(client, code, PORTAL).get_json()
    sid = id_token_claims(client, body["id_token"], PORTAL)["sid"]

    client.get("/cas/logout")

    [saml] = posts(rp, "/cas/home")
    root = ET.fromstring(parse_qs(saml["body"])["logoutRequest"][0])
    assert root.tag == f"{{{SAMLP}}}LogoutRequest"
    assert root.find(f"{{{SAMLP}}}SessionIndex").text == ticket
    [bcl] = posts(rp, "/oidc/backchannel")
    verify_logout_token(client, logout_token_of(bcl), sid=sid, sub=person.subject)
    assert not session_alive(client)


def test_logout_page_lists_each_app_once_with_its_status(client, oidc, rp):
    cas_ticket(client, rp.cas_service)
    cas_ticket(client, rp.cas_service + "?page=2")
    tokens(client, PORTAL)
    tokens(client, PORTAL)
    tokens(client, MAIL)  # no back-channel URI: it cannot confirm
    r = client.get("/cas/logout")
    listed = apps_on_page(r.get_data(as_text=True))
    assert sorted(listed) == sorted(["Dziekanat — confirmed", "Portal — confirmed",
                                     "Poczta — did not confirm: close the browser to be sure"]), listed
    assert len(posts(rp, "/oidc/backchannel")) == 1  # one logout token per client and session
    assert len(posts(rp, "/cas/home")) + len(posts(rp, "/cas/home?page=2")) >= 1


def test_logout_token_after_reauthentication_carries_the_sid_the_client_knows(client, oidc, rp, clock, person):
    body = tokens(client, PORTAL)
    sid = id_token_claims(client, body["id_token"], PORTAL, now=clock.now)["sid"]
    clock.advance(minutes=5)
    code_from(authorize(client, auth_params(MAIL, prompt="login")))  # re-authentication at another client
    client.get("/cas/logout")
    [call] = posts(rp, "/oidc/backchannel")
    claims = verify_jwt(client, logout_token_of(call))
    assert claims["sid"] == sid


def test_failed_back_channel_is_shown_and_logout_still_completes(client, oidc, rp):
    body = tokens(client, PORTAL)
    rp.status = 500
    r = client.get("/cas/logout")
    assert r.status_code == 200
    assert apps_on_page(r.get_data(as_text=True)) == ["Portal — did not confirm: close the browser to be sure"]
    assert userinfo(client, body["access_token"]).status_code == 401
    assert not session_alive(client)


def test_logout_token_signed_with_the_clients_algorithm(client, oidc, register, callback_server, monkeypatch,
                                                        person):
    url = callback_server.url
    monkeypatch.setitem(SECRETS, "es-portal", "e" * 40)
    monkeypatch.setitem(CALLBACKS, "es-portal", url + "/cb")
    register({"name": "ES portal", "protocol": "oidc", "client_id": "es-portal", "client_secret": "e" * 40,
              "redirect_uris": [url + "/cb"], "scopes": ["openid"], "first_party": True,
              "backchannel_logout_uri": url + "/bcl", "id_token_signed_response_alg": "ES256"})
    body = tokens(client, "es-portal")
    sid = verify_jwt(client, body["id_token"], "ES256")["sid"]
    client.get("/cas/logout")
    [call] = posts(callback_server, "/bcl")
    token = logout_token_of(call)
    assert jose_header(token)["alg"] == "ES256"
    claims = verify_jwt(client, token, "ES256")
    assert claims["sid"] == sid and claims["sub"] == person.subject and claims["aud"] in ("es-portal", ["es-portal"])


# --- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) -------------------------------------------------

def test_valid_hint_logs_out_without_confirmation_and_redirects_with_state(client, oidc, rp, person):
    body = tokens(client, PORTAL)
    sid = id_token_claims(client, body["id_token"], PORTAL)["sid"]
    r = client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"],
                                                 "post_logout_redirect_uri": rp.url + "/bye", "state": "bye-42"})
    url = location(r)
    assert without_query(url) == rp.url + "/bye"
    assert query(url) == {"state": "bye-42"}
    assert not session_alive(client)
    assert userinfo(client, body["access_token"]).status_code == 401
    [call] = posts(rp, "/oidc/backchannel")
    verify_logout_token(client, logout_token_of(call), sid=sid, sub=person.subject)


def test_valid_hint_without_redirect_shows_the_logged_out_page(client, oidc, rp):
    body = tokens(client, PORTAL)
    r = client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"]})
    assert r.status_code == 200
    assert "You have been logged out" in r.get_data(as_text=True)
    assert apps_on_page(r.get_data(as_text=True)) == ["Portal — confirmed"]
    assert not session_alive(client)


def test_rp_may_post_the_logout_request(client, oidc, rp):
    """RP-Initiated Logout 1.0 §2: the OP supports GET and POST (form-serialised, no CSRF token of ours)."""
    body = tokens(client, PORTAL)
    r = client.post("/oidc/logout", data={"id_token_hint": body["id_token"],
                                          "post_logout_redirect_uri": rp.url + "/bye", "state": "s1"})
    assert without_query(location(r)) == rp.url + "/bye"
    assert query(r) == {"state": "s1"}
    assert not session_alive(client)


def test_unregistered_post_logout_redirect_uri_is_an_error_page(client, oidc):
    body = tokens(client, MAIL)
    for target in ("https://evil.example.com/", MAIL_HOME + "x", MAIL_HOME.rstrip("/"), ELEARNING_HOME):
        r = client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"],
                                                     "post_logout_redirect_uri": target, "state": "s"})
        assert r.status_code == 400 and "Location" not in r.headers, target
        assert r.mimetype == "text/html"
    assert session_alive(client)
    assert userinfo(client, body["access_token"]).status_code == 200


def test_post_logout_redirect_uri_without_any_client_is_an_error_page(client, oidc):
    tokens(client, MAIL)
    r = client.get("/oidc/logout", query_string={"post_logout_redirect_uri": MAIL_HOME})
    assert r.status_code == 400 and "Location" not in r.headers
    assert session_alive(client)


def test_client_id_naming_another_client_than_the_hint_is_refused(client, oidc):
    body = tokens(client, MAIL)
    r = client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"], "client_id": ELEARNING,
                                                 "post_logout_redirect_uri": ELEARNING_HOME})
    assert r.status_code == 400 and "Location" not in r.headers
    assert session_alive(client)


def test_without_hint_a_confirmation_page_then_post_with_csrf_logs_out(client, oidc):
    body = tokens(client, MAIL)
    r = client.get("/oidc/logout", query_string={"client_id": MAIL, "post_logout_redirect_uri": MAIL_HOME,
                                                 "state": "st"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Log out?" in html and "Poczta" in html
    assert session_alive(client)  # showing the page logs nobody out
    form = {"csrf_token": csrf_token(html), "client_id": MAIL, "post_logout_redirect_uri": MAIL_HOME,
            "state": "st"}
    r = client.post("/oidc/logout", data=form)
    assert without_query(location(r)) == MAIL_HOME
    assert query(r) == {"state": "st"}
    assert not session_alive(client)
    assert userinfo(client, body["access_token"]).status_code == 401


def test_confirmation_without_redirect_shows_the_logged_out_page(client, oidc):
    tokens(client, MAIL)
    html = client.get("/oidc/logout").get_data(as_text=True)
    r = client.post("/oidc/logout", data={"csrf_token": csrf_token(html)})
    assert r.status_code == 200 and "You have been logged out" in r.get_data(as_text=True)
    assert not session_alive(client)


def test_confirmation_post_without_or_with_a_forged_csrf_token_does_nothing(client, oidc):
    tokens(client, MAIL)
    for data in ({}, {"csrf_token": "forged"}):
        r = client.post("/oidc/logout", data=data)
        assert "Location" not in r.headers
        assert "You have been logged out" not in r.get_data(as_text=True)
        assert session_alive(client)


@pytest.mark.parametrize("hint", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."])
def test_garbage_hint_is_400(client, oidc, hint):
    tokens(client, MAIL)
    r = client.get("/oidc/logout", query_string={"id_token_hint": hint, "post_logout_redirect_uri": MAIL_HOME})
    assert r.status_code == 400 and "Location" not in r.headers
    assert session_alive(client)


def test_forged_hint_is_400(client, oidc):
    """A token with our kid and iss but signed by someone else's key, and one with a tampered payload."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    body = tokens(client, MAIL)
    claims = id_token_claims(client, body["id_token"], MAIL)
    kid = jose_header(body["id_token"])["kid"]
    forged = jwt.encode({"alg": "RS256", "kid": kid}, claims, RSAKey.generate_key(2048))
    head, payload, sig = body["id_token"].split(".")
    other = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    other["sid"] = "someone-else"
    tampered = ".".join([head, base64.urlsafe_b64encode(json.dumps(other).encode()).rstrip(b"=").decode(), sig])
    for hint in (forged, tampered):
        r = client.get("/oidc/logout", query_string={"id_token_hint": hint, "post_logout_redirect_uri": MAIL_HOME})
        assert r.status_code == 400 and "Location" not in r.headers
    assert session_alive(client)


def test_expired_hint_is_still_accepted(client, oidc, clock, app):
    body = tokens(client, MAIL)
    clock.advance(seconds=app.config["OIDC_ID_TOKEN_LIFETIME"] + 3600)
    assert session_alive(client)
    r = client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"],
                                                 "post_logout_redirect_uri": MAIL_HOME, "state": "late"})
    assert without_query(location(r)) == MAIL_HOME and query(r) == {"state": "late"}
    assert not session_alive(client)


def test_hint_of_an_earlier_session_asks_for_confirmation(client, oidc):
    old = tokens(client, MAIL)["id_token"]
    client.get("/cas/logout")
    tokens(client, MAIL)  # logged in again: a new session, a new sid
    r = client.get("/oidc/logout", query_string={"id_token_hint": old, "post_logout_redirect_uri": MAIL_HOME})
    assert r.status_code == 200 and "Log out?" in r.get_data(as_text=True)
    assert session_alive(client)


def test_hint_without_a_session_just_redirects(client, oidc, browser):
    body = tokens(client, MAIL)
    other = browser()  # no session in this browser: nothing to end, the app gets its redirect
    r = other.get("/oidc/logout", query_string={"id_token_hint": body["id_token"],
                                                "post_logout_redirect_uri": MAIL_HOME, "state": "x"})
    assert without_query(location(r)) == MAIL_HOME and query(r) == {"state": "x"}
    assert session_alive(client)  # the first browser's session is untouched


def test_logout_token_is_not_an_id_token_hint(client, oidc, rp):
    """The OP's logout token is signed with the same keys; it must not pass as an id_token_hint."""
    tokens(client, PORTAL)
    client.get("/cas/logout")
    [call] = posts(rp, "/oidc/backchannel")
    logout_token = logout_token_of(call)
    tokens(client, PORTAL)
    r = client.get("/oidc/logout", query_string={"id_token_hint": logout_token,
                                                 "post_logout_redirect_uri": rp.url + "/bye"})
    assert r.status_code == 400 and "Location" not in r.headers
    assert session_alive(client)


def test_logout_ends_the_session_for_cas_too(client, oidc):
    body = tokens(client, MAIL)
    client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"]})
    from tests.conftest import USOSWEB

    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 200 and is_login_form(r.get_data(as_text=True))


def test_prompt_none_after_logout_is_login_required(client, oidc):
    body = tokens(client, MAIL)
    client.get("/oidc/logout", query_string={"id_token_hint": body["id_token"]})
    r = authorize(client, auth_params(MAIL, prompt="none"), login=False)
    assert query(r)["error"] == "login_required"


@pytest.mark.parametrize("client_id", ["x" * 300, "mail\x00"])
def test_logout_naming_a_client_id_no_client_can_have_is_an_error_page(client, oidc, client_id):
    """The refusal is audited with the client_id as the actor: cut to the column and without U+0000
    (PostgreSQL stores neither), never a 500."""
    r = client.get("/oidc/logout", query_string={"client_id": client_id, "post_logout_redirect_uri": MAIL_HOME})
    assert r.status_code == 400 and "Location" not in r.headers


def test_audit_keeps_an_event_whatever_the_request_sent(app):
    from idp.core import audit
    from idp.extensions import db
    from idp.models import AuditEvent

    audit.record("test.event", actor="a\x00" + "b" * 300, reason="r\x00" * 40, client_ip="1\x00",
                 data={"service": "s\x00t", "list": ["x\x00"]})
    audit.append("test.event2", actor="c\x00", data={"k": "v\x00"})
    db.session.commit()
    events = {e.action: e for e in db.session.scalars(db.select(AuditEvent))}
    assert events["test.event"].actor == "a\ufffd" + "b" * 252
    assert len(events["test.event"].reason) == 64
    assert events["test.event"].data == {"service": "s\ufffdt", "list": ["x\ufffd"]}
    assert events["test.event2"].actor == "c\ufffd" and events["test.event2"].data == {"k": "v\ufffd"}
