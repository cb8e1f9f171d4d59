"""The authorization endpoint: request validation, PKCE, state/iss, prompt, max_age, login_hint, consent,
and the shared SSO session (CAS login first, then OIDC without a password prompt)."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.conftest import USOSWEB, csrf_token
from tests.factories import PASSWORD, create_account
from tests.oidc.conftest import (
    ELEARNING,
    ELEARNING_CB,
    ISSUER,
    MAIL,
    MAIL_CB,
    MAIL_CB2,
    MOBILE,
    MOBILE_CB,
    REPORTS,
    USER,
    audit_events,
    auth_params,
    authorize,
    cas_ticket_login,
    code_from,
    consent,
    exchange,
    get_code,
    id_token_claims,
    is_login_form,
    local,
    location,
    pkce,
    query,
    refresh,
    timestamp,
    tokens,
    userinfo,
    without_query,
)


def assert_error_page(response, status: int = 400):
    """An error page on the IdP: never a redirect, whatever the parameters asked for."""
    assert response.status_code == status, (response.status_code, response.headers.get("Location"))
    assert "Location" not in response.headers
    assert response.mimetype == "text/html"


def error_redirect(response, redirect_uri: str, error: str, state: str | None = "st-123") -> dict:
    """An error sent back to the client's registered redirect URI, with state and iss (RFC 9207)."""
    url = location(response)
    assert without_query(url) == redirect_uri, url
    q = query(url)
    assert q["error"] == error, q
    assert "code" not in q
    assert q["iss"] == ISSUER
    if state is None:
        assert "state" not in q
    else:
        assert q["state"] == state
    return q


def login_redirect(response) -> str:
    url = location(response)
    assert urlsplit(url).path == "/cas/login", url
    return url


# --- who is asking, and where the answer goes -----------------------------------------------------------

def test_unknown_client_gets_an_error_page_never_a_redirect(client, oidc):
    r = client.get("/oidc/authorize", query_string=auth_params("no-such-client", redirect_uri=MAIL_CB))
    assert_error_page(r)
    assert audit_events("oidc.authorize.refused")


def test_missing_client_id_is_an_error_page(client, oidc):
    params = auth_params(MAIL)
    del params["client_id"]
    assert_error_page(client.get("/oidc/authorize", query_string=params))


@pytest.mark.parametrize("redirect_uri", [
    "https://evil.example.com/oidc/callback",       # not registered
    MAIL_CB + "/",                                   # trailing slash
    MAIL_CB + "?next=/inbox",                        # extra query
    MAIL_CB.upper(),                                 # different case
    MAIL_CB.replace("https://", "http://"),          # different scheme
    MAIL_CB + "#frag",                               # fragment
    "https://mail.example.edu.pl/oidc/callback/../callback",  # path tricks
    "https://mail.example.edu.pl.evil.example.com/oidc/callback",
    ELEARNING_CB,                                    # another client's URI
])
def test_redirect_uri_must_match_exactly(client, oidc, redirect_uri):
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, redirect_uri=redirect_uri))
    assert_error_page(r)


def test_bad_redirect_uri_wins_over_other_errors(client, oidc):
    """Even with an unsupported response_type or prompt=none, an unregistered URI gets a page."""
    for extra in ({"response_type": "token"}, {"prompt": "none"}, {"code_challenge_method": "plain"}):
        params = {**auth_params(MAIL, redirect_uri="https://evil.example.com/cb"), **extra}
        assert_error_page(client.get("/oidc/authorize", query_string=params))


def test_missing_redirect_uri_in_an_openid_request_is_an_error_page(client, oidc):
    # OIDC Core §3.1.2.1: redirect_uri is REQUIRED; mail has two, mobile one: a page either way.
    assert_error_page(client.get("/oidc/authorize", query_string=auth_params(MAIL, redirect_uri=None)))
    _, challenge = pkce()
    assert_error_page(client.get("/oidc/authorize",
                                 query_string=auth_params(MOBILE, redirect_uri=None, challenge=challenge)))


