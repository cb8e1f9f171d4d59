"""The link page: the security question (PESEL, or the date of birth without one), wrong answers killing
the link, and every way a link stops working — expired, used, superseded, tampered, made for another
purpose — each with its own page offering a new link. The new password goes through the one rule engine.

Pages are read in English where a test compares wording (`lang=en` sticks in a cookie).
"""
from __future__ import annotations

import datetime as dt
import re

import pytest
from itsdangerous import BadSignature, URLSafeTimedSerializer

from idp.core import accounts, recovery, tokens
from idp.extensions import db
from idp.models import Account, AuditEvent, ResetRequest
from tests.conftest import cas_login, csrf_token
from tests.factories import create_account
from tests.recovery.helpers import (
    NEW,
    OLD,
    OTHER_PESELS,
    RIGHT_PESEL,
    USER,
    answer_field_label,
    main_text,
    offers_a_new_link,
    path_of,
    queued_link,
    request_link,
    shows,
    submit_answer,
    t,
    text,
    token_of,
)

LIFETIME = 60  # policies/default.toml [reset] link_lifetime_minutes
MAX_WRONG = 5  # policies/default.toml [reset] max_wrong_answers
NO_PESEL_USER = "zofia.nowak@student.example.edu.pl"
NO_PESEL_BIRTH = dt.date(2000, 1, 1)  # tests/factories.py: the birth date of a person created without a PESEL

WRONG = "The answer to the security question is not correct."
MALFORMED_PESEL = "This is not a valid PESEL number: it has 11 digits and a correct check digit."
MALFORMED_DATE = "Enter the date of birth as YYYY-MM-DD or DD.MM.YYYY."
ERROR_TEXT = {
    "expired": "The link has expired.",
    "used": "The link has already been used: the password was set with it.",
    "superseded": "A newer link was requested, or the password has changed since: only the newest link works.",
    "killed": "The security question was answered wrongly too many times, so the link no longer works.",
    "invalid": "The link is not valid. Copy the whole link from the message.",
}


def new_link(client, identifier: str = USER) -> str:
    r = request_link(client, identifier, lang="en")
    assert r.status_code == 200, text(r)
    return queued_link(identifier)


def assert_link_page_says(r, status: str) -> None:
    """A link that does not work: its own page (410), saying why, and offering a new link."""
    page = text(r)
    assert r.status_code == 410, (r.status_code, main_text(page))
    assert shows(page, "The link does not work", "en")
    assert shows(page, ERROR_TEXT[status], "en"), main_text(page)
    for other, wording in ERROR_TEXT.items():
        if other != status:
            assert not shows(page, wording, "en")
    assert offers_a_new_link(page)
    assert 'name="new_password"' not in page


def request_row(link: str) -> ResetRequest:
    db.session.expire_all()
    return db.session.scalars(db.select(ResetRequest).order_by(ResetRequest.id.desc())).first()


def person_now(person) -> Account:
    db.session.expire_all()
    return db.session.get(Account, person.id)


def password_is(person, password: str) -> bool:
    return accounts.verify_password(person_now(person), password)


# --- the security question: PESEL ----------------------------------------------------------------------------

def test_the_link_page_asks_for_the_pesel(client, person):
    link = new_link(client)
    page = text(client.get(path_of(link)))
    assert answer_field_label(page) == "PESEL"
    assert shows(page, "Security question: your PESEL number.", "en")
    field = re.search(r'<input[^>]*name="answer"[^>]*>', page).group(0)
    assert 'autocomplete="off"' in field and 'inputmode="numeric"' in field


