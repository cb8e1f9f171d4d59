"""PESEL: check digit, the birth date and century it encodes, and the keyed hash the IdP keeps."""
from __future__ import annotations

import datetime as dt

import pytest

from idp.core import pesel
from tests.core.helpers import check_digit, make_pesel, wrong_check_digit


@pytest.mark.parametrize("number, born", [
    ("44051401359", dt.date(1944, 5, 14)),  # the textbook example
    ("02070803628", dt.date(1902, 7, 8)),
    ("04231512341", dt.date(2004, 3, 15)),  # tests/factories.py
])
def test_known_valid_numbers(number, born):
    assert pesel.problem(number) is None
    assert pesel.birth_date(number) == born


def test_check_digit_is_computed_with_the_weights():
    # 4*1 + 4*3 + 0*7 + 5*9 + 1*1 + 4*3 + 0*7 + 1*9 + 3*1 + 5*3 = 101 -> (10 - 1) % 10 = 9
    assert check_digit("4405140135") == "9"
    # a sum ending in 0 gives check digit 0, not 10
    body = next(b for b in (f"900101{n:04d}" for n in range(10000))
                if sum(w * int(d) for w, d in zip((1, 3, 7, 9, 1, 3, 7, 9, 1, 3), b, strict=True)) % 10 == 0)
    assert pesel.problem(body + "0") is None


@pytest.mark.parametrize("born", [
    dt.date(1800, 1, 1), dt.date(1899, 12, 31), dt.date(1900, 1, 1), dt.date(1999, 12, 31),
    dt.date(2000, 1, 1), dt.date(2000, 2, 29), dt.date(2024, 2, 29), dt.date(2099, 12, 31),
    dt.date(2100, 6, 15), dt.date(2299, 12, 31),
])
def test_generated_numbers_round_trip(born):
    number = make_pesel(born)
    assert pesel.problem(number) is None
    assert pesel.birth_date(number) == born


def test_century_is_encoded_in_the_month():
    # 1800s: month + 80; 1900s: as is; 2000s: month + 20; 2100s: + 40; 2200s: + 60
    assert make_pesel(dt.date(1885, 4, 2))[2:4] == "84"
    assert make_pesel(dt.date(1985, 4, 2))[2:4] == "04"
    assert make_pesel(dt.date(2005, 4, 2))[2:4] == "24"
    assert make_pesel(dt.date(2105, 4, 2))[2:4] == "44"
    assert make_pesel(dt.date(2205, 4, 2))[2:4] == "64"
    assert pesel.birth_date(make_pesel(dt.date(1885, 4, 2))) == dt.date(1885, 4, 2)
    assert pesel.birth_date(make_pesel(dt.date(2005, 12, 2))) == dt.date(2005, 12, 2)


@pytest.mark.parametrize("number", ["44051401359", "04231512341", make_pesel(dt.date(2001, 9, 11))])
def test_wrong_check_digit(number):
    assert pesel.problem(wrong_check_digit(number)) == "pesel_checksum"


def test_every_single_digit_typo_is_caught_somewhere():
    # The weights make every single-digit change of the first ten digits change the check digit.
    good = "44051401359"
    for i in range(10):
        for d in "0123456789":
            if d != good[i]:
                typo = good[:i] + d + good[i + 1:]
                assert pesel.problem(typo) is not None, typo


@pytest.mark.parametrize("number", [
    "", "4405140135", "440514013590", "4405140135a", " 44051401359", "44051401359 ", "44-05-14-01359",
    "4405140135\n", "٤٤٠٥١٤٠١٣٥٩",  # Arabic-Indic digits: str.isdigit() is true for them
    "4405140135²", "+4405140135",
])
def test_wrong_length_or_not_ascii_digits(number):
    assert pesel.problem(number) == "pesel_format"


def _with_date_digits(yymmdd: str) -> str:
    body = yymmdd + "0123"
    return body + check_digit(body)


@pytest.mark.parametrize("yymmdd", [
    "991301",  # month 13
    "990001",  # month 0
    "993301",  # month 13 of the 2000s
    "990230",  # 30 February
    "000229",  # 29 February 1900: not a leap year
    "010229",  # 29 February 1901
    "990431",  # 31 April
    "990100",  # day 0
    "990132",  # day 32
    "999301",  # month 93 - 80 = 13 in the 1800s
])
def test_impossible_dates(yymmdd):
    number = _with_date_digits(yymmdd)
    assert pesel.problem(number) == "pesel_date"
    assert pesel.birth_date(number) is None


def test_month_92_is_december_of_the_1800s():
    number = _with_date_digits("999201")
    assert pesel.problem(number) is None
    assert pesel.birth_date(number) == dt.date(1899, 12, 1)


def test_leap_day_of_2000_is_real():
    number = _with_date_digits("002229")  # 29 February 2000 (month 02 + 20)
    assert pesel.problem(number) is None
    assert pesel.birth_date(number) == dt.date(2000, 2, 29)


def test_keyed_hash_depends_on_the_key_and_hides_the_number():
    number = "44051401359"
    a = pesel.keyed_hash(number, "key-one")
    b = pesel.keyed_hash(number, "key-two")
    assert a != b
    assert a == pesel.keyed_hash(number, "key-one")  # stable: lookups by PESEL work
    assert number not in a and number not in b
    assert len(a) == 64 and all(c in "0123456789abcdef" for c in a)
    assert pesel.keyed_hash("02070803628", "key-one") != a
    # not a plain (unkeyed) digest either
    import hashlib
    assert a != hashlib.sha256(number.encode()).hexdigest()
