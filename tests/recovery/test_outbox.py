"""The mail outbox: written in the caller's transaction, delivered by `deliver_due` with retries and backoff.
With the SMTP server down a reset request still succeeds and its mail goes out once the server is back —
none lost, none sent twice, even with two workers delivering at once."""
from __future__ import annotations

import datetime as dt
import threading

import pytest

from idp.core import mail, recovery
from idp.extensions import db
from idp.models import OutboxMessage, ResetRequest
from tests.recovery.helpers import (
    NEW,
    RIGHT_PESEL,
    USER,
    USER_MASKED,
    deliver,
    outbox_rows,
    request_link,
    submit_answer,
    text,
)
from tests.smtp_sink import link_in


def queue(n: int, *, to: str = USER, now: dt.datetime | None = None) -> list[int]:
    """n messages in the outbox (committed), rendered from the reset-link template."""
    rows = [mail.enqueue(to=to, template="reset_link", lang="pl", purpose="reset_link", now=now,
                         context={"link": f"http://127.0.0.1:8000/password/reset/test{i}", "minutes": 60,
                                  "name": "Łukasz"})
            for i in range(n)]
    db.session.commit()
    return [r.id for r in rows]


# --- the same transaction as the change ------------------------------------------------------------------------

def test_enqueue_writes_nothing_until_the_caller_commits(app, person):
    mail.enqueue(to=USER, template="reset_link", lang="pl", purpose="reset_link", account_id=person.id,
                 context={"link": "http://127.0.0.1:8000/password/reset/x", "minutes": 60, "name": "Łukasz"})
    db.session.rollback()
    assert outbox_rows() == []
    assert mail.status_counts() == {"queued": 0, "sent": 0, "failed": 0}


def test_a_reset_request_and_its_mail_commit_together_or_not_at_all(app, person, monkeypatch):
    """A failure after the mail is queued (here: the audit write) leaves neither the link nor the mail."""
    real = recovery.audit.record

    def failing(action, **kwargs):
        if action == "reset.requested":
            raise RuntimeError("the database went away")
        return real(action, **kwargs)

    monkeypatch.setattr(recovery.audit, "record", failing)
    with app.test_request_context("/password/reset"), pytest.raises(RuntimeError):
        recovery.request_reset(USER, app.extensions["idp.policy"], lang="pl", client_ip="192.0.2.1")
    db.session.rollback()
    assert outbox_rows() == []
    assert db.session.scalars(db.select(ResetRequest)).all() == []


def test_a_successful_request_commits_both(app, person):
    with app.test_request_context("/password/reset"):
        outcome = recovery.request_reset(USER, app.extensions["idp.policy"], lang="pl", client_ip="192.0.2.1")
    assert outcome.kind == "sent" and outcome.masked == [USER_MASKED]
    db.session.rollback()  # nothing left uncommitted to lose
    [row] = outbox_rows()
    [req] = db.session.scalars(db.select(ResetRequest)).all()
    assert row.account_id == req.account_id == person.id and row.status == "queued"


# --- SMTP down, then back ---------------------------------------------------------------------------------

def test_smtp_down_the_request_succeeds_and_the_mail_goes_out_once_it_is_back(client, person, smtp_down, clock):
    r = request_link(client, USER)
    assert r.status_code == 200, text(r)
    [row] = outbox_rows()
    assert row.status == "queued" and row.attempts == 0

    # The worker tries: refused connection, retried later with backoff.
    report = deliver()
    assert (report.sent, report.retried, report.failed) == (0, 1, 0)
    [row] = outbox_rows()
    assert row.status == "queued" and row.attempts == 1 and row.sent_at is None
    assert row.last_error and "Connection" in row.last_error, row.last_error
    assert row.next_attempt_at == clock.now + mail.backoff(1) == clock.now + dt.timedelta(seconds=30)
    assert row.claimed_until is None

    # Not due yet: nothing tried, even with the server back.
    assert deliver() == mail.DeliveryReport()
    smtp_down.start()
    clock.advance(seconds=29)
    assert deliver() == mail.DeliveryReport()
    assert smtp_down.messages == []

    # Due: exactly one message arrives; more rounds send nothing more.
    clock.advance(seconds=2)
    report = deliver()
    assert (report.sent, report.retried, report.failed) == (1, 0, 0)
    assert len(smtp_down.messages) == 1 and smtp_down.messages[0].rcpt_tos == [USER]
    [row] = outbox_rows()
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None
    assert smtp_down.messages[0].message["Message-ID"] == row.message_id
    assert deliver() == mail.DeliveryReport()

    # The link it carries works (the outage was shorter than the link's lifetime).
    assert submit_answer(client, link_in(smtp_down.messages[0].text), RIGHT_PESEL, NEW).status_code == 302
    # Later rounds send nothing more (the notice about the change aside).
    notices = len(outbox_rows(purpose="password_changed"))
    for _ in range(3):
        clock.advance(hours=1)
        deliver()
    assert len(smtp_down.to(USER)) == 2 and len(smtp_down.messages) == 1 + notices
    assert {r.status for r in outbox_rows()} == {"sent"}


