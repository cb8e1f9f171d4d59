"""Fixtures for the activation tests: new students imported from the SIS, without a password yet."""
from __future__ import annotations

import pytest

from tests.factories import create_account

NEWCOMER = "lukasz.zolkiewski@student.example.edu.pl"


@pytest.fixture
def newcomer(app):
    """Łukasz Żółkiewski, album 12345, PESEL tests.factories.PESEL, no password yet."""
    return create_account(password=None)


@pytest.fixture
def no_pesel(app):
    """A person without a PESEL: born 2000-01-01 (tests.factories), no password yet."""
    return create_account("77777", first_name="Olena", last_name="Shevchenko", pesel=None, password=None,
                          university_email="olena.shevchenko@student.example.edu.pl", private_email=None,
                          aliases=())
