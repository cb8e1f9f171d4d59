"""Upstream identities and local accounts: known links, the "already exists" proof, the "not recognized"
memory that a later import resolves, and listing / unlinking an account's links.

An upstream identity is keyed by (provider, subject). Its e-mail address only ever *suggests* an account:
the person proves that account (its password, or a link mailed to it) before anything is linked, because
an address at another provider may belong to someone else. The one automatic link is an import that
brings a person whose university records carry the address a provider vouched for earlier.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app, url_for
from flask_babel import lazy_gettext as _l

from idp.core import accounts, audit, authn, mail, tokens
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account, AuditEvent, PendingLink, UpstreamIdentity

CONFIRM_PURPOSE = "link-confirm"
#: Wrong passwords on one "already exists" page before it stops taking them (then: the mailed link).
MAX_PROOF_ATTEMPTS = 5


class LinkError(DomainError):
    code = "link_failed"


class LastWayToLogIn(DomainError):
    """Unlinking would leave the account with no way to log in (no password, no other link)."""

    code = "last_way_to_log_in"


@dataclass(frozen=True)
class UpstreamClaims:
    """What an upstream provider said about the person (already validated by the protocol layer)."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None = None


@dataclass(frozen=True)
class Resolution:
    #: linked (known link: log in) | exists (an account has the address: proof needed) | unknown (no account)
    kind: str
    account: Account | None = None
    pending: PendingLink | None = None
    #: the audit event to quote as a reference code (unknown, exists)
    event: object | None = None


def upstream(name: str) -> dict | None:
    """The [[upstream]] entry of idp.toml by name, or None."""
    return next((u for u in current_app.config["UPSTREAM"] if u["name"] == name), None)


def label(name: str) -> str:
    entry = upstream(name)
    return entry["label"] if entry else name


def _usable_email(claims: UpstreamClaims) -> str | None:
    entry = upstream(claims.provider) or {}
    if claims.email and (claims.email_verified or entry.get("trust_email")):
        return accounts.normalise_identifier(claims.email)
    return None


def _waiting(provider: str, subject: str, kind: str) -> list[PendingLink]:
    return list(db.session.scalars(db.select(PendingLink).where(
        PendingLink.provider == provider, PendingLink.subject == subject, PendingLink.kind == kind,
        PendingLink.resolution.is_(None))))


def resolve(claims: UpstreamClaims, policy: Policy, *, client_ip: str | None,
            now: dt.datetime | None = None) -> Resolution:
    """What an upstream login leads to. Records what happened; commits."""
    now = now or utcnow()
    known = db.session.scalar(db.select(UpstreamIdentity).where(
        UpstreamIdentity.provider == claims.provider, UpstreamIdentity.subject == claims.subject))
    email = _usable_email(claims)
    if known is not None:
        known.last_login_at = now
        if email:
            known.email = email
        db.session.commit()
        return Resolution("linked", db.session.get(Account, known.account_id))

    account = accounts.find_any(email) if email else None
    if account is not None:
        for old in _waiting(claims.provider, claims.subject, "exists"):
            if old.account_id == account.id and old.expires_at > now:
                event = audit.record("upstream.login.link_needed", account_id=account.id, reason="already_exists",
                                     client_ip=client_ip, now=now,
                                     data={"provider": claims.provider, "email": email, "pending": old.id})
                return Resolution("exists", account, old, event)
            old.resolution, old.resolved_at = "superseded", now
        minutes = policy.data["linking"]["confirm_minutes"]
        pending = PendingLink(kind="exists", account_id=account.id, provider=claims.provider,
                              subject=claims.subject, email=email, name=(claims.name or "")[:200] or None,
                              created_at=now, expires_at=now + dt.timedelta(minutes=minutes), client_ip=client_ip)
        db.session.add(pending)
        db.session.flush()
        event = audit.record("upstream.login.link_needed", account_id=account.id, reason="already_exists",
                             client_ip=client_ip, now=now,
                             data={"provider": claims.provider, "email": email, "pending": pending.id})
        return Resolution("exists", account, pending, event)

    # Nobody to link to (yet): remember the attempt so the import that brings the person links it.
    reason = "not_recognized" if email else "email_not_verified"
    days = policy.data["linking"]["unknown_days"]
    pending = next(iter(_waiting(claims.provider, claims.subject, "unknown")), None)
    if pending is None:
        pending = PendingLink(kind="unknown", provider=claims.provider, subject=claims.subject, created_at=now,
                              expires_at=now, client_ip=client_ip)
        db.session.add(pending)
    pending.email = email
    pending.name = (claims.name or "")[:200] or None
    pending.expires_at = now + dt.timedelta(days=days)
    db.session.flush()
    event = audit.record("upstream.login.failed", reason=reason, client_ip=client_ip, now=now,
                         data={"provider": claims.provider, "email": email or claims.email,
                               "pending": pending.id})
    return Resolution("unknown", None, pending, event)