def test_wrong_pesel_n_times_kills_the_link_and_is_audited(app, client, person):
    limit = app.extensions["idp.policy"].data["reset"]["max_wrong_answers"]
    assert limit == MAX_WRONG
    link = new_link(client)
    for i in range(limit - 1):
        r = submit_answer(client, link, OTHER_PESELS[i])
        assert r.status_code == 400, main_text(text(r))
        assert shows(text(r), WRONG, "en"), main_text(text(r))
        assert request_row(link).wrong_answers == i + 1
        assert not db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "reset.link_killed")).all()
    # The N-th wrong answer: the link is dead, on its own page, and the event is recorded.
    r = submit_answer(client, link, OTHER_PESELS[limit - 1])
    assert_link_page_says(r, "killed")
    row = request_row(link)
    assert row.wrong_answers == limit and row.ended_reason == "killed" and row.ended_at is not None
    [event] = db.session.scalars(db.select(AuditEvent).where(AuditEvent.action == "reset.link_killed")).all()
    assert event.account_id == person.id and event.reason == "wrong_security_answer"
    assert event.data == {"wrong_answers": limit}
    # Even the right answer no longer helps; the page says why and offers a new link.
    assert_link_page_says(client.get(path_of(link)), "killed")
    assert_link_page_says(submit_answer_raw(client, link), "killed")
    assert password_is(person, OLD)
    # A new link works.
    assert submit_answer(client, new_link(client), RIGHT_PESEL).status_code == 302
    assert password_is(person, NEW)


def test_no_pesel_is_written_to_the_audit_trail(client, person):
    link = new_link(client)
    submit_answer(client, link, OTHER_PESELS[0])
    submit_answer(client, link, "04231512342")
    submit_answer(client, link, RIGHT_PESEL)
    trail = " ".join(f"{e.action} {e.reason} {e.data}" for e in db.session.scalars(db.select(AuditEvent)))
    assert "reset.wrong_answer" in trail
    for pesel in (RIGHT_PESEL, OTHER_PESELS[0], "04231512342"):
        assert pesel not in trail


@pytest.mark.policy(reset__max_wrong_answers=3)
def test_the_wrong_answer_limit_comes_from_the_policy(client, person):
    link = new_link(client)
    for pesel in OTHER_PESELS[:2]:
        assert submit_answer(client, link, pesel).status_code == 400
    assert_link_page_says(submit_answer(client, link, OTHER_PESELS[2]), "killed")


@pytest.mark.parametrize("malformed", ["04231512342", "0423151234", "042315123411", "0423151234a", "abc", ""],
                         ids=["checksum", "too-short", "too-long", "letter", "words", "empty"])
def test_a_malformed_pesel_gets_its_own_message_and_does_not_count(client, person, malformed):
    link = new_link(client)
    for _ in range(MAX_WRONG + 1):  # more often than the limit: never kills the link
        r = submit_answer(client, link, malformed)
        assert r.status_code == 400
        assert shows(text(r), MALFORMED_PESEL, "en"), main_text(text(r))
        assert not shows(text(r), WRONG, "en")
    assert request_row(link).wrong_answers == 0 and request_row(link).ended_at is None
    assert submit_answer(client, link, RIGHT_PESEL).status_code == 302


def test_wrong_answers_before_the_limit_then_the_right_one_sets_the_password(client, person):
    link = new_link(client)
    for pesel in OTHER_PESELS[:MAX_WRONG - 1]:
        assert submit_answer(client, link, pesel).status_code == 400
    assert submit_answer(client, link, f" {RIGHT_PESEL[:5]} {RIGHT_PESEL[5:]} ").status_code == 302  # spaces ok
    assert password_is(person, NEW)


def test_the_answer_is_checked_before_the_password_is_set(client, person):
    link = new_link(client)
    r = submit_answer(client, link, None)  # no answer at all
    assert r.status_code == 400 and password_is(person, OLD)


# --- the security question: the date of birth, for people without a PESEL ----------------------------------

@pytest.fixture
def no_pesel(app):
    account = create_account(album="23456", first_name="Zofia", last_name="Nowak", pesel=None,
                             university_email=NO_PESEL_USER, private_email=None, aliases=())
    assert account.pesel_hash is None and account.birth_date == NO_PESEL_BIRTH
    return account


@pytest.mark.parametrize("answer", ["2000-01-01", "01.01.2000", "1.1.2000", " 2000-01-01 "])
def test_people_without_a_pesel_answer_with_the_date_of_birth(client, no_pesel, answer):
    link = new_link(client, NO_PESEL_USER)
    page = text(client.get(path_of(link)))
    assert answer_field_label(page) == "Date of birth"
    assert shows(page, "Security question: your date of birth (YYYY-MM-DD).", "en")
    r = submit_answer(client, link, answer)
    assert r.status_code == 302, main_text(text(r))
    assert password_is(no_pesel, NEW)
    assert cas_login(client, NO_PESEL_USER, NEW).status_code == 302


