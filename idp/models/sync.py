from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.extensions import db


class ImportRun(db.Model):
    """One `idp users import`: the "last data migration" people see, and what it changed."""

    __tablename__ = "import_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    source: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))  # ok | rejected
    added: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    #: People in the database but missing from this export: marked as left (never deleted).
    left: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list | None] = mapped_column(JSON)
