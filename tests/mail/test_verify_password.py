"""POST /mail/verify-password as a mail server meets it: only registered mail services may ask; the answer
to a person's password is the login page's — the same generic refusal for wrong passwords and unknown
logins, the same throttle (per typed login, per IMAP client address), the same lockout told only to the
correct password, the same audit events with the mail service's name — and what the login page would do
after a correct password (change a temporary password, a second factor, an entitlement) becomes a refusal
with a sentence the mail program can show."""
from __future__ import annotations

import pytest

from idp.extensions import db
from idp.models import Account
from tests.conftest import USOSWEB, cas_login
from tests.factories import PASSWORD, create_account
from tests.mail.conftest import (
    ELEARNING,
    ELEARNING_SECRET,
    IMAP_CLIENT,
    MAIL,
    MAIL_NAME,
    UNKNOWN,
    USER,
    WRONG,
    events,
    verify,
)

OTHER_CLIENT = "198.51.100.20"


# --- who may ask ------------------------------------------------------------------------------------------

def test_without_client_credentials_the_request_is_refused(mail_server, person):
    r = verify(mail_server, USER, PASSWORD, credentials=None)
    assert r.status_code == 401 and r.json["error"] == "invalid_client"
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert "ok" not in r.json and not events("login.succeeded")  # the password was never checked


@pytest.mark.parametrize("credentials", [("stranger", "whatever-secret"), (MAIL, "wrong-secret")],
                         ids=["unregistered client", "wrong secret"])
def test_an_unregistered_client_or_a_wrong_secret_is_refused_and_audited(mail_server, person, credentials):
    r = verify(mail_server, USER, PASSWORD, credentials=credentials)
    assert r.status_code == 401 and r.json["error"] == "invalid_client"
    [event] = events("mail.verify.client_refused")
    assert (event.reason, event.client_ip, event.data["client_id"]) == ("invalid_client", "127.0.0.1",
                                                                         credentials[0])
    assert not events("login.succeeded") and not events("login.failed")


def test_a_flood_of_wrong_client_secrets_stops_being_answered_and_audited(mail_server, person):
    """After REFUSED_CLIENTS_LIMIT refusals in a minute the caller's address gets 429 with Retry-After for
    the rest of the minute — no check, no further audit event — whatever credentials it sends then."""
    from idp.mailauth.views import REFUSED_CLIENTS_LIMIT

    limit = int(REFUSED_CLIENTS_LIMIT.split("/")[0])
    for _ in range(limit):
        assert verify(mail_server, USER, PASSWORD, credentials=(MAIL, "wrong-secret")).status_code == 401
    r = verify(mail_server, USER, PASSWORD, credentials=(MAIL, "wrong-secret"))
    assert r.status_code == 429 and r.json["error"] == "slow_down" and int(r.headers["Retry-After"]) >= 1
    assert len(events("mail.verify.client_refused")) == limit
    assert verify(mail_server, USER, PASSWORD).status_code == 429
    assert not events("login.succeeded") and not events("login.failed")


def test_a_registered_client_that_is_not_a_mail_service_is_refused(mail_server, person):
    r = verify(mail_server, USER, PASSWORD, credentials=(ELEARNING, ELEARNING_SECRET))
    assert r.status_code == 403 and r.json["error"] == "unauthorized_client"
    [event] = events("mail.verify.client_refused")
    assert (event.reason, event.data) == ("unauthorized_client", {"client_id": ELEARNING, "service": "E-learning"})
    assert not events("login.succeeded") and not events("login.failed")


def test_the_token_endpoint_knows_no_password_verification_grant(mail_server, person):
    """The grant type only opens /mail/verify-password: it never turns a password into a token."""
    from tests.mail.conftest import MAIL_SECRET, basic

    r = mail_server.post("/oidc/token", data={"grant_type": "password_verification", "username": USER,
                                              "password": PASSWORD}, headers=basic(MAIL, MAIL_SECRET))
    assert r.status_code == 400 and r.json["error"] == "unsupported_grant_type"
    r = mail_server.post("/oidc/token", data={"grant_type": "password", "username": USER, "password": PASSWORD},
                         headers=basic(MAIL, MAIL_SECRET))
    assert r.status_code == 400 and "access_token" not in r.json