def waiting_link(pending_id: int | None, now: dt.datetime | None = None) -> PendingLink | None:
    """An "already exists" link still waiting for proof, or None (used, superseded, expired, unknown)."""
    now = now or utcnow()
    pending = db.session.get(PendingLink, pending_id or 0)
    if pending is None or pending.kind != "exists" or pending.resolution is not None:
        return None
    if pending.expires_at <= now:
        pending.resolution, pending.resolved_at = "expired", now
        db.session.commit()
        return None
    return pending


def link(account: Account, provider: str, subject: str, email: str | None, *, linked_by: str,
         actor: str = "self", client_ip: str | None = None, now: dt.datetime | None = None,
         commit: bool = True) -> UpstreamIdentity:
    """Link an upstream identity to an account and resolve every link that waited for it."""
    now = now or utcnow()
    existing = db.session.scalar(db.select(UpstreamIdentity).where(
        UpstreamIdentity.provider == provider, UpstreamIdentity.subject == subject))
    if existing is not None and existing.account_id != account.id:
        raise LinkError("this upstream identity is already linked to another account")
    identity = existing or UpstreamIdentity(account_id=account.id, provider=provider, subject=subject,
                                            email=email, linked_by=linked_by, linked_at=now)
    db.session.add(identity)
    db.session.execute(db.update(PendingLink).where(
        PendingLink.provider == provider, PendingLink.subject == subject, PendingLink.resolution.is_(None))
        .values(resolution="linked", resolved_at=now))
    audit.record("upstream.linked", actor=actor, account_id=account.id, reason=linked_by, client_ip=client_ip,
                 now=now, commit=False, data={"provider": provider, "email": email})
    if commit:
        db.session.commit()
    return identity


def prove_with_password(pending: PendingLink, password: str, policy: Policy, *, client_ip: str | None,
                        now: dt.datetime | None = None) -> UpstreamIdentity | None:
    """The person typed the existing account's password on the "already exists" page. None: wrong — it
    counts towards the account's delays and lockout like a wrong login, and after MAX_PROOF_ATTEMPTS the
    page takes no more (the mailed link still works). Raises authn.Throttled (audited) while the account
    or the client address must wait, without checking. Callers refuse a locked account before asking."""
    now = now or utcnow()
    account = db.session.get(Account, pending.account_id)
    try:
        right = authn.verify_known(account, password, policy, client_ip=client_ip, now=now)
    except authn.Locked:  # locked since the page asked: refused unchecked, as a wrong password would be
        audit.record("upstream.link.failed", account_id=account.id, reason="locked_unchecked", client_ip=client_ip,
                     now=now, data={"provider": pending.provider, "pending": pending.id})
        return None
    except authn.Throttled as refused:
        audit.record("upstream.link.failed", account_id=account.id, reason=refused.reason, client_ip=client_ip,
                     now=now, data={"provider": pending.provider, "pending": pending.id,
                                    "retry_after": refused.retry_after})
        raise
    if right:
        identity = link(account, pending.provider, pending.subject, pending.email, linked_by="password",
                        client_ip=client_ip, now=now, commit=False)
        identity.last_login_at = now  # "Link and log in": this upstream login is the first through the link
        db.session.commit()
        return identity
    audit.record("upstream.link.failed", account_id=account.id, reason="wrong_password", client_ip=client_ip,
                 now=now, data={"provider": pending.provider, "pending": pending.id})
    return None


def proof_attempts_left(pending: PendingLink) -> int:
    wrong = db.session.scalar(db.select(db.func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "upstream.link.failed", AuditEvent.account_id == pending.account_id,
        AuditEvent.reason == "wrong_password", AuditEvent.at >= pending.created_at))
    return max(MAX_PROOF_ATTEMPTS - (wrong or 0), 0)


def confirmation_addresses(account: Account) -> list[str]:
    """Where a link confirmation goes: the account's own addresses, university first."""
    return [a for kind in ("university_email", "private_email") if (a := account.identifier(kind))]


