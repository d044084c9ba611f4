"""lowBoundary() and highBoundary(): the least and greatest value a decimal, date, dateTime or time of
its precision can stand for (FHIRPath, optional in SQL-on-FHIR: the suite tags its cases experimental).

Dates and times are FHIR JSON strings here; the boundary is a string of full precision, which the
column's type converts as any other value (a dateTime without an offset takes the widest, +14:00 for
the low and -12:00 for the high boundary).
"""

from __future__ import annotations

import calendar
import re
from decimal import Decimal
from typing import Any

__all__ = ["boundary"]

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_TIME = re.compile(r"^(\d{2})(?::(\d{2})(?::(\d{2})(\.\d+)?)?)?$")


def boundary(value: Any, low: bool, precision: Any = None, timed: bool = False) -> Any:
    """The boundary of a value; `timed` says a string is a dateTime even without a time ('2010-10-10')."""
    if type(value) in (int, float):
        return _decimal(value, low, precision)
    if type(value) is not str:
        return None
    if "T" in value or (timed and _DATE.match(value)):
        day, _, time = value.partition("T")
        return _datetime(day, time, low)
    if _DATE.match(value):
        return _date(value, low)
    if _TIME.match(value):
        return _time(value, low)
    return None


def _decimal(value: float | int, low: bool, precision: Any) -> float:
    text = repr(value) if type(value) is float else str(value)
    digits = len(text.partition(".")[2]) if "." in text else 0
    half = Decimal(5) / Decimal(10) ** (digits + 1)
    result = Decimal(text) - half if low else Decimal(text) + half
    return float(result)


def _date(value: str, low: bool) -> str:
    year, month, day = _DATE.match(value).groups()
    if month is None:
        month = "01" if low else "12"
    if day is None:
        day = "01" if low else f"{calendar.monthrange(int(year), int(month))[1]:02d}"
    return f"{year}-{month}-{day}"


def _time(value: str, low: bool) -> str:
    hours, minutes, seconds, fraction = _TIME.match(value).groups()
    filler = "00" if low else "59"
    minutes, seconds = minutes or filler, seconds or filler
    fraction = (fraction or ".")[1:]
    fraction = (fraction + ("0" if low else "9") * 3)[:3]
    return f"{hours}:{minutes}:{seconds}.{fraction}"


def _datetime(day: str, time: str, low: bool) -> str | None:
    if not _DATE.match(day):
        return None
    offset = ""
    match = re.search(r"(Z|[+-]\d{2}:\d{2})$", time)
    if match:
        offset, time = match.group(1), time[: match.start()]
    if not offset:
        offset = "+14:00" if low else "-12:00"
    if time and not _TIME.match(time):
        return None
    return f"{_date(day, low)}T{_time(time or ('00' if low else '23'), low)}{offset}"
