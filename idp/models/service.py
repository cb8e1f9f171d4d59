from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class Service(db.Model):
    """A relying app from the registry file: a CAS service or an OIDC client."""

    __tablename__ = "service"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    protocol: Mapped[str] = mapped_column(String(8))  # cas | oidc
    #: Regular expression matched in full against the `service` URL (RE2: linear time).
    service_pattern: Mapped[str | None] = mapped_column(Text)
    attributes: Mapped[list] = mapped_column(JSON, default=list)
    logout_url: Mapped[str | None] = mapped_column(Text)
    requires_entitlement: Mapped[bool] = mapped_column(default=False)
    #: Roles entitled when a person's import row has no `entitlements` value; None: nobody.
    default_roles: Mapped[list | None] = mapped_column(JSON)
    username_attribute: Mapped[str | None] = mapped_column(String(32))
    #: May this service obtain proxy-granting tickets (pgtUrl)? CAS proxying is opt-out per service.
    allow_proxy: Mapped[bool] = mapped_column(default=True)
    client_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    #: SHA-256 of the client secret; None: a public client.
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    grant_types: Mapped[list] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    first_party: Mapped[bool] = mapped_column(default=False)
    #: RS256 (default, every client), ES256 or EdDSA where the client accepts it.
    id_token_signed_response_alg: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[dt.datetime]
