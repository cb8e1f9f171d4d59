from __future__ import annotations

import datetime as dt
import unicodedata
import uuid

from sqlalchemy import JSON, ForeignKey, String, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.extensions import db


class Account(db.Model):
    """A person as the SIS export describes them, plus what the IdP adds (password, status)."""

    __tablename__ = "account"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: The SIS key: the import upserts by it; also an identifier where the policy allows it.
    album: Mapped[str] = mapped_column(String(32), unique=True)
    #: OIDC `sub`: random, stable for life, never an e-mail address (addresses change).
    subject: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # student | teacher | staff
    #: HMAC-SHA256 of the PESEL with the instance's key; the PESEL itself is never stored.
    pesel_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    birth_date: Mapped[dt.date | None]
    #: Service names the SIS provisioned the person for; None: the registry's default for the role.
    entitlements: Mapped[list | None] = mapped_column(JSON)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    #: Set by `idp users set-password --temporary` or first-login policy: change before any ticket.
    password_temporary: Mapped[bool] = mapped_column(default=False)
    password_changed_at: Mapped[dt.datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | left
    #: First import that no longer listed the person; they log in until the policy's grace period ends.
    left_at: Mapped[dt.datetime | None]
    #: Wrong passwords in a row since the last success; the policy's threshold locks the account.
    failed_logins: Mapped[int] = mapped_column(default=0)
    #: Password logins are refused until then (a wrong password never says so: see core/authn.py).
    locked_until: Mapped[dt.datetime | None]
    #: Temporary locks in a row without a successful login in between: each lasts twice the one before.
    lockouts: Mapped[int] = mapped_column(default=0)
    #: Locked until the helpdesk unlocks it (policy `permanent_lockout_after`); locked_until is None then.
    locked_permanently: Mapped[bool] = mapped_column(default=False)
    #: The last counted wrong password: a run older than `failure_reset_hours` no longer counts.
    last_failed_at: Mapped[dt.datetime | None]
    #: When an SIS import last changed the person (ImportRun.started_at of that run); None: never imported.
    imported_at: Mapped[dt.datetime | None]
    #: Merged by the helpdesk into this account (the survivor); a merged account no longer logs in.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("account.id", ondelete="SET NULL"))
    #: "first last" folded (no diacritics, lower case): the helpdesk's name search. Kept by a listener below.
    name_key: Mapped[str] = mapped_column(String(201), index=True, default="")
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    identifiers: Mapped[list[Identifier]] = relationship(
        back_populates="account", cascade="all, delete-orphan", order_by="Identifier.id")

    def identifier(self, kind: str) -> str | None:
        """The first identifier of a kind (university_email, private_email), or None."""
        return next((i.value for i in self.identifiers if i.kind == kind), None)

    def aliases(self) -> list[str]:
        return [i.value for i in self.identifiers if i.kind == "alias"]

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


#: Letters NFKD does not decompose into a base letter and a mark.
_FOLD_EXTRA = str.maketrans({"ł": "l", "Ł": "l", "đ": "d", "ø": "o", "ß": "ss"})


def fold_name(text: str) -> str:
    """Lower case without diacritics ("Łukasz Żółć" -> "lukasz zolc"), spaces collapsed: how people
    type a name they heard on the phone."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD_EXTRA))
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(bare.lower().split())


@event.listens_for(Account, "before_insert")
@event.listens_for(Account, "before_update")
def _keep_name_key(_mapper, _connection, account: Account) -> None:
    account.name_key = fold_name(f"{account.first_name or ''} {account.last_name or ''}")[:201]


class Identifier(db.Model):
    """One login identifier (an e-mail address or alias): belongs to exactly one account."""

    __tablename__ = "identifier"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24))  # university_email | private_email | alias
    #: Normalised: stripped, lower-cased (e-mail addresses compare case-insensitively here).
    value: Mapped[str] = mapped_column(String(254), unique=True)
    #: Where it came from: `sis` (the import owns it and removes it when the export stops listing it),
    #: `helpdesk` (added in the console) or `merge` (moved from a merged account): imports keep those two.
    source: Mapped[str] = mapped_column(String(16), default="sis")

    account: Mapped[Account] = relationship(back_populates="identifiers")


class PasswordHistory(db.Model):
    """Earlier password hashes of an account, for the policy's "different from previous ones" rule."""

    __tablename__ = "password_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"), index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    #: When this password stopped being the current one.
    replaced_at: Mapped[dt.datetime]
