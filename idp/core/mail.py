"""Durable outbox and its delivery worker.

`enqueue` writes the message in the caller's transaction (a reset request and its mail commit together,
or neither does). `deliver_due` claims due messages one by one with a conditional UPDATE — several
workers and nodes never send the same message twice — and retries failures with backoff.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
import threading
import time
from dataclasses import dataclass
from email.utils import make_msgid

from flask import Flask, current_app, render_template
from flask_babel import force_locale
from flask_mail import Message

from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import OutboxMessage

log = logging.getLogger("idp.mail")

#: A worker holds a claimed message this long; after a crash another one takes it over.
CLAIM_SECONDS = 120
SMTP_TIMEOUT = 15


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0


def enqueue(*, to: str, template: str, lang: str, context: dict, purpose: str,
            account_id: int | None = None, now: dt.datetime | None = None) -> OutboxMessage:
    """Render email/<template>.txt and .html in `lang` and add the message to the session (no commit:
    it belongs to the caller's transaction)."""
    now = now or utcnow()
    policy = current_app.extensions["idp.policy"]
    with force_locale(lang):
        subject = render_template(f"email/{template}.subject.txt", policy=policy, lang=lang, **context).strip()
        text = render_template(f"email/{template}.txt", policy=policy, lang=lang, **context)
        html = render_template(f"email/{template}.html", policy=policy, lang=lang, subject=subject, **context)
    domain = current_app.config["MAIL_DEFAULT_SENDER"].rpartition("@")[2] or "localhost"
    row = OutboxMessage(created_at=now, purpose=purpose, account_id=account_id, to_addr=to, subject=subject,
                        body_text=text, body_html=html, message_id=make_msgid(domain=domain), status="queued",
                        attempts=0, next_attempt_at=now)
    db.session.add(row)
    return row


def backoff(attempts: int) -> dt.timedelta:
    """30 s, 1 min, 2 min … capped at one hour between tries."""
    return dt.timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


def _message(row: OutboxMessage) -> Message:
    msg = Message(subject=row.subject, recipients=[row.to_addr], body=row.body_text, html=row.body_html,
                  sender=current_app.config["MAIL_DEFAULT_SENDER"], date=row.created_at.replace(tzinfo=dt.UTC).timestamp(),
                  extra_headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"})
    msg.msgId = row.message_id
    return msg


def _send(row: OutboxMessage) -> None:
    cfg = current_app.config
    msg = _message(row)
    klass = smtplib.SMTP_SSL if cfg.get("MAIL_USE_SSL") else smtplib.SMTP
    with klass(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], timeout=SMTP_TIMEOUT) as smtp:
        if cfg.get("MAIL_USE_TLS"):
            smtp.starttls()
        if cfg.get("MAIL_USERNAME"):
            smtp.login(cfg["MAIL_USERNAME"], cfg.get("MAIL_PASSWORD") or "")
        smtp.sendmail(msg.sender, [row.to_addr], signed(msg.as_bytes()))


def signed(raw: bytes) -> bytes:
    """DKIM-sign the message when a key is configured (otherwise the relay is expected to sign)."""
    cfg = current_app.config
    if not cfg.get("MAIL_DKIM_KEY"):
        return raw
    import dkim

    with open(cfg["MAIL_DKIM_KEY"], "rb") as fh:
        key = fh.read()
    signature = dkim.sign(raw, cfg["MAIL_DKIM_SELECTOR"].encode(), cfg["MAIL_DKIM_DOMAIN"].encode(), key,
                          include_headers=[b"From", b"To", b"Subject", b"Date", b"Message-ID"])
    return signature + raw


def _permanent(exc: Exception) -> bool:
    """A 5xx refusal of the recipient ("user unknown") will not heal by retrying."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    # 550-553: mailbox unavailable, not local, exceeded storage, name not allowed (RFC 5321 §4.2.3)
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code in (550, 551, 552, 553)


def _claim(row_id: int, now: dt.datetime) -> bool:
    result = db.session.execute(
        db.update(OutboxMessage)
        .where(OutboxMessage.id == row_id, OutboxMessage.status == "queued",
               db.or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))
        .values(claimed_until=now + dt.timedelta(seconds=CLAIM_SECONDS)))
    db.session.commit()
    return result.rowcount == 1


def deliver_due(now: dt.datetime | None = None, limit: int = 50) -> DeliveryReport:
    """Send what is due. A failure is retried later with backoff; after MAIL_MAX_ATTEMPTS it is failed."""
    now = now or utcnow()
    report = DeliveryReport()
    max_attempts = current_app.config["MAIL_MAX_ATTEMPTS"]
    due = list(db.session.scalars(
        db.select(OutboxMessage.id).where(OutboxMessage.status == "queued", OutboxMessage.next_attempt_at <= now,
                                          db.or_(OutboxMessage.claimed_until.is_(None),
                                                 OutboxMessage.claimed_until < now))
        .order_by(OutboxMessage.id).limit(limit)))
    for row_id in due:
        if not _claim(row_id, now):
            continue  # another worker took it
        row = db.session.get(OutboxMessage, row_id)
        try:
            _send(row)
        except (OSError, smtplib.SMTPException) as exc:
            row.attempts += 1
            row.last_error = _scrubbed(f"{type(exc).__name__}: {exc}", row.to_addr)[:500]
            row.claimed_until = None
            if row.attempts >= max_attempts or _permanent(exc):
                row.status = "failed"
                report.failed += 1
                log.error("mail %s to %s failed for good: %s", row.id, mask(row.to_addr), row.last_error)
            else:
                row.next_attempt_at = now + backoff(row.attempts)
                report.retried += 1
                log.warning("mail %s to %s not sent (try %s): %s", row.id, mask(row.to_addr), row.attempts,
                            row.last_error)
        else:
            row.attempts += 1
            row.status = "sent"
            row.sent_at = utcnow()
            row.claimed_until = None
            row.last_error = None
            report.sent += 1
        db.session.commit()
    return report


def _scrubbed(error: str, address: str) -> str:
    """An SMTP error as kept for the operator (`idp mail status`): a refusal quotes the recipient, shown
    masked like everywhere else."""
    return re.sub(re.escape(address), mask(address), error, flags=re.IGNORECASE)


def status_counts() -> dict[str, int]:
    rows = db.session.execute(db.select(OutboxMessage.status, db.func.count()).group_by(OutboxMessage.status))
    counts = {"queued": 0, "sent": 0, "failed": 0}
    counts.update({status: n for status, n in rows})
    return counts


def start_worker(app: Flask, interval: float = 5.0) -> threading.Thread:
    """A daemon thread that delivers due mail every `interval` seconds (one per `idp serve` worker;
    claims keep them from sending a message twice)."""
    def loop() -> None:
        while True:
            try:
                with app.app_context():
                    deliver_due()
                    db.session.remove()
            except Exception:  # never let the worker die: the next round tries again
                log.exception("mail worker round failed")
            time.sleep(interval)

    thread = threading.Thread(target=loop, name="idp-mail-worker", daemon=True)
    thread.start()
    return thread


def mask(address: str) -> str:
    """j***@student.agh.edu.pl: enough to recognise one's own address, not to harvest it."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"
