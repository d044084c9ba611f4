"""FHIR primitive types as they land in columns: checked, and converted to what Parquet stores.

A value of the wrong JSON type raises `ElementTypeError`; the ingest turns that into a reject that
names the element. dateTime values are stored as naive UTC timestamps so that every engine (DuckDB,
Spark, PostgreSQL) compares them the same way, whatever offset the source wrote.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa

__all__ = [
    "ARROW_TYPES",
    "CONVERTERS",
    "DAYS",
    "ID_CHARACTERS",
    "MAX_ID_LENGTH",
    "MICROSECONDS",
    "ElementTypeError",
    "date_days",
    "datetime_microseconds",
    "parse_date",
    "parse_datetime",
]


# A resource id (FHIR's `id` type): 1 to MAX_ID_LENGTH of these characters.
ID_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-."
MAX_ID_LENGTH = 64


class ElementTypeError(ValueError):
    json_path = ""  # where in the resource, filled in by whoever knows it


# Shapes only: the calendar (month 13, February 30, hour 25) is checked by `fromisoformat`.
_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?\Z")
_DATETIME = re.compile(
    r"[0-9]{4}(-[0-9]{2}(-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}:[0-9]{2})?)?)?)?\Z"
)
# Dates and times repeat a lot (a lab panel shares one time, a cohort few birth dates): converting each
# distinct text once makes the converters cost a dict lookup in the common case.
_CACHE_SIZE = 1 << 16
_dates: dict[str, dt.date] = {}
_datetimes: dict[str, dt.datetime] = {}
_offsets: dict[str, dt.timedelta] = {}
# The same as Arrow stores them (days, microseconds since 1970), for readers that build Arrow arrays of
# integers: several times faster than of date and datetime objects. Looked up inline by such readers.
DAYS: dict[str, int] = {}
MICROSECONDS: dict[str, int] = {}
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()
_EPOCH = dt.datetime(1970, 1, 1)


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return f"{kind.get(type(value), type(value).__name__)} {str(value)[:40]!r}"


def _remember(cache: dict, key: str, value: Any) -> Any:
    if len(cache) >= _CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def parse_date(value: Any) -> dt.date:
    """A FHIR date; a partial date ("1968", "1968-07") stands for its first day."""
    try:
        return _dates[value]
    except (KeyError, TypeError):
        pass
    if type(value) is not str or not _DATE.match(value):
        raise ElementTypeError(f"expected a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD), got {_describe(value)}")
    try:
        day = _first_day(value)
    except ValueError as error:
        raise ElementTypeError(f"expected a FHIR date, got {_describe(value)}: {error}") from None
    return _remember(_dates, value, day)


def parse_datetime(value: Any) -> dt.datetime:
    """A FHIR dateTime or instant as naive UTC; partial values stand for their first instant."""
    try:
        return _datetimes[value]
    except (KeyError, TypeError):
        pass
    if type(value) is not str or not _DATETIME.match(value):
        raise ElementTypeError(f"expected a FHIR dateTime, got {_describe(value)}")
    try:
        if len(value) <= 10:
            day = _first_day(value)
            moment = dt.datetime(day.year, day.month, day.day)
        elif value[-1] == "Z":
            moment = dt.datetime.fromisoformat(value[:-1])
        elif value[-6] in "+-":
            moment = dt.datetime.fromisoformat(value[:-6]) - _offset(value[-6:])
        else:
            moment = dt.datetime.fromisoformat(value)
    except ValueError as error:
        raise ElementTypeError(f"expected a FHIR dateTime, got {_describe(value)}: {error}") from None
    return _remember(_datetimes, value, moment)


def date_days(value: str) -> int:
    """parse_date as days since 1970-01-01."""
    return _remember(DAYS, value, parse_date(value).toordinal() - _EPOCH_DAY)


def datetime_microseconds(value: str) -> int:
    """parse_datetime as microseconds since 1970-01-01T00:00 UTC."""
    moment = parse_datetime(value) - _EPOCH
    return _remember(
        MICROSECONDS, value, (moment.days * 86_400 + moment.seconds) * 1_000_000 + moment.microseconds
    )


def _first_day(text: str) -> dt.date:
    return dt.date.fromisoformat(text if len(text) == 10 else (text + "-01-01")[:10])


def _offset(text: str) -> dt.timedelta:
    """The timedelta of a UTC offset written as +hh:mm or -hh:mm."""
    offset = _offsets.get(text)
    if offset is None:
        hours, minutes = int(text[1:3]), int(text[4:6])
        if hours > 14 or minutes > 59:
            raise ValueError(f"UTC offset {text} is out of range")
        offset = dt.timedelta(hours=hours, minutes=minutes) * (-1 if text[0] == "-" else 1)
        _offsets[text] = offset
    return offset


def _string(value: Any) -> str:
    if type(value) is not str:
        raise ElementTypeError(f"expected a string, got {_describe(value)}")
    return value


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise ElementTypeError(f"expected true or false, got {_describe(value)}")
    return value


def _decimal(value: Any) -> float:
    if type(value) is float or type(value) is int:
        return float(value)
    raise ElementTypeError(f"expected a number, got {_describe(value)}")


def _integer(value: Any) -> int:
    if type(value) is int:
        return value
    raise ElementTypeError(f"expected an integer, got {_describe(value)}")


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "string": _string,
    "code": _string,
    "id": _string,
    "uri": _string,
    **dict.fromkeys(("url", "canonical", "oid", "uuid", "markdown", "base64Binary", "time"), _string),
    "boolean": _boolean,
    "decimal": _decimal,
    "integer": _integer,
    **dict.fromkeys(("positiveInt", "unsignedInt", "integer64"), _integer),
    "date": parse_date,
    "dateTime": parse_datetime,
    "instant": parse_datetime,
}

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "code": pa.string(),
    "id": pa.string(),
    "uri": pa.string(),
    **dict.fromkeys(("url", "canonical", "oid", "uuid", "markdown", "base64Binary", "time"), pa.string()),
    "boolean": pa.bool_(),
    "decimal": pa.float64(),
    "integer": pa.int64(),
    **dict.fromkeys(("positiveInt", "unsignedInt", "integer64"), pa.int64()),
    "date": pa.date32(),
    "dateTime": pa.timestamp("us"),
    "instant": pa.timestamp("us"),
}
