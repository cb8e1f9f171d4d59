"""Password reset by e-mailed link: request, link check, the security question, completion.

The link proves the mailbox; the PESEL (or date of birth) question is an extra hurdle after it, never a
replacement (a PESEL has ~10^4 candidates once the birth date is known). See docs/security.md.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field

from flask import current_app, url_for

from idp.core import accounts, audit, authn, mail, pesel, tokens
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account, ResetRequest

PURPOSE = "password-reset"


@dataclass
class RequestOutcome:
    #: sent | unknown | no_address
    kind: str
    masked: list[str] = field(default_factory=list)


@dataclass
class LinkState:
    #: ok | expired | used | superseded | killed | invalid
    status: str
    request: ResetRequest | None = None
    account: Account | None = None


def _fingerprint(account: Account) -> str:
    """Binds a link to the password at the time: a changed password kills every older link."""
    return hashlib.sha256((account.password_hash or "none").encode()).hexdigest()[:16]


def _end_open_requests(account_id: int, reason: str, now: dt.datetime) -> None:
    db.session.execute(db.update(ResetRequest)
                       .where(ResetRequest.account_id == account_id, ResetRequest.ended_at.is_(None),
                              ResetRequest.used_at.is_(None))
                       .values(ended_at=now, ended_reason=reason))


def destinations(account: Account, policy: Policy) -> list[str]:
    """The addresses the policy sends reset links to, that this account has."""
    return [a for kind in policy.data["reset"]["send_to"] if (a := account.identifier(kind))]


def request_reset(identifier: str, policy: Policy, *, lang: str, client_ip: str | None,
                  now: dt.datetime | None = None) -> RequestOutcome:
    """Create a link (ending every older one) and queue it to the policy's addresses, in one transaction."""
    now = now or utcnow()
    account = accounts.find_by_identifier(identifier, policy)
    if account is None or account.status != "active":
        tokens.make(PURPOSE, {"r": 0, "p": "x"})  # roughly the same work either way
        audit.record("reset.requested", reason="unknown_identifier", client_ip=client_ip, now=now,
                     data={"identifier": authn.loggable_identifier(identifier)})
        return RequestOutcome("unknown")
    targets = destinations(account, policy)
    if not targets:
        audit.record("reset.requested", account_id=account.id, reason="no_address", client_ip=client_ip, now=now)
        return RequestOutcome("no_address")
    issue_link(account, targets, policy, lang=lang, client_ip=client_ip, now=now)
    audit.record("reset.requested", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"addresses": len(targets)})
    db.session.commit()
    return RequestOutcome("sent", [mail.mask(a) for a in targets])


def issue_link(account: Account, targets: list[str], policy: Policy, *, lang: str, client_ip: str | None,
               now: dt.datetime) -> ResetRequest:
    """A new link (ending every older one) queued to each of `targets`, in the caller's transaction (no
    audit, no commit): the one mail and link /password/reset and the helpdesk both send."""
    _end_open_requests(account.id, "superseded", now)
    minutes = policy.data["reset"]["link_lifetime_minutes"]
    req = ResetRequest(account_id=account.id, created_at=now, expires_at=now + dt.timedelta(minutes=minutes),
                       client_ip=client_ip)
    db.session.add(req)
    db.session.flush()
    token = tokens.make(PURPOSE, {"r": req.id, "p": _fingerprint(account)})
    link = current_app.config["BASE_URL"] + url_for("recovery.link", token=token)
    for address in targets:
        mail.enqueue(to=address, template="reset_link", lang=lang, purpose="reset_link", account_id=account.id,
                     now=now, context={"link": link, "minutes": minutes, "name": account.first_name})
    return req


def neutral_outcome(identifier: str) -> RequestOutcome:
    """What an unknown identifier is told when the policy does not reveal it: the page a known person sees
    who typed the address the link goes to, naming the typed address masked (an address, that is: an
    unknown album number gets the sentence that names none)."""
    value = accounts.normalise_identifier(identifier)
    return RequestOutcome("unknown", [mail.mask(value)] if accounts.EMAIL_RE.match(value) else [])


def check_link(token: str, policy: Policy, now: dt.datetime | None = None) -> LinkState:
    """Whether a link still works, and if not, why (each reason has its own page)."""
    now = now or utcnow()
    max_age = policy.data["reset"]["link_lifetime_minutes"] * 60
    try:
        data = tokens.load(PURPOSE, token, max_age)
    except tokens.TokenExpired:
        return LinkState("expired")
    except tokens.TokenInvalid:
        return LinkState("invalid")
    req = db.session.get(ResetRequest, data.get("r")) if isinstance(data, dict) else None
    if req is None:
        return LinkState("invalid")
    account = db.session.get(Account, req.account_id)
    if account is None or account.status != "active":
        return LinkState("invalid")  # the person left the university since asking
    if req.used_at is not None:
        return LinkState("used", req, account)
    if req.ended_reason == "killed":
        return LinkState("killed", req, account)
    if req.ended_at is not None or account is None or data.get("p") != _fingerprint(account):
        return LinkState("superseded", req, account)
    if req.expires_at <= now:
        return LinkState("expired", req, account)
    return LinkState("ok", req, account)


