"""SIS import: validate a whole CSV export, then upsert it by album number in one transaction.

All-or-nothing per file: one bad row means nothing of the file is imported, and every bad row is
reported with its line number, so a registrar fixes the export once rather than row by row.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa

from idp.core import audit, linking, pesel
from idp.core.accounts import EMAIL_RE, normalise_identifier
from idp.core.clock import utcnow
from idp.extensions import db
from idp.models import Account, Identifier, ImportRun, Service

REQUIRED = ("album", "pesel", "first_name", "last_name", "university_email", "private_email", "role", "aliases")
OPTIONAL = ("birth_date", "entitlements")
ROLES = ("student", "teacher", "staff")
ALBUM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_-]{0,31}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class Row:
    line: int
    album: str
    first_name: str
    last_name: str
    role: str
    pesel_hash: str | None
    birth_date: dt.date | None
    identifiers: list[tuple[str, str]]  # (kind, normalised value)
    entitlements: list[str] | None


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    #: Accounts missing from this export, newly marked as left.
    left: int = 0
    #: Remembered upstream logins ("not recognized") now linked to an account this import brought.
    linked: int = 0
    errors: list[RowError] = field(default_factory=list)
    run: ImportRun | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class ImportFileError(Exception):
    """The file as a whole is unusable (not UTF-8, missing or unknown columns)."""


def read_rows(data: bytes) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and every non-blank row with the physical line it starts on (1 = the header).

    A quoted field may span lines, so a row's line is where it starts, not where the reader stopped.
    """
    try:
        text = data.decode("utf-8-sig")  # a BOM (Excel's habit) is tolerated
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"the file is not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        first = next(reader, None)
        while first == []:  # blank lines before the header
            first = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num}: the header is not valid CSV: {exc}") from None
    header = [h.strip() for h in (first or [])]
    if not header:
        raise ImportFileError("the file is empty: a header row is required")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError(f"missing column(s): {', '.join(missing)}")
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if unknown:
        raise ImportFileError(f"unknown column(s): {', '.join(repr(c) if not c else c for c in unknown)}")
    if len(set(header)) != len(header):
        raise ImportFileError("a column appears twice in the header")
    rows: list[tuple[int, dict[str, str]]] = []
    while True:
        line = reader.line_num + 1  # the row about to be read starts on the next physical line
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ImportFileError(f"line {line}: not valid CSV: {exc}") from None
        if not fields:  # a blank line
            continue
        if len(fields) > len(header):
            rows.append((line, {"__error__": "more fields than columns in the header"}))
        elif len(fields) < len(header):
            rows.append((line, {"__error__": f"fewer fields ({len(fields)}) than columns in the header "
                                             f"({len(header)})"}))
        else:
            rows.append((line, {k: v.strip() for k, v in zip(header, fields, strict=True)}))
    return header, rows


def _shown(value: str) -> str:
    """A value for an error message, unless it looks like a PESEL typed into the wrong column:
    error messages are printed and stored, and a PESEL is never kept in plain text."""
    return "(hidden: it looks like a PESEL)" if re.search(r"\d{11}", value) else repr(value)


#: Unicode categories no name may hold: control characters (tab and line breaks included) and lone surrogates.
_NOT_TEXT = frozenset({"Cc", "Cs"})