# --- the answer -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("typed", [USER, "Lukasz.Zolkiewski@Student.Example.edu.pl", "12345",
                                   "s12345@student.example.edu.pl"],
                         ids=["e-mail", "mixed case", "album", "alias"])
def test_the_right_password_answers_the_canonical_username(mail_server, person, typed):
    """Whatever identifier the mail program sends, the mailbox is the canonical one — the same name the
    introspection endpoint gives for a token, so password and OAuth logins reach one mailbox."""
    r = verify(mail_server, typed, PASSWORD)
    assert r.status_code == 200
    assert r.json == {"ok": True, "username": USER}
    [event] = events("login.succeeded")
    assert (event.account_id, event.client_ip, event.data) == (person.id, IMAP_CLIENT, {"service": MAIL_NAME})


def test_json_bodies_are_answered_the_same(mail_server, person):
    assert verify(mail_server, USER, PASSWORD, as_json=True).json == {"ok": True, "username": USER}
    r = verify(mail_server, USER, WRONG, as_json=True)
    assert r.status_code == 403 and r.json["reason"] == "invalid_credentials"


def test_a_wrong_password_and_an_unknown_login_get_the_same_answer(mail_server, person):
    wrong = verify(mail_server, USER, WRONG)
    unknown = verify(mail_server, UNKNOWN, WRONG)
    assert wrong.status_code == unknown.status_code == 403
    assert wrong.json == unknown.json == {"ok": False, "reason": "invalid_credentials",
                                          "message": "Invalid login or password"}
    failed = events("login.failed")
    assert [(e.reason, e.account_id, e.client_ip) for e in failed] == [("wrong_password", person.id, IMAP_CLIENT),
                                                                        ("unknown_identifier", None, IMAP_CLIENT)]
    assert failed[0].data == {"service": MAIL_NAME}
    assert failed[1].data == {"service": MAIL_NAME, "identifier": UNKNOWN}
    assert db.session.get(Account, person.id).failed_logins == 1  # counts towards the lockout like the form


def test_the_answer_is_in_the_institutions_language_by_default(app, register, person):
    from tests.conftest import FreshContextClient

    c = FreshContextClient(app, app.response_class, use_cookies=False)  # no Accept-Language: Dovecot sends none
    assert verify(c, USER, WRONG).json["message"] == "Niepoprawne dane logowania"


@pytest.mark.parametrize("body", [{"username": USER}, {"password": PASSWORD}, {"username": " ", "password": "x"},
                                  {"username": USER, "password": PASSWORD, "client_ip": "not-an-address"}],
                         ids=["no password", "no username", "blank username", "bad client_ip"])
def test_a_malformed_request_is_refused_without_a_check(mail_server, person, body):
    from tests.mail.conftest import MAIL_SECRET, basic

    r = mail_server.post("/mail/verify-password", data=body, headers=basic(MAIL, MAIL_SECRET))
    assert r.status_code == 400 and r.json["error"] == "invalid_request"
    assert not events("login.failed") and not events("login.succeeded")


def test_without_a_client_address_nothing_is_checked(mail_server, person):
    """The mail server's own address would put every person behind it under one address's counters, and
    no address at all would let one IMAP client try a password against every account: refused."""
    r = verify(mail_server, USER, PASSWORD, client_ip=None)
    assert r.status_code == 400 and r.json["error"] == "invalid_request" and "client_ip" in r.json["error_description"]
    assert not events("login.failed") and not events("login.succeeded")


def test_an_ipv6_client_address_is_recorded_normalised(mail_server, person):
    assert verify(mail_server, USER, PASSWORD, client_ip="2001:DB8:0:0::1").status_code == 200
    assert events("login.succeeded")[0].client_ip == "2001:db8::1"