def test_registered_redirect_uri_with_a_query_keeps_it(client, oidc, register):
    uri = "https://tenant.example.edu.pl/cb?tenant=wmii"
    register({"name": "Tenant", "protocol": "oidc", "client_id": "tenant", "client_secret": "t" * 40,
              "redirect_uris": [uri], "scopes": ["openid"], "first_party": True})
    r = authorize(client, auth_params("tenant", redirect_uri=uri))
    q = query(r)
    assert without_query(location(r)) == "https://tenant.example.edu.pl/cb"
    assert q["tenant"] == "wmii" and q["code"] and q["iss"] == ISSUER
    # The URI without its query is not the registered one.
    assert_error_page(client.get("/oidc/authorize",
                                 query_string=auth_params("tenant", redirect_uri="https://tenant.example.edu.pl/cb")))


def test_both_registered_redirect_uris_work(client, oidc):
    code, _ = get_code(client, MAIL, redirect_uri=MAIL_CB2)
    assert exchange(client, code, MAIL, redirect_uri=MAIL_CB2).status_code == 200


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "id_token code", "code token",
                                           "code id_token token", "none", "", None])
def test_only_response_type_code(client, oidc, response_type):
    params = auth_params(MAIL)
    if response_type is None:
        del params["response_type"]
    else:
        params["response_type"] = response_type
    r = client.get("/oidc/authorize", query_string=params)
    error_redirect(r, MAIL_CB, "unsupported_response_type")


def test_client_not_registered_for_the_code_grant_cannot_get_a_code(client, oidc):
    """`reports` is registered for client_credentials only (RFC 6749 §4.1.2.1 unauthorized_client)."""
    r = authorize(client, auth_params(REPORTS, redirect_uri="https://reports.example.edu.pl/cb"))
    error_redirect(r, "https://reports.example.edu.pl/cb", "unauthorized_client")


@pytest.mark.parametrize("param, error", [("request", "request_not_supported"),
                                          ("request_uri", "request_uri_not_supported")])
def test_request_objects_are_refused_not_ignored(client, oidc, param, error):
    """OIDC Core §6.1/§6.2: discovery says unsupported, so a request using one gets the error."""
    get_code(client, MAIL)
    value = "eyJhbGciOiJub25lIn0.eyJzY29wZSI6Im9wZW5pZCJ9." if param == "request" else "https://mail.example.edu.pl/r"
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, **{param: value}))
    error_redirect(r, MAIL_CB, error)


def test_repeated_parameter_is_refused(client, oidc):
    url = ("/oidc/authorize?response_type=code&client_id=mail&scope=openid&state=a&state=b&redirect_uri="
           + MAIL_CB)
    r = client.get(url)
    assert r.status_code in (302, 400)
    if r.status_code == 302:
        assert query(r)["error"] == "invalid_request"
        assert "code" not in query(r)
    else:
        assert_error_page(r)


# --- state, iss, nonce ----------------------------------------------------------------------------------

def test_state_and_iss_in_the_success_response(client, oidc):
    params = auth_params(MAIL, state="opaque/state+with spaces&=chars")
    r = authorize(client, params)
    q = query(r)
    assert without_query(location(r)) == MAIL_CB
    assert q["state"] == "opaque/state+with spaces&=chars"
    assert q["iss"] == ISSUER
    assert set(q) == {"code", "state", "iss"}


def test_no_state_no_state_in_response(client, oidc):
    r = authorize(client, auth_params(MAIL, state=None))
    q = query(r)
    assert "state" not in q and q["iss"] == ISSUER and q["code"]


def test_iss_in_every_error_response(client, oidc):
    """RFC 9207 §2: the iss parameter in error responses too (each error path, one by one)."""
    cases = [
        (auth_params(MAIL, response_type="token"), MAIL_CB, "unsupported_response_type"),
        (auth_params(MOBILE), MOBILE_CB, "invalid_request"),
        (auth_params(MAIL, prompt="none"), MAIL_CB, "login_required"),
        (auth_params(MAIL, prompt="none login"), MAIL_CB, "invalid_request"),
    ]
    for params, uri, error in cases:
        r = client.get("/oidc/authorize", query_string=params)
        q = error_redirect(r, uri, error)
        assert list(query(r)).count("iss") == 1
        assert q["iss"] == ISSUER


