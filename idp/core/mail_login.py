"""Password logins on behalf of a mail service (Dovecot): the person's own password, checked by the IdP.

An IMAP client cannot be sent to the login page, so the mail server asks the IdP instead
(`POST /mail/verify-password`, docs/mail.md). Only services whose registry entry lists the grant type
`password_verification` may ask, with their own client credentials; the IMAP client's address comes from
them and is trusted because they authenticated.

The check itself is the login page's: core/authn.py `authenticate` (the same throttle per typed
identifier and per client address, the same lockout, the same audit events, with the mail service's
name in them). What the login page does after a correct password and before any ticket is mirrored here
as refusals, because a mail program can show a sentence but no page: a temporary or expired password
must first be changed on the web, a policy that asks everyone for a second factor cannot be met with a
password alone, and a service that requires an entitlement refuses people without it.
"""
from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

from idp.core import accounts, audit, authn, provisioning
from idp.core.clock import utcnow
from idp.core.policy import Policy
from idp.core.registry import PASSWORD_VERIFICATION, client_secret_hash
from idp.extensions import db
from idp.models import Account, AuditEvent, Service

#: Refusals the person may be told about (their password was right); the mail server shows the reason.
AFTER_CORRECT_PASSWORD = frozenset({"account_left", "not_provisioned", "password_change_required",
                                    "second_factor_required"})
#: Longest identifier and password accepted (the login form's limits).
MAX_IDENTIFIER = 254


@dataclass(frozen=True)
class Verdict:
    """The answer for the mail service. `reason` (None on success) is one of "invalid_credentials",
    "throttled" or AFTER_CORRECT_PASSWORD — the login page's distinctions, never more: a wrong password,
    an unknown login and any password on a locked account are all "invalid_credentials" (authn's rule)."""

    reason: str | None
    account: Account | None = None
    #: The name the mail server uses for the mailbox (the policy's canonical identifier, as `preferred_username`
    #: in ID tokens and the introspection's `username`, so password and token logins reach the same mailbox).
    username: str | None = None
    #: The audit event of a refusal after a correct password (its reference code is shown).
    event: AuditEvent | None = None
    retry_after: int | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


class ClientRefused(Exception):
    """The caller is not a registered mail service: `code` is "invalid_client" (unknown client or wrong
    secret) or "unauthorized_client" (a registered client without `password_verification`)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def mail_service(client_id: str, client_secret: str, secret_key: str, *, client_ip: str | None) -> Service:
    """The registered mail service these credentials (HTTP Basic) belong to; refusals are audited."""
    svc = None
    if client_id and client_secret:
        svc = db.session.scalar(db.select(Service).where(Service.protocol == "oidc",
                                                         Service.client_id == client_id))
    if svc is None or svc.client_secret_hash is None or not hmac.compare_digest(
            client_secret_hash(client_secret, secret_key), svc.client_secret_hash):
        _refuse_client("invalid_client", client_id, client_ip)
    if PASSWORD_VERIFICATION not in (svc.grant_types or []):
        _refuse_client("unauthorized_client", client_id, client_ip, service=svc.name)
    return svc


def _refuse_client(code: str, client_id: str, client_ip: str | None, *, service: str | None = None):
    data = {"client_id": (client_id or "")[:100]}
    if service:
        data["service"] = service
    audit.record("mail.verify.client_refused", actor="anonymous", reason=code, client_ip=client_ip, data=data)
    raise ClientRefused(code)


def verify(service: Service, identifier: str, password: str, policy: Policy, *, client_ip: str | None,
           protocol: str | None = None, now: dt.datetime | None = None) -> Verdict:
    """Check a person's password for `service`, as the login page would, and say what the mail server may
    do. `client_ip` is the IMAP client's address as the mail service reports it (None: unknown — the
    per-address rules then do not apply, rather than counting every person behind the mail server's own
    address)."""
    now = now or utcnow()
    result = authn.authenticate(identifier, password, policy, client_ip=client_ip, service=service.name, now=now)
    if result.throttled:
        return Verdict("throttled", retry_after=result.retry_after or 1)
    if result.password_was_correct:
        return Verdict(result.reason, account=result.account, event=result.event)
    if not result.ok:
        return Verdict("invalid_credentials")
    account = result.account
    refusal = None
    if policy.data["mfa"]["required_for"] == "everyone":
        refusal = ("second_factor_required", "second_factor_required")
    elif account.password_temporary:
        refusal = ("password_change_required", "temporary")
    elif accounts.password_expired(account, policy, now):
        refusal = ("password_change_required", "password_expired")
    elif not provisioning.entitled(account, service):
        refusal = ("not_provisioned", "not_entitled")
    if refusal is not None:
        data = {"service": service.name}
        if protocol:
            data["protocol"] = protocol
        event = audit.record("mail.login.refused", account_id=account.id, reason=refusal[1], client_ip=client_ip,
                             now=now, data=data)
        return Verdict(refusal[0], account=account, event=event)
    return Verdict(None, account=account, username=accounts.canonical_username(account, policy))
