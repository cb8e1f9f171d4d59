"""PESEL: checksum, the birth date it encodes, and the keyed hash that is all the IdP keeps."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac

_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
#: Month offset -> century (the PESEL encodes the century in the month digits).
_CENTURY = {80: 1800, 0: 1900, 20: 2000, 40: 2100, 60: 2200}


def problem(pesel: str) -> str | None:
    """Why this is not a valid PESEL (a short code), or None when it is."""
    if len(pesel) != 11 or not pesel.isascii() or not pesel.isdigit():
        return "pesel_format"
    digits = [int(c) for c in pesel]
    if (10 - sum(w * d for w, d in zip(_WEIGHTS, digits, strict=False)) % 10) % 10 != digits[10]:
        return "pesel_checksum"
    if birth_date(pesel) is None:
        return "pesel_date"
    return None


def birth_date(pesel: str) -> dt.date | None:
    """The date of birth encoded in a PESEL, or None when it encodes no real date."""
    yy, mm, dd = int(pesel[0:2]), int(pesel[2:4]), int(pesel[4:6])
    for offset, century in _CENTURY.items():
        if offset < mm <= offset + 12:
            try:
                return dt.date(century + yy, mm - offset, dd)
            except ValueError:
                return None
    return None


def keyed_hash(pesel: str, key: str) -> str:
    """HMAC-SHA256 with the instance's key: a dump of the table cannot be reversed by enumeration."""
    return hmac.new(key.encode(), pesel.encode(), hashlib.sha256).hexdigest()