def test_nonce_reaches_the_id_token(client, oidc):
    code, _ = get_code(client, MAIL, nonce="nonce-Zx81")
    body = exchange(client, code, MAIL).get_json()
    assert id_token_claims(client, body["id_token"], MAIL, nonce="nonce-Zx81")["nonce"] == "nonce-Zx81"


def test_no_nonce_no_nonce_claim(client, oidc):
    code, _ = get_code(client, MAIL, nonce=None)
    body = exchange(client, code, MAIL).get_json()
    id_token_claims(client, body["id_token"], MAIL, nonce=None)


# --- PKCE (RFC 7636, S256 only) ---------------------------------------------------------------------------

def test_public_client_without_code_challenge_is_refused(client, oidc):
    r = client.get("/oidc/authorize", query_string=auth_params(MOBILE))
    error_redirect(r, MOBILE_CB, "invalid_request")


def test_pkce_method_plain_is_refused(client, oidc):
    _, challenge = pkce()
    for client_id, uri in ((MOBILE, MOBILE_CB), (MAIL, MAIL_CB)):
        params = auth_params(client_id, challenge=challenge)
        params["code_challenge_method"] = "plain"
        error_redirect(client.get("/oidc/authorize", query_string=params), uri, "invalid_request")


def test_pkce_challenge_without_method_is_refused(client, oidc):
    """RFC 7636 would default to plain; plain is refused, so a challenge must name S256."""
    _, challenge = pkce()
    for client_id, uri in ((MOBILE, MOBILE_CB), (MAIL, MAIL_CB)):
        params = auth_params(client_id, challenge=challenge)
        del params["code_challenge_method"]
        error_redirect(client.get("/oidc/authorize", query_string=params), uri, "invalid_request")


def test_pkce_method_without_challenge_is_refused(client, oidc):
    params = auth_params(MAIL)
    params["code_challenge_method"] = "S256"
    error_redirect(client.get("/oidc/authorize", query_string=params), MAIL_CB, "invalid_request")


@pytest.mark.parametrize("challenge", ["short", "x" * 129, "bad challenge with spaces and enough chars....."])
def test_malformed_code_challenge_is_refused(client, oidc, challenge):
    params = auth_params(MOBILE, challenge=challenge)
    error_redirect(client.get("/oidc/authorize", query_string=params), MOBILE_CB, "invalid_request")


def test_public_client_with_s256_gets_tokens(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MOBILE, challenge=challenge)
    r = exchange(client, code, MOBILE, verifier=verifier)
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["access_token"]


def test_confidential_client_without_pkce_is_accepted(client, oidc):
    code, _ = get_code(client, MAIL)
    assert exchange(client, code, MAIL).status_code == 200


def test_confidential_client_with_pkce_must_send_the_verifier(client, oidc):
    verifier, challenge = pkce()
    code, _ = get_code(client, MAIL, challenge=challenge)
    r = exchange(client, code, MAIL)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"
    code, _ = get_code(client, MAIL, challenge=challenge)
    assert exchange(client, code, MAIL, verifier=verifier).status_code == 200


# --- prompt, max_age, login_hint ----------------------------------------------------------------------------

def test_without_session_the_login_page_and_back(client, oidc):
    params = auth_params(MAIL)
    r = client.get("/oidc/authorize", query_string=params)
    page = client.get(local(login_redirect(r)))
    html = page.get_data(as_text=True)
    assert is_login_form(html)
    assert "Poczta" in html  # the login page names the app being logged in to
    r = client.post(local(login_redirect(r)), data={"csrf_token": csrf_token(html), "username": USER,
                                                   "password": PASSWORD})
    back = client.get(local(location(r)))
    code_from(back, MAIL_CB)