def test_backoff_grows_and_is_capped():
    assert [mail.backoff(n).total_seconds() for n in range(1, 9)] == [30, 60, 120, 240, 480, 960, 1920, 3600]
    assert mail.backoff(50) == dt.timedelta(hours=1)


@pytest.mark.settings(MAIL_MAX_ATTEMPTS=3)
def test_after_the_maximum_number_of_attempts_the_message_is_failed(app, person, smtp_down, clock):
    [row_id] = queue(1)
    for attempt in (1, 2):
        report = deliver()
        assert (report.sent, report.retried, report.failed) == (0, 1, 0)
        row = db.session.get(OutboxMessage, row_id)
        assert row.status == "queued" and row.attempts == attempt
        clock.now = row.next_attempt_at
    report = deliver()
    assert (report.sent, report.retried, report.failed) == (0, 0, 1)
    row = db.session.get(OutboxMessage, row_id)
    assert row.status == "failed" and row.attempts == 3 and row.last_error
    assert mail.status_counts() == {"queued": 0, "sent": 0, "failed": 1}
    # Given up for good: the server coming back does not resurrect it.
    smtp_down.start()
    clock.advance(days=1)
    assert deliver() == mail.DeliveryReport() and smtp_down.messages == []


def test_a_permanently_refused_recipient_fails_at_once_and_the_others_still_go(app, person, smtp_sink, clock):
    """550 "user unknown" will not heal by retrying (RFC 5321 §4.2.3): failed at once, not for six hours."""
    smtp_sink.refuse.add(USER)
    [refused] = queue(1, to=USER)
    [fine] = queue(1, to="lukasz.z@example.com")
    report = deliver()
    assert (report.sent, report.retried, report.failed) == (1, 0, 1)
    assert db.session.get(OutboxMessage, refused).status == "failed"
    assert db.session.get(OutboxMessage, fine).status == "sent"
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["lukasz.z@example.com"]]


def test_the_error_kept_for_the_operator_names_the_recipient_masked(app, person, smtp_sink):
    """`idp mail status` prints last_error: an SMTP refusal quotes the address, which must not be printed whole."""
    smtp_sink.refuse.add(USER)
    [row_id] = queue(1, to=USER)
    assert deliver().failed == 1
    error = db.session.get(OutboxMessage, row_id).last_error
    assert error and "550" in error, error
    assert USER not in error.lower() and USER_MASKED in error, error


# --- claims: never twice ------------------------------------------------------------------------------------

def test_a_message_claimed_by_another_worker_is_left_alone_until_the_claim_lapses(app, person, smtp_sink, clock):
    [row_id] = queue(1)
    row = db.session.get(OutboxMessage, row_id)
    row.claimed_until = clock.now + dt.timedelta(seconds=mail.CLAIM_SECONDS)  # another worker is sending it
    db.session.commit()
    assert deliver() == mail.DeliveryReport() and smtp_sink.messages == []
    clock.advance(seconds=mail.CLAIM_SECONDS + 1)  # that worker died: the claim lapses, this one takes over
    assert deliver().sent == 1 and len(smtp_sink.messages) == 1


def test_two_workers_at_once_never_send_a_message_twice(app, person, smtp_sink):
    n = 24
    ids = queue(n)
    smtp_sink.delay = 0.02  # each message takes a while: the two workers overlap
    start = threading.Barrier(2, timeout=10)
    reports: list[mail.DeliveryReport] = []
    errors: list[BaseException] = []

    def worker():
        try:
            with app.app_context():
                start.wait()
                reports.append(mail.deliver_due())
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads), "a worker did not finish within 60 s"
    assert errors == []
    assert sum(r.sent for r in reports) == n and sum(r.retried + r.failed for r in reports) == 0
    ids_received = [m.message["Message-ID"] for m in smtp_sink.messages]
    assert len(ids_received) == n and len(set(ids_received)) == n
    db.session.expire_all()
    rows = [db.session.get(OutboxMessage, i) for i in ids]
    assert {r.status for r in rows} == {"sent"} and {r.attempts for r in rows} == {1}
    assert set(ids_received) == {r.message_id for r in rows}
    assert mail.deliver_due().sent == 0 and len(smtp_sink.messages) == n
