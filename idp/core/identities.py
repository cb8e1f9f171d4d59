"""A person's own linked upstream identities: list them, unlink one.

Linking (the "already exists" proof, pending links) lives in linking.py; this module only reads and
removes links on behalf of the account that owns them (the self-service page, later the helpdesk).
"""
from __future__ import annotations

import datetime as dt

from flask_babel import lazy_gettext as _l

from idp.core import audit
from idp.core.clock import utcnow
from idp.core.errors import DomainError
from idp.extensions import db
from idp.models import Account, UpstreamIdentity


class LastWayToLogIn(DomainError):
    """Unlinking would leave the account with no way to log in (no password, no other link)."""

    code = "last_way_to_log_in"


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
