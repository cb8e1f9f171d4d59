"""Assisted recovery: after an in-person ID check the helpdesk issues a one-time recovery code (shown once,
short-lived, single use); the person types it with their login at /password/code and sets a new password
themselves — the helpdesk never sees or sets it (idp/core/assisted_recovery.py, idp/recovery/views.py)."""
from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from idp.core import assisted_recovery as ar
from idp.core import helpdesk
from idp.core.errors import DomainError
from idp.extensions import db
from idp.models import Account, AssistedRecovery, AuditEvent, OutboxMessage, SsoSession
from tests.conftest import cas_login, csrf_token
from tests.factories import PASSWORD, create_account
from tests.recovery.helpers import NEW, PRIVATE, USER, main_text, shows, text

MINUTES = 120  # policies/default.toml [helpdesk] recovery_code_minutes
DESK = helpdesk.Actor(name="staff:anna.nowak@example.edu.pl", account_id=None, client_ip="10.1.2.3", via="console")
WHY = "ID card checked at the dean's office"


@pytest.fixture
def policy(app):
    return app.extensions["idp.policy"]


def issue(account, policy, **kw):
    return ar.issue(account, actor=DESK, reason=kw.pop("reason", WHY), policy=policy, **kw)


def events(action: str | None = None) -> list[AuditEvent]:
    db.session.expire_all()
    query = db.select(AuditEvent).order_by(AuditEvent.id)
    if action:
        query = query.where(AuditEvent.action == action)
    return list(db.session.scalars(query))


def type_code(client, identifier: str, code: str, *, lang: str | None = None, ip: str = "127.0.0.1"):
    query = {"lang": lang} if lang else {}
    page = client.get("/password/code", query_string=query, environ_base={"REMOTE_ADDR": ip})
    assert page.status_code == 200, text(page)
    return client.post("/password/code", query_string=query, environ_base={"REMOTE_ADDR": ip},
                       data={"csrf_token": csrf_token(text(page)), "identifier": identifier, "code": code})


def set_password(client, new: str = NEW, confirm: str | None = None):
    page = client.get("/password/code/password")
    assert page.status_code == 200, text(page)
    return client.post("/password/code/password", data={"csrf_token": csrf_token(text(page)), "new_password": new,
                                                         "confirm": new if confirm is None else confirm})


# --- issuing -----------------------------------------------------------------------------------------------

def test_a_code_is_short_readable_and_stored_only_hashed(app, person, policy):
    issued = issue(person, policy)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}", issued.code)
    assert len(ar.ALPHABET) ** ar.LENGTH >= 2 ** 60
    assert not set(ar.ALPHABET) & set("ILOU")
    record = db.session.get(AssistedRecovery, issued.record.id)
    assert record.code_hash == ar.code_hash(issued.code) != issued.code
    assert record.issued_by == DESK.name and record.used_at is None and record.ended_at is None
    assert record.expires_at - record.issued_at == dt.timedelta(minutes=MINUTES)
    assert len({issue(person, policy).code for _ in range(5)}) == 5


def test_issuing_is_audited_with_the_reason_and_never_the_code(app, person, policy):
    issued = issue(person, policy)
    (event,) = events("helpdesk.recovery_code")
    assert event.actor == DESK.name and event.account_id == person.id and event.client_ip == DESK.client_ip
    assert event.data["why"] == WHY and event.data["via"] == "console"
    assert event.data["after"]["open_codes"] == [issued.record.id]
    raw = issued.code.replace("-", "")
    for e in events():
        dumped = json.dumps(e.data or {})
        assert issued.code not in dumped and raw not in dumped


@pytest.mark.parametrize("reason", ["", "   ", "ok"])
def test_a_reason_is_required(app, person, policy, reason):
    with pytest.raises(helpdesk.ReasonRequired) as exc:
        issue(person, policy, reason=reason)
    assert exc.value.code == "reason_required"
    assert db.session.scalars(db.select(AssistedRecovery)).all() == []
    assert events("helpdesk.recovery_code") == []


