"""Midnight Pacific computed without the time-zone database, checked against it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from rollout.pacific import next_pacific_midnight, pacific_offset

LA = ZoneInfo("America/Los_Angeles")


@pytest.mark.parametrize("year", [2025, 2026, 2027, 2030])
def test_offset_and_next_midnight_agree_with_the_tz_database(year: int) -> None:
    moment = datetime(year, 1, 1, 0, 17, tzinfo=UTC)
    while moment.year == year:
        assert pacific_offset(moment) == moment.astimezone(LA).utcoffset(), moment
        expected = (moment.astimezone(LA) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        got = next_pacific_midnight(moment)
        assert got == expected.astimezone(UTC), moment
        assert got > moment
        moment += timedelta(hours=5, minutes=13)
