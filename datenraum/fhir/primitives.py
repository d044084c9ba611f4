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

__all__ = ["ARROW_TYPES", "CONVERTERS", "ElementTypeError", "parse_date", "parse_datetime"]


class ElementTypeError(ValueError):
    json_path = ""  # where in the resource, filled in by whoever knows it


_DATE = re.compile(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?\Z")
_DATETIME = re.compile(
    r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01])"
    r"(T([01]\d|2[0-3]):[0-5]\d(:([0-5]\d|60)(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})?)?)?)?\Z"
)
_UTC = dt.UTC


def _describe(value: Any) -> str:
    kind = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return f"{kind.get(type(value), type(value).__name__)} {str(value)[:40]!r}"


def parse_date(value: Any) -> dt.date:
    """A FHIR date; a partial date ("1968", "1968-07") stands for its first day."""
    if type(value) is not str or not _DATE.match(value):
        raise ElementTypeError(f"expected a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD), got {_describe(value)}")
    if len(value) == 4:
        return dt.date(int(value), 1, 1)
    if len(value) == 7:
        return dt.date(int(value[:4]), int(value[5:7]), 1)
    return dt.date.fromisoformat(value)


def parse_datetime(value: Any) -> dt.datetime:
    """A FHIR dateTime or instant as naive UTC; partial values stand for their first instant."""
    if type(value) is not str or not _DATETIME.match(value):
        raise ElementTypeError(f"expected a FHIR dateTime, got {_describe(value)}")
    if len(value) <= 10:
        day = parse_date(value)
        return dt.datetime(day.year, day.month, day.day)
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError as error:
        raise ElementTypeError(f"expected a FHIR dateTime, got {_describe(value)}: {error}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(_UTC).replace(tzinfo=None)
    return moment


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
    "boolean": _boolean,
    "decimal": _decimal,
    "integer": _integer,
    "date": parse_date,
    "dateTime": parse_datetime,
    "instant": parse_datetime,
}

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "code": pa.string(),
    "id": pa.string(),
    "uri": pa.string(),
    "boolean": pa.bool_(),
    "decimal": pa.float64(),
    "integer": pa.int64(),
    "date": pa.date32(),
    "dateTime": pa.timestamp("us"),
    "instant": pa.timestamp("us"),
}
