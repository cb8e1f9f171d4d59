"""CAS ticket validation and proxying: protocol rules only; accounts and sessions come from core."""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from sqlalchemy.orm import joinedload

from idp.core import audit, callbacks, provisioning, registry, sso, tickets
from idp.core.accounts import attribute, canonical_username, has_left
from idp.core.errors import SharedStateUnavailable
from idp.core.policy import Policy
from idp.extensions import db
from idp.models import Account, Service, SsoSession


def same_service(issued: str, presented: str) -> bool:
    """Is `presented` (at validation) the service the ticket was issued for?

    Equal as written, or equal once both are read the way a browser and a CAS client hand them around: the
    `#fragment` dropped (a browser never sends it, so a client that rebuilds its service URL from the
    request cannot repeat it), scheme and host in lower case, the path percent-decoded (`%2F` = `/`) and the
    query read as decoded name=value pairs (`%20` = `+` = space; `%26` stays inside its value): clients
    encode differently, as Apereo CAS's default matching allows. Path and query keep their case and order:
    anything else is another service."""
    if issued == presented:
        return True

    def canonical(url: str) -> tuple | None:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return None
        # The query as decoded pairs, in order: `%26` stays inside its value instead of splitting it.
        return (parts.scheme.lower(), parts.username, parts.password, parts.hostname, port,
                unquote(parts.path), parse_qsl(parts.query, keep_blank_values=True))

    a = canonical(issued)
    return a is not None and a == canonical(presented)


@dataclass(frozen=True)
class Failure:
    code: str
    description: str


@dataclass
class Success:
    user: str
    attributes: dict[str, object] = field(default_factory=dict)
    pgtiou: str | None = None
    proxies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceView:
    """What validation reads of a registered service."""

    id: int
    name: str
    username_attribute: str | None
    attributes: list[str]
    allow_proxy: bool


@dataclass(frozen=True)
class Settings:
    """What validation needs from configuration, passed in explicitly."""

    pgt_lifetime: int
    callback_timeout: float
    allow_loopback: bool


def username_for(account: Account, service: ServiceView | None, policy: Policy) -> str:
    """<cas:user>: the canonical identifier, or the service's own username_attribute."""
    if service is not None and service.username_attribute:
        value = attribute(account, service.username_attribute, policy)
        if value:
            return str(value)
    return canonical_username(account, policy)


def released_attributes(account: Account, service: ServiceView | None, policy: Policy, *, auth_time: dt.datetime,
                        new_login: bool) -> dict[str, object]:
    """CAS 3.0 attributes: the three the schema requires, then what the registry releases."""
    out: dict[str, object] = {
        "authenticationDate": auth_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "longTermAuthenticationRequestTokenUsed": "false",
        "isFromNewLogin": "true" if new_login else "false",
    }
    for name in (service.attributes if service else []):
        value = attribute(account, name, policy)
        if value not in (None, "", []):
            out[name] = value
    return out


_TICKET_LIKE = re.compile(r"\b((?:ST|PT|PGT|PGTIOU|TGT)-[A-Za-z0-9]{0,4})[A-Za-z0-9]*")


def redact(text: str | None, limit: int) -> str | None:
    """What the audit log may keep of a caller-supplied string: ticket-like values cut to their first
    characters (a PGT or an unused ST passed to the wrong endpoint is still live), length bounded."""
    if text is None:
        return None
    return _TICKET_LIKE.sub(lambda m: m.group(1) + "…", text)[:limit]


def _fail(code: str, description: str, *, account_id: int | None = None, service: str | None = None,
          client_ip: str | None = None, now: dt.datetime) -> Failure:
    audit.append("cas.validate.failed", actor=redact(service, 254) or "unknown", account_id=account_id,
                 reason=code, client_ip=client_ip,
                 data={"service": redact(service, 512), "detail": redact(description, 512)}, now=now)
    db.session.commit()
    return Failure(code, description)


def reject(code: str, description: str, *, service: str | None, client_ip: str | None,
           now: dt.datetime) -> Failure:
    """A request refused before any ticket is looked at (e.g. an unsupported format), audited alike."""
    return _fail(code, description, service=service, client_ip=client_ip, now=now)


