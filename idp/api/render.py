"""What the admin API answers with: people, their situation, events and services as plain JSON values.

Never a PESEL, its keyed hash, a date of birth, a password hash, a TGT hash, a ticket or a client secret.
Times are UTC, ISO 8601 with a trailing Z (as `idp audit export` writes them).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from idp.core import audit, helpdesk, linking, sso
from idp.http.event_words import reason_words
from idp.models import Account, AuditEvent, Identifier, PendingLink, Service, SsoSession, UpstreamIdentity


def when(moment: dt.datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def person_ref(account: Account | None) -> dict[str, Any] | None:
    """Just enough to name another account (merged into / from, a pending link's target)."""
    if account is None:
        return None
    return {"album": account.album, "name": account.display_name}


def person_summary(account: Account) -> dict[str, Any]:
    """One search result."""
    return {"album": account.album, "name": account.display_name, "first_name": account.first_name,
            "last_name": account.last_name, "role": account.role, "status": account.status,
            "university_email": account.identifier("university_email"),
            "merged_into": account.merged_into_id is not None}


def identifier(ident: Identifier, login_kinds: set[str]) -> dict[str, Any]:
    return {"id": ident.id, "kind": ident.kind, "value": ident.value, "logs_in": ident.kind in login_kinds,
            "source": ident.source or "sis"}


def identity(u: UpstreamIdentity) -> dict[str, Any]:
    return {"id": u.id, "provider": u.provider, "provider_label": linking.label(u.provider), "subject": u.subject,
            "email": u.email, "linked_by": u.linked_by, "linked_at": when(u.linked_at),
            "last_login_at": when(u.last_login_at)}


def pending_link(p: PendingLink, account: Account | None = None) -> dict[str, Any]:
    return {"id": p.id, "kind": p.kind, "provider": p.provider, "provider_label": linking.label(p.provider),
            "subject": p.subject, "email": p.email, "name": p.name, "account": person_ref(account),
            "created_at": when(p.created_at), "expires_at": when(p.expires_at),
            "resolution": p.resolution, "resolved_at": when(p.resolved_at)}


def session(s: SsoSession, participants) -> dict[str, Any]:
    return {"sid": s.sid, "auth_time": when(s.auth_time), "last_used_at": when(s.last_used_at),
            "expires_at": when(s.expires_at), "client_ip": s.client_ip,
            "apps": [{"service": a.service_name, "tickets": a.tickets, "logout_status": a.logout_status}
                     for a in sso.apps_summary(participants)]}


def event(e: AuditEvent) -> dict[str, Any]:
    """An audit event as the export writes it, plus its reason in words (the reader's language)."""
    return {**audit.as_dict(e), "reason_words": reason_words(e.reason)}


def overview(view: helpdesk.PersonOverview, login_kinds: set[str]) -> dict[str, Any]:
    a = view.account
    last_import = view.last_import
    return {
        "album": a.album, "subject": a.subject, "name": a.display_name, "first_name": a.first_name,
        "last_name": a.last_name, "role": a.role, "roles": sorted(view.roles),
        "status": list(view.status), "locked_until": when(view.locked_until), "left_at": when(view.left_at),
        "failed_logins": view.failed_streak, "locked_permanently": view.locked_permanently,
        "lockouts": view.lockouts, "delayed_until": when(view.delayed_until),
        "password_temporary": bool(a.password_temporary),
        "password_changed_at": when(a.password_changed_at), "has_password": a.password_hash is not None,
        "album_logs_in": "album" in login_kinds and a.merged_into_id is None,
        "merged_into": person_ref(view.merged_into), "merged_from": [person_ref(m) for m in view.merged_from],
        "last_import": None if last_import is None else {
            "id": last_import.id, "started_at": when(last_import.started_at),
            "finished_at": when(last_import.finished_at), "source": last_import.source},
        "identifiers": [identifier(i, login_kinds) for i in a.identifiers],
        "reset_addresses": list(view.addresses),
        "entitlements": [{"service": s.name, "protocol": s.protocol, "entitled": bool(ok)}
                         for s, ok in view.entitlements],
        "identities": [identity(u) for u in view.identities],
        "pending_links": [pending_link(p) for p in view.pending],
        "sessions": [session(s, parts) for s, parts in view.sessions],
        "events": [event(e) for e in view.events],
    }


def service(s: Service) -> dict[str, Any]:
    """A registered service as the registry file defines it, without its client secret."""
    out: dict[str, Any] = {"name": s.name, "protocol": s.protocol, "requires_entitlement": s.requires_entitlement,
                           "default_roles": s.default_roles, "attributes": list(s.attributes or [])}
    if s.protocol == "cas":
        out.update(service_pattern=s.service_pattern, logout_url=s.logout_url,
                   username_attribute=s.username_attribute, allow_proxy=s.allow_proxy)
    else:
        out.update(client_id=s.client_id, public_client=s.client_secret_hash is None,
                   redirect_uris=list(s.redirect_uris or []), scopes=list(s.scopes or []),
                   grant_types=list(s.grant_types or []),
                   post_logout_redirect_uris=list(s.post_logout_redirect_uris or []),
                   backchannel_logout_uri=s.backchannel_logout_uri, first_party=s.first_party,
                   id_token_signed_response_alg=s.id_token_signed_response_alg)
    out["updated_at"] = when(s.updated_at)
    return out