def test_no_code_for_an_account_that_cannot_log_in(app, policy):
    left = create_account("99999", university_email="left@student.example.edu.pl", private_email=None, aliases=(),
                          status="left")
    with pytest.raises(helpdesk.Refused) as exc:
        issue(left, policy)
    assert exc.value.code == "not_active"
    assert events("helpdesk.recovery_code") == []


def test_a_new_code_ends_the_older_unused_one(app, client, person, policy):
    first = issue(person, policy)
    second = issue(person, policy)
    db.session.expire_all()
    assert db.session.get(AssistedRecovery, first.record.id).ended_at is not None
    assert db.session.get(AssistedRecovery, second.record.id).ended_at is None
    assert events("helpdesk.recovery_code")[-1].data["before"]["open_codes"] == [first.record.id]
    r = type_code(client, USER, first.code)
    assert r.status_code == 410
    assert shows(text(r), "This recovery code no longer works: a newer code was issued, or a wrong code was "
                          "typed too many times. Ask the dean's office for a new one.")
    assert type_code(client, USER, second.code).status_code == 302


# --- the person's page ----------------------------------------------------------------------------------------

def test_the_reset_page_points_to_the_code_page(client):
    page = text(client.get("/password/reset", query_string={"lang": "en"}))
    assert 'href="/password/code"' in page and "Got a recovery code from the dean's office?" in main_text(page)


def test_the_whole_path_sets_the_password_and_ends_every_session(app, client, person, policy):
    other_browser = app.test_client()
    assert cas_login(other_browser, USER, PASSWORD).status_code == 302
    live = db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == person.id)).all()
    assert len(live) == 1
    issued = issue(person, policy)

    r = type_code(client, "12345", issued.code.lower().replace("-", " "))  # the album, typed loosely
    assert r.status_code == 302 and r.headers["Location"].endswith("/password/code/password")
    page = client.get("/password/code/password", query_string={"lang": "en"})
    html = text(page)
    assert 'data-live-check="/password/check?for=code"' in html and 'id="password-rules"' in html
    assert "Łukasz Żółkiewski" in html
    verdict = client.post("/password/check?for=code", json={"password": NEW},
                          headers={"X-CSRFToken": re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)})
    assert verdict.status_code == 200 and verdict.get_json()["ok"] is True

    r = set_password(client)
    assert r.status_code == 302 and r.headers["Location"].endswith("/cas/login")
    login = client.get("/cas/login", query_string={"lang": "en"})
    assert "Your password has been changed. Log in with the new password." in text(login)

    db.session.expire_all()
    account = db.session.get(Account, person.id)
    assert account.password_temporary is False
    assert db.session.get(AssistedRecovery, issued.record.id).used_at is not None
    assert all(s.ended_at is not None for s in db.session.scalars(
        db.select(SsoSession).where(SsoSession.id.in_([s.id for s in live]))))
    assert cas_login(app.test_client(), USER, PASSWORD).status_code != 302
    assert cas_login(app.test_client(), USER, NEW).status_code == 302
    # The owner hears of it at every address (whoever talked the desk into a code, the real person learns).
    notices = db.session.scalars(db.select(OutboxMessage).where(OutboxMessage.purpose == "password_changed")).all()
    assert {m.to_addr for m in notices} == {USER, PRIVATE}
    (used,) = events("reset.code.used")
    assert used.account_id == person.id and used.data["issued_by"] == DESK.name
    (changed,) = [e for e in events("password.set") if e.account_id == person.id]
    assert changed.actor == "self" and changed.reason is None
    assert events("reset.code.accepted")[0].account_id == person.id

    # Single use: the same code again is refused, saying why.
    r = type_code(client, USER, issued.code, lang="en")
    assert r.status_code == 410
    assert "This recovery code has already been used." in main_text(text(r))
    assert events("reset.code.failed")[-1].reason == "recovery_code_used"


def test_the_helpdesk_never_sees_the_password(app, client, person, policy):
    issued = issue(person, policy)
    type_code(client, USER, issued.code)
    assert set_password(client).status_code == 302
    for e in events():
        assert NEW not in json.dumps(e.data or {})
    (event,) = events("helpdesk.recovery_code")
    assert "password" not in json.dumps(event.data)
    assert "password" not in ar.issue.__code__.co_varnames  # nothing to hand over


