"""Activation for new students (the eStudent path): album number + PESEL (or date of birth) + surname
prove the person; then they choose their first password under the policy.

One answer for every wrong combination (no oracle for which album numbers exist), the same work whether the
album exists or not. Failures are audit events (`activation.failed`), and those events are the rate limit:
per client address and hour, first a proof-of-work challenge (`free_attempts`), then a hard stop
(`attempts_per_hour`). The challenge is a signed token (core/tokens.py); a used one is remembered in the audit
event of the attempt that spent it. No new table. See docs/activation.md.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import unicodedata
from dataclasses import dataclass

from flask import current_app

from idp.core import accounts, audit, pesel, recovery, tokens
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account, AuditEvent

FAILED = "activation.failed"
VERIFIED = "activation.verified"
COMPLETED = "activation.completed"
#: Reasons of FAILED events; all but RATE_LIMITED count as attempts (a refused attempt is not one).
DATA_MISMATCH, ALREADY_ACTIVE, RATE_LIMITED, CHALLENGE_FAILED = (
    "data_mismatch", "already_active", "rate_limited", "challenge_failed")
#: Outcomes of verify().
OK, MISMATCH = "ok", "mismatch"
WINDOW = dt.timedelta(hours=1)

CHALLENGE_PURPOSE = "activation-challenge"
#: How long a challenge may be worked on and submitted.
CHALLENGE_SECONDS = 600
#: Longest counter accepted (decimal digits): 2^28 expected tries fit in 9.
MAX_SOLUTION_DIGITS = 20

#: Letters NFKD does not decompose into a base letter and a mark (Polish ł above all).
_FOLD = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ß": "ss", "æ": "ae",
                       "Æ": "AE", "œ": "oe", "Œ": "OE", "ı": "i"})


class AlreadyActive(DomainError):
    """The account got a password between the data check and the password form (nothing was changed)."""

    code = "activation_already_active"


# --- matching ---------------------------------------------------------------------------------------------

def fold_surname(text: str) -> str:
    """A surname for comparison: case, diacritics (ł → l), spaces, hyphens and apostrophes ignored."""
    text = unicodedata.normalize("NFKD", text.translate(_FOLD))
    return "".join(c for c in text.casefold() if c.isalnum() and not unicodedata.combining(c))


@dataclass(frozen=True)
class Secret:
    """What the person typed to prove who they are: a PESEL, or a date of birth for people without one."""

    kind: str  # pesel | birth_date
    pesel: str = ""
    birth_date: dt.date | None = None


#: Why the secret field is malformed (the view words it); a malformed value is not an attempt.
BAD_PESEL, BAD_SECRET = "bad_pesel", "bad_secret"


def read_secret(text: str) -> Secret | str:
    """Classify the typed value: 11 digits → a PESEL (checked for its check digit), otherwise a date of
    birth (YYYY-MM-DD or DD.MM.YYYY). Returns a Secret, or BAD_PESEL / BAD_SECRET."""
    given = (text or "").strip().replace(" ", "")
    if given.isascii() and given.isdigit():
        return BAD_PESEL if pesel.problem(given) else Secret("pesel", pesel=given)
    date = recovery.parse_date(given)
    return Secret("birth_date", birth_date=date) if date else BAD_SECRET


def _secret_matches(account: Account | None, secret: Secret) -> bool:
    """The same work whether or not the account exists: the keyed hash is always computed."""
    digest = pesel.keyed_hash(secret.pesel, current_app.config["PESEL_KEY"]) if secret.kind == "pesel" else ""
    if account is None:
        return False
    if recovery.asks_pesel(account):  # with a PESEL on record only the PESEL proves the person
        return secret.kind == "pesel" and hmac.compare_digest(digest, account.pesel_hash)
    return secret.kind == "birth_date" and account.birth_date is not None and secret.birth_date == account.birth_date


def find_account(album: str) -> Account | None:
    value = (album or "").strip().lower()
    if not value:
        return None
    return db.session.scalar(db.select(Account).where(db.func.lower(Account.album) == value))


@dataclass
class Verification:
    #: ok (all three match, no password yet) | mismatch | already_active
    status: str
    event: AuditEvent
    account: Account | None = None


def verify(album: str, secret: Secret, surname: str, policy: Policy, *, client_ip: str | None,
           challenge: str | None = None, now: dt.datetime | None = None) -> Verification:
    """Check album number + PESEL/date of birth + surname against the records, and record the attempt.

    `challenge`: the nonce of the proof-of-work challenge this attempt spent (remembered so it is refused
    when seen again). Only `ok` hands out the account; `already_active` is told only after all three matched.
    """
    now = now or utcnow()
    account = find_account(album)
    typed = fold_surname(surname or "")
    surname_ok = bool(typed) and hmac.compare_digest(
        typed.encode(), fold_surname(account.last_name if account is not None else "").encode())
    secret_ok = _secret_matches(account, secret)
    left = account is not None and accounts.has_left(account, policy, now)
    base = {"challenge": challenge} if challenge else {}
    if account is None or left or not surname_ok or not secret_ok:
        wrong = (["album"] if account is None else ["left"] if left else
                 [part for part, ok in (("surname", surname_ok), ("secret", secret_ok)) if not ok])
        event = audit.record(FAILED, account_id=account.id if account is not None else None, reason=DATA_MISMATCH,
                             client_ip=client_ip, now=now,
                             data={**base, "album": _loggable_album(album), "wrong": wrong, "by": secret.kind})
        return Verification(MISMATCH, event)
    if account.password_hash is not None:
        event = audit.record(FAILED, account_id=account.id, reason=ALREADY_ACTIVE, client_ip=client_ip, now=now,
                             data=base or None)
        return Verification(ALREADY_ACTIVE, event, account)
    event = audit.record(VERIFIED, account_id=account.id, client_ip=client_ip, now=now,
                         data={**base, "by": secret.kind})
    return Verification(OK, event, account)


def complete(account: Account, password: str, policy: Policy, *, client_ip: str | None,
             now: dt.datetime | None = None) -> None:
    """Set the first password through accounts.set_password (raises accounts.PasswordRejected). Raises
    AlreadyActive, changing nothing, when the account got a password meanwhile (another tab, the helpdesk)."""
    def claim(moment: dt.datetime) -> None:
        # Of two completions at once only one finds the password still empty (the row stays locked, or the
        # SQLite database write-locked, until the commit). No autoflush: the new hash is not written yet.
        with db.session.no_autoflush:
            claimed = db.session.execute(
                db.update(Account).where(Account.id == account.id, Account.password_hash.is_(None))
                .values(updated_at=moment), execution_options={"synchronize_session": False}).rowcount
        if claimed != 1:
            raise AlreadyActive("the account already has a password")
        audit.record(COMPLETED, account_id=account.id, client_ip=client_ip, now=moment, commit=False)

    try:
        accounts.set_password(account, password, policy, actor="self", forbid_current=False, now=now,
                              in_same_transaction=claim)
    except AlreadyActive:
        db.session.rollback()
        raise


# --- rate limit -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Limits:
    #: Failed attempts from this address within the last hour.
    failures: int
    #: Each further attempt needs a solved proof-of-work challenge.
    challenge: bool
    #: No attempts at all until then (naive UTC); None when attempts are allowed.
    blocked_until: dt.datetime | None


def _ip_clause(client_ip: str | None):
    return AuditEvent.client_ip.is_(None) if client_ip is None else AuditEvent.client_ip == client_ip


def limits(policy: Policy, *, client_ip: str | None, now: dt.datetime | None = None) -> Limits:
    """Where this address stands, from the audit events of its failed attempts in the last hour."""
    now = now or utcnow()
    conf = policy.data["activation"]
    times = list(db.session.scalars(
        db.select(AuditEvent.at).where(AuditEvent.action == FAILED, _ip_clause(client_ip),
                                       AuditEvent.at > now - WINDOW, AuditEvent.reason != RATE_LIMITED)
        .order_by(AuditEvent.at)))
    count, hard = len(times), conf["attempts_per_hour"]
    blocked = times[count - hard] + WINDOW if count >= hard else None  # when one fewer counts than the limit
    return Limits(count, count >= conf["free_attempts"], blocked)


def record_refused(reason: str, *, client_ip: str | None, data: dict | None = None,
                   now: dt.datetime | None = None) -> AuditEvent:
    """A refused attempt (rate_limited, challenge_failed): an audit event with its reason."""
    return audit.record(FAILED, reason=reason, client_ip=client_ip, data=data, now=now)


def _loggable_album(album: str | None) -> str:
    """What a typed album number is recorded as: never a PESEL typed into the wrong field."""
    value = (album or "").strip()[:32]
    return "(a PESEL, not recorded)" if pesel.problem(value) is None else value


# --- proof-of-work challenge ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    token: str
    bits: int


def issue_challenge(policy: Policy, *, now: dt.datetime | None = None) -> Challenge:
    """A fresh challenge: random nonce, expiry and difficulty, signed. The browser looks for a counter
    such that SHA-256(token + ":" + counter) starts with `bits` zero bits."""
    now = now or utcnow()
    bits = policy.data["activation"]["challenge_bits"]
    expires = int((now + dt.timedelta(seconds=CHALLENGE_SECONDS)).replace(tzinfo=dt.UTC).timestamp())
    return Challenge(tokens.make(CHALLENGE_PURPOSE, {"n": secrets.token_urlsafe(16), "e": expires, "b": bits}), bits)


def leading_zero_bits(data: bytes) -> int:
    value = int.from_bytes(data, "big")
    return len(data) * 8 - value.bit_length()


def solves(token: str, solution: str, bits: int) -> bool:
    digest = hashlib.sha256(f"{token}:{solution}".encode()).digest()
    return leading_zero_bits(digest) >= bits


@dataclass(frozen=True)
class ChallengeCheck:
    #: ok | missing | invalid | expired | weak | wrong | replayed
    status: str
    nonce: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_challenge(token: str, solution: str, policy: Policy, *, now: dt.datetime | None = None) -> ChallengeCheck:
    """Signature, expiry, difficulty (at least the policy's), the leading zero bits, and single use."""
    now = now or utcnow()
    token, solution = (token or "").strip(), (solution or "").strip()
    if not token or not solution:
        return ChallengeCheck("missing")
    try:
        data = tokens.load(CHALLENGE_PURPOSE, token, 24 * 3600)  # the expiry that counts is "e", against `now`
    except tokens.TokenExpired:
        return ChallengeCheck("expired")
    except tokens.TokenInvalid:
        return ChallengeCheck("invalid")
    if not (isinstance(data, dict) and isinstance(data.get("n"), str) and isinstance(data.get("e"), int)
            and isinstance(data.get("b"), int)):
        return ChallengeCheck("invalid")
    nonce = data["n"]
    if dt.datetime.fromtimestamp(data["e"], dt.UTC).replace(tzinfo=None) <= now:
        return ChallengeCheck("expired", nonce)
    if data["b"] < policy.data["activation"]["challenge_bits"]:
        return ChallengeCheck("weak", nonce)
    if not (solution.isascii() and solution.isdigit() and len(solution) <= MAX_SOLUTION_DIGITS):
        return ChallengeCheck("wrong", nonce)
    if not solves(token, solution, data["b"]):
        return ChallengeCheck("wrong", nonce)
    if challenge_used(nonce, now=now):
        return ChallengeCheck("replayed", nonce)
    return ChallengeCheck("ok", nonce)


def challenge_used(nonce: str, *, now: dt.datetime | None = None) -> bool:
    """Whether an attempt already spent this challenge (its nonce is in that attempt's audit event)."""
    now = now or utcnow()
    since = now - dt.timedelta(seconds=CHALLENGE_SECONDS + 60)
    return db.session.scalar(
        db.select(AuditEvent.id).where(AuditEvent.action.in_((FAILED, VERIFIED)), AuditEvent.at > since,
                                       AuditEvent.data["challenge"].as_string() == nonce).limit(1)) is not None
