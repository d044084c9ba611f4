"""Calendar arithmetic on integer day numbers, rendered through lookup tables.

The generator emits tens of millions of dates and timestamps. Formatting them with ``datetime`` costs
microseconds each, so every day is handled as an ``int`` (days since 1900-01-01) and turned into text by
indexing prebuilt tables: one string per day, one per minute of the day and the UTC offsets of each day.
"""

from __future__ import annotations

import datetime as _dt

EPOCH = _dt.date(1900, 1, 1)
_LAST = _dt.date(2089, 12, 31)

#: First and last admission day of the simulated observation window (both inclusive).
WINDOW_START = (_dt.date(2015, 1, 1) - EPOCH).days
WINDOW_END = (_dt.date(2024, 11, 30) - EPOCH).days
#: No event is dated after this day: it is the "extraction date" of the synthetic hospital export.
DATA_CUTOFF = (_dt.date(2024, 12, 31) - EPOCH).days
#: SARS-CoV-2 can only appear from the first German wave on.
COVID_START = (_dt.date(2020, 3, 1) - EPOCH).days
#: Hospitals screened every admission by PCR roughly until the end of the general testing mandate.
COVID_SCREENING_END = (_dt.date(2023, 4, 7) - EPOCH).days


def day_number(date: _dt.date) -> int:
    """Return the day number of ``date``."""
    return (date - EPOCH).days


def _last_sunday(year: int, month: int) -> _dt.date:
    last = _dt.date(year, month + 1, 1) - _dt.timedelta(days=1) if month < 12 else _dt.date(year, 12, 31)
    return last - _dt.timedelta(days=(last.weekday() + 1) % 7)


def _build_tables() -> tuple[list[str], list[str], list[int]]:
    # Europe/Berlin under the EU rule (since 1996): CEST from the last Sunday of March to the last Sunday
    # of October, switching at 02:00/03:00 local time. The table holds the offset after the switch.
    days: list[str] = []
    offsets: list[str] = []
    years: list[int] = []
    date = EPOCH
    one = _dt.timedelta(days=1)
    summer_start = summer_end = None
    year = 0
    while date <= _LAST:
        if date.year != year:
            year = date.year
            summer_start, summer_end = _last_sunday(year, 3), _last_sunday(year, 10)
        days.append(date.isoformat())
        offsets.append("+02:00" if summer_start <= date < summer_end else "+01:00")
        years.append(year)
        date += one
    return days, offsets, years


#: ``DAYS[d]`` is day ``d`` as ``YYYY-MM-DD``.
#: ``UTC_OFFSETS[d]`` is the Europe/Berlin UTC offset of day ``d`` from 03:00 on.
#: ``YEARS[d]`` is its calendar year.
DAYS, UTC_OFFSETS, YEARS = _build_tables()
#: ``NIGHT_OFFSETS[d]`` is the offset before 03:00, the previous day's: it differs on switch days only.
NIGHT_OFFSETS = UTC_OFFSETS[:1] + UTC_OFFSETS[:-1]
#: ``YEAR_STRINGS[d]`` is its calendar year as text, for code system versions.
YEAR_STRINGS = [str(y) for y in range(1900, 2090)]
#: ``CLOCK[m]`` is minute ``m`` of a day as ``THH:MM:00``.
CLOCK = [f"T{m // 60:02d}:{m % 60:02d}:00" for m in range(24 * 60)]


def timestamp(day: int, minute: int) -> str:
    """Render a local Europe/Berlin timestamp with its UTC offset, e.g. ``2021-03-04T10:15:00+01:00``.

    Wall-clock times that do not exist (02:xx when clocks spring forward) come out with the winter offset,
    which still names a valid instant.
    """
    return DAYS[day] + CLOCK[minute] + (UTC_OFFSETS[day] if minute >= 180 else NIGHT_OFFSETS[day])


def year_of(day: int) -> str:
    """Return the calendar year of ``day`` as text."""
    return YEAR_STRINGS[YEARS[day] - 1900]


def add_years(day: int, years: int) -> int:
    """Return the same calendar date ``years`` later (29 February becomes 28 February)."""
    date = EPOCH + _dt.timedelta(days=day)
    try:
        return day_number(date.replace(year=date.year + years))
    except ValueError:
        return day_number(date.replace(year=date.year + years, day=28))