def test_the_date_of_birth_question_is_polish_by_default(client, no_pesel):
    r = request_link(client, NO_PESEL_USER)
    assert r.status_code == 200
    page = text(client.get(path_of(queued_link(NO_PESEL_USER))))
    assert answer_field_label(page) == t("Date of birth") == "Data urodzenia"


def test_a_wrong_date_of_birth_counts_and_a_malformed_one_does_not(client, no_pesel):
    link = new_link(client, NO_PESEL_USER)
    for malformed in ("1 stycznia 2000", "2000-13-01", "31.02.2000", RIGHT_PESEL):
        r = submit_answer(client, link, malformed)
        assert r.status_code == 400 and shows(text(r), MALFORMED_DATE, "en"), (malformed, main_text(text(r)))
    assert request_row(link).wrong_answers == 0
    r = submit_answer(client, link, "2000-01-02")
    assert r.status_code == 400 and shows(text(r), WRONG, "en")
    assert request_row(link).wrong_answers == 1
    for _ in range(MAX_WRONG - 2):
        submit_answer(client, link, "02.01.2000")
    assert_link_page_says(submit_answer(client, link, "1999-12-31"), "killed")
    assert password_is(no_pesel, OLD)


# --- links that no longer work --------------------------------------------------------------------------------

def test_an_expired_link_says_so(client, person, clock):
    """The request row's expiry, on the IdP's clock: one minute past the policy's lifetime."""
    link = new_link(client)
    clock.advance(minutes=LIFETIME - 1)
    assert client.get(path_of(link)).status_code == 200
    clock.advance(minutes=2)
    assert_link_page_says(client.get(path_of(link)), "expired")
    assert_link_page_says(submit_answer_raw(client, link), "expired")
    assert password_is(person, OLD)


def test_an_expired_signature_says_so_too(client, person, monkeypatch):
    """The token's own age (itsdangerous reads the real time, not the IdP's clock): a link whose signature
    is older than the lifetime is expired even if the request row were somehow still open."""
    from itsdangerous.timed import TimestampSigner

    link = new_link(client)
    assert client.get(path_of(link)).status_code == 200
    real = TimestampSigner.get_timestamp
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) + LIFETIME * 60 + 60)
    with pytest.raises(tokens.TokenExpired):
        tokens.load(recovery.PURPOSE, token_of(link), LIFETIME * 60)
    assert_link_page_says(client.get(path_of(link)), "expired")
    monkeypatch.setattr(TimestampSigner, "get_timestamp", real)
    assert client.get(path_of(link)).status_code == 200  # only the age made it expired


def submit_answer_raw(client, link: str):
    """POST to a link page that no longer renders its form (the token taken from another page)."""
    token = csrf_token(text(client.get("/password/reset")))
    return client.post(path_of(link), data={"csrf_token": token, "answer": RIGHT_PESEL, "new_password": NEW,
                                            "confirm": NEW})


def test_a_used_link_says_it_was_already_used(client, person):
    link = new_link(client)
    assert submit_answer(client, link, RIGHT_PESEL).status_code == 302
    assert_link_page_says(client.get(path_of(link)), "used")
    r = submit_answer_raw(client, link)
    assert_link_page_says(r, "used")
    assert password_is(person, NEW)


def test_a_newer_request_supersedes_the_older_link(client, person):
    first = new_link(client)
    second = new_link(client)
    assert first != second
    assert_link_page_says(client.get(path_of(first)), "superseded")
    assert_link_page_says(submit_answer_raw(client, first), "superseded")
    assert password_is(person, OLD)
    assert submit_answer(client, second, RIGHT_PESEL).status_code == 302
    assert password_is(person, NEW)


def test_a_completed_reset_ends_every_other_open_link(app, client, person):
    first = new_link(client)
    second = new_link(client)
    assert submit_answer(client, second, RIGHT_PESEL).status_code == 302
    assert_link_page_says(client.get(path_of(first)), "superseded")
    assert_link_page_says(client.get(path_of(second)), "used")