def validate(ticket: str | None, service: str | None, policy: Policy, settings: Settings, *, renew: bool,
             allow_proxy_tickets: bool, pgt_url: str | None, with_attributes: bool, now: dt.datetime,
             client_ip: str | None = None) -> Success | Failure:
    """One validation attempt; the ticket is used up whatever the outcome (CAS 3.0 §3.1.1)."""
    if not ticket or not service:
        return _fail("INVALID_REQUEST", "'service' and 'ticket' parameters are both required",
                     service=service, client_ip=client_ip, now=now)
    if not ticket.startswith(("ST-", "PT-")):
        return _fail("INVALID_TICKET_SPEC", f"Ticket {ticket[:64]} is not a service or proxy ticket",
                     service=service, client_ip=client_ip, now=now)
    try:
        row = tickets.consume(ticket, now)
    except SharedStateUnavailable:
        return _fail("INTERNAL_ERROR", "The ticket store is unavailable; try again in a moment",
                     service=service, client_ip=client_ip, now=now)
    if row is None:
        return _fail("INVALID_TICKET", f"Ticket {ticket[:64]} not recognized", service=service,
                     client_ip=client_ip, now=now)
    if row.kind == "PT" and not allow_proxy_tickets:
        return _fail("INVALID_TICKET_SPEC", "A proxy ticket was passed to a service ticket validation endpoint; "
                     "use /proxyValidate", account_id=row.account_id, service=service, client_ip=client_ip, now=now)
    if row.expires_at <= now:
        return _fail("INVALID_TICKET", f"Ticket {ticket} has expired", account_id=row.account_id,
                     service=service, client_ip=client_ip, now=now)
    if not same_service(row.service, service):
        return _fail("INVALID_SERVICE", f"Ticket {ticket} was not issued for this service",
                     account_id=row.account_id, service=service, client_ip=client_ip, now=now)
    if renew and not row.from_new_login:
        return _fail("INVALID_TICKET", f"Ticket {ticket} did not come from an initial login and renew was set",
                     account_id=row.account_id, service=service, client_ip=client_ip, now=now)
    # One query (see _account_in_session). A Redis ticket names its session by sid (it follows a re-login);
    # an ended session takes its tickets along.
    statement, session_key = (_ACCOUNT_IN_SESSION, row.session_id) if row.sid is None else \
        (_ACCOUNT_IN_LIVE_SESSION, row.sid)
    found = db.session.execute(statement, {"account_id": row.account_id, "session": session_key,
                                           "service_id": row.service_id}).unique().first()
    if found is None or has_left(found.Account, policy, now):
        return _fail("INVALID_TICKET", f"Ticket {ticket} is no longer valid: its session has ended or its "
                     "account can no longer log in",
                     account_id=row.account_id, service=service, client_ip=client_ip, now=now)
    account, auth_time = found.Account, found.auth_time
    row.session_id = found.session_id
    svc = ServiceView(found.service_id, found.name, found.username_attribute, found.attributes or [],
                      found.allow_proxy) if found.service_id is not None else None
    result = Success(user=username_for(account, svc, policy), proxies=list(row.proxies or []))
    if with_attributes:
        result.attributes = released_attributes(account, svc, policy, auth_time=auth_time,
                                                new_login=row.from_new_login)
    if pgt_url:
        outcome = _grant_pgt(pgt_url, row, svc, settings, now, client_ip)
        if isinstance(outcome, Failure):
            return outcome
        result.pgtiou = outcome
    audit.append("cas.validate.succeeded", actor=svc.name if svc else service, account_id=account.id,
                 client_ip=client_ip, now=now, data={"kind": row.kind})
    db.session.commit()
    return result


def _account_in_session(session_condition):
    """The account with its identifiers (user name and attributes are read from them), the session's auth
    time (no row when the session has ended) and what validation reads of the service: one query."""
    return (db.select(Account, SsoSession.id.label("session_id"), SsoSession.auth_time,
                      Service.id.label("service_id"), Service.name, Service.username_attribute, Service.attributes,
                      Service.allow_proxy)
            .join(SsoSession, SsoSession.account_id == Account.id)
            .outerjoin(Service, Service.id == db.bindparam("service_id"))
            .where(Account.id == db.bindparam("account_id"), session_condition)
            .options(joinedload(Account.identifiers)))


