"""Authenticator app (TOTP) and recovery codes over HTTP: enrol, confirm, verify, replay, single-use
recovery codes, the wrong-code limit, `next` URLs, removal and new codes needing a fresh check."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import mfa
from idp.extensions import db
from idp.http import second_factor
from idp.models import RecoveryCode, TotpSecret
from tests.conftest import csrf_token
from tests.mfa.conftest import (
    code_at,
    continue_url,
    enrol_totp,
    events,
    location,
    login,
    path_of,
    post_form,
    query_of,
    recovery_codes_from,
    secret_from,
    session_of,
    text,
    use_recovery,
    verify_totp,
)


def test_pages_need_a_login(client, person):
    for url in ("/mfa", "/mfa/setup", "/mfa/verify", "/mfa/recovery-codes"):
        r = client.get(url)
        assert r.status_code == 302 and path_of(location(r)) == "/cas/login", url


def test_enrol_shows_qr_and_secret_then_codes_once(client, person, clock):
    login(client)
    page = client.get("/mfa/setup")
    assert page.status_code == 200
    html = text(page)
    assert '<svg role="img"' in html and "<script" not in html.split('<svg role="img"')[1].split("</svg>")[0]
    secret = secret_from(html)
    assert len(secret) == 32
    # Reloading the page keeps the same secret (the app may already have scanned it).
    assert secret_from(text(client.get("/mfa/setup"))) == secret
    row = db.session.scalar(db.select(TotpSecret).where(TotpSecret.account_id == person.id))
    assert row.confirmed_at is None and secret not in row.secret and row.secret.startswith("v1:")

    r = client.post("/mfa/setup", data={"csrf_token": csrf_token(html), "code": "000000"
                                        if code_at(secret, clock.now) != "000000" else "111111"})
    assert r.status_code == 400 and "not correct" in text(r)
    assert not mfa.enrolled(person)

    r = client.post("/mfa/setup", data={"csrf_token": csrf_token(html), "code": code_at(secret, clock.now)})
    assert r.status_code == 200, text(r)
    codes = recovery_codes_from(text(r))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert continue_url(text(r)) == "/mfa"
    assert mfa.enrolled(person)
    stored = [c.code_hash for c in db.session.scalars(db.select(RecoveryCode).where(RecoveryCode.account_id == person.id))]
    assert len(stored) == 10 and not set(codes) & set(stored)
    assert [e.data["method"] for e in events("mfa.enrolled", person.id)] == ["totp"]
    assert events("mfa.recovery_codes.issued", person.id)[0].data == {"count": 10}
    # Shown once: the management page counts them but never shows them again.
    manage = text(client.get("/mfa"))
    assert "10 unused recovery codes" in manage and not any(c in manage for c in codes)
    # A second enrolment is not offered.
    r = client.get("/mfa/setup")
    assert r.status_code == 302 and path_of(location(r)) == "/mfa"


@pytest.mark.policy(mfa__recovery_codes=5)
def test_number_of_recovery_codes_follows_policy(client, person, clock):
    login(client)
    _, r = enrol_totp(client, clock)
    assert len(recovery_codes_from(text(r))) == 5


def _enrolled(client, clock, browser):
    """Enrol in `client`, then return a second browser logged in (not yet verified) and the secret."""
    login(client)
    secret, r = enrol_totp(client, clock)
    assert r.status_code == 200
    codes = recovery_codes_from(text(r))
    other = browser()
    login(other)
    return other, secret, codes


def test_verify_with_totp_marks_this_session_only(client, person, clock, browser):
    other, secret, _ = _enrolled(client, clock, browser)
    sso = session_of(other)
    r = other.get("/mfa/verify")
    assert r.status_code == 200 and "Authenticator app" in text(r)
    clock.advance(seconds=30)
    r = verify_totp(other, code_at(secret, clock.now), next_url="/account")
    assert r.status_code == 302 and location(r).endswith("/account")
    assert events("mfa.verified", person.id)[-1].data == {"method": "totp"}
    # Bound to that SSO session: a new login in the same browser needs a new check.
    r = other.get("/mfa/verify")
    assert r.status_code == 302  # already verified: straight on
    login(other, renew=True)
    assert session_of(other).id != sso.id
    assert other.get("/mfa/verify").status_code == 200


def test_code_window_and_replay(client, person, clock, browser):
    other, secret, _ = _enrolled(client, clock, browser)
    clock.advance(minutes=5)
    previous = code_at(secret, clock.now - dt.timedelta(seconds=30))
    r = verify_totp(other, previous)  # one step of clock drift is fine
    assert r.status_code == 302
    # The same code again, from another browser: refused as a replay.
    third = browser()
    login(third)
    r = verify_totp(third, previous)
    assert r.status_code == 400 and "already used" in text(r)
    assert events("mfa.failed", person.id)[-1].reason == "replayed"
    # An older step than the last accepted one is refused too, a newer one is accepted.
    clock.advance(seconds=30)
    assert verify_totp(third, code_at(secret, clock.now)).status_code == 302


def test_codes_two_steps_away_are_refused(app, person, clock):
    secret, _ = mfa.totp_begin(person)
    assert mfa.totp_confirm(person, code_at(secret, clock.now))
    for offset in (-60, 60, 90):
        assert not mfa.verify_totp(person, code_at(secret, clock.now + dt.timedelta(seconds=offset + 1)))
    assert mfa.verify_totp(person, code_at(secret, clock.now + dt.timedelta(seconds=30)))


def test_recovery_code_works_once(client, person, clock, browser):
    other, _secret, codes = _enrolled(client, clock, browser)
    r = use_recovery(other, codes[0].upper().replace("-", " "), next_url="/account")
    assert r.status_code == 302 and location(r).endswith("/account")
    used = events("mfa.recovery_code.used", person.id)
    assert len(used) == 1 and used[0].data["left"] == 9
    third = browser()
    login(third)
    r = use_recovery(third, codes[0])
    assert r.status_code == 400 and "already used" in text(r)
    assert events("mfa.failed", person.id)[-1].reason == "wrong_recovery_code"
    assert mfa.recovery_codes_left(person) == 9


def test_five_wrong_codes_lock_codes_for_fifteen_minutes(client, person, clock, browser):
    other, secret, codes = _enrolled(client, clock, browser)
    wrong = "123456" if code_at(secret, clock.now) != "123456" else "654321"
    for _ in range(4):
        assert verify_totp(other, wrong).status_code == 400
    r = use_recovery(other, "aaaaa-aaaaa")  # wrong recovery codes count too: the fifth wrong code
    assert r.status_code == 429 and "Too many wrong codes" in text(r)
    clock.advance(seconds=30)
    r = verify_totp(other, code_at(secret, clock.now))  # even the right code
    assert r.status_code == 429 and "Too many wrong codes" in text(r)
    assert use_recovery(other, codes[1]).status_code == 429
    assert events("mfa.failed", person.id)[-1].reason == "too_many_attempts"
    assert events("mfa.verified", person.id) == []
    clock.advance(minutes=15)
    assert verify_totp(other, code_at(secret, clock.now)).status_code == 302


@pytest.mark.parametrize("bad", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)",
                                 "evil", "/\x01x"])
def test_next_must_be_local(client, person, clock, browser, bad):
    other, secret, _ = _enrolled(client, clock, browser)
    clock.advance(seconds=30)
    r = verify_totp(other, code_at(secret, clock.now), next_url=bad)
    assert r.status_code == 302 and location(r).endswith("/mfa")


def test_safe_next():
    assert second_factor.safe_next("/helpdesk/people/3?tab=events") == "/helpdesk/people/3?tab=events"
    for bad in (None, "", "https://x.example/", "//x.example", "/\\x.example", "x", "http:/x", "/a\nb"):
        assert second_factor.safe_next(bad) is None


def test_to_verify_and_to_enrol_keep_only_local_next(app):
    with app.test_request_context():
        r = second_factor.to_verify("/helpdesk/people/1", reauth=True)
        assert path_of(location(r)) == "/mfa/verify"
        assert query_of(location(r)) == {"next": "/helpdesk/people/1", "reauth": "1"}
        r = second_factor.to_enrol("https://evil.example/")
        assert path_of(location(r)) == "/mfa/setup" and "next" not in query_of(location(r))


def test_remove_needs_a_fresh_check(client, person, clock):
    login(client)
    secret, _ = enrol_totp(client, clock)
    clock.advance(minutes=6)  # policy [helpdesk] reauth_minutes = 5
    r = post_form(client, "/mfa/totp/remove", {}, page_url="/mfa")
    assert r.status_code == 302 and path_of(location(r)) == "/mfa/verify"
    assert query_of(location(r)) == {"next": "/mfa", "reauth": "1"}
    assert mfa.enrolled(person)
    r = client.get(location(r))
    assert "This action needs a fresh confirmation" in text(r)
    assert verify_totp(client, code_at(secret, clock.now), next_url="/mfa", reauth=True).status_code == 302
    r = post_form(client, "/mfa/totp/remove", {}, page_url="/mfa")
    assert r.status_code == 302 and location(r).endswith("/mfa")
    assert not mfa.enrolled(person) and mfa.recovery_codes_left(person) == 0
    assert events("mfa.removed", person.id)[0].data == {"method": "totp"}


def test_remove_without_csrf_is_ignored(client, person, clock):
    login(client)
    enrol_totp(client, clock)
    r = client.post("/mfa/totp/remove", data={})
    assert r.status_code == 400
    assert mfa.enrolled(person)


def test_new_recovery_codes_replace_old_ones(client, person, clock, browser):
    login(client)
    _, r = enrol_totp(client, clock)
    old = recovery_codes_from(text(r))
    r = post_form(client, "/mfa/recovery-codes", {}, page_url="/mfa")
    assert r.status_code == 200
    new = recovery_codes_from(text(r))
    assert len(new) == 10 and not set(new) & set(old)
    other = browser()
    login(other)
    assert use_recovery(other, old[0]).status_code == 400
    assert use_recovery(other, new[0]).status_code == 302


def test_secret_key_rotation_needs_re_enrolment(app, client, person, clock, browser):
    other, secret, codes = _enrolled(client, clock, browser)
    app.config["SECRET_KEY"] = "rotated-" + "x" * 40
    clock.advance(seconds=30)
    r = verify_totp(other, code_at(secret, clock.now))
    assert r.status_code == 400 and "set up the app again" in text(r)
    assert events("mfa.failed", person.id)[-1].reason == "secret_unreadable"
    assert use_recovery(other, codes[0]).status_code == 302  # recovery codes do not depend on the key


def test_pending_secret_is_bound_to_its_account(app, person):
    from tests.factories import create_account

    other = create_account("67890", university_email="anna@student.example.edu.pl", private_email=None, aliases=())
    mfa.totp_begin(person)
    row = db.session.scalar(db.select(TotpSecret).where(TotpSecret.account_id == person.id))
    assert mfa._decrypt(row.secret, person.id) is not None
    assert mfa._decrypt(row.secret, other.id) is None  # a copied row does not decrypt for another account


@pytest.mark.parametrize("nxt, expected", [("/account?tab=1", "/account?tab=1"), ("https://evil.example/", "/mfa"),
                                           ("//evil.example/", "/mfa")])
def test_enrolment_continues_to_a_local_next_only(client, person, clock, nxt, expected):
    """The console sends a person without a factor to to_enrol(back): after the codes page, back there."""
    login(client)
    with client.application.test_request_context():
        url = location(second_factor.to_enrol(nxt))
    assert path_of(url) == "/mfa/setup"
    page = client.get(url)
    secret = secret_from(text(page))
    r = client.post(url, data={"csrf_token": csrf_token(text(page)), "code": code_at(secret, clock.now)})
    assert continue_url(text(r)) == expected


def test_blocked_verify_page_says_until_when(client, person, clock, browser):
    other, secret, _ = _enrolled(client, clock, browser)
    wrong = "123456" if code_at(secret, clock.now) != "123456" else "654321"
    for _ in range(5):
        verify_totp(other, wrong)
    r = other.get("/mfa/verify")
    assert r.status_code == 429 and "codes are refused until" in text(r)
    assert mfa.blocked_until(person) == events("mfa.failed", person.id)[0].at + dt.timedelta(minutes=15)


def test_a_waiting_secret_belongs_to_the_browser_it_was_shown_to(client, browser, person, clock):
    """Someone who knows the password opens the setup page first and keeps the secret: the real person's
    browser gets a new one, and the first browser can no longer confirm anything."""
    from tests.conftest import cas_login
    from tests.factories import PASSWORD
    from tests.mfa.conftest import USER, secret_from, text

    intruder = browser()
    assert cas_login(intruder, USER, PASSWORD, service=None).status_code == 200
    assert cas_login(client, USER, PASSWORD, service=None).status_code == 200
    page = intruder.get("/mfa/setup")
    planted = secret_from(text(page))
    token = csrf_token(text(page))
    own_page = client.get("/mfa/setup")
    own = secret_from(text(own_page))
    assert own != planted
    r = intruder.post("/mfa/setup", data={"csrf_token": token, "code": code_at(planted, clock.now)})
    assert "out of date" in text(r) and mfa.confirmed_totp(person) is None
    fresh_for_intruder = secret_from(text(r))  # the intruder's page now shows yet another secret
    r = client.post("/mfa/setup", data={"csrf_token": csrf_token(text(own_page)), "code": code_at(own, clock.now)})
    assert mfa.confirmed_totp(person) is None  # the intruder's reload replaced it: the person scans again
    assert fresh_for_intruder not in (own, planted)
    secret, r = enrol_totp(client, clock)
    assert mfa.confirmed_totp(person) is not None and secret not in (planted, fresh_for_intruder)