def test_a_password_changed_by_other_means_kills_the_link(app, client, person):
    link = new_link(client)
    assert client.get(path_of(link)).status_code == 200
    accounts.set_password(person_now(person), "Kwitnące-Jabłonie-Nad-Wisłą-73", app.extensions["idp.policy"],
                          actor="cli")
    assert_link_page_says(client.get(path_of(link)), "superseded")
    assert_link_page_says(submit_answer_raw(client, link), "superseded")
    assert password_is(person, "Kwitnące-Jabłonie-Nad-Wisłą-73")


def test_a_password_changed_on_the_account_page_kills_the_link(client, person):
    link = new_link(client)
    assert cas_login(client, USER, OLD, service=None).status_code == 200
    page = client.get("/account/password")
    r = client.post("/account/password", data={"csrf_token": csrf_token(text(page)), "current_password": OLD,
                                               "new_password": "Zielony Parasol Nad Odrą 1410",
                                               "confirm": "Zielony Parasol Nad Odrą 1410"})
    assert r.status_code == 200, main_text(text(r))
    assert_link_page_says(client.get(path_of(link)), "superseded")


@pytest.mark.parametrize("tamper", ["flip-signature", "flip-payload", "truncate", "garbage", "empty-signature"])
def test_a_tampered_link_is_invalid(client, person, tamper):
    link = new_link(client)
    token = token_of(link)
    payload = token.partition(".")[0]
    head, _, signature = token.rpartition(".")
    forged = {
        # The signature's first character: all its bits count (the last one's low bits are padding).
        "flip-signature": f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}",
        "flip-payload": ("A" if payload[0] != "A" else "B") + token[1:],
        "truncate": token[:-5],
        "garbage": "not-a-token",
        "empty-signature": token.rsplit(".", 1)[0] + ".",
    }[tamper]
    assert forged != token
    assert_link_page_says(client.get(f"/password/reset/{forged}"), "invalid")
    assert client.get(path_of(link)).status_code == 200  # the real one still works


def test_a_token_for_another_purpose_or_key_is_invalid(app, client, person):
    link = new_link(client)
    token = token_of(link)
    key = app.config["SECRET_KEY"]
    # The link's token does not load under any other salt, even with the same key ...
    for salt in ("idp/email-verification", "idp/password-reset ", "itsdangerous", "cookie-session"):
        with pytest.raises(BadSignature):
            URLSafeTimedSerializer(key, salt=salt).loads(token, max_age=3600)
    assert URLSafeTimedSerializer(key, salt="idp/password-reset").loads(token, max_age=3600)["r"] == request_row(link).id
    # ... and a token made under another salt (same key, same data) is refused by the link page.
    data = URLSafeTimedSerializer(key, salt="idp/password-reset").loads(token)
    for salt in ("idp/email-verification", "cookie-session"):
        other = URLSafeTimedSerializer(key, salt=salt).dumps(data)
        assert_link_page_says(client.get(f"/password/reset/{other}"), "invalid")
    other_key = URLSafeTimedSerializer("another instance's key", salt="idp/password-reset").dumps(data)
    assert_link_page_says(client.get(f"/password/reset/{other_key}"), "invalid")
    # Only the purposes the IdP knows have a serializer.
    with pytest.raises(ValueError):
        tokens.make("email-verification", data)


def test_a_signed_token_naming_no_request_is_invalid(app, client, person):
    for data in ({"r": 999999, "p": "x"}, {"r": 0, "p": "x"}, ["r", 1], "r"):
        forged = tokens.make(recovery.PURPOSE, data)
        assert_link_page_says(client.get(f"/password/reset/{forged}?lang=en"), "invalid")


def test_error_pages_are_polish_by_default(client, person):
    r = request_link(client, USER)
    assert r.status_code == 200
    link = queued_link(USER)
    request_link(client, USER)
    page = client.get(path_of(link))
    assert page.status_code == 410
    assert shows(text(page), ERROR_TEXT["superseded"]) and t(ERROR_TEXT["superseded"]).startswith("Wysłano nowszy")
    assert t("Send a new link") in main_text(text(page))


# --- the new password: the one rule engine, with the live check ----------------------------------------------

