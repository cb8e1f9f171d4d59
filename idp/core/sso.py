"""The single-sign-on session shared by CAS and OIDC: start, find, extend, end, and logout fan-out.

The browser holds only a random TGT; the server keeps the session (by the TGT's digest), so logout or
expiry kills it everywhere, and a replayed cookie after logout finds nothing.
"""
from __future__ import annotations

import datetime as dt
import html
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from flask import current_app, has_app_context

from idp.core import audit, callbacks
from idp.core.clock import utcnow
from idp.core.policy import Policy
from idp.core.tickets import digest, new_id
from idp.extensions import commit_keeping_loaded, db
from idp.models import Account, AuthorizationCode, OAuthToken, Service, SessionParticipant, SsoSession, Ticket


@dataclass(frozen=True)
class Started:
    session: SsoSession
    tgt: str  # goes into the cookie, nowhere else


def start(account: Account, policy: Policy, *, warn: bool, client_ip: str | None,
          now: dt.datetime | None = None, replaces: SsoSession | None = None) -> Started:
    """A new session (new id) for a fresh authentication. A replaced session hands over its apps,
    so single logout still reaches them, and dies without a logout round."""
    now = now or utcnow()
    tgt = new_id("TGT", 40)
    session = SsoSession(
        id=digest(tgt), account_id=account.id, auth_time=now, last_used_at=now,
        expires_at=now + dt.timedelta(hours=policy.data["session"]["absolute_hours"]), warn=warn,
        client_ip=client_ip)
    db.session.add(session)
    db.session.flush()
    if replaces is not None and replaces.ended_at is None:
        if replaces.account_id == account.id:
            # Same person, fresh credentials: not a logout. The apps and their live tickets (above all
            # the PGTs of proxying apps) move to the new session and die when *it* ends (§3.3.1).
            db.session.execute(db.update(SessionParticipant)
                               .where(SessionParticipant.session_id == replaces.id)
                               .values(session_id=session.id))
            db.session.execute(db.update(Ticket)
                               .where(Ticket.session_id == replaces.id)
                               .values(session_id=session.id))
            # OIDC tokens and codes too; and the public sid stays the same, so a later back-channel
            # logout token names the sid the clients were given (Back-Channel Logout 1.0 §2.7).
            db.session.execute(db.update(OAuthToken).where(OAuthToken.session_id == replaces.id)
                               .values(session_id=session.id))
            db.session.execute(db.update(AuthorizationCode).where(AuthorizationCode.session_id == replaces.id)
                               .values(session_id=session.id))
            sid = replaces.sid
            replaces.sid = secrets.token_urlsafe(16)
            db.session.flush()
            session.sid = sid
            _end_row(replaces, "reauthenticated", now)
        else:
            # Another person logs in on this browser: the previous one is logged out properly.
            db.session.commit()
            end(replaces, reason="replaced", now=now)
    audit.record("sso.started", account_id=account.id, client_ip=client_ip, now=now, commit=False)
    commit_keeping_loaded()  # the caller goes on with the session, the account and the service at once
    return Started(session, tgt)


def find(tgt: str | None, policy: Policy, now: dt.datetime | None = None, touch: bool = True) -> SsoSession | None:
    """The live session behind a TGT, honouring idle and absolute lifetimes."""
    if not tgt or not tgt.startswith("TGT-") or len(tgt) > 64:
        return None
    now = now or utcnow()
    session = db.session.get(SsoSession, digest(tgt))
    if session is None or session.ended_at is not None:
        return None
    if not still_alive(session, policy, now):
        return None
    account = db.session.get(Account, session.account_id)
    if account is None or _left(account, policy, now):
        end(session, reason="account_inactive", now=now)
        return None
    if touch and now - session.last_used_at >= TOUCH_EVERY:
        session.last_used_at = now
        db.session.commit()
    return session


#: How stale last_used_at may be: idle lifetimes are minutes long, so a session in busy use is written
#: at most every 30 seconds rather than on every request (each write is a commit on the hot login path).
TOUCH_EVERY = dt.timedelta(seconds=30)


def still_alive(session: SsoSession, policy: Policy, now: dt.datetime) -> bool:
    """False when the session has ended or is past its idle or absolute lifetime (then it is ended now,
    with single logout, whoever noticed: the browser coming back or an app using a PGT)."""
    if session.ended_at is not None:
        return False
    idle = dt.timedelta(minutes=policy.data["session"]["idle_minutes"])
    if session.expires_at <= now or session.last_used_at + idle <= now:
        end(session, reason="expired", now=now)
        return False
    return True