def test_the_new_password_is_checked_against_the_policy(app, client, person, policy):
    issued = issue(person, policy)
    type_code(client, USER, issued.code)
    r = set_password(client, "short")
    assert r.status_code == 400
    assert shows(text(r), "The password was not accepted:")
    r = set_password(client, PASSWORD)  # the current one: a new password must be new
    assert r.status_code == 400
    r = set_password(client, NEW, confirm=NEW + "x")
    assert r.status_code == 400
    db.session.expire_all()
    assert db.session.get(AssistedRecovery, issued.record.id).used_at is None  # the code is still good
    assert set_password(client).status_code == 302


def test_the_password_page_needs_a_redeemed_code(client, person):
    r = client.get("/password/code/password")
    assert r.status_code == 302 and r.headers["Location"].endswith("/password/code")
    assert client.post("/password/check?for=code", json={"password": NEW}).status_code in (400, 401)


def test_a_code_used_in_another_browser_meanwhile(app, client, person, policy):
    issued = issue(person, policy)
    second = app.test_client()
    type_code(client, USER, issued.code)
    type_code(second, USER, issued.code)
    assert set_password(second).status_code == 302
    page = client.get("/password/code/password")
    assert page.status_code == 302  # the code no longer works: back to the first page
    db.session.expire_all()
    assert cas_login(app.test_client(), USER, NEW).status_code == 302


def test_complete_refuses_a_code_used_meanwhile(app, person, policy):
    issued = issue(person, policy)
    record = ar.redeem(USER, issued.code, client_ip="192.0.2.1")
    assert isinstance(record, AssistedRecovery)
    ar.complete(record, NEW, policy, client_ip="192.0.2.1")
    with pytest.raises(ar.CodeGone):
        ar.complete(record, "Parowóz-Kometa-Sosna-2031", policy, client_ip="192.0.2.2")
    with pytest.raises(ar.CodeGone):  # said before the password is judged
        ar.complete(record, "x", policy, client_ip="192.0.2.2")


def test_the_code_expires(app, client, person, policy, clock):
    issued = issue(person, policy)
    clock.advance(minutes=MINUTES, seconds=1)
    r = type_code(client, USER, issued.code, lang="en")
    assert r.status_code == 410
    assert "This recovery code has expired. Ask the dean's office for a new one." in main_text(text(r))
    assert events("reset.code.failed")[-1].reason == "recovery_code_expired"


def test_the_code_expires_between_the_two_pages(app, client, person, policy, clock):
    issued = issue(person, policy)
    clock.advance(minutes=MINUTES - 1)
    assert type_code(client, USER, issued.code).status_code == 302
    clock.advance(minutes=2)
    assert client.get("/password/code/password").status_code == 302


# --- wrong tries ---------------------------------------------------------------------------------------------

GENERIC = ("The login or the recovery code is not correct. Check both and try again; after several wrong tries "
           "the code stops working and the dean's office has to issue a new one.")


def wrong_code(right: str) -> str:
    raw = right.replace("-", "")
    return ("1" if raw[0] != "1" else "2") + raw[1:]


def test_five_wrong_codes_end_it(app, client, person, policy):
    issued = issue(person, policy)
    for n in range(1, ar.MAX_WRONG_ATTEMPTS + 1):
        r = type_code(client, USER, wrong_code(issued.code), lang="en", ip=f"192.0.2.{n}")
        assert r.status_code == 400 and GENERIC in main_text(text(r))
    db.session.expire_all()
    record = db.session.get(AssistedRecovery, issued.record.id)
    assert record.wrong_attempts == ar.MAX_WRONG_ATTEMPTS and record.ended_at is not None
    reasons = [e.reason for e in events("reset.code.failed")]
    assert reasons == ["wrong_recovery_code"] * 4 + ["too_many_wrong_codes"]
    assert all(e.account_id == person.id for e in events("reset.code.failed"))
    r = type_code(client, USER, issued.code, lang="en", ip="192.0.2.99")
    assert r.status_code == 410 and "This recovery code no longer works" in main_text(text(r))