def test_wrong_password_keeps_the_person_on_the_login_page(client, oidc):
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL))
    login = local(login_redirect(r))
    page = client.get(login)
    r = client.post(login, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": USER,
                                 "password": "not-the-password"})
    assert r.status_code == 401
    assert is_login_form(r.get_data(as_text=True))
    assert "Location" not in r.headers
    # Still no session: prompt=none says so.
    error_redirect(client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none")), MAIL_CB,
                   "login_required")


def test_prompt_none_without_session_is_login_required(client, oidc):
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none"))
    error_redirect(r, MAIL_CB, "login_required")


def test_prompt_none_with_session_gives_a_code(client, oidc):
    get_code(client, MAIL)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none"))
    code_from(r, MAIL_CB)


def test_prompt_none_with_session_but_no_consent_is_consent_required(client, oidc):
    get_code(client, MAIL)  # logged in (first-party app, no consent needed)
    r = client.get("/oidc/authorize", query_string=auth_params(ELEARNING, prompt="none"))
    error_redirect(r, ELEARNING_CB, "consent_required")


def test_prompt_none_with_other_values_is_invalid_request(client, oidc):
    for prompt in ("none login", "login none", "none consent"):
        r = client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt=prompt))
        error_redirect(r, MAIL_CB, "invalid_request")
    get_code(client, MAIL)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none login"))
    error_redirect(r, MAIL_CB, "invalid_request")


def test_prompt_login_with_session_asks_again_and_auth_time_is_the_new_login(client, oidc, clock):
    code, _ = get_code(client, MAIL)
    first = id_token_claims(client, exchange(client, code, MAIL).get_json()["id_token"], MAIL, now=clock.now)
    clock.advance(minutes=7)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="login"))
    login = local(login_redirect(r))
    page = client.get(login)
    assert page.status_code == 200 and is_login_form(page.get_data(as_text=True)), \
        "prompt=login must show the login page even with a session"
    r = client.post(login, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": USER,
                                 "password": PASSWORD})
    back = local(location(r))
    assert urlsplit(back).path == "/oidc/authorize"
    code = code_from(client.get(back), MAIL_CB)
    second = id_token_claims(client, exchange(client, code, MAIL).get_json()["id_token"], MAIL, now=clock.now)
    assert second["auth_time"] == timestamp(clock.now)
    assert second["auth_time"] - first["auth_time"] == 7 * 60
    assert second["sub"] == first["sub"]


def test_reauthentication_keeps_other_clients_tokens(client, oidc, clock):
    """prompt=login at one client is a fresh login of the same person, not a logout: another client's tokens
    from the same SSO session stay valid (as its CAS tickets and PGTs do)."""
    other = tokens(client, ELEARNING)
    clock.advance(minutes=5)
    code_from(authorize(client, auth_params(MAIL, prompt="login")), MAIL_CB)
    assert userinfo(client, other["access_token"]).status_code == 200
    assert refresh(client, other["refresh_token"], client_id=ELEARNING).status_code == 200


def test_prompt_login_does_not_loop(client, oidc):
    """After the new login, the same request (still carrying prompt=login) is answered, not sent back."""
    get_code(client, MAIL)
    r = authorize(client, auth_params(MAIL, prompt="login"))
    code_from(r, MAIL_CB)


def test_max_age_zero_forces_a_new_login(client, oidc, clock):
    get_code(client, MAIL)
    # No time has passed at all (frozen clock): max_age=0 still means "authenticate now" (≈ prompt=login).
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, max_age="0"))
    login_redirect(r)
    clock.advance(seconds=30)
    r = authorize(client, auth_params(MAIL, max_age="0"))
    code = code_from(r, MAIL_CB)
    claims = id_token_claims(client, exchange(client, code, MAIL).get_json()["id_token"], MAIL, now=clock.now)
    assert claims["auth_time"] == timestamp(clock.now)


