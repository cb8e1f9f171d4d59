"""Bearer tokens for the admin API (RFC 6750 §2.1: the Authorization header only, never the query string).

A token acts as the staff person who owns it (`idp staff token`), with that person's roles at the moment
of the request: a revoked token, an expired one, or one whose owner lost every role answers 401; a role the
owner does not hold answers 403.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import wraps

from flask import g, request
from flask_babel import gettext as _

from idp.api.errors import ApiError, challenge
from idp.core import helpdesk, staff
from idp.extensions import client_address_key
from idp.http.security import client_ip
from idp.models import Account


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's owner, their roles, and the audit actor acting for them."""

    account: Account
    roles: frozenset[str]
    actor: helpdesk.Actor


def bearer() -> str | None:
    """The token of `Authorization: Bearer <token>`; None when the header is absent or another scheme."""
    header = request.headers.get("Authorization", "")
    scheme, _sep, value = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip()


def rate_key() -> str:
    """What the per-caller rate limits count: the token (hashed; never stored), else the client address."""
    token = bearer()
    if token:
        return "api-token:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "api-" + client_address_key()


def _authenticate() -> Caller:
    token = bearer()
    if token is None:
        raise ApiError(401, "unauthorized", _("Send an API token: Authorization: Bearer <token>."),
                       headers=challenge())
    account = staff.authenticate_token(token) if token else None
    if account is None:
        raise ApiError(401, "invalid_token",
                       _("The API token is unknown, revoked or expired, or its owner no longer has a console "
                         "role."),
                       headers=challenge("invalid_token", "The access token is invalid"))
    actor = helpdesk.Actor.of(account, client_ip=client_ip(), via="api")
    return Caller(account, frozenset(staff.roles_of(account)), actor)


def token_required(role: str = "helpdesk"):
    """The view runs only for a valid token whose owner holds `role`; `caller()` is who that is."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            who = _authenticate()
            if role not in who.roles:
                raise ApiError(403, "insufficient_role", _(
                    "This needs the %(role)s role, which the token's owner does not hold.", role=role),
                               headers=challenge("insufficient_scope", f"The {role} role is required"))
            g.api_caller = who
            return view(*args, **kwargs)

        wrapper.required_role = role  # read by the OpenAPI test: the document says which role each route needs
        return wrapper

    return decorate


def caller() -> Caller:
    return g.api_caller
