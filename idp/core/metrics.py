"""Prometheus metrics: the metric objects and the small functions that bump them.

No Flask request in here: callers pass plain values (idp.http.observability times the requests,
idp.core.audit reports its events, idp.oidc.server its tokens). Every label value is a code from a small
set — an endpoint name, an audit action, a reason code, a grant type — never a path, an address, an
identifier or anything else a person typed; values that do not look like codes become "other".

Nor does any label tell whether an account exists: reasons a person is not told apart (a wrong password
for an account, an unknown login, an account without a password ...) are one value here (FOLDED), so a
scrape before and after a guess says nothing the login page does not. The audit log keeps the detail.

Under gunicorn (idp.serving) the values live in files of PROMETHEUS_MULTIPROC_DIR, shared by the workers;
in one process (tests, the Flask test client) in memory. Every metric here has labels, so no value is
created at import: the `idp serve` master imports this module (it builds an app to check the schema)
before idp.serving sets the folder and re-selects prometheus_client's value class, and its workers still
write every value to files.
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import re
import threading

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("idp.metrics")

LOGINS = Counter("idp_logins", "Password and upstream logins by outcome: success, invalid_credentials (wrong "
                 "password, unknown login or any password on a locked account, never told apart), or a reason "
                 "shown only after a correct password (account_left) or before any check (throttled, "
                 "address_blocked, rate_limited).", ["outcome"])
CAS_VALIDATIONS = Counter("idp_cas_validations", "CAS ticket validations by outcome: success or the CAS "
                          "error code (INVALID_TICKET, INVALID_SERVICE, ...).", ["outcome"])
TOKENS_ISSUED = Counter("idp_oidc_tokens_issued", "OpenID Connect token responses issued, by grant type.",
                        ["grant_type"])
INTROSPECTIONS = Counter("idp_oidc_introspections", "Token introspection calls by result: active, inactive, "
                         "or error (bad client authentication or request).", ["result"])
AUDIT_EVENTS = Counter("idp_audit_events", "Audit events recorded, by action and reason code.",
                       ["action", "reason"])
REQUEST_SECONDS = Histogram("idp_http_request_duration_seconds", "Time to answer an HTTP request, by Flask "
                            "endpoint (\"none\": no route matched), method and status class.",
                            ["endpoint", "method", "status"],
                            buckets=(.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 10.0))

_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Distinct (action, reason) pairs one process reports before new ones are counted as reason "other":
#: reason codes are a small set, but a bug passing free text must not grow the exposition without bound.
MAX_AUDIT_SERIES = 500
_audit_series: set[tuple[str, str]] = set()
_audit_lock = threading.Lock()

#: One value for every failure a person is not told apart: the account may not exist.
INVALID_CREDENTIALS = "invalid_credentials"
#: Per audit action whose reason may say whether an account exists: the reasons that may be counted as they
#: are (each told only to someone who proved more than a login, or the same for every login), and the one
#: value every other reason of that action becomes. A reason added later is folded until listed here.
#: - login.failed: account_left is shown only after a correct password (core/authn.py AFTER_CORRECT_PASSWORD);
#:   unknown_identifier, no_password, wrong_password, locked_wrong_password, and locked and
#:   locked_permanently (the right password on a locked account) all look like a wrong password: counted
#:   apart, a scrape after a guess would tell that it was right. Refusals before any check are login.throttled.
#: - reset.code.failed (core/assisted_recovery.py): used/ended/expired need the right code; the address
#:   throttle is the same for every login; unknown login, no code and a wrong code get one answer.
#: - reset.requested (core/recovery.py): sent, unknown login and no address look alike (unless the policy
#:   reveals unknown logins): no reason at all.
FOLDED: dict[str, tuple[frozenset[str], str]] = {
    "login.failed": (frozenset({"account_left"}), INVALID_CREDENTIALS),
    "reset.code.failed": (frozenset({"address_throttled", "recovery_code_used", "recovery_code_ended",
                                     "recovery_code_expired"}), INVALID_CREDENTIALS),
    "reset.requested": (frozenset(), ""),
}


def code(value: object) -> str:
    """A label value: the code itself when it looks like one, "" for none, "other" for anything else."""
    if value is None or value == "":
        return ""
    text = str(value)
    return text if _CODE.fullmatch(text) else "other"


def public_reason(action: str, reason: str) -> str:
    """The reason as the metrics show it (both already codes): folded for the actions in FOLDED."""
    folded = FOLDED.get(action)
    if folded is None or reason in folded[0]:
        return reason
    return folded[1]


def _never_raises(fn):
    """A metric that cannot be written (a full disk under the multiprocess folder ...) must not fail the
    login or the request that bumps it."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("metric %s not updated", fn.__name__)
    return wrapper