def test_a_weak_password_is_refused_with_the_checklist(client, person):
    link = new_link(client)
    r = submit_answer(client, link, RIGHT_PESEL, "haslo123")
    assert r.status_code == 400
    page = text(r)
    assert shows(page, "The password was not accepted:", "en")
    box = re.search(r'<div class="alert"[^>]*>.*?</div>', page, re.S).group(0)
    assert len(re.findall(r"<li>", box)) >= 2  # every broken rule, not just the first
    assert re.search(r'<li data-rule="too_short" data-state="', page)  # the checklist is on the page
    assert password_is(person, OLD)
    # The question was answered: it is not asked again, and a good password now sets it.
    assert 'name="answer"' not in page
    r = submit_answer(client, link, None, NEW)
    assert r.status_code == 302
    assert password_is(person, NEW)


def test_personal_data_and_the_current_password_are_refused(client, person):
    link = new_link(client)
    for refused in ("Zolkiewski-Tramwaj-Parasol-77", OLD, f"Tramwaj-{RIGHT_PESEL}-Parasol"):
        r = submit_answer(client, link, RIGHT_PESEL, refused)
        assert r.status_code == 400, refused
        assert shows(text(r), "The password was not accepted:", "en")
    assert password_is(person, OLD)


def test_the_passwords_must_match(client, person):
    link = new_link(client)
    r = submit_answer(client, link, RIGHT_PESEL, NEW, confirm=NEW + "x")
    assert r.status_code == 400
    assert "The passwords do not match." in text(r)
    assert password_is(person, OLD)


def test_the_live_check_judges_the_links_person_and_needs_an_open_link(client, person):
    token = csrf_token(text(client.get("/password/reset?lang=en")))
    no_link = client.post("/password/check?for=reset", json={"password": NEW}, headers={"X-CSRFToken": token})
    assert no_link.status_code == 401 and no_link.get_json() == {"error": "no_person"}

    link = new_link(client)
    page = text(client.get(path_of(link)))
    assert re.search(r'<input[^>]*data-live-check="/password/check\?for=reset"', page)
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

    def check(password: str):
        r = client.post("/password/check?for=reset", json={"password": password}, headers={"X-CSRFToken": meta})
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()

    personal = check("Zolkiewski-Tramwaj-Parasol-77")
    assert personal["ok"] is False
    assert {r["code"]: r["ok"] for r in personal["rules"]}["personal_data"] is False  # the link's person
    # The current password is not judged as someone types (no unthrottled oracle); the submit refuses it.
    assert {r["code"]: r["ok"] for r in check(OLD)["rules"]}.get("reused", None) is None
    good = check(NEW)
    assert good["ok"] is True and good["violations"] == []
    # Once the reset is done, the check has nobody to judge for.
    assert submit_answer(client, link, RIGHT_PESEL, NEW).status_code == 302
    after = client.post("/password/check?for=reset", json={"password": NEW}, headers={"X-CSRFToken": meta})
    assert after.status_code == 401


def test_the_live_check_stops_when_the_link_is_superseded(client, person):
    link = new_link(client)
    page = text(client.get(path_of(link)))
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
    assert client.post("/password/check?for=reset", json={"password": NEW},
                       headers={"X-CSRFToken": meta}).status_code == 200
    new_link(client)  # a newer request ends the link the page was opened with
    assert client.post("/password/check?for=reset", json={"password": NEW},
                       headers={"X-CSRFToken": meta}).status_code == 401


def test_the_pesel_stays_refused_in_the_password_after_the_question_was_answered(client, person):
    """Once answered, the form no longer carries the PESEL; the rule still finds it (its keyed hash)."""
    link = new_link(client)
    assert submit_answer(client, link, RIGHT_PESEL, "haslo123").status_code == 400
    r = submit_answer(client, link, None, f"Tramwaj-{RIGHT_PESEL}-Parasol")
    assert r.status_code == 400 and shows(text(r), "The password was not accepted:", "en")
    assert password_is(person, OLD)


@pytest.mark.policy(reset__security_question="none")
def test_a_policy_without_the_security_question_asks_only_for_the_password(client, person):
    link = new_link(client)
    page = text(client.get(path_of(link)))
    assert 'name="answer"' not in page and 'name="new_password"' in page
    assert submit_answer(client, link, None, NEW).status_code == 302
    assert password_is(person, NEW)