# --- the login page's throttle and lockout ----------------------------------------------------------------

def test_after_three_wrong_passwords_the_next_attempt_waits(mail_server, person, afternoon):
    for _ in range(3):
        assert verify(mail_server, USER, WRONG).status_code == 403
    r = verify(mail_server, USER, PASSWORD)  # even the right password: not checked at all
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert r.json == {"ok": False, "reason": "throttled", "retry_after": 2,
                      "message": "Too many failed attempts. Try again in 2 s."}
    [event] = events("login.throttled")
    assert (event.reason, event.account_id, event.client_ip) == ("throttled", person.id, IMAP_CLIENT)
    assert event.data == {"service": MAIL_NAME, "retry_after": 2}
    afternoon.advance(seconds=2)
    assert verify(mail_server, USER, PASSWORD).json == {"ok": True, "username": USER}


def test_the_delay_is_shared_with_the_login_page(client, mail_server, person, afternoon):
    """Guessing through IMAP and through the login form is one run of attempts for the typed login."""
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    for _ in range(2):
        assert cas_login(client, USER, WRONG).status_code == 401
    assert verify(mail_server, USER, WRONG).status_code == 403
    assert verify(mail_server, USER, PASSWORD).status_code == 429
    assert cas_login(client, USER, PASSWORD).status_code == 429


def test_unknown_and_known_logins_wait_alike(mail_server, person, afternoon):
    for step in range(6):
        known, unknown = verify(mail_server, USER, WRONG), verify(mail_server, UNKNOWN, WRONG)
        assert (known.status_code, known.json, known.headers.get("Retry-After")) == (
            unknown.status_code, unknown.json, unknown.headers.get("Retry-After")), step
        afternoon.advance(seconds=1 + step)


@pytest.mark.policy(login__address_failures=5, login__delay_after=0)
def test_spraying_from_one_imap_client_blocks_that_client_not_the_mail_server(client, mail_server, person,
                                                                               afternoon):
    """The address that counts is the IMAP client's (client_ip), not the mail server's: one sprayer does
    not lock everybody else out of their mail, nor the login page."""
    for n in range(5):
        assert verify(mail_server, f"guess{n}@student.example.edu.pl", WRONG).status_code == 403
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == 429 and r.headers["Retry-After"] == "600"
    assert r.json["message"] == "Too many failed attempts. Try again in 10 min."
    [event] = events("login.throttled")
    assert (event.reason, event.client_ip) == ("address_blocked", IMAP_CLIENT)
    [block] = events("address.blocked")
    assert block.client_ip == IMAP_CLIENT
    assert verify(mail_server, USER, PASSWORD, client_ip=OTHER_CLIENT).json == {"ok": True, "username": USER}
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert cas_login(client, USER, PASSWORD).status_code == 302


@pytest.mark.policy(login__address_rate_limit="2/minute")
def test_the_endpoint_rate_limit_counts_the_imap_client(mail_server, person, afternoon):
    assert verify(mail_server, USER, PASSWORD).status_code == 200
    assert verify(mail_server, USER, PASSWORD).status_code == 200
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert r.json["reason"] == "throttled"
    assert r.json["message"].startswith("Too many login attempts from your network.")
    assert verify(mail_server, USER, PASSWORD, client_ip=OTHER_CLIENT).status_code == 200


@pytest.mark.policy(login__lockout_threshold=3, login__delay_after=0)
def test_a_lock_answers_every_password_as_an_unknown_login(mail_server, person, afternoon):
    for _ in range(3):
        assert verify(mail_server, USER, WRONG).json["reason"] == "invalid_credentials"
    assert [e.action for e in events("account.locked")] == ["account.locked"]
    # Any password on the locked account, the right one too: exactly what an unknown login gets.
    unknown = verify(mail_server, UNKNOWN, WRONG)
    assert verify(mail_server, USER, WRONG).json == unknown.json
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == unknown.status_code == 403 and r.json == unknown.json
    [event] = [e for e in events("login.failed") if e.reason == "locked"]  # the helpdesk sees it was right
    assert event.data == {"service": MAIL_NAME} and event.client_ip == IMAP_CLIENT