def _parse_row(line: int, raw: dict[str, str], pesel_key: str, errors: list[RowError]) -> Row | None:
    problems: list[str] = []
    if "__error__" in raw:
        errors.append(RowError(line, raw["__error__"]))
        return None
    album = raw["album"]
    if not ALBUM_RE.match(album):
        problems.append(f"album {_shown(album)} is not a valid album number")
    for key in ("first_name", "last_name"):
        if not raw[key]:
            problems.append(f"{key} is empty")
        elif any(unicodedata.category(c) in _NOT_TEXT for c in raw[key]):
            # A name goes into CAS XML, ID tokens and mail headers: XML 1.0 allows no control characters.
            problems.append(f"{key} contains a control character")
    role = raw["role"].lower()
    if role not in ROLES:
        problems.append(f"role {_shown(raw['role'])} must be one of {', '.join(ROLES)}")
    birth = None
    if raw.get("birth_date"):
        try:
            if not DATE_RE.match(raw["birth_date"]):  # fromisoformat also takes 20040315, 2004-W11-1 ...
                raise ValueError
            birth = dt.date.fromisoformat(raw["birth_date"])
        except ValueError:
            problems.append(f"birth_date {_shown(raw['birth_date'])} is not a date YYYY-MM-DD")
    pesel_hash = None
    if raw["pesel"]:
        why = pesel.problem(raw["pesel"])
        if why == "pesel_format":
            problems.append("pesel must be 11 digits")
        elif why == "pesel_checksum":
            problems.append("pesel has a wrong check digit")
        elif why == "pesel_date":
            problems.append("pesel encodes no real date of birth")
        else:
            encoded = pesel.birth_date(raw["pesel"])
            if birth and birth != encoded:
                problems.append("birth_date does not match the date encoded in pesel")
            birth = encoded
            pesel_hash = pesel.keyed_hash(raw["pesel"], pesel_key)
    elif birth is None:
        problems.append("birth_date is required when pesel is empty")
    identifiers: list[tuple[str, str]] = []
    for kind in ("university_email", "private_email"):
        if raw[kind]:
            if not EMAIL_RE.match(raw[kind]):
                problems.append(f"{kind} {_shown(raw[kind])} is not an e-mail address")
            else:
                identifiers.append((kind, normalise_identifier(raw[kind])))
    if not raw["university_email"] and not raw["private_email"]:
        problems.append("at least one of university_email and private_email is required")
    for alias in filter(None, (a.strip() for a in raw["aliases"].split(";"))):
        if not EMAIL_RE.match(alias):
            problems.append(f"alias {_shown(alias)} is not an e-mail address")
        else:
            identifiers.append(("alias", normalise_identifier(alias)))
    values = [v for _, v in identifiers]
    if len(set(values)) != len(values):
        problems.append("the same address appears twice in this row")
    entitlements = None
    if "entitlements" in raw and raw["entitlements"] != "":
        entitlements = sorted({e.strip() for e in raw["entitlements"].split(";") if e.strip()})
    if problems:
        errors.extend(RowError(line, p) for p in problems)
        return None
    return Row(line, album, raw["first_name"], raw["last_name"], role, pesel_hash, birth,
               # dedupe while keeping order: kind + value
               list(dict.fromkeys(identifiers)), entitlements)


def _apply(account: Account, row: Row, now: dt.datetime) -> bool:
    """Copy the row onto the account; True when anything changed."""
    changed = False
    for attr in ("first_name", "last_name", "role", "pesel_hash", "birth_date", "entitlements"):
        if getattr(account, attr) != getattr(row, attr):
            setattr(account, attr, getattr(row, attr))
            changed = True
    # Only what the SIS gave is the SIS's to take away: addresses the helpdesk added or a merge moved stay.
    current = {(i.kind, i.value) for i in account.identifiers if i.source == "sis"}
    if current != set(row.identifiers):  # order is not data: reordered aliases are no change
        wanted = {v: k for k, v in row.identifiers}
        for ident in list(account.identifiers):
            if ident.value not in wanted:
                if ident.source == "sis":
                    account.identifiers.remove(ident)
            else:  # listed by the SIS now: its kind, and from now on its to remove
                ident.kind, ident.source = wanted[ident.value], "sis"
        have = {i.value for i in account.identifiers}
        for kind, value in row.identifiers:
            if value not in have:
                account.identifiers.append(Identifier(kind=kind, value=value))
        changed = True
    if account.status != "active" or account.left_at is not None:
        account.status = "active"  # back in the export: active again
        account.left_at = None
        changed = True
    if changed:
        account.updated_at = now
        account.imported_at = now  # the run's start: the helpdesk sees which data migration touched them
    return changed