_ACCOUNT_IN_SESSION = _account_in_session(db.and_(SsoSession.id == db.bindparam("session"),
                                                   SsoSession.ended_at.is_(None)))
_ACCOUNT_IN_LIVE_SESSION = _account_in_session(db.and_(SsoSession.sid == db.bindparam("session"),
                                                        SsoSession.ended_at.is_(None)))


def _grant_pgt(pgt_url: str, row, svc: ServiceView | None, settings: Settings, now: dt.datetime,
               client_ip: str | None) -> str | Failure:
    """CAS 3.0 §2.5.4: authorise the callback, hand it the PGT, and return the IOU only on HTTP 200."""
    if svc is None or not svc.allow_proxy:
        return _fail("UNAUTHORIZED_SERVICE_PROXY", "The service is not authorized to perform proxy authentication",
                     account_id=row.account_id, service=row.service, client_ip=client_ip, now=now)
    if registry.match_cas_service(pgt_url) is None:
        return _fail("INVALID_PROXY_CALLBACK", "The proxy callback URL is not a registered service",
                     account_id=row.account_id, service=row.service, client_ip=client_ip, now=now)
    pgt = tickets.issue("PGT", session_id=row.session_id, account_id=row.account_id, service=pgt_url,
                        service_id=row.service_id, lifetime=settings.pgt_lifetime, now=now,
                        proxies=[pgt_url] + list(row.proxies or []))
    iou = tickets.new_id("PGTIOU", 40)
    db.session.commit()
    outcome = callbacks.get(pgt_url, {"pgtId": pgt.ticket, "pgtIou": iou}, timeout=settings.callback_timeout,
                            allow_loopback=settings.allow_loopback)
    if not outcome.ok:
        db.session.delete(pgt.row)
        db.session.commit()
        return _fail("INVALID_PROXY_CALLBACK", f"The proxy callback failed: {outcome.detail}",
                     account_id=row.account_id, service=row.service, client_ip=client_ip, now=now)
    return iou


def proxy(pgt: str | None, target_service: str | None, policy: Policy, *, lifetime: int, now: dt.datetime,
          client_ip: str | None = None) -> str | Failure:
    """/proxy: a proxy ticket for a registered back-end service, from a live PGT."""
    if not pgt or not target_service:
        return _fail("INVALID_REQUEST", "'pgt' and 'targetService' parameters are both required",
                     service=target_service, client_ip=client_ip, now=now)
    row = tickets.find_pgt(pgt, now)
    if row is None:
        return _fail("INVALID_TICKET", f"Ticket {pgt[:64]} not recognized", service=target_service,
                     client_ip=client_ip, now=now)
    session = db.session.get(SsoSession, row.session_id)
    account = db.session.get(Account, row.account_id)
    # A PGT lives no longer than the SSO session it came from: logout, idle or absolute expiry.
    if session is None or not sso.still_alive(session, policy, now) or account is None \
            or has_left(account, policy, now):
        return _fail("INVALID_TICKET", f"Ticket {pgt[:64]} not recognized", service=target_service,
                     client_ip=client_ip, now=now)
    target = registry.match_cas_service(target_service)
    if target is None:
        return _fail("UNAUTHORIZED_SERVICE", "The target service is not registered", account_id=account.id,
                     service=target_service, client_ip=client_ip, now=now)
    if not provisioning.entitled(account, target):
        return _fail("UNAUTHORIZED_SERVICE", "The person is not provisioned for the target service",
                     account_id=account.id, service=target_service, client_ip=client_ip, now=now)
    try:
        issued = tickets.issue("PT", session_id=row.session_id, account_id=row.account_id, service=target_service,
                               service_id=target.id, lifetime=lifetime, now=now, proxies=list(row.proxies or []))
    except SharedStateUnavailable:
        return _fail("INTERNAL_ERROR", "The ticket store is unavailable; try again in a moment",
                     account_id=account.id, service=target_service, client_ip=client_ip, now=now)
    sso.add_participant(session, service_id=target.id, service_name=target.name, service_url=target_service,
                        ticket=issued.ticket, now=now)
    db.session.commit()
    return issued.ticket