@_never_raises
def audit_event(action: str, reason: str | None) -> None:
    """Called by idp.core.audit.record for every event; feeds the generic counter and the named ones."""
    action = code(action)
    reason = public_reason(action, code(reason))
    with _audit_lock:
        if (action, reason) not in _audit_series:
            if len(_audit_series) >= MAX_AUDIT_SERIES:
                reason = "other"
            _audit_series.add((action, reason))
    AUDIT_EVENTS.labels(action=action, reason=reason).inc()
    if action == "login.succeeded":
        LOGINS.labels(outcome="success").inc()
    elif action in ("login.failed", "login.throttled"):  # throttled: refused before any password check
        LOGINS.labels(outcome=reason or "unknown").inc()
    elif action == "cas.validate.succeeded":
        CAS_VALIDATIONS.labels(outcome="success").inc()
    elif action == "cas.validate.failed":
        CAS_VALIDATIONS.labels(outcome=reason or "unknown").inc()


@_never_raises
def login_rate_limited() -> None:
    """A password post refused by the address's endpoint rate limit, before any check: every one counted
    here, though only the first of each minute is audited (a flood must not fill the audit log)."""
    LOGINS.labels(outcome="rate_limited").inc()


@_never_raises
def token_issued(grant_type: str | None) -> None:
    TOKENS_ISSUED.labels(grant_type=code(grant_type) or "unknown").inc()


@_never_raises
def introspection(result: str) -> None:
    INTROSPECTIONS.labels(result=code(result)).inc()


@_never_raises
def http_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    REQUEST_SECONDS.labels(endpoint=code(endpoint) or "none",
                           method=method if method in _METHODS else "other",
                           status=f"{status // 100}xx").observe(seconds)


# --- scrape time -----------------------------------------------------------------------------------------

class OutboxCollector:
    """The outbox by status, counted when scraped (one grouped SQL query; needs an app context)."""

    def __init__(self, now: dt.datetime):
        self.now = now

    def collect(self):
        from idp.extensions import db
        from idp.models import OutboxMessage

        rows = db.session.execute(db.select(OutboxMessage.status, db.func.count(), db.func.min(OutboxMessage.created_at))
                                  .group_by(OutboxMessage.status)).all()
        size = GaugeMetricFamily("idp_outbox_messages", "Messages in the mail outbox, by status "
                                 "(queued: waiting to be sent or retried; failed: given up).", labels=["status"])
        counts = {"queued": 0, "sent": 0, "failed": 0}
        oldest = None
        for status, count, first in rows:
            counts[code(status) or "other"] = count
            if status == "queued":
                oldest = first
        for status, count in sorted(counts.items()):
            size.add_metric([status], count)
        yield size
        age = GaugeMetricFamily("idp_outbox_oldest_queued_age_seconds", "Age of the oldest message still "
                                "queued (0 when none): grows while the SMTP server refuses or is down.")
        age.add_metric([], max(0.0, (self.now - oldest).total_seconds()) if oldest is not None else 0.0)
        yield age


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(now: dt.datetime) -> bytes:
    """The text exposition of every metric: the workers' shared files under gunicorn, else this process's
    default registry; then the outbox, counted now. An unreachable database leaves the outbox out."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        out = generate_latest(registry)
    else:
        out = generate_latest(REGISTRY)
    scraped = CollectorRegistry(auto_describe=False)
    scraped.register(OutboxCollector(now))
    try:
        return out + generate_latest(scraped)
    except Exception:  # the database is down: /readyz says so; the counters still count
        from idp.extensions import db

        db.session.rollback()
        return out


__all__ = ["CONTENT_TYPE_LATEST", "INVALID_CREDENTIALS", "audit_event", "code", "exposition", "http_request",
           "introspection", "public_reason", "token_issued"]
