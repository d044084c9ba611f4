"""The cube a site delivers: aggregates only, one row per (indicator, period, stratum) with a value.

JSON shape (`format` "datenraum-indicators/1"):

    {"format", "site", "data_as_of": "YYYY-MM-DD", "run_at", "definitions_version",
     "columns": ["period", "level", "sex", "age_rki", "state", "los_bin", "value"],
     "completeness": {"icu": bool, "ventilation": bool, "ecmo": bool, "deaths": bool},
     "series": [{"disease", "indicator", "rows": [[period, level, sex, age_rki, state, los_bin, value], ...]}]}

A stratum column is null where the row is aggregated over it (the total has all of them null); a cell
not listed is 0. `parse_cube` checks a delivery's shape (not its plausibility: that is `quality`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["COLUMNS", "CUBE_FORMAT", "DIMENSIONS", "Cell", "CubeError", "cells", "parse_cube"]

CUBE_FORMAT = "datenraum-indicators/1"
COLUMNS = ("indicator", "period", "level", "sex", "age_rki", "state", "los_bin", "value")
DIMENSIONS = COLUMNS[2:-1]
_PERIOD = re.compile(r"^\d{4}-(\d{2}-\d{2}|W\d{2})$")
_VALUE_TEXT = re.compile(r"^[A-Za-z0-9+\-]{1,20}$")
MAX_ROWS = 2_000_000


class CubeError(ValueError):
    """A delivery that is not a cube; the text names the field."""


@dataclass(frozen=True, slots=True)
class Cell:
    disease: str
    indicator: str
    period: str
    stratum: tuple[str | None, ...]  # DIMENSIONS order
    value: int


def parse_cube(body: Any) -> dict[str, Any]:
    """`body` if it is a well-formed cube; raises CubeError naming the first problem."""
    if not isinstance(body, dict):
        raise CubeError("cube: expected an object")
    if body.get("format") != CUBE_FORMAT:
        raise CubeError(f"cube.format: expected {CUBE_FORMAT!r}")
    try:
        dt.date.fromisoformat(str(body.get("data_as_of")))
    except ValueError:
        raise CubeError("cube.data_as_of: expected a date") from None
    if not isinstance(body.get("definitions_version"), str):
        raise CubeError("cube.definitions_version: expected a text")
    if body.get("columns") != list(COLUMNS[1:]):
        raise CubeError(f"cube.columns: expected {list(COLUMNS[1:])}")
    series = body.get("series")
    if not isinstance(series, list):
        raise CubeError("cube.series: expected a list")
    total = 0
    for index, entry in enumerate(series):
        where = f"cube.series[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("disease"), str):
            raise CubeError(f"{where}.disease: expected a text")
        if not isinstance(entry.get("indicator"), str):
            raise CubeError(f"{where}.indicator: expected a text")
        rows = entry.get("rows")
        if not isinstance(rows, list):
            raise CubeError(f"{where}.rows: expected a list")
        total += len(rows)
        if total > MAX_ROWS:
            raise CubeError(f"cube: more than {MAX_ROWS} rows")
        for number, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(COLUMNS) - 1:
                raise CubeError(f"{where}.rows[{number}]: expected {len(COLUMNS) - 1} values")
            if not isinstance(row[0], str) or not _PERIOD.match(row[0]):
                raise CubeError(f"{where}.rows[{number}][0]: expected a day or ISO week")
            for value in row[1:-1]:
                if value is not None and (not isinstance(value, str) or not _VALUE_TEXT.match(value)):
                    raise CubeError(f"{where}.rows[{number}]: a stratum value {value!r} is not allowed")
            value = row[-1]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
                raise CubeError(f"{where}.rows[{number}]: the value must be a count")
    return body


def cells(cube: dict[str, Any]) -> Iterator[Cell]:
    """Every listed cell of a (parsed) cube."""
    for entry in cube["series"]:
        for row in entry["rows"]:
            yield Cell(entry["disease"], entry["indicator"], row[0], tuple(row[1:-1]), row[-1])
