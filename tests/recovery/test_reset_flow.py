"""The manuals' reset path over HTTP, with the mail going through a real SMTP server (aiosmtpd):

login page → "Forgot your password? Reset it" → type the address → "A link to set a new password has been
sent to l***@…" → the outbox delivers → the link read from the received message → PESEL → the new password
twice → the login page says the password was changed → the new password logs in, the old one does not,
every earlier session has ended, and every address of the account is told.

Also: where the link goes (policy `reset.send_to`), and what an unknown address is told
(`reset.reveal_unknown_identifier`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
from markupsafe import escape

from idp.extensions import db
from idp.models import Account, AuditEvent, OAuthToken, OutboxMessage, ResetRequest, SsoSession
from tests.conftest import USOSWEB, cas_login
from tests.recovery.helpers import (
    NEW,
    OLD,
    PRIVATE,
    PRIVATE_MASKED,
    RIGHT_PESEL,
    USER,
    USER_MASKED,
    deliver,
    lang_query,
    main_text,
    outbox_rows,
    path_of,
    request_link,
    shows,
    submit_answer,
    t,
    text,
)
from tests.smtp_sink import link_in

LIFETIME = 60  # policies/default.toml [reset] link_lifetime_minutes
INSTITUTION = {"pl": "Uczelnia", "en": "University"}  # policies/default.toml [institution] name / name_en


def gets_ticket(client) -> bool:
    r = client.get("/cas/login", query_string={"service": USOSWEB})
    return r.status_code == 302 and "ticket=ST-" in r.headers.get("Location", "")


def refresh_token_for(account: Account) -> OAuthToken:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    token = OAuthToken(client_id="mail", account_id=account.id, access_token_hash=hashlib.sha256(b"at").hexdigest(),
                       refresh_token_hash=hashlib.sha256(b"rt").hexdigest(), scope="openid", issued_at=now,
                       access_expires_at=now + dt.timedelta(minutes=5),
                       refresh_expires_at=now + dt.timedelta(days=30), family="f" * 32)
    db.session.add(token)
    db.session.commit()
    return token


def urls_in(body: str) -> set[str]:
    return set(re.findall(r"https?://[^\s<>\"']+", body))


# --- the whole path ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", [None, "en"], ids=["polish-by-default", "english-by-query"])
def test_the_whole_path_from_the_login_page_to_the_new_password(app, client, person, smtp_sink, clock, lang):
    shown = lang or "pl"
    base = app.config["BASE_URL"]
    # Another browser logged in before the reset, and an app holding a refresh token: both end with it.
    other = app.test_client()
    assert cas_login(other, USER, OLD).status_code == 302
    assert gets_ticket(other)
    token = refresh_token_for(person)
    before = set(db.session.scalars(db.select(SsoSession.id).where(SsoSession.account_id == person.id)))
    assert before

    # The login page links to the reset page.
    login_page = text(client.get("/cas/login", query_string=lang_query(lang)))
    assert f'<a href="/password/reset">{escape(t("Forgot your password? Reset it", shown))}</a>' in login_page
    request_page = client.get("/password/reset")
    assert request_page.status_code == 200
    assert shows(text(request_page), "Type your e-mail address. A link to set a new password will be sent to "
                                     "your university mailbox.", shown)

    # Type the address: the confirmation the manuals show, naming the masked address.
    r = request_link(client, USER)
    assert r.status_code == 200, text(r)
    page = text(r)
    assert f'<html lang="{shown}">' in page
    assert shows(page, "Check your mailbox", shown)
    assert shows(page, "A link to set a new password has been sent to %(addresses)s.", shown, addresses=USER_MASKED)
    assert shows(page, "The link works for %(minutes)s minutes and only once. The message may land in the spam "
                       "folder: look there too, and mark it as not spam.", shown, minutes=LIFETIME)
    assert USER not in page and PRIVATE not in page
    assert smtp_sink.messages == []  # the request only wrote the outbox; the worker sends

    # The outbox delivers one message, to the university mailbox (the default policy).
    report = deliver()
    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    [received] = smtp_sink.messages
    [row] = outbox_rows(purpose="reset_link")
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    msg = received.message
    assert received.rcpt_tos == [USER] and msg["To"] == USER
    assert received.mail_from == app.config["MAIL_DEFAULT_SENDER"] == msg["From"] == "idp@localhost"
    assert msg["Message-ID"] == row.message_id
    assert re.fullmatch(r"<[^<>@\s]+@localhost>", msg["Message-ID"]), msg["Message-ID"]
    sent_at = parsedate_to_datetime(msg["Date"]).astimezone(dt.UTC).replace(tzinfo=None)
    assert abs(sent_at - clock.now) < dt.timedelta(seconds=2), (msg["Date"], clock.now)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.is_multipart()
    parts = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
    assert parts == ["text/plain", "text/html"], parts
    assert msg["Subject"] == f'{t("Set a new password", shown)} — {INSTITUTION[shown]}'
    body, html = received.text, received.html
    assert f'<html lang="{shown}">' in html

    # The link as plain text, on a line of its own, and the same link in the HTML; nothing but the IdP's URLs.
    link = link_in(body)
    assert link.startswith(f"{base}/password/reset/"), link
    assert link in [line.strip() for line in body.splitlines()]
    assert f'href="{link}"' in html and link_in(html) == link
    assert urls_in(body) == {link}
    assert all(u.startswith(base + "/") for u in urls_in(html)), urls_in(html)
    for part in (body, " ".join(re.sub(r"<[^>]+>", " ", html).split())):
        assert t("Hello %(name)s,", shown, name="Łukasz") in part
        assert " ".join(t("Someone (hopefully you) asked to set a new password for your university account. Open "
                          "this link to set it (it works for %(minutes)s minutes, once):", shown,
                          minutes=LIFETIME).split()) in " ".join(part.split())
        assert t("If you did not ask for it, ignore this message: your password stays as it is.", shown) in part
        assert t("This message was sent automatically; do not reply to it.", shown) in part

    # Open the link: the security question, then the new password twice.
    page = client.get(path_of(link))
    assert page.status_code == 200, text(page)
    assert shows(text(page), "Security question: your PESEL number.", shown)
    r = submit_answer(client, link, RIGHT_PESEL, NEW)
    assert r.status_code == 302, main_text(text(r))
    assert urlsplit(r.headers["Location"]).path == "/cas/login"
    landing = text(client.get(r.headers["Location"]))
    assert shows(landing, "Your password has been changed. Log in with the new password.", shown)

    # The new password logs in, the old one does not.
    assert cas_login(client, USER, OLD).status_code == 401
    assert cas_login(client, USER, NEW).status_code == 302

    # Every session that existed before the reset has ended, and the refresh token is revoked.
    assert not gets_ticket(other)
    db.session.expire_all()
    earlier = [db.session.get(SsoSession, sid) for sid in before]
    assert all(s.ended_at is not None and s.end_reason == "password_changed" for s in earlier), earlier
    assert db.session.get(OAuthToken, token.id).revoked_at is not None
    events = [e.action for e in db.session.scalars(db.select(AuditEvent).where(AuditEvent.account_id == person.id))]
    assert "reset.requested" in events and "reset.completed" in events and "password.set" in events

    # "Your password was changed" reaches every mailbox of the account.
    report = deliver()
    assert (report.sent, report.retried, report.failed) == (2, 0, 0)
    notices = smtp_sink.messages[1:]
    # every mailbox of the account, once: an alias delivers to the university mailbox already
    assert sorted(r for m in notices for r in m.rcpt_tos) == sorted([USER, PRIVATE])
    for notice in notices:
        assert notice.message["Subject"] == f'{t("Your password was changed", shown)} — {INSTITUTION[shown]}'
        assert notice.message["Auto-Submitted"] == "auto-generated"
        assert t("If it was not you, contact the helpdesk at once.", shown) in notice.text
        assert "/password/reset/" not in notice.text  # no link in a notice
    assert len({m.message["Message-ID"] for m in smtp_sink.messages}) == 3

    # Delivering again sends nothing more.
    assert deliver().sent == 0 and len(smtp_sink.messages) == 3


def test_the_link_works_only_for_the_right_person_in_the_same_flow_from_another_browser(app, client, person,
                                                                                        smtp_sink):
    """The link alone is what counts (a person opens it on their phone): a fresh browser can use it."""
    assert request_link(client, USER).status_code == 200
    deliver()
    link = link_in(smtp_sink.to(USER)[0].text)
    phone = app.test_client()
    r = submit_answer(phone, link, RIGHT_PESEL, NEW)
    assert r.status_code == 302
    assert cas_login(phone, USER, NEW).status_code == 302


# --- where the link goes ----------------------------------------------------------------------------------

def test_default_policy_sends_the_link_to_the_university_mailbox(client, person, smtp_sink):
    page = text(request_link(client, USER))
    assert shows(page, "A link to set a new password has been sent to %(addresses)s.", addresses=USER_MASKED)
    assert PRIVATE_MASKED not in page
    assert deliver().sent == 1
    assert [m.rcpt_tos for m in smtp_sink.messages] == [[USER]]


@pytest.mark.policy(reset__send_to=["private_email"])
def test_kpu_and_opole_style_policy_sends_the_link_to_the_private_address(client, person, smtp_sink):
    request_page = text(client.get("/password/reset"))
    assert shows(request_page, "Type your e-mail address. A link to set a new password will be sent to the "
                               "private e-mail address you gave when applying for studies.")
    page = text(request_link(client, USER))
    assert shows(page, "A link to set a new password has been sent to %(addresses)s.", addresses=PRIVATE_MASKED)
    assert USER_MASKED not in page
    assert deliver().sent == 1
    [received] = smtp_sink.messages
    assert received.rcpt_tos == [PRIVATE]
    assert submit_answer(client, link_in(received.text), RIGHT_PESEL, NEW).status_code == 302


@pytest.mark.policy(reset__send_to=["university_email", "private_email"])
def test_both_addresses_get_the_link_and_the_confirmation_names_both_masked(client, person, smtp_sink):
    page = text(request_link(client, USER))
    assert shows(page, "A link to set a new password has been sent to %(addresses)s.",
                 addresses=f"{USER_MASKED}, {PRIVATE_MASKED}")
    assert deliver().sent == 2
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted([USER, PRIVATE])
    links = {link_in(m.text) for m in smtp_sink.messages}
    assert len(links) == 1  # one request, one link, in both messages
    assert submit_answer(client, links.pop(), RIGHT_PESEL, NEW).status_code == 302


@pytest.mark.policy(reset__send_to=["private_email"])
def test_a_person_without_the_address_the_policy_names_gets_no_mail(client, smtp_sink):
    from tests.factories import create_account

    create_account(private_email=None)
    r = request_link(client, USER)
    assert r.status_code == 200  # the neutral confirmation (reveal_unknown_identifier is false)
    assert deliver().sent == 0 and smtp_sink.messages == []
    assert outbox_rows() == [] and db.session.scalars(db.select(ResetRequest)).all() == []


# --- unknown addresses --------------------------------------------------------------------------------------

UNKNOWN = "nikt.taki@student.example.edu.pl"


def _comparable(page: str) -> str:
    """The confirmation with the (masked) address taken out: what stays must not tell the two apart."""
    return re.sub(r"\b\w\*\*\*@[\w.\-]+", "<address>", main_text(page))


@pytest.mark.parametrize("lang", ["pl", "en"])
def test_unknown_address_gets_the_same_neutral_confirmation_and_no_mail(app, client, person, smtp_sink, lang):
    assert app.extensions["idp.policy"].data["reset"]["reveal_unknown_identifier"] is False
    known = request_link(client, USER, lang=lang)
    unknown = request_link(client, UNKNOWN, lang=lang)
    assert known.status_code == unknown.status_code == 200
    assert _comparable(text(unknown)) == _comparable(text(known))
    assert t("No user was found with this e-mail address.", lang) not in main_text(text(unknown))
    assert UNKNOWN not in text(unknown)
    # Only the known address has mail waiting, and only it receives any.
    assert [r.to_addr for r in outbox_rows()] == [USER]
    assert deliver().sent == 1
    assert smtp_sink.to(UNKNOWN) == [] and len(smtp_sink.to(USER)) == 1


@pytest.mark.policy(reset__reveal_unknown_identifier=True)
def test_reveal_unknown_identifier_says_no_user_was_found_in_english(client, person, smtp_sink):
    r = request_link(client, UNKNOWN, lang="en")
    assert r.status_code == 404
    assert "No user was found with this e-mail address." in main_text(text(r))
    assert 'name="identifier"' in text(r)  # the form again, to correct the address
    assert deliver().sent == 0 and smtp_sink.messages == [] and outbox_rows() == []
    # A known address still gets its link.
    assert request_link(client, USER, lang="en").status_code == 200
    assert deliver().sent == 1


@pytest.mark.policy(reset__reveal_unknown_identifier=True)
def test_reveal_unknown_identifier_says_no_user_was_found_in_polish(client, person, smtp_sink):
    r = request_link(client, UNKNOWN)
    assert r.status_code == 404
    assert "Nie znaleziono użytkownika o podanym adresie e-mail" in main_text(text(r))
    assert deliver().sent == 0 and smtp_sink.messages == []


@pytest.mark.policy(reset__reveal_unknown_identifier=True, reset__send_to=["private_email"])
def test_reveal_tells_a_known_person_without_the_policys_address_the_truth(client, smtp_sink):
    """Revealing policies say why nothing was sent; "no user was found" would be untrue for a known person."""
    from tests.factories import create_account

    create_account(private_email=None)
    r = request_link(client, USER, lang="en")
    assert r.status_code == 422
    page = main_text(text(r))
    assert "The link cannot be sent: this account has no address to send it to. Contact the helpdesk." in page
    assert "No user was found" not in page
    assert deliver().sent == 0 and outbox_rows() == []


# --- the language of the messages ----------------------------------------------------------------------------

ENGLISH_ONLY = re.compile(r"\b(Hello|password|Someone|ignore|message|changed|helpdesk)\b")


def _english_in(received) -> list[str]:
    """English words left in a message meant to be Polish: subject, text and HTML (the links taken out)."""
    found = []
    for part in (received.message["Subject"], received.text, re.sub(r"<[^>]+>", " ", received.html)):
        found += ENGLISH_ONLY.findall(re.sub(r"https?://\S+", " ", part))
    return found


def test_the_reset_link_message_is_polish_by_default(client, person, smtp_sink):
    assert request_link(client, USER).status_code == 200
    deliver()
    [received] = smtp_sink.messages
    assert _english_in(received) == [], (received.message["Subject"], received.text)
    assert received.message["Subject"] == "Ustaw nowe hasło — Uczelnia"


def test_the_password_changed_notice_is_polish_by_default(client, person, smtp_sink):
    assert request_link(client, USER).status_code == 200
    deliver()
    assert submit_answer(client, link_in(smtp_sink.messages[0].text), RIGHT_PESEL, NEW).status_code == 302
    deliver()
    notice = smtp_sink.to(USER)[-1]
    assert _english_in(notice) == [], (notice.message["Subject"], notice.text)


def test_outbox_rows_hold_the_rendered_message_and_nothing_secret(client, person, smtp_sink):
    assert request_link(client, USER).status_code == 200
    [row] = outbox_rows()
    assert isinstance(row, OutboxMessage) and row.status == "queued" and row.attempts == 0
    assert row.purpose == "reset_link" and row.account_id == person.id and row.to_addr == USER
    assert RIGHT_PESEL not in row.body_text + row.body_html
