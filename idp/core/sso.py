"""The single-sign-on session shared by CAS and OIDC: start, find, extend, end, and logout fan-out.

The browser holds only a random TGT; the server keeps the session (by the TGT's digest), so logout or
expiry kills it everywhere, and a replayed cookie after logout finds nothing.
"""
from __future__ import annotations

import datetime as dt
import html
import secrets
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from idp.core import audit, callbacks
from idp.core.clock import utcnow
from idp.core.policy import Policy
from idp.core.tickets import digest, new_id
from idp.extensions import db
from idp.models import Account, SessionParticipant, SsoSession, Ticket


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
            db.session.execute(db.update(SessionParticipant)
                               .where(SessionParticipant.session_id == replaces.id)
                               .values(session_id=session.id))
            _end_row(replaces, "reauthenticated", now)
        else:
            # Another person logs in on this browser: the previous one is logged out properly.
            db.session.commit()
            end(replaces, reason="replaced", now=now)
    audit.record("sso.started", account_id=account.id, client_ip=client_ip, now=now, commit=False)
    db.session.commit()
    return Started(session, tgt)


def find(tgt: str | None, policy: Policy, now: dt.datetime | None = None, touch: bool = True) -> SsoSession | None:
    """The live session behind a TGT, honouring idle and absolute lifetimes."""
    if not tgt or not tgt.startswith("TGT-") or len(tgt) > 64:
        return None
    now = now or utcnow()
    session = db.session.get(SsoSession, digest(tgt))
    if session is None or session.ended_at is not None:
        return None
    idle = dt.timedelta(minutes=policy.data["session"]["idle_minutes"])
    if session.expires_at <= now or session.last_used_at + idle <= now:
        end(session, reason="expired", now=now)
        return None
    account = db.session.get(Account, session.account_id)
    if account is None or account.status != "active":
        end(session, reason="account_inactive", now=now)
        return None
    if touch:
        session.last_used_at = now
        db.session.commit()
    return session


def add_participant(session: SsoSession, *, service_id: int | None, service_name: str, service_url: str,
                    ticket: str, now: dt.datetime) -> None:
    db.session.add(SessionParticipant(session_id=session.id, service_id=service_id, service_name=service_name,
                                      service_url=service_url, ticket=ticket, created_at=now))


def _end_row(session: SsoSession, reason: str, now: dt.datetime) -> None:
    session.ended_at = now
    session.end_reason = reason
    # PGTs die with the session (CAS 3.0 §3.3.1); unused STs too.
    db.session.execute(db.update(Ticket).where(Ticket.session_id == session.id, Ticket.expires_at > now)
                       .values(expires_at=now))


def logout_request_xml(session_index: str, now: dt.datetime) -> str:
    """CAS 3.0 Appendix C. Kept small: mod_auth_cas reads the POST through a 1024-byte buffer."""
    return ('<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" '
            f'ID="LR-{secrets.token_hex(8)}" Version="2.0" IssueInstant="{now.strftime("%Y-%m-%dT%H:%M:%SZ")}">'
            '<saml:NameID>@NOT_USED@</saml:NameID>'
            f'<samlp:SessionIndex>{html.escape(session_index)}</samlp:SessionIndex></samlp:LogoutRequest>')


def end(session: SsoSession, *, reason: str, now: dt.datetime | None = None, actor: str = "self",
        client_ip: str | None = None, timeout: float = 3.0, allow_loopback: bool = False,
        budget: float = 5.0) -> list[SessionParticipant]:
    """End the session and notify every app that got a ticket in it, in parallel.

    Each POST has its own timeout and the whole fan-out a budget: a dead app never blocks logout
    (CAS 3.0 §2.3.3.1: "fire and forget"). Returns the participants with their delivery status.
    """
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
    from idp.models import Service  # local: avoid a cycle at import time

    jobs = {}
    pool = ThreadPoolExecutor(max_workers=min(8, len(participants)))
    for p in participants:
        svc = db.session.get(Service, p.service_id) if p.service_id else None
        target = (svc.logout_url if svc and svc.logout_url else p.service_url)
        body = {"logoutRequest": logout_request_xml(p.ticket, now)}
        jobs[p.id] = pool.submit(callbacks.post_form, target, body, timeout=timeout,
                                 allow_loopback=allow_loopback)
    wait(jobs.values(), timeout=budget)
    pool.shutdown(wait=False, cancel_futures=True)  # stragglers end on their own timeout
    for p in participants:
        fut = jobs[p.id]
        if fut.done():
            outcome = fut.result()
            p.logout_status, p.logout_detail = outcome.status, outcome.detail
        else:
            p.logout_status, p.logout_detail = "failed", "timeout"
        if p.logout_status != "delivered":
            audit.record("cas.slo.failed", actor="idp", account_id=session.account_id, reason=p.logout_status,
                         data={"service": p.service_name, "detail": p.logout_detail}, now=now, commit=False)
    db.session.commit()
    return participants


def participants(session: SsoSession) -> list[SessionParticipant]:
    return list(db.session.scalars(db.select(SessionParticipant)
                                   .where(SessionParticipant.session_id == session.id)
                                   .order_by(SessionParticipant.id)))