def import_csv(data: bytes, source: str, pesel_key: str, *, now: dt.datetime | None = None,
               progress: Callable[[Iterable], Iterable] | None = None) -> ImportResult:
    """Validate everything first; import only if every row is good. Raises ImportFileError."""
    now = now or utcnow()
    try:
        _, raw_rows = read_rows(data)
    except ImportFileError as exc:
        # Recorded like a file with bad rows: the helpdesk sees that the last attempt failed, and why.
        db.session.add(ImportRun(started_at=now, finished_at=utcnow(), source=source, status="rejected",
                                 errors=[str(exc)]))
        audit.record("import.rejected", actor="cli", reason="bad_file", now=now, commit=False,
                     data={"source": source})
        db.session.commit()
        raise
    result = ImportResult()
    rows: list[Row] = []
    for line, raw in raw_rows:
        row = _parse_row(line, raw, pesel_key, result.errors)
        if row:
            rows.append(row)
    accounts = {a.album.lower(): a for a in db.session.scalars(db.select(Account))}
    owners = {i.value: i.account_id for i in db.session.scalars(db.select(Identifier))}
    by_id = {a.id: a for a in accounts.values()}

    def person_of(row: Row) -> Account | None:
        """The account a row's data lands on: its own, or the survivor a helpdesk merged it into."""
        return _survivor(accounts.get(row.album.lower()), by_id)

    # Cross-row checks: album and every address unique within the file (rows of one merged person aside).
    first_album: dict[str, int] = {}
    first_ident: dict[str, tuple[int, int | None]] = {}
    for row in rows:
        key = row.album.lower()
        if key in first_album:
            result.errors.append(RowError(row.line, f"album {row.album} already appears on line {first_album[key]}"))
        first_album.setdefault(key, row.line)
        person = person_of(row)
        for _, value in row.identifiers:
            if value in first_ident and first_ident[value][0] != row.line:
                line, other = first_ident[value]
                if person is None or other != person.id:
                    result.errors.append(RowError(row.line, f"{value} already appears on line {line}"))
            first_ident.setdefault(value, (row.line, person.id if person else None))
    # Against the database: an address may belong to one account only (a merged album's addresses now
    # belong to its survivor: fine).
    for row in rows:
        own = accounts.get(row.album.lower())
        person = person_of(row)
        for _, value in row.identifiers:
            owner = owners.get(value)
            if owner is not None and (own is None or owner not in (own.id, person.id)):
                result.errors.append(RowError(
                    row.line, f"{value} belongs to another account (album {by_id[owner].album})"))
    result.errors.sort(key=lambda e: e.line)
    if result.errors:
        result.rejected = len({e.line for e in result.errors})
        run = ImportRun(started_at=now, finished_at=utcnow(), source=source, status="rejected",
                        rejected=result.rejected, errors=[str(e) for e in result.errors[:200]])
        db.session.add(run)
        audit.record("import.rejected", actor="cli", reason="bad_rows", now=now, commit=False,
                     data={"source": source, "rejected": result.rejected})
        db.session.commit()
        result.run = run
        return result
    # A merged album's row is not applied to it (it no longer logs in); its addresses stay the survivor's.
    merged_rows: dict[int, list[Row]] = {}
    for row in rows:
        own = accounts.get(row.album.lower())
        if own is not None and own.merged_into_id is not None and (person := person_of(row)) is not None:
            merged_rows.setdefault(person.id, []).append(row)
    iterator: Iterable[Row] = progress(rows) if progress else rows
    for row in iterator:
        account = accounts.get(row.album.lower())
        if account is not None and account.merged_into_id is not None:
            result.unchanged += 1
            continue
        if account is not None and account.id in merged_rows:
            wanted = {v: k for k, v in row.identifiers}  # the row's own kind of a value wins
            for other in merged_rows[account.id]:
                for kind, value in other.identifiers:
                    wanted.setdefault(value, kind)
            row = replace(row, identifiers=[(k, v) for v, k in wanted.items()])
        if account is None:
            account = Account(album=row.album, first_name=row.first_name, last_name=row.last_name,
                              role=row.role, created_at=now, updated_at=now, password_temporary=False)
            db.session.add(account)
            _apply(account, row, now)
            accounts[row.album.lower()] = account
            result.added += 1
        elif _apply(account, row, now):
            result.updated += 1
        else:
            result.unchanged += 1
        # Identifier moves between accounts are refused above, so flushing per row is safe.
    listed = {row.album.lower() for row in rows}
    listed_survivors = set(merged_rows)  # a person listed only under a merged album has not left
    for key, account in accounts.items():
        if key not in listed and account.left_at is None and account.merged_into_id is None \
                and account.id not in listed_survivors:
            account.left_at = now  # never deleted: they log in until the policy's grace period ends
            result.left += 1
    db.session.flush()
    result.linked = linking.link_imported(lang=policy_language(), now=now)
    run = ImportRun(started_at=now, finished_at=utcnow(), source=source, status="ok", added=result.added,
                    updated=result.updated, unchanged=result.unchanged, left=result.left)
    db.session.add(run)
    audit.record("import.completed", actor="cli", now=now, commit=False,
                 data={"source": source, "added": result.added, "updated": result.updated, "left": result.left,
                       "unchanged": result.unchanged, "linked": result.linked})
    db.session.commit()
    result.run = run
    return result