def test_the_same_answer_for_an_unknown_login_a_wrong_code_and_no_code(app, client, person, policy):
    nobody = create_account("77777", university_email="bez.kodu@student.example.edu.pl", private_email=None,
                            aliases=())
    issued = issue(person, policy)
    answers = [type_code(client, "nikt@student.example.edu.pl", issued.code, lang="en", ip="192.0.2.1"),
               type_code(client, USER, wrong_code(issued.code), lang="en", ip="192.0.2.2"),
               type_code(client, "bez.kodu@student.example.edu.pl", issued.code, lang="en", ip="192.0.2.3")]
    bodies = {re.sub(r'value="[^"]*"', "", main_text(text(r))) for r in answers}
    assert {r.status_code for r in answers} == {400} and len(bodies) == 1
    assert GENERIC in bodies.pop()
    assert [(e.reason, e.account_id) for e in events("reset.code.failed")] == [
        ("unknown_identifier", None), ("wrong_recovery_code", person.id), ("no_recovery_code", nobody.id)]
    assert events("reset.code.failed")[0].data == {"identifier": "nikt@student.example.edu.pl"}


def test_a_malformed_code_is_not_a_try(app, client, person, policy):
    issue(person, policy)
    r = type_code(client, USER, "ABC", lang="en")
    assert r.status_code == 400
    assert "A recovery code has 12 letters and digits" in text(r)
    assert events("reset.code.failed") == []
    assert 'value="ABC"' not in text(r)  # never echoed back


def test_wrong_codes_are_counted_per_client_address(app, person, policy):
    issued = issue(person, policy)
    for n in range(ar.MAX_FAILURES_PER_ADDRESS):
        outcome = ar.redeem(f"nikt{n}@student.example.edu.pl", issued.code, client_ip="203.0.113.5")
        assert isinstance(outcome, ar.Refusal) and outcome.reason == ar.UNKNOWN
    # The right login and code from that address are refused for a while; from another address they work.
    outcome = ar.redeem(USER, issued.code, client_ip="203.0.113.5")
    assert isinstance(outcome, ar.Refusal) and outcome.reason == ar.THROTTLED
    assert events("reset.code.failed")[-1].reason == "address_throttled"
    assert isinstance(ar.redeem(USER, issued.code, client_ip="203.0.113.6"), AssistedRecovery)


def test_the_page_is_rate_limited_per_client_address(app, client, person):
    for n in range(10):
        assert type_code(client, f"nikt{n}@student.example.edu.pl", "AAAA-BBBB-CCCC", ip="198.51.100.1").status_code == 400
    assert type_code(client, USER, "AAAA-BBBB-CCCC", ip="198.51.100.1").status_code == 429


def test_the_code_page_needs_its_csrf_token(client, person, policy):
    issued = issue(person, policy)
    r = client.post("/password/code", data={"identifier": USER, "code": issued.code})
    assert r.status_code == 400
    assert events("reset.code.accepted") == []


@pytest.mark.parametrize("lang, heading", [("pl", None), ("en", "Set a password with a recovery code")])
def test_the_page_speaks_both_languages(client, lang, heading):
    page = text(client.get("/password/code", query_string={"lang": lang}))
    assert shows(page, "Set a password with a recovery code", lang)
    if heading:
        assert heading in page


def test_a_merged_account_cannot_redeem(app, person, policy):
    issued = issue(person, policy)
    survivor = create_account("54321", university_email="inny@student.example.edu.pl", private_email=None,
                              aliases=())
    person.merged_into_id = survivor.id
    db.session.commit()
    outcome = ar.redeem("12345", issued.code, client_ip="192.0.2.1")
    assert isinstance(outcome, ar.Refusal) and outcome.generic


def test_the_errors_are_domain_errors(app, person, policy):
    with pytest.raises(DomainError):
        issue(person, policy, reason="")
