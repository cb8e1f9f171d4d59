"""The helpdesk's view of a person and its fixes: find, explain, and one audited action per fix.

Every action takes an `Actor` (who, from where, through which interface) and a reason, refuses a blank
reason before touching anything (ReasonRequired), and records exactly one audit event
"helpdesk.<action>" with data {"why", "via", "before", "after", ...}. The lower layers an action reuses
(password setting, linking, session end) record their own events too, as they do for everyone.
Nothing here reads the request: the console and the API build the Actor.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l

from idp.core import accounts, audit, authn, linking, mfa, pesel, provisioning, recovery, sso, staff, throttle
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import (
    Account,
    ApiToken,
    AssistedRecovery,
    AuditEvent,
    Identifier,
    ImportRun,
    OAuthToken,
    PendingLink,
    ResetRequest,
    Service,
    SessionParticipant,
    SsoSession,
    UpstreamIdentity,
)
from idp.models.account import fold_name

#: Identifier kinds the helpdesk may add (every one is an e-mail address).
IDENTIFIER_KINDS = ("university_email", "private_email", "alias")
#: Decisions on a pending link.
PENDING_DECISIONS = ("link", "reject")
#: Status codes of `PersonOverview.status` (the UI and API put words to them).
STATUS_CODES = ("active", "temporary_password", "locked", "left", "left_grace", "merged", "no_password",
                "password_expired")
#: Audit actions shown on a person's page (prefixes, of events with the account's id; "sso.started" is left
#: out: every login has its login.succeeded already).
EVENT_PREFIXES = ("login.", "upstream.", "reset.", "password.", "helpdesk.", "activation.", "account.", "cas.",
                  "oidc.", "sso.", "staff.", "import.")
#: Reasons shorter than this (after trimming) are refused.
MIN_REASON = 3
#: How many events overview() returns.
EVENTS_SHOWN = 30


@dataclass(frozen=True)
class Actor:
    """Who acts: the audit actor string (staff.actor_name), their account id, their IP, and the interface."""

    name: str
    account_id: int | None
    client_ip: str | None
    via: str  # "console" | "api" | "cli"

    @classmethod
    def of(cls, account: Account, *, client_ip: str | None, via: str) -> Actor:
        """The actor for a staff person's account (name from staff.actor_name)."""
        return cls(staff.actor_name(account), account.id, client_ip, via)


class ReasonRequired(DomainError):
    """The action was asked for without a reason (blank, or shorter than MIN_REASON): nothing changed."""

    code = "reason_required"


class Refused(DomainError):
    """The action cannot be done (the message says why, for people). `code` names the case for the API:
    not_locked, not_an_address, taken, already_present, not_found, last_way_to_log_in, unknown_provider,
    already_linked, resolved, no_account, bad_decision, same_account, merged, not_active, no_sessions,
    bad_kind, bad_address, bad_subject."""

    code = "refused"


@dataclass(frozen=True)
class SearchResult:
    #: album | identifier | name | pesel | reference | empty
    kind: str
    accounts: list[Account]
    total: int
    #: The audit event a reference code named (kind "reference"), else None.
    event: AuditEvent | None = None


@dataclass
class PersonOverview:
    """Everything one screen explains about a person: plain data, no words (the UI and API render it)."""

    account: Account
    roles: set[str]
    #: Codes among STATUS_CODES, most important first.
    status: list[str]
    locked_until: dt.datetime | None
    left_at: dt.datetime | None
    merged_into: Account | None
    merged_from: list[Account]
    #: The ok import run whose started_at equals account.imported_at (the migration that last changed them).
    last_import: ImportRun | None
    #: (service, entitled) for every service that requires entitlements or that the account names.
    entitlements: list[tuple[Service, bool]]
    identities: list[UpstreamIdentity]
    #: Unresolved pending links for this account or with one of its addresses, newest first.
    pending: list[PendingLink]
    #: Live SSO sessions (most recently used first) with the apps in each.
    sessions: list[tuple[SsoSession, list[SessionParticipant]]]
    #: The last EVENTS_SHOWN events about the account, newest first.
    events: list[AuditEvent]
    failed_streak: int
    #: The account's identifiers, e-mail addresses a reset link may go to.
    addresses: list[str] = field(default_factory=list)
    #: Locked until the helpdesk unlocks it (policy permanent_lockout_after); locked_until is None then.
    locked_permanently: bool = False
    #: Temporary locks in a row without a successful login in between (each lasts twice the one before).
    lockouts: int = 0
    #: The growing delay after wrong passwords: the next attempt is refused until then (None: no delay).
    delayed_until: dt.datetime | None = None


