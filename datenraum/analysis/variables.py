"""Analysis variables from the site store: small, typed, declarative definitions (no SQL, no code).

A request's `data` names the project's cohort (a CCDL query) and its variables by name, each one of
these definitions; the site turns them into SQL over its flattened tables (`patient`, `condition`,
`observation`; `datenraum.site.analysis.variables`) and joins them per patient of the cohort:

| kind | JSON | value per patient |
|---|---|---|
| `sex` | `{"kind": "sex"}` | the administrative gender as a category (`female`, `male`, ...) |
| `age` | `{"kind": "age", "at": "2023-12-31"}` | age in years (days / 365.25) at the date; default: today |
| `condition` | `{"kind": "condition", "codes": ["J44"], "value": "any"}` | 1 if any diagnosis with a code starting with one of `codes`, else 0 |
| `condition` | `{..., "value": "age_at_first"}` | age at the first such diagnosis (missing without one) |
| `condition` | `{..., "value": "count"}` | number of such diagnoses |
| `observation` | `{"kind": "observation", "codes": ["4548-4", "59261-8"], "unit": "%", "value": "latest", "from": "2023-01-01", "to": "2023-12-31"}` | the latest (`first`, `mean`, `min`, `max`, `count`) value of those LOINC codes in the period, in `unit` (values in other units converted where a conversion is known, else left out) |
| `time_to_event` | `{"kind": "time_to_event", "value": "time", "start": {"on": "condition", "codes": ["C50"]}, "event": {"on": "death"}}` | days from the start to the event or the site's data end (`value: "event"`: 1 if the event was seen, 0 if censored); see `datenraum.analysis.time_to_event` |

Condition codes match the code and every code below it (`E11` finds `E11.90`); `from`/`to` (dates,
inclusive) restrict the diagnosis's or observation's time. Every field is checked here, on the hub and
again at the site, and each value reaches the SQL as a bound parameter.

    "HbA1c latest in 2023, as %":  {"kind": "observation", "codes": ["4548-4", "59261-8"], "unit": "%",
                                    "value": "latest", "from": "2023-01-01", "to": "2023-12-31"}
    "age at first E11 diagnosis":  {"kind": "condition", "codes": ["E11"], "value": "age_at_first"}
    "any J44":                     {"kind": "condition", "codes": ["J44"], "value": "any"}
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from datenraum.analysis.time_to_event import TimeToEvent, TimeToEventError, parse_time_to_event

__all__ = [
    "CONVERSIONS",
    "MAX_DEFINITIONS",
    "VariableDef",
    "VariableError",
    "parse_definitions",
]

MAX_DEFINITIONS = 30
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")
ICD_CODE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
LOINC_CODE = re.compile(r"^[0-9]{1,7}-[0-9]$")
UNIT = re.compile(r"^[A-Za-z0-9%/.*\[\]{}_^-]{1,30}$")
KINDS = ("sex", "age", "condition", "observation", "time_to_event")
CONDITION_VALUES = ("any", "age_at_first", "count")
OBSERVATION_VALUES = ("latest", "first", "mean", "min", "max", "count")

#: (from unit, to unit) -> (factor, offset): value_to = factor * value_from + offset. HbA1c IFCC
#: (mmol/mol) to NGSP/DCCT (%): the master equation % = 0.09148 * mmol/mol + 2.152.
CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("mmol/mol", "%"): (0.09148, 2.152),
    ("%", "mmol/mol"): (1 / 0.09148, -2.152 / 0.09148),
    ("mg/dL", "mmol/L"): (1 / 18.016, 0.0),  # glucose
}


class VariableError(ValueError):
    """A variable definition that does not follow this model; the text names the variable and field."""


@dataclass(frozen=True)
class VariableDef:
    name: str
    kind: str
    value: str | None = None
    codes: tuple[str, ...] = ()
    unit: str | None = None
    start: dt.date | None = None  # "from"
    end: dt.date | None = None  # "to"
    at: dt.date | None = None
    survival: TimeToEvent | None = None  # kind time_to_event

    @property
    def categorical(self) -> bool:
        return self.kind == "sex"

    def to_json(self) -> dict[str, Any]:
        if self.survival is not None:
            return self.survival.to_json()
        body: dict[str, Any] = {"kind": self.kind}
        if self.value is not None:
            body["value"] = self.value
        if self.codes:
            body["codes"] = list(self.codes)
        if self.unit is not None:
            body["unit"] = self.unit
        if self.start is not None:
            body["from"] = self.start.isoformat()
        if self.end is not None:
            body["to"] = self.end.isoformat()
        if self.at is not None:
            body["at"] = self.at.isoformat()
        return body


_FIELDS = {
    "sex": {"kind"},
    "age": {"kind", "at"},
    "condition": {"kind", "codes", "value", "from", "to"},
    "observation": {"kind", "codes", "unit", "value", "from", "to"},
    "time_to_event": {"kind", "value", "start", "event"},
}


def _date(body: Mapping, key: str, where: str) -> dt.date | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 10:
        raise VariableError(f"{where}.{key}: expected a date YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise VariableError(f"{where}.{key}: expected a date YYYY-MM-DD") from None


def _codes(body: Mapping, where: str, pattern: re.Pattern, what: str) -> tuple[str, ...]:
    codes = body.get("codes")
    if not isinstance(codes, list) or not 1 <= len(codes) <= 20:
        raise VariableError(f"{where}.codes: expected a list of 1 to 20 {what} codes")
    for code in codes:
        if not isinstance(code, str) or not pattern.match(code):
            raise VariableError(f"{where}.codes: {code!r} is not a {what} code")
    return tuple(codes)


def _definition(name: str, body: Any) -> VariableDef:
    where = f"variables.{name}"
    if not isinstance(body, dict):
        raise VariableError(f"{where}: expected an object with a kind")
    kind = body.get("kind")
    if kind not in KINDS:
        raise VariableError(f"{where}.kind: expected one of {', '.join(KINDS)}")
    unknown = set(body) - _FIELDS[kind]
    if unknown:
        raise VariableError(f"{where}: unknown fields for {kind}: {', '.join(sorted(map(str, unknown)))}")
    if kind == "sex":
        return VariableDef(name, kind)
    if kind == "time_to_event":
        try:
            survival = parse_time_to_event(body, where)
        except TimeToEventError as error:
            raise VariableError(str(error)) from None
        return VariableDef(name, kind, survival.value, survival=survival)
    if kind == "age":
        return VariableDef(name, kind, at=_date(body, "at", where))
    start, end = _date(body, "from", where), _date(body, "to", where)
    if start and end and start > end:
        raise VariableError(f"{where}: from is after to")
    value = body.get("value")
    if kind == "condition":
        if value not in CONDITION_VALUES:
            raise VariableError(f"{where}.value: expected one of {', '.join(CONDITION_VALUES)}")
        return VariableDef(name, kind, value, _codes(body, where, ICD_CODE, "ICD-10"), start=start, end=end)
    if value not in OBSERVATION_VALUES:
        raise VariableError(f"{where}.value: expected one of {', '.join(OBSERVATION_VALUES)}")
    unit = body.get("unit")
    if unit is not None and (not isinstance(unit, str) or not UNIT.match(unit)):
        raise VariableError(f"{where}.unit: expected a UCUM unit of at most 30 characters")
    return VariableDef(
        name, kind, value, _codes(body, where, LOINC_CODE, "LOINC"), unit=unit, start=start, end=end
    )


def parse_definitions(body: Any) -> tuple[VariableDef, ...]:
    """The typed definitions of `{name: definition}`; VariableError naming the variable otherwise."""
    if not isinstance(body, dict) or not 1 <= len(body) <= MAX_DEFINITIONS:
        raise VariableError(f"variables: expected 1 to {MAX_DEFINITIONS} named definitions")
    out = []
    for name, definition in body.items():
        if not isinstance(name, str) or not NAME.match(name):
            raise VariableError(
                f"variables: {name!r} is not a variable name (letters, digits, _; 40 at most)"
            )
        out.append(_definition(name, definition))
    return tuple(out)