def _left(account: Account, policy: Policy, now: dt.datetime) -> bool:
    from idp.core.accounts import has_left  # accounts imports sso (password change ends sessions)

    return has_left(account, policy, now)


def add_participant(session: SsoSession, *, service_id: int | None, service_name: str, service_url: str,
                    ticket: str, now: dt.datetime, protocol: str = "cas") -> None:
    """Remember an app that got a ticket (CAS) or a code (OIDC) in this session, for single logout.
    OIDC clients are remembered once per session; CAS services once per ticket (SessionIndex)."""
    if protocol != "cas":
        exists = db.session.scalar(db.select(SessionParticipant.id).where(
            SessionParticipant.session_id == session.id, SessionParticipant.service_id == service_id,
            SessionParticipant.protocol == protocol, SessionParticipant.logout_status.is_(None)))
        if exists:
            return
    db.session.add(SessionParticipant(session_id=session.id, service_id=service_id, service_name=service_name,
                                      service_url=service_url, ticket=ticket, created_at=now, protocol=protocol))


#: A participant's back-channel logout message: (URL, form fields), or None when it has no logout URL.
LogoutMessage = Callable[[SessionParticipant, Service | None, SsoSession, dt.datetime],
                         tuple[str, dict[str, str]] | None]
_LOGOUT_MESSAGES: dict[str, LogoutMessage] = {}


def register_logout_message(protocol: str, builder: LogoutMessage) -> None:
    """Protocols add their own message (the OIDC logout token) without core knowing the protocol."""
    _LOGOUT_MESSAGES[protocol] = builder


def _cas_logout_message(p: SessionParticipant, svc, session: SsoSession, now: dt.datetime):
    target = svc.logout_url if svc and svc.logout_url else p.service_url
    return target, {"logoutRequest": logout_request_xml(p.ticket, now)}


register_logout_message("cas", _cas_logout_message)


def _end_row(session: SsoSession, reason: str, now: dt.datetime) -> None:
    session.ended_at = now
    session.end_reason = reason
    # PGTs die with the session (CAS 3.0 §3.3.1); unused STs too.
    db.session.execute(db.update(Ticket).where(Ticket.session_id == session.id, Ticket.expires_at > now)
                       .values(expires_at=now))
    # OIDC access and refresh tokens of the session die with it: one logout ends every app.
    db.session.execute(db.update(OAuthToken).where(OAuthToken.session_id == session.id,
                                                   OAuthToken.revoked_at.is_(None)).values(revoked_at=now))


def logout_request_xml(session_index: str, now: dt.datetime) -> str:
    """CAS 3.0 Appendix C. Kept small: mod_auth_cas reads the POST through a 1024-byte buffer."""
    return ('<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            f'ID="LR-{secrets.token_hex(8)}" Version="2.0" IssueInstant="{now.strftime("%Y-%m-%dT%H:%M:%SZ")}">'
            '<saml:NameID>@NOT_USED@</saml:NameID>'
            f'<samlp:SessionIndex>{html.escape(session_index)}</samlp:SessionIndex></samlp:LogoutRequest>')


def _callback_defaults(timeout: float | None, allow_loopback: bool | None,
                       budget: float | None) -> tuple[float, bool, float]:
    """Explicit arguments win; otherwise the app's CALLBACK_TIMEOUT and ALLOW_LOOPBACK_CALLBACKS, so a
    session ended by expiry or by another person's login notifies apps exactly as /logout does."""
    cfg = current_app.config if has_app_context() else {}
    if timeout is None:
        timeout = float(cfg.get("CALLBACK_TIMEOUT", 3.0))
    if allow_loopback is None:
        allow_loopback = bool(cfg.get("ALLOW_LOOPBACK_CALLBACKS", False))
    if budget is None:
        budget = fanout_budget(timeout)
    return timeout, allow_loopback, budget


def fanout_budget(timeout: float) -> float:
    """The whole logout fan-out: two per-call timeouts (connect + read), never more than 5 s."""
    return min(5.0, 2 * timeout)


