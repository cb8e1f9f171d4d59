"""Student mail as a relying app, end to end: a real `idp serve`, a real Dovecot configured from
contrib/dovecot/, and Python's imaplib as the mail program.

- LOGIN with the person's own password (any of their identifiers) opens their one mailbox; a wrong
  password gets Dovecot's standard failure; a throttled login a temporary failure; a password the IdP
  accepts but refuses for a reason (a temporary password to change first) shows the IdP's sentence.
- AUTHENTICATE XOAUTH2 and OAUTHBEARER with an access token a mail program got from the real token
  endpoint (code flow with PKCE) open the same mailbox; a revoked token, a token whose SSO session was
  logged out, an expired token and someone else's token do not.
"""
from __future__ import annotations

import base64
import hashlib
import imaplib
import json
import secrets
import time
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

from tests.conftest import csrf_token
from tests.mail.conftest import (
    E2E_TOKEN_LIFETIME,
    E2E_WEBMAIL,
    E2E_WEBMAIL_CALLBACK,
    E2E_WEBMAIL_SECRET,
    MAIL_NAME,
    MailSetup,
)

IMAP_TIMEOUT = 30
HTTP_TIMEOUT = 30
FAILED = "[AUTHENTICATIONFAILED] Authentication failed."
TEMPORARY = "[UNAVAILABLE] Temporary authentication failure."

pytestmark = pytest.mark.e2e


def imap(setup: MailSetup) -> imaplib.IMAP4:
    return imaplib.IMAP4("127.0.0.1", setup.imap_port, timeout=IMAP_TIMEOUT)


def plain(user: str, password: str):
    """SASL PLAIN (RFC 4616): UTF-8, what mail programs send for passwords that are not ASCII."""
    return lambda _challenge: f"\0{user}\0{password}".encode()


def refused(exc: imaplib.IMAP4.error) -> str:
    """The server's text for a refused login (imaplib wraps it in its own words)."""
    return str(exc)


def xoauth2(user: str, token: str):
    """The XOAUTH2 initial response; an empty answer to the server's error challenge ends the exchange."""
    sent = []

    def respond(_challenge: bytes) -> bytes:
        if sent:
            return b""
        sent.append(1)
        return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()

    return respond


def oauthbearer(user: str, token: str, port: int):
    """RFC 7628: GS2 header with the authorization identity, then host, port and the bearer token."""
    sent = []

    def respond(_challenge: bytes) -> bytes:
        if sent:
            return b"\x01"  # RFC 7628 §3.2.3: the client's answer to an error message
        sent.append(1)
        return f"n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01".encode()

    return respond