# --- shared ---------------------------------------------------------------------------------------------

def _why(reason: str | None) -> str:
    """The reason, trimmed; ReasonRequired when blank or too short (checked before anything changes)."""
    text = " ".join((reason or "").split())
    if len(text) < MIN_REASON:
        raise ReasonRequired(str(_l("Say why you are doing this (a few words for the audit log).")))
    return text[:500]


def _record(name: str, account_id: int | None, actor: Actor, why: str, before: dict, after: dict,
            now: dt.datetime, **extra: Any) -> AuditEvent:
    """The one helpdesk.<name> event of an action, in the caller's transaction (no commit)."""
    data = {"why": why, "via": actor.via, "before": before, "after": after, **extra}
    if actor.account_id is not None:
        data["staff_id"] = actor.account_id
    return audit.record(f"helpdesk.{name}", actor=actor.name, account_id=account_id, client_ip=actor.client_ip,
                        data=data, now=now, commit=False)


def _identifiers(account: Account) -> list[dict[str, str]]:
    return [{"kind": i.kind, "value": i.value} for i in account.identifiers]


def _identity_dicts(rows: list[UpstreamIdentity]) -> list[dict[str, Any]]:
    return [{"id": i.id, "provider": i.provider, "email": i.email} for i in rows]


def may_act_on(account: Account, actor: Actor) -> None:
    """Acting on a person who holds a console role takes the admin role: otherwise a helpdesk person could
    add their own address to an admin's account (or set its password, or reset its second factor) and log
    in as that admin. The CLI (no staff account) is the operator and may."""
    if actor.account_id is None or not staff.roles_of(account):
        return
    if not staff.has_role(db.session.get(Account, actor.account_id), "admin"):
        raise Refused(str(_l("This person has a console role: only an admin can change their account.")),
                      "staff_account")


def _refuse_merged(account: Account) -> None:
    if account.merged_into_id is not None:
        raise Refused(str(_l("This account was merged into another one: act on that account instead.")), "merged")


def _owner_album(account_id: int) -> str:
    owner = db.session.get(Account, account_id)
    return owner.album if owner else "?"


def _app_policy() -> Policy:
    return current_app.extensions["idp.policy"]


# --- finding a person ------------------------------------------------------------------------------------

_REFERENCE_RE = re.compile(r"^[Ee]\s*\d{1,18}$")


def _page(query, limit: int, offset: int) -> tuple[list[Account], int]:
    total = db.session.scalar(db.select(db.func.count()).select_from(query.order_by(None).subquery())) or 0
    rows = db.session.scalars(query.order_by(Account.last_name, Account.first_name, Account.id)
                              .limit(max(1, limit)).offset(max(0, offset)))
    return list(rows), total