def end(session: SsoSession, *, reason: str, now: dt.datetime | None = None, actor: str = "self",
        client_ip: str | None = None, timeout: float | None = None, allow_loopback: bool | None = None,
        budget: float | None = None) -> list[SessionParticipant]:
    """End the session and notify every app that got a ticket in it, in parallel.

    Each POST has its own timeout and the whole fan-out a budget: a dead app never blocks logout
    (CAS 3.0 §2.3.3.1: "fire and forget"). Returns the participants with their delivery status.
    """
    timeout, allow_loopback, budget = _callback_defaults(timeout, allow_loopback, budget)
    now = now or utcnow()
    if session.ended_at is None:
        _end_row(session, reason, now)
        audit.record("sso.ended", actor=actor, account_id=session.account_id, reason=reason,
                     client_ip=client_ip, now=now, commit=False)
    db.session.commit()
    participants = list(db.session.scalars(
        db.select(SessionParticipant).where(SessionParticipant.session_id == session.id,
                                            SessionParticipant.logout_status.is_(None))))
    if not participants:
        return []
    jobs = {}
    pool = ThreadPoolExecutor(max_workers=min(8, len(participants)))
    skipped = set()
    for p in participants:
        svc = db.session.get(Service, p.service_id) if p.service_id else None
        builder = _LOGOUT_MESSAGES.get(p.protocol)
        message = builder(p, svc, session, now) if builder else None
        if message is None:
            skipped.add(p.id)
            continue
        target, body = message
        jobs[p.id] = pool.submit(callbacks.post_form, target, body, timeout=timeout,
                                 allow_loopback=allow_loopback,
                                 accepted=callbacks.CAS_SLO_ACCEPTED if p.protocol == "cas" else None)
    wait(jobs.values(), timeout=budget)
    pool.shutdown(wait=False, cancel_futures=True)  # stragglers end on their own timeout
    for p in participants:
        if p.id in skipped:
            p.logout_status, p.logout_detail = "skipped", "no back-channel logout URL registered"
            continue
        fut = jobs[p.id]
        if fut.done():
            try:  # CAS 3.0 §2.3.3.1: errors of single logout are ignored, whatever they are
                outcome = fut.result()
                p.logout_status, p.logout_detail = outcome.status, outcome.detail
            except Exception as exc:  # noqa: BLE001
                p.logout_status, p.logout_detail = "failed", type(exc).__name__
        else:
            p.logout_status, p.logout_detail = "failed", "timeout"
        if p.logout_status != "delivered":
            audit.record(f"{p.protocol}.slo.failed", actor="idp", account_id=session.account_id, reason=p.logout_status,
                         data={"service": p.service_name, "detail": p.logout_detail}, now=now, commit=False)
    db.session.commit()
    return participants


@dataclass(frozen=True)
class AppStatus:
    """One app of a session as a person sees it: its name and whether it confirmed logout."""

    service_name: str
    logout_status: str | None  # delivered only when every back-channel message to it was delivered
    tickets: int


def apps_summary(rows: list[SessionParticipant]) -> list[AppStatus]:
    """One entry per app (in the order first used), however many tickets it got in the session."""
    order: list[str] = []
    statuses: dict[str, list[str | None]] = {}
    for p in rows:
        if p.service_name not in statuses:
            order.append(p.service_name)
            statuses[p.service_name] = []
        statuses[p.service_name].append(p.logout_status)
    out = []
    for name in order:
        seen = statuses[name]
        problems = [s for s in seen if s not in (None, "delivered")]
        if problems:
            status = problems[0]
        elif seen and all(s == "delivered" for s in seen):
            status = "delivered"
        else:
            status = None
        out.append(AppStatus(name, status, len(seen)))
    return out


def participants(session: SsoSession) -> list[SessionParticipant]:
    return list(db.session.scalars(db.select(SessionParticipant)
                                   .where(SessionParticipant.session_id == session.id)
                                   .order_by(SessionParticipant.id)))


def sessions_of(account: Account, policy: Policy, now: dt.datetime | None = None) -> list[SsoSession]:
    """The account's live sessions, most recently used first. Sessions past their idle or absolute
    lifetime are left out (and ended now, with single logout, as still_alive does)."""
    now = now or utcnow()
    rows = db.session.scalars(db.select(SsoSession)
                              .where(SsoSession.account_id == account.id, SsoSession.ended_at.is_(None))
                              .order_by(SsoSession.last_used_at.desc(), SsoSession.auth_time.desc()))
    return [s for s in list(rows) if still_alive(s, policy, now)]
