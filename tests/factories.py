"""Test data with sensible defaults; override only what a test is about."""
from __future__ import annotations

import datetime as dt

from idp.core import pesel as pesel_mod
from idp.core.clock import utcnow
from idp.core.passwords import hasher
from idp.extensions import db
from idp.models import Account, Identifier

PASSWORD = "Korsarz-Wisła-1987-Tramwaj"
PESEL = "04231512341"


def create_account(album: str = "12345", *, first_name: str = "Łukasz", last_name: str = "Żółkiewski",
                   role: str = "student", university_email: str | None = "lukasz.zolkiewski@student.example.edu.pl",
                   private_email: str | None = "lukasz.z@example.com", aliases: tuple[str, ...] = ("s12345@student.example.edu.pl",),
                   password: str | None = PASSWORD, temporary: bool = False, pesel: str | None = PESEL,
                   entitlements: list[str] | None = None, status: str = "active") -> Account:
    from flask import current_app

    now = utcnow()
    account = Account(album=album, first_name=first_name, last_name=last_name, role=role, created_at=now,
                      updated_at=now, entitlements=entitlements, status=status, password_temporary=temporary,
                      pesel_hash=pesel_mod.keyed_hash(pesel, current_app.config["PESEL_KEY"]) if pesel else None,
                      birth_date=pesel_mod.birth_date(pesel) if pesel else dt.date(2000, 1, 1))
    if university_email:
        account.identifiers.append(Identifier(kind="university_email", value=university_email.lower()))
    if private_email:
        account.identifiers.append(Identifier(kind="private_email", value=private_email.lower()))
    for alias in aliases:
        account.identifiers.append(Identifier(kind="alias", value=alias.lower()))
    if password:
        account.password_hash = hasher().hash(password)
        account.password_changed_at = now
    db.session.add(account)
    db.session.commit()
    return account