#: Outcomes of an answer to the security question. GONE: the link stopped working after the page loaded
#: it (a parallel answer killed it, it was used, or a newer link superseded it): show the link's own page.
RIGHT, WRONG, MALFORMED, KILLED, GONE = "right", "wrong", "malformed", "killed", "gone"


class LinkGone(DomainError):
    """The link was used or ended between loading it and completing the reset (nothing was changed)."""

    code = "reset_link_gone"


def parse_date(text: str) -> dt.date | None:
    text = text.strip()
    for pattern, order in ((r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd"), (r"(\d{1,2})[.\-/ ](\d{1,2})[.\-/ ](\d{4})", "dmy")):
        m = re.fullmatch(pattern, text)
        if m:
            a, b, c = (int(x) for x in m.groups())
            y, mo, d = (a, b, c) if order == "ymd" else (c, b, a)
            try:
                return dt.date(y, mo, d)
            except ValueError:
                return None
    return None


def asks_pesel(account: Account) -> bool:
    """People without a PESEL answer with their date of birth instead."""
    return account.pesel_hash is not None


def answer(state: LinkState, given: str, policy: Policy, *, client_ip: str | None,
           now: dt.datetime | None = None) -> str:
    """Check the security answer. A malformed answer does not count; N wrong answers kill the link."""
    now = now or utcnow()
    req, account = state.request, state.account
    given = given.strip().replace(" ", "")
    if asks_pesel(account):
        if pesel.problem(given) is not None:
            return MALFORMED
        right = pesel.keyed_hash(given, current_app.config["PESEL_KEY"]) == account.pesel_hash
    else:
        date = parse_date(given)
        if date is None:
            return MALFORMED
        right = date == account.birth_date
    limit = policy.data["reset"]["max_wrong_answers"]
    count = _count_answer(req, wrong=not right, limit=limit, now=now)
    if count is None:
        db.session.rollback()
        return GONE
    if right:
        db.session.commit()
        return RIGHT
    if count >= limit:
        db.session.execute(db.update(ResetRequest).where(ResetRequest.id == req.id, ResetRequest.ended_at.is_(None))
                           .values(ended_at=now, ended_reason="killed"),
                           execution_options={"synchronize_session": False})
        audit.record("reset.link_killed", account_id=account.id, reason="wrong_security_answer", client_ip=client_ip,
                     now=now, commit=False, data={"wrong_answers": count})
        db.session.commit()
        return KILLED
    audit.record("reset.wrong_answer", account_id=account.id, reason="wrong_security_answer", client_ip=client_ip,
                 now=now, commit=False, data={"wrong_answers": count})
    db.session.commit()
    return WRONG


def _count_answer(req: ResetRequest, *, wrong: bool, limit: int, now: dt.datetime) -> int | None:
    """Count an answer in one conditional UPDATE, only while the link is open and under the limit: answers
    sent in parallel (several workers) can neither lose a count nor be judged after the link died. The row
    stays locked (PostgreSQL) or the database write-locked (SQLite) until the caller commits. Returns the
    new number of wrong answers, or None when the link no longer takes answers."""
    return db.session.execute(
        db.update(ResetRequest)
        .where(ResetRequest.id == req.id, ResetRequest.ended_at.is_(None), ResetRequest.used_at.is_(None),
               ResetRequest.expires_at > now, ResetRequest.wrong_answers < limit)
        .values(wrong_answers=ResetRequest.wrong_answers + (1 if wrong else 0))
        .returning(ResetRequest.wrong_answers),
        execution_options={"synchronize_session": False}).scalar_one_or_none()


def complete(state: LinkState, new_password: str, policy: Policy, *, lang: str, client_ip: str | None,
             given_pesel: str = "", now: dt.datetime | None = None) -> None:
    """Set the new password (the one engine; raises accounts.PasswordRejected), use up the link and every
    other one, end every session and token, and tell every address of the account. Raises LinkGone (and
    changes nothing) when the link was used or ended since it was loaded."""
    now = now or utcnow()
    req, account = state.request, state.account

    def with_the_change(moment: dt.datetime) -> None:
        # Use the link up only if it is still open: of two completions at once, one sets the password.
        claimed = db.session.execute(
            db.update(ResetRequest)
            .where(ResetRequest.id == req.id, ResetRequest.used_at.is_(None), ResetRequest.ended_at.is_(None))
            .values(used_at=moment), execution_options={"synchronize_session": False}).rowcount
        if claimed != 1:
            raise LinkGone("the link was used or ended meanwhile")
        _end_open_requests(account.id, "superseded", moment)
        addresses = sorted({i.value for i in account.identifiers
                            if i.kind in ("university_email", "private_email")})  # aliases share a mailbox
        for address in addresses:
            mail.enqueue(to=address, template="password_changed", lang=lang, purpose="password_changed",
                         account_id=account.id, now=moment, context={"name": account.first_name, "when": moment})
        audit.record("reset.completed", account_id=account.id, client_ip=client_ip, now=moment, commit=False)

    try:
        accounts.set_password(account, new_password, policy, actor="self", forbid_current=True, keep_session=None,
                              pesel=given_pesel, now=now, in_same_transaction=with_the_change)
    except LinkGone:
        db.session.rollback()  # the new hash, its history row and audit event were not committed
        raise