@pytest.mark.policy(login__lockout_threshold=2, login__permanent_lockout_after=1, login__delay_after=0,
                    login__lockout_minutes=1)
def test_a_permanent_lock_answers_the_right_password_as_a_wrong_one(mail_server, person, afternoon):
    for _ in range(2):
        verify(mail_server, USER, WRONG)
    afternoon.advance(minutes=2)
    for _ in range(2):
        verify(mail_server, USER, WRONG)
    r = verify(mail_server, USER, PASSWORD)
    assert r.json == verify(mail_server, UNKNOWN, WRONG).json
    assert r.json["reason"] == "invalid_credentials" and "reference" not in r.json


# --- after a correct password: what the login page would do before a ticket -------------------------------

def test_someone_who_left_is_told_only_with_the_correct_password(mail_server, afternoon):
    create_account(status="left")
    assert verify(mail_server, USER, WRONG).json["reason"] == "invalid_credentials"
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == 403 and r.json["reason"] == "account_left"
    assert r.json["message"].startswith("The university records show that you no longer study or work at the "
                                        "university. Reference code for the helpdesk: E")


def test_a_temporary_password_must_first_be_changed_on_the_web(mail_server, afternoon):
    account = create_account(temporary=True)
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == 403 and r.json["reason"] == "password_change_required"
    assert r.json["message"] == ("Your password must be changed before you can use Poczta: "
                                 "log in at http://127.0.0.1:8000/cas/login.")
    [event] = events("mail.login.refused")
    assert (event.account_id, event.reason, event.client_ip) == (account.id, "temporary", IMAP_CLIENT)
    assert event.data == {"service": MAIL_NAME, "protocol": "imap"}
    assert verify(mail_server, USER, WRONG).json["reason"] == "invalid_credentials"


@pytest.mark.policy(password__max_age_days=90)
def test_an_expired_password_must_first_be_changed_on_the_web(mail_server, person, afternoon):
    import datetime as dt

    person.password_changed_at = afternoon.now - dt.timedelta(days=91)
    db.session.commit()
    r = verify(mail_server, USER, PASSWORD)
    assert r.json["reason"] == "password_change_required"
    assert events("mail.login.refused")[0].reason == "password_expired"


@pytest.mark.policy(mfa__required_for="everyone")
def test_a_policy_asking_everyone_for_a_second_factor_refuses_passwords_alone(mail_server, person, afternoon):
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == 403 and r.json["reason"] == "second_factor_required"
    assert "second factor" in r.json["message"]
    assert events("mail.login.refused")[0].reason == "second_factor_required"


def test_a_mail_service_that_requires_an_entitlement_refuses_people_without_it(mail_server, register, afternoon):
    register(requires_entitlement=True)
    create_account(entitlements=["USOSweb"])
    assert verify(mail_server, USER, WRONG).json["reason"] == "invalid_credentials"
    r = verify(mail_server, USER, PASSWORD)
    assert r.status_code == 403 and r.json["reason"] == "not_provisioned"
    [event] = events("mail.login.refused")
    assert event.reason == "not_entitled"
    assert r.json["message"] == ("You are logged in, but you do not have an account in Poczta. "
                                 f"Reference code for the helpdesk: E{event.id}")
    assert r.json["reference"] == f"E{event.id}"


def test_an_entitled_person_gets_in(mail_server, register, afternoon):
    register(requires_entitlement=True)
    create_account(entitlements=[MAIL_NAME])
    assert verify(mail_server, USER, PASSWORD).json == {"ok": True, "username": USER}


def test_the_login_page_is_unaffected_by_the_mail_service(client, mail_server, person):
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    r = cas_login(client, USER, PASSWORD, USOSWEB)
    assert r.status_code == 302 and "ticket=ST-" in r.headers["Location"]