def test_large_max_age_reuses_the_session(client, oidc, clock):
    code, _ = get_code(client, MAIL)
    first = id_token_claims(client, exchange(client, code, MAIL).get_json()["id_token"], MAIL, now=clock.now)
    clock.advance(minutes=20)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, max_age="86400"))
    code = code_from(r, MAIL_CB)
    claims = id_token_claims(client, exchange(client, code, MAIL).get_json()["id_token"], MAIL, now=clock.now)
    assert claims["auth_time"] == first["auth_time"]  # OIDC Core §3.1.2.1: auth_time present with max_age


def test_max_age_shorter_than_the_session_age_asks_again(client, oidc, clock):
    get_code(client, MAIL)
    clock.advance(minutes=20)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, max_age="600"))
    login_redirect(r)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, max_age="600", prompt="none"))
    error_redirect(r, MAIL_CB, "login_required")


def test_login_hint_prefills_the_username(client, oidc):
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, login_hint="hint.person@example.edu.pl"))
    page = client.get(local(login_redirect(r))).get_data(as_text=True)
    field = re.search(r'<input[^>]*name="username"[^>]*>', page).group(0)
    assert 'value="hint.person@example.edu.pl"' in field


def test_login_hint_is_escaped(client, oidc):
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL, login_hint='"><script>alert(1)</script>'))
    page = client.get(local(login_redirect(r))).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page


# --- consent -------------------------------------------------------------------------------------------

def test_third_party_client_shows_the_consent_page_listing_claims(client, oidc):
    params = auth_params(ELEARNING, scope="openid profile email")
    r = authorize(client, params)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'name="decision"' in html and "E-learning" in html
    assert "your e-mail address" in html and "your full name" in html
    assert "album" not in html  # not requested, not listed


def test_consent_deny_is_access_denied(client, oidc):
    params = auth_params(ELEARNING)
    authorize(client, params)
    r = consent(client, params, "deny")
    error_redirect(r, ELEARNING_CB, "access_denied")
    assert audit_events("oidc.consent.denied")
    # Denial is not remembered as consent.
    r = client.get("/oidc/authorize", query_string=auth_params(ELEARNING, prompt="none"))
    error_redirect(r, ELEARNING_CB, "consent_required")


def test_consent_allow_gives_a_code_and_is_remembered(client, oidc):
    params = auth_params(ELEARNING, scope="openid profile")
    authorize(client, params)
    r = consent(client, params, "allow")
    code = code_from(r, ELEARNING_CB)
    assert exchange(client, code, ELEARNING).status_code == 200
    # The second authorization skips the page, prompt=none too.
    code_from(client.get("/oidc/authorize", query_string=params), ELEARNING_CB)
    code_from(client.get("/oidc/authorize", query_string=auth_params(ELEARNING, scope="openid profile",
                                                                     prompt="none")), ELEARNING_CB)
    # A subset of what was allowed needs no new consent; more than that does.
    code_from(client.get("/oidc/authorize", query_string=auth_params(ELEARNING, scope="openid")), ELEARNING_CB)
    r = client.get("/oidc/authorize", query_string=auth_params(ELEARNING, scope="openid profile email"))
    assert r.status_code == 200 and "your e-mail address" in r.get_data(as_text=True)


def test_consent_is_per_person(client, browser, oidc):
    params = auth_params(ELEARNING)
    authorize(client, params)
    code_from(consent(client, params), ELEARNING_CB)
    create_account("54321", first_name="Anna", last_name="Nowak", university_email="anna.nowak@student.example.edu.pl",
                   private_email=None, aliases=(), pesel=None)
    other = browser()
    r = authorize(other, params, username="anna.nowak@student.example.edu.pl")
    assert r.status_code == 200 and 'name="decision"' in r.get_data(as_text=True)


def test_prompt_consent_shows_the_page_again(client, oidc):
    params = auth_params(ELEARNING)
    authorize(client, params)
    code_from(consent(client, params), ELEARNING_CB)
    again = auth_params(ELEARNING, prompt="consent")
    r = client.get("/oidc/authorize", query_string=again)
    assert r.status_code == 200 and 'name="decision"' in r.get_data(as_text=True)
    code_from(consent(client, again), ELEARNING_CB)