def access_token(setup: MailSetup, login: str, password: str, browser: requests.Session | None = None) -> str:
    """What a mail program does once: the code flow with PKCE in a browser (here: requests following the
    IdP's redirects and posting its login form), then the code exchanged at the token endpoint. The
    browser keeps its SSO session when one is given."""
    http = browser or requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"response_type": "code", "client_id": E2E_WEBMAIL, "redirect_uri": E2E_WEBMAIL_CALLBACK,
             "scope": "openid email", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
             "code_challenge": challenge, "code_challenge_method": "S256"}
    url = f"{setup.idp_url}/oidc/authorize?{urlencode(query)}"
    response = http.get(url, timeout=HTTP_TIMEOUT)  # follows to the login page
    assert 'name="password"' in response.text, response.url
    form = {"csrf_token": csrf_token(response.text), "username": login, "password": password}
    response = http.post(response.url, data=form, allow_redirects=False, timeout=HTTP_TIMEOUT)
    for _hop in range(10):
        location = response.headers.get("Location")
        assert response.status_code in (302, 303) and location, (response.status_code, response.text[:500])
        location = urljoin(response.url, location)
        if location.startswith(E2E_WEBMAIL_CALLBACK):
            break
        response = http.get(location, allow_redirects=False, timeout=HTTP_TIMEOUT)
    else:
        pytest.fail("the authorization never came back to the mail program")
    code = parse_qs(urlsplit(location).query)["code"][0]
    token = requests.post(f"{setup.idp_url}/oidc/token", timeout=HTTP_TIMEOUT,
                          auth=(E2E_WEBMAIL, E2E_WEBMAIL_SECRET),
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": E2E_WEBMAIL_CALLBACK, "code_verifier": verifier})
    assert token.status_code == 200, token.text
    if browser is None:
        http.close()
    return token.json()["access_token"]


def audit_events(setup: MailSetup, action: str) -> list[dict]:
    from tests.e2e.conftest import run_idp

    out = run_idp(["audit", "export", "--action", action], setup.env)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --- passwords --------------------------------------------------------------------------------------------

def test_the_right_password_opens_the_inbox(mail_setup):
    person = mail_setup.people["12345"]
    with imap(mail_setup) as m:
        typ, _ = m.login(person.login, person.password)
        assert typ == "OK"
        assert m.select("INBOX")[0] == "OK"
    succeeded = [e for e in audit_events(mail_setup, "login.succeeded") if (e.get("data") or {}).get("service")
                 == MAIL_NAME]
    assert succeeded and succeeded[-1]["client_ip"] == "127.0.0.1"


def test_any_identifier_of_the_person_reaches_the_same_mailbox(mail_setup):
    person = mail_setup.people["23456"]
    message = b"From: dziekanat@example.edu.pl\r\nSubject: Plan zajec\r\n\r\nPlan na semestr letni.\r\n"
    with imap(mail_setup) as m:  # the album number; a password with Polish letters
        assert m.authenticate("PLAIN", plain(person.album, person.password))[0] == "OK"
        assert m.append("INBOX", None, None, message)[0] == "OK"
    with imap(mail_setup) as m:  # the address, in capitals
        assert m.authenticate("PLAIN", plain(person.login.upper(), person.password))[0] == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        typ, fetched = m.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
        assert b"Plan zajec" in fetched[0][1]


def test_a_wrong_password_gets_dovecots_standard_failure(mail_setup):
    person = mail_setup.people["12345"]
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as failed:
        m.login(person.login, "Not-The-Password-123")
    assert FAILED in refused(failed.value)
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as unknown:
        m.login("nobody@student.example.edu.pl", "Not-The-Password-123")
    assert FAILED in refused(unknown.value)


def test_after_three_wrong_passwords_even_the_right_one_waits(mail_setup):
    """The login page's delay (this IdP's policy: ten minutes): Dovecot answers a temporary failure."""
    person = mail_setup.people["34567"]
    for _ in range(3):
        with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as failed:
            m.login(person.login, "Not-The-Password-123")
        assert FAILED in refused(failed.value)
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as throttled:
        m.login(person.login, person.password)
    assert TEMPORARY in refused(throttled.value)
    [event] = [e for e in audit_events(mail_setup, "login.throttled")
               if (e.get("data") or {}).get("service") == MAIL_NAME]
    assert event["reason"] == "throttled"


def test_a_temporary_password_is_refused_with_the_idps_reason(mail_setup):
    person = mail_setup.people["45678"]
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as refusal:
        m.login(person.login, person.password)
    text = refused(refusal.value)
    # The IdP's sentence, in ASCII (IMAP response text is 7-bit), after Dovecot's response code.
    assert "Poczta" in text and f"{mail_setup.idp_url}/cas/login" in text, text
    assert FAILED not in text
    assert "[CONTACTADMIN]" in text  # Dovecot 2.3: nologin + reason


# --- access tokens ----------------------------------------------------------------------------------------

def test_xoauth2_with_a_token_from_the_token_endpoint(mail_setup):
    person = mail_setup.people["12345"]
    token = access_token(mail_setup, person.login, person.password)
    with imap(mail_setup) as m:
        typ, _ = m.authenticate("XOAUTH2", xoauth2(person.login, token))
        assert typ == "OK"
        assert m.select("INBOX")[0] == "OK"


def test_oauthbearer_with_a_token_from_the_token_endpoint(mail_setup):
    person = mail_setup.people["23456"]
    subject = f"Token check {secrets.token_hex(4)}"
    with imap(mail_setup) as m:  # a message put in by a password login ...
        assert m.authenticate("PLAIN", plain(person.login, person.password))[0] == "OK"
        message = f"From: dziekanat@example.edu.pl\r\nSubject: {subject}\r\n\r\nx\r\n".encode()
        assert m.append("INBOX", None, None, message)[0] == "OK"
    token = access_token(mail_setup, person.album, person.password)
    with imap(mail_setup) as m:  # ... is in the mailbox a token login opens
        typ, _ = m.authenticate("OAUTHBEARER", oauthbearer(person.login, token, mail_setup.imap_port))
        assert typ == "OK"
        assert m.select("INBOX")[0] == "OK"
        typ, found = m.search(None, "SUBJECT", f'"{subject}"')
        assert typ == "OK" and found[0].split()


def test_a_revoked_token_no_longer_opens_the_mailbox(mail_setup):
    person = mail_setup.people["12345"]
    token = access_token(mail_setup, person.login, person.password)
    r = requests.post(f"{mail_setup.idp_url}/oidc/revoke", data={"token": token}, timeout=HTTP_TIMEOUT,
                      auth=(E2E_WEBMAIL, E2E_WEBMAIL_SECRET))
    assert r.status_code == 200
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as failed:
        m.authenticate("XOAUTH2", xoauth2(person.login, token))
    assert "AUTHENTICATIONFAILED" in refused(failed.value)


def test_logging_out_of_the_idp_ends_the_mail_programs_access(mail_setup):
    """One logout ends the SSO session and every token issued in it: the mail program must log in again."""
    person = mail_setup.people["12345"]
    with requests.Session() as browser:
        token = access_token(mail_setup, person.login, person.password, browser)
        with imap(mail_setup) as m:
            assert m.authenticate("OAUTHBEARER", oauthbearer(person.login, token, mail_setup.imap_port))[0] == "OK"
        assert browser.get(f"{mail_setup.idp_url}/cas/logout", timeout=HTTP_TIMEOUT).status_code == 200
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as failed:
        m.authenticate("OAUTHBEARER", oauthbearer(person.login, token, mail_setup.imap_port))
    assert "AUTHENTICATIONFAILED" in refused(failed.value)


def test_someone_elses_token_does_not_open_my_mailbox(mail_setup):
    me, other = mail_setup.people["12345"], mail_setup.people["23456"]
    token = access_token(mail_setup, other.login, other.password)
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as failed:
        m.authenticate("OAUTHBEARER", oauthbearer(me.login, token, mail_setup.imap_port))
    assert "AUTHENTICATIONFAILED" in refused(failed.value)


def test_an_expired_token_no_longer_opens_the_mailbox(mail_setup):
    person = mail_setup.people["12345"]
    token = access_token(mail_setup, person.login, person.password)
    with imap(mail_setup) as m:
        assert m.authenticate("XOAUTH2", xoauth2(person.login, token))[0] == "OK"
    time.sleep(E2E_TOKEN_LIFETIME + 1)  # waiting for the expiry, not measuring anything
    with imap(mail_setup) as m, pytest.raises(imaplib.IMAP4.error) as failed:
        m.authenticate("XOAUTH2", xoauth2(person.login, token))
    assert "AUTHENTICATIONFAILED" in refused(failed.value)
