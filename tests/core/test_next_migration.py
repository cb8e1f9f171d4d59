"""provisioning.next_migration: the next `[migration] schedule` time (Warsaw local time) after now, as the
project's naive UTC; across midnight, the end of the year and both DST changes."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from idp.core.provisioning import next_migration


def policy(*times: str) -> SimpleNamespace:
    return SimpleNamespace(data={"migration": {"schedule": list(times)}})


def utc(*args) -> dt.datetime:
    return dt.datetime(*args)


DEFAULT = policy("06:30", "16:30")


@pytest.mark.parametrize(("now", "expected"), [
    # winter: Warsaw = UTC+1
    (utc(2026, 1, 15, 3, 0), utc(2026, 1, 15, 5, 30)),    # 04:00 local → 06:30 local today
    (utc(2026, 1, 15, 5, 29), utc(2026, 1, 15, 5, 30)),
    (utc(2026, 1, 15, 5, 30), utc(2026, 1, 15, 15, 30)),  # exactly at 06:30: strictly after, so 16:30
    (utc(2026, 1, 15, 12, 0), utc(2026, 1, 15, 15, 30)),
    (utc(2026, 1, 15, 15, 30), utc(2026, 1, 16, 5, 30)),  # after the last run of the day: tomorrow morning
    # summer: Warsaw = UTC+2
    (utc(2026, 7, 1, 4, 0), utc(2026, 7, 1, 4, 30)),
    (utc(2026, 7, 1, 14, 31), utc(2026, 7, 2, 4, 30)),
])
def test_the_next_time_of_the_default_schedule(now, expected):
    assert next_migration(DEFAULT, now) == expected


def test_around_midnight_the_local_date_counts_not_the_utc_one():
    # 23:30 UTC on the 15th is 00:30 on the 16th in Warsaw: a 00:15 run has just passed, the next is tomorrow's
    assert next_migration(policy("00:15"), utc(2026, 1, 15, 23, 30)) == utc(2026, 1, 16, 23, 15)
    # 22:50 UTC is 23:50 local: the 00:15 run is in 25 minutes, on the next local day
    assert next_migration(policy("00:15"), utc(2026, 1, 15, 22, 50)) == utc(2026, 1, 15, 23, 15)
    # summer: 21:59 UTC is 23:59 local; midnight local is 22:00 UTC
    assert next_migration(policy("00:00"), utc(2026, 7, 1, 21, 59)) == utc(2026, 7, 1, 22, 0)


def test_across_the_end_of_the_year():
    assert next_migration(policy("06:00"), utc(2026, 12, 31, 12, 0)) == utc(2027, 1, 1, 5, 0)


def test_spring_forward_day():
    # 29 March 2026: at 02:00 CET the clocks jump to 03:00 CEST.
    assert next_migration(policy("06:30"), utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 4, 30)  # CEST already
    assert next_migration(policy("01:30"), utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 0, 30)  # still CET
    # 02:30 does not exist that day: counted as if the clock had not moved (01:30 UTC)...
    assert next_migration(policy("02:30"), utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 30)
    # ...which is later in UTC than 03:00 CEST (01:00 UTC): the earliest UTC instant wins, not the local order
    assert next_migration(policy("02:30", "03:00"), utc(2026, 3, 29, 0, 30)) == utc(2026, 3, 29, 1, 0)


def test_fall_back_day():
    # 25 October 2026: at 03:00 CEST the clocks go back to 02:00 CET; 02:30 happens twice — counted once, first.
    assert next_migration(policy("02:30"), utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    assert next_migration(policy("02:30"), utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)  # CET next day
    assert next_migration(policy("06:30"), utc(2026, 10, 25, 0, 0)) == utc(2026, 10, 25, 5, 30)  # CET already


def test_unsorted_and_repeated_times():
    assert next_migration(policy("18:00", "06:00", "18:00", "10:00"), utc(2026, 1, 15, 8, 0)) \
        == utc(2026, 1, 15, 9, 0)


def test_an_empty_schedule_has_no_next_migration():
    assert next_migration(policy(), utc(2026, 1, 15, 8, 0)) is None


def test_the_result_is_naive_utc_and_always_later():
    now = utc(2026, 5, 5, 5, 5)
    due = next_migration(policy("00:00", "12:00"), now)
    assert due.tzinfo is None and now < due <= now + dt.timedelta(days=1)


def test_the_shipped_policies_have_a_next_migration(app):
    assert next_migration(app.extensions["idp.policy"], utc(2026, 1, 15, 3, 0)) == utc(2026, 1, 15, 5, 30)
