"""Time-to-event variables, declared (no SQL, no code): when follow-up starts, which event ends it.

    {"kind": "time_to_event", "value": "time",            # days from start to event or censoring
     "start": {"on": "condition", "codes": ["C50"]},      # first such diagnosis
     "event": {"on": "death"}}
    {"kind": "time_to_event", "value": "event", ...}       # 1 if the event was seen, 0 if censored

| `start.on` | fields | start of follow-up |
|---|---|---|
| `condition` | `codes` (ICD-10, with every code below) | the patient's first such diagnosis (onset, else recorded) |
| `admission` | `classes` (optional, e.g. `["IMP"]`) | the start of the patient's first encounter (of those classes) |
| `date` | `date` | a calendar date, the same for every patient (a study's index date) |

| `event.on` | fields | the event |
|---|---|---|
| `death` | - | the patient's date of death (`deceasedDateTime`) |
| `condition` | `codes` | the first such diagnosis on or after the start |
| `observation` | `codes` (LOINC), `unit`, `above` or `below` | the first value on or after the start beyond the threshold (in `unit`, converted where known) |

Follow-up is censored at the site's data end date (its configured one, else the latest date its store
holds). A patient without a start, with a start after the data end, or who died before the start
(inconsistent data) has no time (missing, left out of every analysis of it); a patient known to have
died at an unknown date likewise, since censoring them alive would be wrong. The site turns this into
SQL (`datenraum.site.analysis.time_to_event`); times leave it only binned (`datenraum.privacy`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["EventDef", "StartDef", "TimeToEvent", "parse_time_to_event"]

START_ON = ("condition", "admission", "date")
EVENT_ON = ("death", "condition", "observation")
VALUES = ("time", "event")
ICD_CODE = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")
LOINC_CODE = re.compile(r"^[0-9]{1,7}-[0-9]$")
ENCOUNTER_CLASS = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
UNIT = re.compile(r"^[A-Za-z0-9%/.*\[\]{}_^-]{1,30}$")


class TimeToEventError(ValueError):
    """A time-to-event definition that does not follow this model; the text names the field."""


@dataclass(frozen=True)
class StartDef:
    on: str
    codes: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    date: dt.date | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"on": self.on}
        if self.codes:
            body["codes"] = list(self.codes)
        if self.classes:
            body["classes"] = list(self.classes)
        if self.date is not None:
            body["date"] = self.date.isoformat()
        return body


@dataclass(frozen=True)
class EventDef:
    on: str
    codes: tuple[str, ...] = ()
    unit: str | None = None
    above: float | None = None
    below: float | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"on": self.on}
        if self.codes:
            body["codes"] = list(self.codes)
        for key in ("unit", "above", "below"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        return body


@dataclass(frozen=True)
class TimeToEvent:
    value: str  # "time" (days) or "event" (0/1)
    start: StartDef
    event: EventDef

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "time_to_event",
            "value": self.value,
            "start": self.start.to_json(),
            "event": self.event.to_json(),
        }


def _object(body: Any, where: str, allowed: Mapping[str, set[str]], choices: tuple[str, ...]) -> dict:
    if not isinstance(body, dict):
        raise TimeToEventError(f"{where}: expected an object with on: {' | '.join(choices)}")
    on = body.get("on")
    if on not in choices:
        raise TimeToEventError(f"{where}.on: expected one of {', '.join(choices)}")
    unknown = set(body) - allowed[on]
    if unknown:
        raise TimeToEventError(f"{where}: unknown fields for {on}: {', '.join(sorted(map(str, unknown)))}")
    return body


def _list(body: Mapping, key: str, where: str, pattern: re.Pattern, what: str, required: bool) -> tuple:
    values = body.get(key)
    if values is None and not required:
        return ()
    if not isinstance(values, list) or not 1 <= len(values) <= 20:
        raise TimeToEventError(f"{where}.{key}: expected a list of 1 to 20 {what}")
    for value in values:
        if not isinstance(value, str) or not pattern.match(value):
            raise TimeToEventError(f"{where}.{key}: {value!r} is not a valid entry ({what})")
    return tuple(values)


def _threshold(body: Mapping, key: str, where: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TimeToEventError(f"{where}.{key}: expected a number")
    return float(value)


_START_FIELDS = {"condition": {"on", "codes"}, "admission": {"on", "classes"}, "date": {"on", "date"}}
_EVENT_FIELDS = {
    "death": {"on"},
    "condition": {"on", "codes"},
    "observation": {"on", "codes", "unit", "above", "below"},
}


def _start(body: Any, where: str) -> StartDef:
    body = _object(body, where, _START_FIELDS, START_ON)
    on = body["on"]
    if on == "condition":
        return StartDef(on, codes=_list(body, "codes", where, ICD_CODE, "ICD-10 codes", True))
    if on == "admission":
        return StartDef(
            on, classes=_list(body, "classes", where, ENCOUNTER_CLASS, "encounter classes", False)
        )
    value = body.get("date")
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError
        return StartDef(on, date=dt.date.fromisoformat(value))
    except ValueError:
        raise TimeToEventError(f"{where}.date: expected a date YYYY-MM-DD") from None


def _event(body: Any, where: str) -> EventDef:
    body = _object(body, where, _EVENT_FIELDS, EVENT_ON)
    on = body["on"]
    if on == "death":
        return EventDef(on)
    if on == "condition":
        return EventDef(on, codes=_list(body, "codes", where, ICD_CODE, "ICD-10 codes", True))
    codes = _list(body, "codes", where, LOINC_CODE, "LOINC codes", True)
    unit = body.get("unit")
    if unit is not None and (not isinstance(unit, str) or not UNIT.match(unit)):
        raise TimeToEventError(f"{where}.unit: expected a UCUM unit of at most 30 characters")
    above, below = _threshold(body, "above", where), _threshold(body, "below", where)
    if (above is None) == (below is None):
        raise TimeToEventError(f"{where}: expected either above or below (the event's threshold)")
    return EventDef(on, codes=codes, unit=unit, above=above, below=below)


def parse_time_to_event(body: Mapping[str, Any], where: str) -> TimeToEvent:
    """The typed definition of a `time_to_event` variable (`where`: its JSON path, for the errors)."""
    unknown = set(body) - {"kind", "value", "start", "event"}
    if unknown:
        raise TimeToEventError(
            f"{where}: unknown fields for time_to_event: {', '.join(sorted(map(str, unknown)))}"
        )
    value = body.get("value")
    if value not in VALUES:
        raise TimeToEventError(f"{where}.value: expected one of {', '.join(VALUES)}")
    return TimeToEvent(
        value, _start(body.get("start"), f"{where}.start"), _event(body.get("event"), f"{where}.event")
    )