def test_prompt_consent_on_a_first_party_client(client, oidc):
    """First-party clients never show the consent page (registry: first_party)."""
    code_from(authorize(client, auth_params(MAIL, prompt="consent")), MAIL_CB)


def test_first_party_client_skips_consent(client, oidc):
    r = authorize(client, auth_params(MAIL, scope="openid profile email university"))
    code_from(r, MAIL_CB)


def test_consent_form_requires_its_csrf_token(client, oidc):
    params = auth_params(ELEARNING)
    authorize(client, params)
    r = client.post("/oidc/authorize", query_string=params, data={"decision": "allow"})
    assert r.status_code == 400
    assert "Location" not in r.headers
    r = client.post("/oidc/authorize", query_string=params, data={"decision": "allow", "csrf_token": "forged"})
    assert r.status_code == 400
    assert "Location" not in r.headers
    # Nothing was remembered.
    error_redirect(client.get("/oidc/authorize", query_string=auth_params(ELEARNING, prompt="none")), ELEARNING_CB,
                   "consent_required")


def test_consent_token_of_another_browser_does_not_work(client, browser, oidc):
    params = auth_params(ELEARNING)
    page = authorize(client, params)
    token = csrf_token(page.get_data(as_text=True))
    attacker = browser()
    authorize(attacker, params)  # the same person on another browser (own session, own CSRF secret)
    r = attacker.post("/oidc/authorize", query_string=params, data={"decision": "allow", "csrf_token": token})
    assert r.status_code == 400 and "Location" not in r.headers


# --- the shared SSO session -------------------------------------------------------------------------------

def test_cas_login_then_oidc_without_a_password_prompt(client, oidc):
    """The core requirement: logged in at USOSweb (CAS), e-mail (OIDC) lets the person in at once."""
    cas_ticket_login(client, USOSWEB)
    r = client.get("/oidc/authorize", query_string=auth_params(MAIL))
    code = code_from(r, MAIL_CB)  # straight back to the client: no login page in between
    body = exchange(client, code, MAIL).get_json()
    claims = id_token_claims(client, body["id_token"], MAIL)
    assert claims["amr"] == ["pwd"]
    # And the other way: USOSweb's CAS login page gives a ticket without a form.
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 302 and "ticket=" in r.headers["Location"]


def test_oidc_login_then_cas_without_a_password_prompt(client, oidc):
    get_code(client, MAIL)
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]


def test_second_oidc_client_in_the_same_session_needs_no_password(client, oidc):
    get_code(client, MAIL)
    verifier, challenge = pkce()
    r = client.get("/oidc/authorize", query_string=auth_params(MOBILE, challenge=challenge))
    code = code_from(r, MOBILE_CB)
    assert exchange(client, code, MOBILE, verifier=verifier).status_code == 200


def test_another_browser_has_no_session(client, browser, oidc):
    get_code(client, MAIL)
    r = browser().get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none"))
    error_redirect(r, MAIL_CB, "login_required")


def test_temporary_password_changes_then_returns_to_the_client(client, app, clients):
    create_account(temporary=True)
    params = auth_params(MAIL)
    r = client.get("/oidc/authorize", query_string=params)
    login = local(login_redirect(r))
    page = client.get(login)
    r = client.post(login, data={"csrf_token": csrf_token(page.get_data(as_text=True)), "username": USER,
                                 "password": PASSWORD})
    assert urlsplit(location(r)).path == "/login/change-password"
    # No code before the password is changed, and no session either.
    error_redirect(client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none")), MAIL_CB,
                   "login_required")
    page = client.get("/login/change-password")
    new = "Zupełnie-Nowy-Kwiat-Latarnia-2031"
    r = client.post("/login/change-password", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                                    "new_password": new, "confirm": new})
    for _ in range(4):  # follow the IdP's own redirects back to /oidc/authorize and on to the client
        if r.status_code != 302 or urlsplit(r.headers["Location"]).netloc not in ("", "localhost"):
            break
        r = client.get(local(r.headers["Location"]))
    code = code_from(r, MAIL_CB)
    claims = id_token_claims(client, exchange(client, code, MAIL).get_json()["id_token"], MAIL)
    assert claims["sub"]


