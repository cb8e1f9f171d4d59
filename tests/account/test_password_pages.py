"""The password pages over HTTP: the logged-in person's /account/password, the required action after a
temporary or expired password, and the live check at POST /password/check that feeds their checklist.

The pages are read in English (`lang=en` sticks in a cookie): the Polish catalogue is maintained apart.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import html as html_mod
import re
from urllib.parse import urlsplit

import pytest
from flask_babel import force_locale
from markupsafe import escape

from idp.core import accounts
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import Account, OAuthToken
from tests.conftest import USOSWEB, cas_login, csrf_token
from tests.factories import PASSWORD, create_account

USER = "lukasz.zolkiewski@student.example.edu.pl"
NEW = "Parowóz-Klarnet-Zima-1954"
OTHER = "Kwitnące-Jabłonie-Nad-Wisłą-73"
CHECK_LIMIT_PER_MINUTE = 30  # idp/recovery/views.py CHECK_LIMIT

#: Candidates for the "page and server agree" tests: weak ones (each for a different rule) and strong ones.
#: Very strong to zxcvbn yet refused: the personal-data and context-word rules.
STRONG_BUT_REFUSED = ["Zolkiewski-Tramwaj-Parasol-77", "Usos-Tramwaj-Parasol-Zegar"]
WEAK = ["haslo123", "krótkie", "aaaaaaaaaaaaaaaaaaaaaaa", "1qaz2wsx3edc4rfv", "password12345678",
        *STRONG_BUT_REFUSED]
#: Acceptable under the default policy (NIST: no composition rules), refused by AGH's (upper case, digit).
LOWER_CASE_ONLY = "korsarzwislatramwaj"
STRONG = [NEW, OTHER, "Zielony Parasol Nad Odrą 1410"]


def text(r) -> str:
    return r.get_data(as_text=True)


def login(client, password: str = PASSWORD):
    r = cas_login(client, USER, password, service=None, extra={"lang": "en"})
    assert r.status_code == 200, text(r)
    return r


def meta_token(page: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
    assert match, "no csrf-token meta tag on the page"
    return match.group(1)


def rule_states(page: str) -> dict[str, str]:
    """The checklist as rendered: rule code -> state (ok, fail, pending)."""
    return dict(re.findall(r'<li data-rule="([a-z_]+)" data-state="([a-z]+)"', page))


def alert_items(page: str) -> list[str]:
    box = re.search(r'<div class="alert"[^>]*>(.*?)</div>', page, re.S)
    assert box, "no error box on the page"
    return [html_mod.unescape(m).strip() for m in re.findall(r"<li>(.*?)</li>", box.group(1), re.S)]


def change(client, current: str, new: str, confirm: str | None = None):
    page = client.get("/account/password")
    assert page.status_code == 200, text(page)
    return client.post("/account/password", data={
        "csrf_token": csrf_token(text(page)), "current_password": current, "new_password": new,
        "confirm": new if confirm is None else confirm})


def check(client, password: str, *, token: str | None = None, headers: dict | None = None,
          purpose: str = "account"):
    if token is None and headers is None:
        token = meta_token(text(client.get("/account/password")))
    return client.post(f"/password/check?for={purpose}", json={"password": password},
                       headers=headers if headers is not None else {"X-CSRFToken": token})


def refresh_token_for(account: Account) -> OAuthToken:
    now = utcnow()
    token = OAuthToken(client_id="mail", account_id=account.id, access_token_hash=hashlib.sha256(b"at").hexdigest(),
                       refresh_token_hash=hashlib.sha256(b"rt").hexdigest(), scope="openid", issued_at=now,
                       access_expires_at=now + dt.timedelta(minutes=5),
                       refresh_expires_at=now + dt.timedelta(days=30), family="f" * 32)
    db.session.add(token)
    db.session.commit()
    return token


def gets_ticket(client) -> bool:
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    return r.status_code == 302 and "ticket=ST-" in r.headers.get("Location", "")


# --- /account/password ----------------------------------------------------------------------------------

def test_change_password_requires_login(client, person):
    r = client.get("/account/password")
    assert r.status_code == 302
    assert urlsplit(r.headers["Location"]).path == "/cas/login"
    assert client.post("/account/password", data={}).status_code in (302, 400)


def test_landing_page_links_to_the_change_password_page(client, person):
    page = text(login(client))
    assert '<a class="button" href="/account/password">Change password</a>' in page


def test_page_has_the_checklist_meter_and_token(client, app, person):
    login(client)
    r = client.get("/account/password")
    page = text(r)
    assert r.status_code == 200
    assert meta_token(page)
    field = re.search(r'<input[^>]*name="new_password"[^>]*>', page).group(0)
    assert 'data-live-check="/password/check?for=account"' in field
    assert 'autocomplete="new-password"' in field
    assert re.search(r'<meter id="new_password-meter" min="0" max="4"', page)
    # Every rule of the policy, with the engine's own labels, none claimed met before anything is typed.
    account = db.session.scalar(db.select(Account))
    with force_locale("en"):
        expected = accounts.evaluate_password(account, "", app.extensions["idp.policy"]).rules
    assert list(rule_states(page)) == [r.code for r in expected]
    assert set(rule_states(page).values()) == {"pending"}
    for rule in expected:
        assert str(escape(rule.label)) in page
    assert "(not checked yet)" in page  # the state in words, not by colour alone


def test_pages_without_a_live_field_carry_no_token_meta(client, person):
    assert '<meta name="csrf-token"' not in text(client.get("/cas/login"))


def test_wrong_current_password(client, person):
    login(client)
    r = change(client, "not-my-password", NEW)
    assert r.status_code == 400
    assert "The current password is not correct." in text(r)
    assert accounts.verify_password(db.session.scalar(db.select(Account)), PASSWORD)


def lock(account: Account, until: dt.datetime | None) -> None:
    """The account locked (by wrong passwords typed elsewhere) while this session goes on."""
    db.session.expire_all()
    account = db.session.get(Account, account.id)
    account.failed_logins = 10
    account.locked_until = until
    account.locked_permanently = until is None
    db.session.commit()


@pytest.mark.parametrize("right", [True, False])
def test_a_lock_refuses_the_current_password_unchecked_and_says_until_when(client, clock, person, right):
    clock.now = dt.datetime(2026, 1, 15, 22, 30)  # 23:30 in Warsaw
    login(client)
    lock(person, clock.now + dt.timedelta(hours=2))  # until 01:30 on the 16th, Warsaw time
    r = change(client, PASSWORD if right else "not-my-password", NEW)
    # The session's own page names the lock (it names the account anyway), never whether the password was right.
    assert r.status_code == 403, text(r)[:2000]
    assert ("Your account is locked until 16 January, 01:30 after too many wrong passwords: your current password "
            "cannot be checked until then. A new password set through the reset link lifts the lock.") in text(r)
    assert "The current password is not correct." not in text(r)
    assert accounts.verify_password(db.session.scalar(db.select(Account)), PASSWORD)  # unchanged
    db.session.expire_all()
    assert db.session.get(Account, person.id).failed_logins == 10  # nothing counted either


def test_a_permanent_lock_refuses_the_current_password_until_the_helpdesk_unlocks(client, person):
    login(client)
    lock(person, None)
    r = change(client, PASSWORD, NEW)
    assert r.status_code == 403
    assert ("Your account is locked after repeated series of wrong passwords. It stays locked until the helpdesk "
            "unlocks it.") in text(r)


def test_refused_new_password_lists_every_violation(client, app, person):
    login(client)
    account = db.session.scalar(db.select(Account))
    with force_locale("en"):
        verdict = accounts.evaluate_password(account, "haslo123", app.extensions["idp.policy"])
        messages = [str(v.message) for v in verdict.violations]
    assert len(messages) >= 3  # short, a context word, too weak (at least)
    r = change(client, PASSWORD, "haslo123")
    assert r.status_code == 400
    page = text(r)
    assert "The password was not accepted:" in page
    assert alert_items(page) == messages
    # Without JavaScript the checklist then shows which rules failed.
    states = rule_states(page)
    assert {code for code, s in states.items() if s == "fail"} == {v.code for v in verdict.violations}
    assert accounts.verify_password(db.session.scalar(db.select(Account)), PASSWORD)


def test_mismatched_confirmation(client, person):
    login(client)
    r = change(client, PASSWORD, NEW, NEW + "x")
    assert r.status_code == 400 and "The passwords do not match." in text(r)


def test_success_ends_other_sessions_and_refresh_tokens(client, app, person):
    other = app.test_client()
    login(other)
    assert gets_ticket(other)
    login(client)
    token = refresh_token_for(db.session.scalar(db.select(Account)))

    r = change(client, PASSWORD, NEW)
    assert r.status_code == 200, text(r)
    assert "Your password has been changed. You have been logged out everywhere else." in text(r)
    # The other browser's SSO session is over; this one goes on.
    assert not gets_ticket(other)
    assert gets_ticket(client)
    db.session.expire_all()
    assert db.session.get(OAuthToken, token.id).revoked_at is not None
    # The new password logs in, the old one does not.
    fresh = app.test_client()
    assert cas_login(fresh, USER, PASSWORD).status_code == 401
    assert cas_login(fresh, USER, NEW).status_code == 302


@pytest.mark.policy(password__history=3)
def test_history_refuses_the_previous_password(client, person):
    login(client)
    assert change(client, PASSWORD, NEW).status_code == 200
    back = change(client, NEW, PASSWORD)
    assert back.status_code == 400
    assert "The password must be different from your previous 3 passwords." in alert_items(text(back))
    assert rule_states(text(back))["reused"] == "fail"
    same = change(client, NEW, NEW)
    assert same.status_code == 400
    assert change(client, NEW, OTHER).status_code == 200


# --- the required action: temporary or expired password ------------------------------------------------

def test_temporary_password_page_says_why_and_checks_live(client):
    create_account(temporary=True)
    r = cas_login(client, USER, PASSWORD, extra={"lang": "en"})
    assert urlsplit(r.headers["Location"]).path == "/login/change-password"
    page = text(client.get("/login/change-password"))
    assert "Your password is temporary." in page and "expired" not in page
    assert 'data-live-check="/password/check?for=required"' in page
    assert "too_short" in rule_states(page)
    # The person in the required action may use the live check (not logged in yet).
    answer = check(client, "haslo123", token=meta_token(page), purpose="required")
    assert answer.status_code == 200 and answer.get_json()["ok"] is False
    # A refused submission shows the failing rules in the list (no JavaScript needed).
    refused = client.post("/login/change-password", data={"csrf_token": csrf_token(page), "new_password": "haslo123",
                                                          "confirm": "haslo123"})
    assert refused.status_code == 400
    assert rule_states(text(refused))["too_short"] == "fail"


@pytest.mark.policy(password__max_age_days=30)
def test_expired_password_page_says_it_expired(client):
    account = create_account()
    account.password_changed_at = utcnow() - dt.timedelta(days=31)
    db.session.commit()
    r = cas_login(client, USER, PASSWORD, extra={"lang": "en"})
    assert urlsplit(r.headers["Location"]).path == "/login/change-password"
    page = text(client.get("/login/change-password"))
    assert "Your password has expired: passwords here are valid for 30 days." in page
    assert "temporary" not in page


# --- POST /password/check -------------------------------------------------------------------------------

def test_check_refuses_anonymous_visitors(client, person):
    page = text(client.get("/cas/login"))
    r = client.post("/password/check", json={"password": NEW}, headers={"X-CSRFToken": csrf_token(page)})
    assert r.status_code == 401


def test_check_requires_the_csrf_header(client, person):
    login(client)
    token = meta_token(text(client.get("/account/password")))
    assert check(client, NEW, headers={}).status_code == 400
    assert check(client, NEW, headers={"X-CSRFToken": "forged"}).status_code == 400
    r = check(client, NEW, token=token)
    assert r.status_code == 200 and r.is_json


def test_check_answers_rules_strength_and_violations(client, app, person):
    login(client)
    body = check(client, "haslo123").get_json()
    assert set(body) == {"ok", "score", "strength", "rules", "violations"}
    assert body["ok"] is False and body["strength"] in ("very weak", "weak")
    states = {r["code"]: r["ok"] for r in body["rules"]}
    assert states["too_short"] is False and states["context"] is False and states["weak"] is False
    assert len(body["violations"]) == sum(1 for ok in states.values() if ok is False)
    strong = check(client, NEW).get_json()
    assert strong["ok"] is True and strong["violations"] == []
    # Rules that compare with stored passwords wait for the submit: never answered as someone types.
    assert all(r["ok"] is (None if r["code"] in ("reused", "same_as_current") else True) for r in strong["rules"])
    assert strong["strength"] in ("strong", "very strong")


@pytest.mark.parametrize("policy_file", [
    pytest.param("policies/default.toml", id="default"),
    pytest.param("policies/agh.toml", id="agh", marks=pytest.mark.settings(POLICY="policies/agh.toml")),
])
def test_check_and_the_page_agree(client, person, policy_file):
    """What the checklist calls acceptable the server accepts, and what it calls unacceptable the server
    refuses: every candidate both ways, under the default policy and under AGH's composition rules."""
    login(client)
    current = PASSWORD
    agreed = {}
    for candidate in WEAK + [LOWER_CASE_ONLY] + STRONG:
        verdict = check(client, candidate).get_json()
        r = change(client, current, candidate)
        accepted = r.status_code == 200
        assert accepted == verdict["ok"], (candidate, verdict, alert_items(text(r)) if not accepted else "")
        if not accepted:
            refused = set(alert_items(text(r)))
            assert set(verdict["violations"]) <= refused, (candidate, verdict["violations"], refused)
        else:
            current = candidate
        agreed[candidate] = accepted
    expected = {c: False for c in WEAK} | {c: True for c in STRONG} | {LOWER_CASE_ONLY: policy_file.endswith("default.toml")}
    assert agreed == expected


