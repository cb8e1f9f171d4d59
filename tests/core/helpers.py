"""Test data builders shared by tests/core and tests/cli: PESEL numbers and SIS CSV files."""
from __future__ import annotations

import csv
import datetime as dt
import io

WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
MONTH_OFFSET = {1800: 80, 1900: 0, 2000: 20, 2100: 40, 2200: 60}
COLUMNS = ["album", "pesel", "first_name", "last_name", "university_email", "private_email", "role", "aliases"]


def check_digit(first_ten: str) -> str:
    return str((10 - sum(w * int(d) for w, d in zip(WEIGHTS, first_ten, strict=True)) % 10) % 10)


def make_pesel(born: dt.date, serial: str = "0123") -> str:
    """A PESEL with a correct check digit for a birth date (serial: 4 digits, the last one the sex)."""
    offset = MONTH_OFFSET[born.year // 100 * 100]
    body = f"{born.year % 100:02d}{born.month + offset:02d}{born.day:02d}{serial}"
    return body + check_digit(body)


def wrong_check_digit(pesel: str) -> str:
    return pesel[:10] + str((int(pesel[10]) + 1) % 10)


def person(n: int = 1, **overrides) -> dict[str, str]:
    """One row of the SIS export: a student with album 1000+n, a valid PESEL and distinct addresses."""
    born = dt.date(1990, 1, 1) + dt.timedelta(days=37 * n)
    row = {
        "album": str(1000 + n),
        "pesel": make_pesel(born, f"{n % 1000:03d}{n % 10}"),
        "first_name": f"Jan{n}",
        "last_name": f"Kowalski{n}",
        "university_email": f"jan.kowalski{n}@student.example.edu.pl",
        "private_email": f"jk{n}@example.com",
        "role": "student",
        "aliases": f"s{1000 + n}@student.example.edu.pl",
    }
    row.update(overrides)
    return row


def csv_bytes(rows: list[dict[str, str]], columns: list[str] | None = None, *, bom: bool = False,
              line_end: str = "\n") -> bytes:
    """The rows as a CSV file; columns default to the required ones plus any key a row uses."""
    if columns is None:
        columns = list(COLUMNS)
        for row in rows:
            columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(c, "") for c in columns])
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")