def test_not_entitled_person_gets_the_not_provisioned_page(client, register, person):
    from tests.oidc.conftest import CLIENTS

    restricted = [dict(c) for c in CLIENTS]
    register()
    from idp.core import registry
    from tests.conftest import SERVICES

    for c in restricted:
        if c["client_id"] == MAIL:
            c["requires_entitlement"] = True
    registry.replace_all([dict(s) for s in SERVICES] + restricted)
    r = authorize(client, auth_params(MAIL))
    assert r.status_code == 403
    assert "Location" not in r.headers
    assert "Poczta" in r.get_data(as_text=True)


# --- the request sent as a POST (OIDC Core §3.1.2.1) ------------------------------------------------------------

def post_request(client, params: dict):
    """An authorization request a relying party auto-submits as a form (no CSRF token of ours)."""
    r = client.post("/oidc/authorize", data=params)
    assert r.status_code in (302, 303), (r.status_code, r.get_data(as_text=True)[:500])
    return r


def test_post_request_with_a_session_gives_a_code(client, oidc):
    get_code(client, MAIL)
    params = auth_params(MAIL, state="posted")
    r = post_request(client, params)
    r = client.get(local(location(r)))
    code_from(r, MAIL_CB)
    assert query(r)["state"] == "posted"


def test_post_request_without_a_session_logs_in_and_comes_back(client, oidc):
    params = auth_params(MAIL, nonce="post-nonce")
    r = post_request(client, params)
    r = authorize(client, dict(query(location(r))))
    code = code_from(r, MAIL_CB)
    body = exchange(client, code, MAIL).get_json()
    id_token_claims(client, body["id_token"], MAIL, nonce="post-nonce")


def test_post_request_errors_are_the_same_as_for_get(client, oidc):
    r = client.post("/oidc/authorize", data=auth_params(MAIL, redirect_uri="https://evil.example.com/cb"))
    if r.status_code == 303:
        r = client.get(local(location(r)))
    assert_error_page(r)


def test_post_request_for_a_third_party_client_shows_consent(client, oidc):
    get_code(client, MAIL)
    params = auth_params(ELEARNING)
    r = client.get(local(location(post_request(client, params))))
    assert r.status_code == 200 and 'name="decision"' in r.get_data(as_text=True)
    code_from(consent(client, params), ELEARNING_CB)


# --- policy [mfa] required_for = "everyone": a session that never passed the second factor ----------------

@pytest.mark.policy(mfa__required_for="everyone")
def test_everyone_policy_a_session_without_the_second_factor_gets_no_code(client, oidc):
    """The session began before the policy asked for the factor (new logins pass it on the login page)."""
    from idp.core import sso

    started = sso.start(oidc, client.application.extensions["idp.policy"], warn=False, client_ip=None)
    client.set_cookie("idp_tgc", started.tgt, domain="localhost", path="/")
    _, challenge = pkce()
    r = client.get("/oidc/authorize", query_string=auth_params(challenge=challenge))
    assert urlsplit(location(r)).path == "/mfa/verify"
    assert query(location(r))["next"].startswith("/oidc/authorize?")
    r = client.get("/oidc/authorize", query_string=auth_params(challenge=challenge, prompt="none"))
    assert location(r).startswith(MAIL_CB + "?")
    assert query(r)["error"] == "interaction_required" and query(r)["state"] == "st-123"


# --- a login counts only for the request that asked for it -------------------------------------------------