def test_the_live_check_never_tells_whether_a_guess_is_the_current_password(client, person):
    """A stolen session must not turn the checklist into an unthrottled password oracle: the current
    password and a strong stranger get the same live verdict; the submit (behind the current password
    and its throttle) is what refuses reusing it."""
    login(client)
    current = check(client, PASSWORD).get_json()
    stranger = check(client, NEW).get_json()
    assert current["ok"] == stranger["ok"]
    states = {r["code"]: r["ok"] for r in current["rules"]}
    assert states.get("reused", states.get("same_as_current", "absent")) is None
    r = change(client, PASSWORD, PASSWORD)
    assert r.status_code == 400


def test_check_is_rate_limited(client, person):
    login(client)
    token = meta_token(text(client.get("/account/password")))
    for i in range(CHECK_LIMIT_PER_MINUTE):
        assert check(client, f"x{i}", token=token).status_code == 200, i
    r = check(client, "one too many", token=token)
    assert r.status_code == 429


def test_the_check_judges_the_person_whose_form_it_is(client, person):
    """A login abandoned at the required action must not make the logged-in person's checklist judge
    against someone else's data (and a required-action check needs a pending login)."""
    other = create_account(album="54321", first_name="Zofia", last_name="Wiśniewska",
                           university_email="zofia.wisniewska@student.example.edu.pl", private_email=None,
                           aliases=(), temporary=True)
    assert other.password_temporary
    cas_login(client, USER, PASSWORD)  # the logged-in person: Łukasz
    page = text(client.get("/account/password"))
    token = meta_token(page)
    # Zofia starts a login on the same browser and abandons it at the change form
    cas_login(client, "zofia.wisniewska@student.example.edu.pl", PASSWORD, extra={"renew": "true"})
    own = client.post("/password/check?for=account", json={"password": "Zofia-Wiatrak-Pomidor-Latarnia"},
                      headers={"X-CSRFToken": token}).get_json()
    assert {r["code"]: r["ok"] for r in own["rules"]}["personal_data"] is True  # not Łukasz's data
    pending = client.post("/password/check?for=required", json={"password": "Zofia-Wiatrak-Pomidor-Latarnia"},
                          headers={"X-CSRFToken": token}).get_json()
    assert {r["code"]: r["ok"] for r in pending["rules"]}["personal_data"] is False  # Zofia's own name


def test_a_required_action_check_needs_a_pending_login(client, person):
    cas_login(client, USER, PASSWORD)
    token = meta_token(text(client.get("/account/password")))
    r = client.post("/password/check?for=required", json={"password": "x"}, headers={"X-CSRFToken": token})
    assert r.status_code == 401