def _survivor(account: Account | None, by_id: dict[int, Account]) -> Account | None:
    """The account a merged account lives on in (merges point at the survivor directly; a short walk
    guards against older chains)."""
    for _ in range(8):
        if account is None or account.merged_into_id is None:
            return account
        account = by_id.get(account.merged_into_id)
    return account


def policy_language() -> str:
    """The language of mail sent without a request (the import's notices): the policy's default."""
    from flask import current_app

    return current_app.extensions["idp.policy"].data["login"]["default_language"]


def import_file(path: str | Path, pesel_key: str, **kwargs) -> ImportResult:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from None
    return import_csv(data, path.name, pesel_key, **kwargs)


def last_migration() -> sa.Row | None:
    """The last successful import: its `id` and `finished_at` (a row, not an ImportRun — the login page
    shows it on every render)."""
    return db.session.execute(_LAST_MIGRATION).first()


_LAST_MIGRATION = (db.select(ImportRun.id, ImportRun.finished_at).where(ImportRun.status == "ok")
                   .order_by(ImportRun.finished_at.desc()).limit(1))


def entitled(account: Account, service: Service) -> bool:
    """May this person get tickets for this service? Only services with requires_entitlement ask."""
    if not service.requires_entitlement:
        return True
    if account.entitlements is not None:
        return service.name.lower() in {e.lower() for e in account.entitlements}
    return account.role in (service.default_roles or [])


def next_migration(policy, now: dt.datetime, *, tz: str = "Europe/Warsaw") -> dt.datetime | None:
    """When the next data migration is due: the first time of `[migration] schedule` ("HH:MM", local
    time in `tz`) strictly after `now`. Naive UTC in and out, like every time in the project; None when
    the schedule is empty. A time skipped by the spring DST change counts as if the clock had not moved
    (02:30 on that day is 01:30 UTC); a time that happens twice in autumn counts once, the first time."""
    from zoneinfo import ZoneInfo

    times = {dt.time.fromisoformat(t) for t in policy.data["migration"]["schedule"]}
    if not times:
        return None
    zone = ZoneInfo(tz)
    today = now.replace(tzinfo=dt.UTC).astimezone(zone).date()
    # Local order is not UTC order on a DST day (a skipped 02:30 is later in UTC than 03:00): take the min.
    due = (dt.datetime.combine(today + dt.timedelta(days=n), at, tzinfo=zone).astimezone(dt.UTC)
           .replace(tzinfo=None) for n in range(3) for at in times)
    return min(d for d in due if d > now)