def send_confirmation(pending: PendingLink, policy: Policy, *, lang: str, client_ip: str | None,
                      now: dt.datetime | None = None) -> list[str]:
    """Mail the existing account a link that confirms the link; returns the masked addresses."""
    now = now or utcnow()
    account = db.session.get(Account, pending.account_id)
    targets = confirmation_addresses(account)
    token = tokens.make(CONFIRM_PURPOSE, {"l": pending.id})
    url = current_app.config["BASE_URL"] + url_for("federation.confirm", token=token)
    minutes = max(int((pending.expires_at - now).total_seconds() // 60), 1)
    for address in targets:
        mail.enqueue(to=address, template="link_confirm", lang=lang, purpose="link_confirm", account_id=account.id,
                     now=now, context={"link": url, "minutes": minutes, "name": account.first_name,
                                       "provider": label(pending.provider), "upstream_email": pending.email})
    pending.mailed_at = now
    audit.record("upstream.link.mailed", account_id=account.id, client_ip=client_ip, now=now, commit=False,
                 data={"provider": pending.provider, "pending": pending.id, "addresses": len(targets)})
    db.session.commit()
    return [mail.mask(a) for a in targets]


def pending_from_token(token: str, policy: Policy, now: dt.datetime | None = None) -> PendingLink | None:
    """The waiting link a mailed confirmation names, or None (expired, used, forged)."""
    try:
        data = tokens.load(CONFIRM_PURPOSE, token, policy.data["linking"]["confirm_minutes"] * 60)
    except (tokens.TokenExpired, tokens.TokenInvalid):
        return None
    return waiting_link(data.get("l") if isinstance(data, dict) else None, now)


def confirm_by_mail(pending: PendingLink, *, client_ip: str | None, now: dt.datetime | None = None) -> UpstreamIdentity:
    account = db.session.get(Account, pending.account_id)
    return link(account, pending.provider, pending.subject, pending.email, linked_by="mail", client_ip=client_ip,
                now=now)


def link_imported(*, lang: str = "pl", now: dt.datetime | None = None) -> int:
    """After an import: link every remembered "not recognized" login whose vouched address an account now
    carries, and tell the person by mail. Returns how many were linked. Caller commits."""
    now = now or utcnow()
    rows = db.session.scalars(db.select(PendingLink).where(
        PendingLink.kind == "unknown", PendingLink.resolution.is_(None), PendingLink.email.is_not(None)))
    linked = 0
    for pending in list(rows):
        if pending.expires_at <= now:
            pending.resolution, pending.resolved_at = "expired", now
            continue
        account = accounts.find_any(pending.email)
        if account is None:
            continue
        try:
            link(account, pending.provider, pending.subject, pending.email, linked_by="import", actor="import",
                 now=now, commit=False)
        except LinkError:
            continue
        for address in confirmation_addresses(account):
            mail.enqueue(to=address, template="upstream_linked", lang=lang, purpose="upstream_linked",
                         account_id=account.id, now=now,
                         context={"name": account.first_name, "provider": label(pending.provider),
                                  "upstream_email": pending.email,
                                  "account_url": current_app.config["BASE_URL"] + "/account"})
        linked += 1
    return linked


def identities_of(account: Account) -> list[UpstreamIdentity]:
    """The account's linked upstream identities, oldest link first."""
    return list(db.session.scalars(db.select(UpstreamIdentity)
                                   .where(UpstreamIdentity.account_id == account.id)
                                   .order_by(UpstreamIdentity.linked_at, UpstreamIdentity.id)))


def unlink(account: Account, identity_id: int, *, actor: str, client_ip: str | None,
           now: dt.datetime | None = None) -> bool:
    """Remove one link of this account. False when there is no such link *of this account* (someone
    else's link is never touched). Raises LastWayToLogIn when the account has no password and this is
    its only link: without it nobody could log in to the account any more."""
    identity = db.session.get(UpstreamIdentity, identity_id)
    if identity is None or identity.account_id != account.id:
        return False
    if account.password_hash is None:
        others = db.session.scalar(db.select(db.func.count(UpstreamIdentity.id))
                                   .where(UpstreamIdentity.account_id == account.id,
                                          UpstreamIdentity.id != identity.id))
        if not others:
            raise LastWayToLogIn(str(_l(
                "This is the only way to log in to your account: you have no password. Set a password "
                "first (use the password reset), then unlink it.")))
    provider, email = identity.provider, identity.email
    db.session.delete(identity)
    audit.record("upstream.unlinked", actor=actor, account_id=account.id, client_ip=client_ip,
                 data={"provider": provider, "email": email}, now=now or utcnow(), commit=False)
    db.session.commit()
    return True