@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "0"}])
def test_a_login_that_ended_on_a_consent_page_does_not_satisfy_the_next_clients_prompt_login(client, oidc, extra):
    """OIDC Core §3.1.2.1: prompt=login and max_age ask for an authentication for this request. A login made
    for another client's request, whose consent page was left undecided, is not one."""
    page = authorize(client, auth_params(ELEARNING))
    assert page.status_code == 200 and 'name="decision"' in page.get_data(as_text=True)  # left undecided
    for _ in range(2):  # asked again, and the login page really asks (no way round it, no loop)
        r = client.get("/oidc/authorize", query_string=auth_params(MAIL, **extra))
        login = client.get(local(location(r)))
        assert urlsplit(r.headers["Location"]).path == "/cas/login"
        assert login.status_code == 200 and is_login_form(login.get_data(as_text=True))
    # once the person logs in for this request, it goes on, through the login, to the code
    r = authorize(client, auth_params(MAIL, **extra))
    assert code_from(r, MAIL_CB)


def test_a_login_that_ended_on_a_consent_page_does_not_pass_for_a_cas_renew(client, oidc):
    authorize(client, auth_params(ELEARNING))  # consent page left undecided
    r = client.get("/cas/login", query_string={"service": USOSWEB, "renew": "true"})
    assert r.status_code == 200 and is_login_form(r.get_data(as_text=True))


def test_prompt_login_through_a_consent_page_asks_once(client, oidc):
    """The login made for this request carries through the consent page and its POST."""
    cas_ticket_login(client)
    params = auth_params(ELEARNING, prompt="login")
    page = authorize(client, params)
    assert page.status_code == 200 and 'name="decision"' in page.get_data(as_text=True)
    assert code_from(consent(client, params), ELEARNING_CB)


def test_prompt_none_for_a_person_not_entitled_redirects_with_access_denied(client, register, person):
    """No page may be shown with prompt=none: the client gets the error, with state and iss."""
    from idp.core import registry
    from tests.conftest import SERVICES
    from tests.oidc.conftest import CLIENTS

    register()
    restricted = [dict(c, requires_entitlement=True) if c["client_id"] == MAIL else dict(c) for c in CLIENTS]
    registry.replace_all([dict(s) for s in SERVICES] + restricted)
    cas_ticket_login(client)  # an SSO session
    q = error_redirect(client.get("/oidc/authorize", query_string=auth_params(MAIL, prompt="none")),
                       MAIL_CB, "access_denied")
    assert "reference E" in q["error_description"]


@pytest.mark.parametrize("nonce", ["n" * 256, "abc\x00def"])
def test_a_nonce_that_cannot_be_kept_is_invalid_request(client, oidc, nonce):
    cas_ticket_login(client)
    q = error_redirect(client.get("/oidc/authorize", query_string=auth_params(MAIL, nonce=nonce)), MAIL_CB,
                       "invalid_request")
    assert "255" in q["error_description"]


def test_a_nonce_of_255_characters_is_kept(client, oidc):
    nonce = "n" * 255
    code, _ = get_code(client, MAIL, nonce=nonce)
    claims = id_token_claims(client, exchange(client, code).get_json()["id_token"], nonce=nonce)
    assert claims["nonce"] == nonce


@pytest.mark.parametrize("client_id", ["mail\x00", "x" * 300])
def test_a_client_id_no_client_can_have_is_an_unknown_client(client, oidc, client_id):
    r = client.get("/oidc/authorize", query_string=auth_params(client_id, redirect_uri=MAIL_CB))
    assert r.status_code == 400 and "Location" not in r.headers


def test_a_request_for_scopes_none_of_which_may_be_granted_is_invalid_scope(client, oidc):
    cas_ticket_login(client)
    error_redirect(client.get("/oidc/authorize", query_string=auth_params(MAIL, scope="phone address")), MAIL_CB,
                   "invalid_scope")


def test_unknown_scopes_next_to_openid_are_left_out(client, oidc):
    code, _ = get_code(client, MAIL, scope="openid offline_access email")
    assert exchange(client, code).get_json()["scope"].split() == ["openid", "email"]
