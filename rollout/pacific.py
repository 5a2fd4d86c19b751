"""When Google resets a project's daily Places quota: midnight Pacific time.

Pure date arithmetic with the US daylight-saving rule (since 2007), so a workflow can
compute it deterministically without reading the time-zone database.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

STANDARD = timedelta(hours=-8)  # PST
DAYLIGHT = timedelta(hours=-7)  # PDT


def _nth_sunday(year: int, month: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))


def pacific_offset(moment: datetime) -> timedelta:
    """UTC offset of US Pacific time at `moment` (an aware datetime)."""
    utc = moment.astimezone(UTC)
    year = utc.year
    # Daylight time runs from 02:00 PST on the second Sunday of March (10:00 UTC) to 02:00
    # PDT on the first Sunday of November (09:00 UTC).
    starts = datetime.combine(_nth_sunday(year, 3, 2), time(10), UTC)
    ends = datetime.combine(_nth_sunday(year, 11, 1), time(9), UTC)
    return DAYLIGHT if starts <= utc < ends else STANDARD


def next_pacific_midnight(moment: datetime) -> datetime:
    """The first midnight in US Pacific time after `moment`, in UTC."""
    local = moment.astimezone(UTC) + pacific_offset(moment)
    midnight_local = datetime.combine(local.date() + timedelta(days=1), time(0))
    # Midnight is never inside a daylight-saving change (those happen at 02:00), so the
    # offset an hour before it is the offset at it.
    guess = (midnight_local - STANDARD).replace(tzinfo=UTC)
    offset = pacific_offset(guess - timedelta(hours=3))
    return (midnight_local - offset).replace(tzinfo=UTC)