def _like_escaped(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def search(query: str, *, pesel_key: str, limit: int = 25, offset: int = 0) -> SearchResult:
    """Find accounts by what a caller said: an album number (exact, case-insensitive), any address or
    alias ("@": also an upstream identity's address), a PESEL (11 digits with a valid checksum: compared
    by its keyed hash, never stored or logged), an error page's reference code ("E123": the account of that
    event, and the event), or a name (diacritics-insensitive: every word must occur in the folded name),
    ordered by last name, first name. Merged accounts are found too (their page says so)."""
    text = " ".join((query or "").split())
    if not text:
        return SearchResult("empty", [], 0)
    if "@" in text:
        value = accounts.normalise_identifier(text)
        by_identifier = db.select(Identifier.account_id).where(Identifier.value == value)
        by_upstream = db.select(UpstreamIdentity.account_id).where(db.func.lower(UpstreamIdentity.email) == value)
        found, total = _page(db.select(Account).where(db.or_(Account.id.in_(by_identifier),
                                                              Account.id.in_(by_upstream))), limit, offset)
        return SearchResult("identifier", found, total)
    compact = text.replace(" ", "")
    if compact.isascii() and compact.isdigit() and len(compact) == 11 and pesel.problem(compact) is None:
        digest = pesel.keyed_hash(compact, pesel_key)
        found, total = _page(db.select(Account).where(Account.pesel_hash == digest), limit, offset)
        if total or not _album_exists(compact):
            return SearchResult("pesel", found, total)
    if _REFERENCE_RE.match(text):
        event = audit.find_by_reference(text)
        if event is not None:
            owner = db.session.get(Account, event.account_id) if event.account_id else None
            return SearchResult("reference", [owner] if owner and offset == 0 else [], 1 if owner else 0, event)
        if not _album_exists(compact):
            return SearchResult("reference", [], 0)
    if " " not in text:
        found, total = _page(db.select(Account).where(db.func.lower(Account.album) == text.lower()), limit, offset)
        if total or text.isdigit():
            return SearchResult("album", found, total)
    words = fold_name(text).split()
    if not words:
        return SearchResult("name", [], 0)
    condition = db.and_(*(Account.name_key.like(_like_escaped(w), escape="\\") for w in words))
    found, total = _page(db.select(Account).where(condition), limit, offset)
    return SearchResult("name", found, total)


def _album_exists(value: str) -> bool:
    return db.session.scalar(db.select(Account.id).where(db.func.lower(Account.album) == value.lower())
                             .limit(1)) is not None


def overview(account: Account, policy: Policy, now: dt.datetime | None = None) -> PersonOverview:
    """The person's situation for the console and the API (reading it may end sessions past their lifetime,
    as any reader of sessions does)."""
    now = now or utcnow()
    status: list[str] = []
    if account.merged_into_id is not None:
        status.append("merged")
    elif account.status != "active" or accounts.has_left(account, policy, now):
        status.append("left")
    elif account.left_at is not None:
        status += ["active", "left_grace"]
    else:
        status.append("active")
    if authn.is_locked(account, now):
        status.append("locked")
    if not account.password_hash:
        status.append("no_password")
    elif account.password_temporary:
        status.append("temporary_password")
    if account.password_hash and accounts.password_expired(account, policy, now):
        status.append("password_expired")

    named = {e.lower() for e in (account.entitlements or [])}
    services = db.session.scalars(db.select(Service).order_by(Service.name))
    entitlements = [(svc, provisioning.entitled(account, svc)) for svc in services
                    if svc.requires_entitlement or svc.name.lower() in named]

    addresses = [i.value for i in account.identifiers]
    waiting = db.or_(PendingLink.account_id == account.id, PendingLink.email.in_(addresses)) if addresses \
        else PendingLink.account_id == account.id
    pending = list(db.session.scalars(db.select(PendingLink).where(PendingLink.resolution.is_(None), waiting)
                                      .order_by(PendingLink.created_at.desc(), PendingLink.id.desc())))

    prefixes = db.or_(*(AuditEvent.action.startswith(p) for p in EVENT_PREFIXES))
    events = list(db.session.scalars(db.select(AuditEvent).where(AuditEvent.account_id == account.id, prefixes,
                                                                 AuditEvent.action != "sso.started")
                                     .order_by(AuditEvent.id.desc()).limit(EVENTS_SHOWN)))
    last_import = None
    if account.imported_at is not None:
        last_import = db.session.scalar(db.select(ImportRun).where(ImportRun.status == "ok",
                                                                   ImportRun.started_at == account.imported_at)
                                        .order_by(ImportRun.id.desc()).limit(1))
    return PersonOverview(
        account=account, roles=staff.roles_of(account), status=status,
        locked_until=account.locked_until if authn.is_locked(account, now) else None, left_at=account.left_at,
        merged_into=db.session.get(Account, account.merged_into_id) if account.merged_into_id else None,
        merged_from=list(db.session.scalars(db.select(Account).where(Account.merged_into_id == account.id)
                                            .order_by(Account.id))),
        last_import=last_import, entitlements=entitlements, identities=linking.identities_of(account),
        pending=pending,
        sessions=[(s, sso.participants(s)) for s in sso.sessions_of(account, policy, now)],
        events=events, failed_streak=account.failed_logins or 0, addresses=reset_addresses(account),
        locked_permanently=bool(account.locked_permanently), lockouts=account.lockouts or 0,
        delayed_until=throttle.account_delay(account.id, now))


def reset_addresses(account: Account) -> list[str]:
    """The addresses send_reset_link may use: every identifier of the account (university first)."""
    order = {kind: n for n, kind in enumerate(IDENTIFIER_KINDS)}
    return [i.value for i in sorted(account.identifiers, key=lambda i: (order.get(i.kind, 9), i.id or 0))]


# --- actions ---------------------------------------------------------------------------------------------

def send_reset_link(account: Account, address: str, *, actor: Actor, reason: str, policy: Policy, lang: str,
                    now: dt.datetime | None = None) -> str:
    """Send the normal password-reset link (exactly the mail and link /password/reset sends, older links
    ended) to one chosen address of the account. Returns the address. Refused: not one of the account's
    addresses (not_an_address), account not active (not_active), merged. Needs a request context (the link
    is built with url_for, as the reset page builds it)."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    _refuse_merged(account)
    chosen = accounts.normalise_identifier(address or "")
    if chosen not in reset_addresses(account):
        raise Refused(str(_l("The link can only go to an address of this account.")), "not_an_address")
    if account.status != "active":
        raise Refused(str(_l("This person has left the university: a reset link would not work.")), "not_active")
    open_before = db.session.scalar(db.select(db.func.count(ResetRequest.id)).where(
        ResetRequest.account_id == account.id, ResetRequest.ended_at.is_(None), ResetRequest.used_at.is_(None),
        ResetRequest.expires_at > now)) or 0
    req = recovery.issue_link(account, [chosen], policy, lang=lang, client_ip=actor.client_ip, now=now)
    _record("send_reset_link", account.id, actor, why, {"open_links": open_before},
            {"open_links": 1, "request": req.id, "expires_at": req.expires_at.isoformat(timespec="seconds")},
            now, address=chosen)
    db.session.commit()
    return chosen


def set_temporary_password(account: Account, password: str, *, actor: Actor, reason: str, policy: Policy,
                           now: dt.datetime | None = None) -> None:
    """Set a temporary password (the person must change it at the next login), checked by the password
    policy (accounts.PasswordRejected propagates, nothing changed). Every session of the account ends.
    The password is never logged. Refused: merged account (merged)."""
    why = _why(reason)
    may_act_on(account, actor)
    _refuse_merged(account)
    before = {"has_password": account.password_hash is not None, "temporary": bool(account.password_temporary),
              "locked_until": _iso(account.locked_until), "failed_logins": account.failed_logins or 0}

    def with_the_change(moment: dt.datetime) -> None:
        _record("set_temporary_password", account.id, actor, why, before,
                {"has_password": True, "temporary": True, "locked_until": None, "failed_logins": 0}, moment)

    accounts.set_password(account, password, policy, temporary=True, actor=actor.name, forbid_current=False,
                          now=now, in_same_transaction=with_the_change)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def unlock(account: Account, *, actor: Actor, reason: str, now: dt.datetime | None = None) -> None:
    """Lift a lockout — temporary or permanent — and forget the wrong passwords behind it: the run of
    wrong passwords, the run of locks and the account's growing delay. Refused (not_locked) when there
    is none of these."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    delayed = throttle.account_delay(account.id, now)
    if not authn.is_locked(account, now) and not account.failed_logins and not account.lockouts and delayed is None:
        raise Refused(str(_l("This account is not locked.")), "not_locked")
    before = {"locked_until": _iso(account.locked_until), "failed_logins": account.failed_logins or 0,
              "lockouts": account.lockouts or 0, "locked_permanently": bool(account.locked_permanently)}
    if delayed is not None:
        before["delayed_until"] = _iso(delayed)
    account.failed_logins, account.locked_until, account.lockouts = 0, None, 0
    account.locked_permanently, account.last_failed_at = False, None
    account.updated_at = now
    throttle.forget_account(account.id)
    _record("unlock", account.id, actor, why, before,
            {"locked_until": None, "failed_logins": 0, "lockouts": 0, "locked_permanently": False}, now)
    db.session.commit()


def reset_second_factor(account: Account, *, actor: Actor, reason: str,
                        now: dt.datetime | None = None) -> dict[str, int]:
    """Forget the person's second factors (a lost phone and its recovery codes, checked in person): they
    enrol anew at their next console visit or login. Refused (no_second_factor) when there is none."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    had = mfa.forget_all(account)
    if not any(had.values()):
        db.session.rollback()
        raise Refused(str(_l("This person has no second factor to reset.")), "no_second_factor")
    _record("reset_second_factor", account.id, actor, why, had, {"totp": 0, "keys": 0, "recovery_codes": 0}, now)
    db.session.commit()
    # Whoever holds the lost phone may hold a live session too: it ends, or it could enrol its own factor.
    accounts.end_other_sessions(account, keep=None, reason="second_factor_reset", now=now)
    return had


def add_identifier(account: Account, kind: str, value: str, *, actor: Actor, reason: str,
                   now: dt.datetime | None = None) -> Identifier:
    """Add an alias or address (kind in IDENTIFIER_KINDS; value an e-mail address, normalised). Returns the
    new Identifier. Refused: bad_kind, bad_address, already_present (this account has it), taken (another
    account has it: the message names its album)."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    _refuse_merged(account)
    if kind not in IDENTIFIER_KINDS:
        raise Refused(str(_l("Choose a university address, a private address or an alias.")), "bad_kind")
    normal = accounts.normalise_identifier(value or "")
    if not accounts.EMAIL_RE.match(normal) or len(normal) > 254:
        raise Refused(str(_l("%(value)s is not an e-mail address.", value=value.strip()[:254])), "bad_address")
    owner = db.session.scalar(db.select(Identifier).where(Identifier.value == normal))
    if owner is not None:
        if owner.account_id == account.id:
            raise Refused(str(_l("This account already has %(value)s.", value=normal)), "already_present")
        raise Refused(str(_l("%(value)s belongs to another account (album %(album)s).", value=normal,
                             album=_owner_album(owner.account_id))), "taken")
    before = _identifiers(account)
    ident = Identifier(kind=kind, value=normal, source="helpdesk")
    account.identifiers.append(ident)
    account.updated_at = now
    db.session.flush()
    _record("add_identifier", account.id, actor, why, {"identifiers": before},
            {"identifiers": _identifiers(account)}, now, identifier={"kind": kind, "value": normal})
    db.session.commit()
    return ident


def remove_identifier(account: Account, identifier_id: int, *, actor: Actor, reason: str,
                      policy: Policy | None = None, now: dt.datetime | None = None) -> str:
    """Remove one identifier of the account; returns its value. Refused: not_found (not this account's),
    last_way_to_log_in (no identifier the policy logs in with would remain, album login not allowed, and no
    upstream identity). `policy`: the app's policy when None."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    policy = policy or _app_policy()
    ident = db.session.get(Identifier, identifier_id)
    if ident is None or ident.account_id != account.id:
        raise Refused(str(_l("This account has no such identifier.")), "not_found")
    allowed = set(policy.data["login"]["identifiers"])
    remaining = [i for i in account.identifiers if i.id != ident.id and i.kind in allowed]
    album_logs_in = "album" in allowed and account.merged_into_id is None
    if not remaining and not album_logs_in and not linking.identities_of(account):
        raise Refused(str(_l("This is the last identifier the person can log in with: add another one "
                             "first.")), "last_way_to_log_in")
    before = _identifiers(account)
    removed = {"kind": ident.kind, "value": ident.value}
    account.identifiers.remove(ident)
    account.updated_at = now
    db.session.flush()
    _record("remove_identifier", account.id, actor, why, {"identifiers": before},
            {"identifiers": _identifiers(account)}, now, identifier=removed)
    db.session.commit()
    return removed["value"]


def link_identity(account: Account, provider: str, subject: str, email: str | None, *, actor: Actor,
                  reason: str, now: dt.datetime | None = None) -> UpstreamIdentity:
    """Link an upstream identity (linked_by "helpdesk"); waiting links for it are resolved. Refused:
    unknown_provider (not in [[upstream]]), bad_subject, already_linked (this account has it), taken
    (another account has it: the message names its album)."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    _refuse_merged(account)
    if linking.upstream(provider or "") is None:
        raise Refused(str(_l("No such upstream provider is configured.")), "unknown_provider")
    subject = (subject or "").strip()
    if not subject or len(subject) > 255:
        raise Refused(str(_l("Give the identity's subject (its id at the provider).")), "bad_subject")
    email = accounts.normalise_identifier(email) if email and email.strip() else None
    if email and (not accounts.EMAIL_RE.match(email) or len(email) > 254):
        raise Refused(str(_l("%(value)s is not an e-mail address.", value=email[:254])), "bad_address")
    existing = db.session.scalar(db.select(UpstreamIdentity).where(UpstreamIdentity.provider == provider,
                                                                   UpstreamIdentity.subject == subject))
    if existing is not None:
        if existing.account_id == account.id:
            raise Refused(str(_l("This identity is already linked to this account.")), "already_linked")
        raise Refused(str(_l("This identity is linked to another account (album %(album)s).",
                             album=_owner_album(existing.account_id))), "taken")
    before = _identity_dicts(linking.identities_of(account))
    identity = linking.link(account, provider, subject, email, linked_by="helpdesk", actor=actor.name,
                            client_ip=actor.client_ip, now=now, commit=False)
    db.session.flush()
    _record("link_identity", account.id, actor, why, {"identities": before},
            {"identities": _identity_dicts(linking.identities_of(account))}, now,
            identity={"id": identity.id, "provider": provider, "email": email})
    db.session.commit()
    return identity


def unlink_identity(account: Account, identity_id: int, *, actor: Actor, reason: str,
                    now: dt.datetime | None = None) -> None:
    """Unlink one upstream identity of the account. Refused: not_found, last_way_to_log_in (no password
    and no other link: the same rule as the person's own unlink)."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    identity = db.session.get(UpstreamIdentity, identity_id)
    if identity is None or identity.account_id != account.id:
        raise Refused(str(_l("This account has no such linked identity.")), "not_found")
    before = _identity_dicts(linking.identities_of(account))
    gone = {"id": identity.id, "provider": identity.provider, "email": identity.email}
    _record("unlink_identity", account.id, actor, why, {"identities": before},
            {"identities": [i for i in before if i["id"] != identity.id]}, now, identity=gone)
    try:
        linking.unlink(account, identity.id, actor=actor.name, client_ip=actor.client_ip, now=now)  # commits
    except linking.LastWayToLogIn:
        db.session.rollback()
        raise Refused(str(_l("This is the only way the person can log in: they have no password. Set a "
                             "temporary password or send a reset link first.")), "last_way_to_log_in") from None


def resolve_pending(pending_id: int, decision: str, *, actor: Actor, reason: str, account: Account | None = None,
                    now: dt.datetime | None = None) -> PendingLink:
    """Decide a waiting link: "link" links its upstream identity to `account` (or the account it waits
    for), "reject" marks it resolved as rejected. Returns the pending link. Refused: not_found, resolved
    (already decided), bad_decision, no_account (link with neither), merged (target merged), taken (the
    identity is linked to another account)."""
    why = _why(reason)
    now = now or utcnow()
    if decision not in PENDING_DECISIONS:
        raise Refused(str(_l("Decide to link or to reject.")), "bad_decision")
    pending = db.session.get(PendingLink, pending_id)
    if pending is None:
        raise Refused(str(_l("There is no such pending link.")), "not_found")
    if pending.resolution is not None:
        raise Refused(str(_l("This pending link was already resolved (%(resolution)s).",
                             resolution=pending.resolution)), "resolved")
    before = {"resolution": None, "account_id": pending.account_id, "kind": pending.kind}
    facts = {"pending": pending.id, "provider": pending.provider, "email": pending.email}
    if decision == "reject":
        if pending.account_id is not None:
            may_act_on(db.session.get(Account, pending.account_id), actor)
        pending.resolution, pending.resolved_at = "rejected", now
        _record("resolve_pending", pending.account_id, actor, why, before,
                {"resolution": "rejected", "account_id": pending.account_id, "kind": pending.kind}, now,
                decision=decision, **facts)
        db.session.commit()
        return pending
    target = account or (db.session.get(Account, pending.account_id) if pending.account_id else None)
    if target is None:
        raise Refused(str(_l("Choose the account to link this identity to.")), "no_account")
    _refuse_merged(target)
    may_act_on(target, actor)
    existing = db.session.scalar(db.select(UpstreamIdentity).where(UpstreamIdentity.provider == pending.provider,
                                                                   UpstreamIdentity.subject == pending.subject))
    if existing is not None and existing.account_id != target.id:
        raise Refused(str(_l("This identity is linked to another account (album %(album)s).",
                             album=_owner_album(existing.account_id))), "taken")
    identity = linking.link(target, pending.provider, pending.subject, pending.email, linked_by="helpdesk",
                            actor=actor.name, client_ip=actor.client_ip, now=now, commit=False)
    db.session.flush()
    db.session.refresh(pending)  # linking.link resolved it with an UPDATE
    _record("resolve_pending", target.id, actor, why, before,
            {"resolution": pending.resolution, "account_id": target.id, "kind": pending.kind,
             "identity": identity.id}, now, decision=decision, **facts)
    db.session.commit()
    return pending


def merge(survivor: Account, other: Account, *, actor: Actor, reason: str,
          now: dt.datetime | None = None) -> dict[str, Any]:
    """Merge two accounts of one person into `survivor`: `other`'s identifiers, upstream identities,
    pending links and audit history move to the survivor (the survivor keeps its own password); `other`
    gets merged_into_id=survivor.id, status "merged", no password, its sessions end and its tokens (OAuth,
    API) are revoked; accounts merged into `other` earlier now point at the survivor. An SIS import still
    listing other's album skips it. Returns what moved: {"identifiers": [values], "identities": [ids],
    "pending": [ids], "events": count, "sessions": how many of other's sessions ended}.
    Refused: same_account, merged (either is already merged)."""
    why = _why(reason)
    may_act_on(survivor, actor)
    may_act_on(other, actor)
    now = now or utcnow()
    if survivor.id == other.id:
        raise Refused(str(_l("An account cannot be merged into itself.")), "same_account")
    if survivor.merged_into_id is not None or other.merged_into_id is not None:
        raise Refused(str(_l("One of these accounts was already merged into another one.")), "merged")
    before = {
        "survivor": {"id": survivor.id, "album": survivor.album, "identifiers": _identifiers(survivor),
                     "identities": _identity_dicts(linking.identities_of(survivor))},
        "other": {"id": other.id, "album": other.album, "status": other.status,
                  "has_password": other.password_hash is not None, "identifiers": _identifiers(other),
                  "identities": _identity_dicts(linking.identities_of(other))},
    }
    # Its sessions end first (single logout; their events then move with the rest of its history).
    ended = 0
    for session in list(db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == other.id,
                                                                      SsoSession.ended_at.is_(None))
                                           .order_by(SsoSession.auth_time, SsoSession.sid))):
        sso.end(session, reason="merged", now=now, actor=actor.name, client_ip=actor.client_ip)
        ended += 1
    # Identifiers: removed and added anew, so the survivor's own addresses stay first of their kind.
    moved = [(i.kind, i.value) for i in other.identifiers]
    for ident in list(other.identifiers):
        other.identifiers.remove(ident)
    db.session.flush()
    for kind, value in moved:
        survivor.identifiers.append(Identifier(kind=kind, value=value, source="merge"))
    identities = [i.id for i in linking.identities_of(other)]
    db.session.execute(db.update(UpstreamIdentity).where(UpstreamIdentity.account_id == other.id)
                       .values(account_id=survivor.id), execution_options={"synchronize_session": False})
    pending = list(db.session.scalars(db.select(PendingLink.id).where(PendingLink.account_id == other.id)
                                      .order_by(PendingLink.id)))
    db.session.execute(db.update(PendingLink).where(PendingLink.account_id == other.id)
                       .values(account_id=survivor.id), execution_options={"synchronize_session": False})
    events = db.session.execute(db.update(AuditEvent).where(AuditEvent.account_id == other.id)
                                .values(account_id=survivor.id),
                                execution_options={"synchronize_session": False}).rowcount
    db.session.execute(db.update(Account).where(Account.merged_into_id == other.id)
                       .values(merged_into_id=survivor.id), execution_options={"synchronize_session": False})
    # The other account stops working: no password, no links, no tokens, no open reset or recovery code.
    other.merged_into_id = survivor.id
    other.status = "merged"
    other.password_hash, other.password_temporary = None, False
    other.failed_logins, other.locked_until = 0, None
    other.updated_at = survivor.updated_at = now
    db.session.execute(db.update(ResetRequest).where(ResetRequest.account_id == other.id,
                                                     ResetRequest.ended_at.is_(None), ResetRequest.used_at.is_(None))
                       .values(ended_at=now, ended_reason="merged"), execution_options={"synchronize_session": False})
    db.session.execute(db.update(AssistedRecovery).where(AssistedRecovery.account_id == other.id,
                                                         AssistedRecovery.ended_at.is_(None),
                                                         AssistedRecovery.used_at.is_(None))
                       .values(ended_at=now), execution_options={"synchronize_session": False})
    db.session.execute(db.update(OAuthToken).where(OAuthToken.account_id == other.id, OAuthToken.revoked_at.is_(None))
                       .values(revoked_at=now), execution_options={"synchronize_session": False})
    db.session.execute(db.update(ApiToken).where(ApiToken.account_id == other.id, ApiToken.revoked_at.is_(None))
                       .values(revoked_at=now), execution_options={"synchronize_session": False})
    db.session.flush()
    db.session.expire(survivor, ["identifiers"])
    outcome = {"identifiers": [v for _, v in moved], "identities": identities, "pending": pending, "events": events,
               "sessions": ended}
    after = {
        "survivor": {"id": survivor.id, "album": survivor.album, "identifiers": _identifiers(survivor),
                     "identities": _identity_dicts(linking.identities_of(survivor))},
        "other": {"id": other.id, "album": other.album, "status": "merged", "merged_into": survivor.id,
                  "has_password": False, "identifiers": [], "identities": []},
    }
    _record("merge", survivor.id, actor, why, before, after, now, other={"id": other.id, "album": other.album},
            moved=outcome)
    db.session.commit()
    return outcome


def end_sessions(account: Account, *, actor: Actor, reason: str, sid: str | None = None,
                 now: dt.datetime | None = None) -> int:
    """End one live SSO session (by its public `sid`) or all of them (then refresh tokens are revoked too),
    with single logout, reason "ended_by_helpdesk". Returns how many ended. Refused: not_found (no live
    session with that sid), no_sessions (none live)."""
    why = _why(reason)
    may_act_on(account, actor)
    now = now or utcnow()
    live = list(db.session.scalars(db.select(SsoSession).where(SsoSession.account_id == account.id,
                                                              SsoSession.ended_at.is_(None))
                                   .order_by(SsoSession.auth_time, SsoSession.sid)))
    if sid is not None:
        chosen = [s for s in live if s.sid == sid]
        if not chosen:
            raise Refused(str(_l("This person has no such active session.")), "not_found")
    else:
        chosen = live
        if not chosen:
            raise Refused(str(_l("This person has no active sessions.")), "no_sessions")
    ended = [s.sid for s in chosen]
    _record("end_sessions", account.id, actor, why, {"sessions": [s.sid for s in live]},
            {"sessions": [s.sid for s in live if s.sid not in ended]}, now, ended=ended)
    if sid is None:
        db.session.execute(db.update(OAuthToken).where(OAuthToken.account_id == account.id,
                                                       OAuthToken.refresh_token_hash.is_not(None),
                                                       OAuthToken.revoked_at.is_(None))
                           .values(revoked_at=now), execution_options={"synchronize_session": False})
    db.session.commit()
    for session in chosen:
        sso.end(session, reason="ended_by_helpdesk", now=now, actor=actor.name, client_ip=actor.client_ip)
    return len(chosen)
