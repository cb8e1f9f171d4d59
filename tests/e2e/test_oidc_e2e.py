"""OpenID Connect end to end: a real `idp serve` process, headless Chromium, and an independent RP library.

The "e-learning" app (tests/e2e/oidc_app.py) does every protocol step with `oic` (pyoidc, OpenID-certified):
discovery, the code flow with PKCE S256, nonce and state, ID token validation against the JWKS, userinfo,
a refresh, RP-initiated logout and back-channel logout. The CAS app (tests/e2e/relying_app.py) shares the
IdP's SSO session: a login at one lets the person into the other without the password, and one logout
ends both (CAS single logout to the CAS app, an OIDC logout token to the e-learning app).
Screenshots go to test-artifacts/e2e/.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import CANONICAL_USER, OIDC_SERVICE_NAME, PASSWORD, SERVICE_NAME, STUDENT
from tests.e2e.helpers import Documents, query_of, submit_login, ticket_of
from tests.e2e.oidc_app import CLIENT_ID, SCOPES, SIGNING_ALG, Login, OidcApp

pytestmark = pytest.mark.e2e

SAMLP = "{urn:oasis:names:tc:SAML:2.0:protocol}"
FULL_NAME = f"{STUDENT['first_name']} {STUDENT['last_name']}"


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


def _login_of(app: OidcApp) -> Login:
    """The one login the app completed last; it must have succeeded."""
    assert not app.state.errors, app.state.errors
    assert app.state.logins, "the e-learning app completed no code flow"
    login = app.state.logins[-1]
    assert login.error is None, f"the e-learning app's code flow failed: {login.error}"
    return login


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _forgeries(jwt: str) -> list[str]:
    """The ID token with another sub under the original signature, and the same claims unsigned."""
    header, payload, signature = jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "someone-else"
    return [f"{header}.{_b64(claims)}.{signature}", f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."]


def _session_index(logout_request: str) -> str | None:
    node = ET.fromstring(logout_request).find(f"{SAMLP}SessionIndex")
    return node.text if node is not None else None


def _is_login_form(url: str, idp_url: str) -> bool:
    return url.startswith(f"{idp_url}/cas/login")


def test_oidc_code_flow_with_an_independent_rp_library(idp, elearning_app, new_context, artifacts):
    discovery = _get_json(f"{idp.url}/.well-known/openid-configuration")
    jwks = _get_json(discovery["jwks_uri"])
    ctx = new_context(locale="pl-PL")
    page = ctx.new_page()
    docs = Documents(page)
    started = time.time()

    # 1. The app (oic) sends the browser to the authorization endpoint, which shows the IdP's login form.
    page.goto(f"{elearning_app.url}/")
    assert _is_login_form(page.url, idp.url), f"not at the IdP's login form: {page.url}"
    hops = docs.since(0)
    assert [s for _u, s in hops] == [302, 302, 200], hops
    authorize = hops[1][0]
    assert authorize.startswith(discovery["authorization_endpoint"] + "?"), authorize
    request = query_of(authorize)
    assert request["response_type"] == "code"
    assert request["client_id"] == CLIENT_ID
    assert request["redirect_uri"] == elearning_app.redirect_uri
    assert set(request["scope"].split()) == set(SCOPES)
    assert request["code_challenge_method"] == "S256"
    assert request["state"] and request["nonce"] and request["code_challenge"]
    expect(page.locator('input[name="password"]')).to_be_visible()
    expect(page.locator("main")).to_contain_text(OIDC_SERVICE_NAME)
    page.screenshot(path=artifacts / "oidc-login.png", full_page=True)

    # 2. Log in: back at the app's callback, which exchanges the code, checks the ID token, calls
    #    userinfo and refreshes, then shows the person's name.
    mark = docs.mark()
    submit_login(page, STUDENT["aliases"], PASSWORD)
    page.wait_for_url(f"{elearning_app.url}/")
    expect(page.locator("#welcome")).to_have_text(f"Witaj, {FULL_NAME}")
    page.screenshot(path=artifacts / "oidc-app-logged-in.png", full_page=True)
    chain = docs.since(mark)
    callback = [u for u, _s in chain if u.startswith(elearning_app.redirect_uri + "?")]
    assert len(callback) == 1, chain
    response = query_of(callback[0])
    assert response["state"] == request["state"]
    assert response["iss"] == discovery["issuer"], "no RFC 9207 iss in the authorization response"
    assert "code" in response

    login = _login_of(elearning_app)
    assert login.state == request["state"] and login.nonce == request["nonce"]
    assert login.library_nonce == request["nonce"], "oic did not remember the nonce it must check"
    # PKCE: the verifier the library sent with the code matches the challenge the browser carried.
    assert _s256(login.code_verifier) == request["code_challenge"]

    # The ID token, as oic verified it (signature through the JWKS, iss, aud, nonce).
    idt, header = login.id_token, login.id_token_header
    assert header["alg"] == SIGNING_ALG
    assert header.get("kid") in {k["kid"] for k in jwks["keys"]}, (header, jwks)
    assert idt["iss"] == idp.url == discovery["issuer"]
    assert CLIENT_ID in ([idt["aud"]] if isinstance(idt["aud"], str) else idt["aud"])
    assert idt["nonce"] == request["nonce"]
    assert idt.get("sid"), idt
    assert isinstance(idt.get("auth_time"), int) and started - 5 <= idt["auth_time"] <= time.time() + 5, idt
    assert idt.get("acr") in discovery["acr_values_supported"], idt
    assert isinstance(idt.get("amr"), list) and idt["amr"], idt
    assert "@" not in idt["sub"], f"sub looks like an e-mail address: {idt['sub']}"
    assert idt["sub"] not in (STUDENT["album"], STUDENT["pesel"]), idt["sub"]
    # The library's check is a real one: the same token verifies, a forged or unsigned variant does not.
    assert elearning_app.verify_id_token(login.id_token_jwt)["sub"] == idt["sub"]
    for forged in _forgeries(login.id_token_jwt):
        with pytest.raises(Exception):  # noqa: B017 (oic raises several unrelated types)
            elearning_app.verify_id_token(forged)

    # Userinfo (oic also checked that its sub is the ID token's).
    info = login.userinfo
    assert info["sub"] == idt["sub"]
    assert info["given_name"] == "Łukasz"
    assert info["family_name"] == "Żółkiewski"
    assert info["album"] == STUDENT["album"]
    assert info["email"] == CANONICAL_USER
    expect(page.locator("#album")).to_have_text(STUDENT["album"])

    # The refresh (client_secret_basic) rotated the refresh token and issued a working access token.
    assert login.refresh_token and login.refreshed_refresh_token
    assert login.refreshed_refresh_token != login.refresh_token
    assert login.refreshed_access_token and login.refreshed_access_token != login.access_token
    assert login.userinfo_after_refresh["sub"] == idt["sub"]
    assert login.userinfo_after_refresh["album"] == STUDENT["album"]

    # No page along the way was an error.
    assert all(s < 400 for _u, s in docs.seen), docs.seen


def test_cas_login_then_oidc_without_password_and_single_logout(idp, relying_app, elearning_app, new_context,
                                                                  artifacts):
    ctx = new_context(locale="pl-PL")
    page = ctx.new_page()
    docs = Documents(page)
    home = f"{relying_app.url}/app/"

    # 1. Log in at the CAS app (the password form, once).
    page.goto(home)
    assert _is_login_form(page.url, idp.url), page.url
    submit_login(page, STUDENT["aliases"], PASSWORD)
    page.wait_for_url(re.compile("^" + re.escape(home) + r"\?ticket=ST-"))
    ticket = ticket_of(page.url)
    expect(page.locator("#welcome")).to_have_text(f"Witaj, {FULL_NAME}")
    page.screenshot(path=artifacts / "sso-cas-logged-in.png", full_page=True)

    # 2. The e-learning app: the OIDC code flow completes on the same SSO session, no password prompt.
    logins_before = len(elearning_app.state.logins)
    mark = docs.mark()
    before_oidc = time.time()
    page.goto(f"{elearning_app.url}/")
    expect(page.locator("#welcome")).to_have_text(f"Witaj, {FULL_NAME}")
    page.screenshot(path=artifacts / "sso-oidc-without-password.png", full_page=True)
    hops = docs.since(mark)
    assert not [u for u, _s in hops if _is_login_form(u, idp.url)], f"the login form was shown: {hops}"
    assert [s for _u, s in hops] == [302, 302, 303, 200], hops
    assert hops[1][0].startswith(f"{idp.url}/oidc/authorize?"), hops
    assert page.locator('input[name="password"]').count() == 0
    assert len(elearning_app.state.logins) == logins_before + 1
    login = _login_of(elearning_app)
    sid = login.id_token["sid"]
    # The person authenticated once, at the CAS login: the ID token says so.
    assert login.id_token["auth_time"] <= before_oidc, (login.id_token["auth_time"], before_oidc)

    # 3. Log out at the IdP (the CAS logout URL): both apps are told over the back channel.
    slo_seen, bc_seen = len(relying_app.state.slo_posts), len(elearning_app.state.backchannel_posts)
    page.goto(f"{idp.url}/cas/logout")
    page.screenshot(path=artifacts / "sso-logout.png", full_page=True)
    slo = relying_app.state.slo_posts[slo_seen:]
    assert [_session_index(p.logout_request) for p in slo] == [ticket], slo
    assert slo[0].matched_ticket == ticket, "python-cas did not accept the logoutRequest"
    assert ticket not in relying_app.state.sessions

    posts = elearning_app.state.backchannel_posts[bc_seen:]
    assert len(posts) == 1, posts
    post = posts[0]
    assert post.error is None, f"oic refused the logout token: {post.error}"
    assert post.claims["sid"] == sid
    assert post.claims["sub"] == login.id_token["sub"]
    assert post.claims["iss"] == idp.url
    assert CLIENT_ID in post.claims["aud"]
    assert "http://schemas.openid.net/event/backchannel-logout" in post.claims["events"]
    assert "nonce" not in post.claims
    assert post.header.get("typ") == "logout+jwt", post.header
    assert post.ended_sessions == 1, "the logout token ended no e-learning session"
    # The logout page lists both apps, each confirmed.
    apps = page.locator("main ul.apps")
    for name in (SERVICE_NAME, OIDC_SERVICE_NAME):
        expect(apps.locator("li").filter(has_text=name).locator(".ok")).to_have_count(1)
    assert apps.locator(".warn").count() == 0, apps.inner_text()
    assert "idp_tgc" not in {c["name"] for c in ctx.cookies(idp.url)}

    # 4. Both apps ask for the password again.
    page.goto(home)
    assert _is_login_form(page.url, idp.url), page.url
    expect(page.locator('input[name="password"]')).to_be_visible()
    page.goto(f"{elearning_app.url}/")
    assert _is_login_form(page.url, idp.url), page.url
    expect(page.locator('input[name="password"]')).to_be_visible()
    page.screenshot(path=artifacts / "sso-login-after-logout.png", full_page=True)


def test_oidc_login_then_cas_and_rp_initiated_logout(idp, relying_app, elearning_app, new_context, artifacts):
    discovery = _get_json(f"{idp.url}/.well-known/openid-configuration")
    ctx = new_context(locale="pl-PL")
    page = ctx.new_page()
    docs = Documents(page)
    home = f"{relying_app.url}/app/"

    # 1. Log in at the e-learning app, then the CAS app gets a ticket without the form.
    page.goto(f"{elearning_app.url}/")
    assert _is_login_form(page.url, idp.url), page.url
    submit_login(page, STUDENT["album"], PASSWORD)
    page.wait_for_url(f"{elearning_app.url}/")
    expect(page.locator("#welcome")).to_have_text(f"Witaj, {FULL_NAME}")
    login = _login_of(elearning_app)
    mark = docs.mark()
    page.goto(home)
    page.wait_for_url(re.compile("^" + re.escape(home) + r"\?ticket=ST-"))
    hops = docs.since(mark)
    # CAS single sign-on passes through /cas/login, which answers with a redirect, not the form.
    assert [s for _u, s in hops] == [302, 302, 200], hops
    assert _is_login_form(hops[1][0], idp.url) and hops[1][1] == 302, hops
    assert page.locator('input[name="password"]').count() == 0
    ticket = ticket_of(page.url)
    expect(page.locator("#welcome")).to_have_text(f"Witaj, {FULL_NAME}")

    # 2. RP-initiated logout from the e-learning app (oic builds the end-session request).
    page.goto(f"{elearning_app.url}/")
    slo_seen, bc_seen = len(relying_app.state.slo_posts), len(elearning_app.state.backchannel_posts)
    mark = docs.mark()
    page.locator("#logout").click()
    page.wait_for_url(re.compile("^" + re.escape(elearning_app.post_logout_redirect_uri)))
    expect(page.locator("#logged-out")).to_be_visible()
    page.screenshot(path=artifacts / "oidc-rp-logout.png", full_page=True)
    hops = docs.since(mark)
    end_session = [u for u, _s in hops if u.startswith(discovery["end_session_endpoint"] + "?")]
    assert len(end_session) == 1, hops
    sent = query_of(end_session[0])
    assert sent["id_token_hint"] == login.id_token_jwt
    assert sent["post_logout_redirect_uri"] == elearning_app.post_logout_redirect_uri
    returned = elearning_app.state.logout_returns[-1]
    assert returned.state == sent["state"] and returned.expected_state, returned

    slo = relying_app.state.slo_posts[slo_seen:]
    assert [_session_index(p.logout_request) for p in slo] == [ticket], slo
    assert slo[0].matched_ticket == ticket
    posts = elearning_app.state.backchannel_posts[bc_seen:]
    assert len(posts) == 1, posts
    assert posts[0].error is None, posts[0].error
    assert posts[0].claims["sid"] == login.id_token["sid"]
    assert "idp_tgc" not in {c["name"] for c in ctx.cookies(idp.url)}

    # 3. Both apps ask for the password again.
    page.goto(home)
    assert _is_login_form(page.url, idp.url), page.url
    page.goto(f"{elearning_app.url}/")
    assert _is_login_form(page.url, idp.url), page.url
    expect(page.locator('input[name="password"]')).to_be_visible()
    page.screenshot(path=artifacts / "oidc-login-after-rp-logout.png", full_page=True)
