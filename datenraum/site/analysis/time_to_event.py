"""Time-to-event variables as SQL over the site store (the definitions: `datenraum.analysis.time_to_event`).

One LEFT JOIN per variable: a subquery of each patient's start date, joined with the patient's first
event date on or after it, gives `time` (days to the event, or to the data end) and `event` (0/1), or
NULL for a patient without a usable start. Every code, class, date and threshold is a bound parameter.
The data end is the site's configured one, else the latest date the store holds (`store_data_end`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from datenraum.analysis.time_to_event import EventDef, StartDef, TimeToEvent
from datenraum.analysis.variables import CONVERSIONS
from datenraum.site.store import Snapshot

__all__ = ["converted_value_sql", "store_data_end", "time_to_event_join"]

_CONDITION_DATE = "CAST(coalesce(onset_datetime, recorded_date) AS DATE)"
_DATES = (
    "SELECT max(CAST(period_start AS DATE)) AS d FROM encounter",
    "SELECT max(CAST(period_end AS DATE)) FROM encounter",
    f"SELECT max({_CONDITION_DATE}) FROM condition",
    "SELECT max(CAST(effective AS DATE)) FROM observation",
    "SELECT max(CAST(deceased_datetime AS DATE)) FROM patient",
)


def store_data_end(snapshot: Snapshot) -> dt.date | None:
    """The latest date of an encounter, diagnosis, observation or death in the store (None if none)."""
    rows = snapshot.connection.sql(f"SELECT max(d) FROM ({' UNION ALL '.join(_DATES)})").fetchall()
    return rows[0][0]


def converted_value_sql(unit: str | None, params: list[Any]) -> str:
    """An observation's value in `unit` (a known conversion applied), NULL in any other unit."""
    value = "CAST(value_quantity AS DOUBLE)"
    if unit is None:
        return value
    cases = ["WHEN value_unit = ? THEN " + value]
    params.append(unit)
    for (source, target), (factor, offset) in CONVERSIONS.items():
        if target == unit:
            cases.append(f"WHEN value_unit = ? THEN {value} * ? + ?")
            params.extend([source, factor, offset])
    return "CASE " + " ".join(cases) + " END"


def _codes_match(codes: tuple[str, ...], params: list[Any]) -> str:
    params.extend(codes)
    return "(" + " OR ".join("starts_with(code, ?)" for _ in codes) + ")"


def _start(start: StartDef, cohort: str, params: list[Any]) -> str:
    if start.on == "condition":
        match = _codes_match(start.codes, params)
        return (
            f"SELECT patient_id, min({_CONDITION_DATE}) AS s FROM condition WHERE {match} GROUP BY patient_id"
        )
    if start.on == "admission":
        where = "period_start IS NOT NULL"
        if start.classes:
            where += f" AND class_code IN ({', '.join('?' for _ in start.classes)})"
            params.extend(start.classes)
        return (
            f"SELECT patient_id, min(CAST(period_start AS DATE)) AS s FROM encounter WHERE {where} "
            "GROUP BY patient_id"
        )
    params.append(start.date)
    return f"SELECT patient_id, CAST(? AS DATE) AS s FROM {cohort}"


def _event(event: EventDef, start_sql: str, start_params: list[Any], params: list[Any]) -> str:
    """Per patient: `e` the first event date on or after the start; for death also `unknown` (died at
    a date not recorded)."""
    if event.on == "death":
        return (
            "SELECT patient_id, min(CAST(deceased_datetime AS DATE)) AS e, "
            "bool_or(coalesce(deceased, false)) AND min(deceased_datetime) IS NULL AS unknown "
            "FROM patient GROUP BY patient_id"
        )
    if event.on == "condition":
        match = _codes_match(event.codes, params)
        dated = f"SELECT patient_id, {_CONDITION_DATE} AS t FROM condition WHERE {match}"
    else:
        value = converted_value_sql(event.unit, params)
        codes = ", ".join("?" for _ in event.codes)
        params.extend(event.codes)
        comparison = "v > ?" if event.above is not None else "v < ?"
        inner = (
            f"SELECT patient_id, CAST(effective AS DATE) AS t, {value} AS v FROM observation "
            f"WHERE code IN ({codes}) AND value_quantity IS NOT NULL AND effective IS NOT NULL"
        )
        dated = f"SELECT patient_id, t FROM ({inner}) WHERE {comparison}"
        params.append(event.above if event.above is not None else event.below)
    params.extend(start_params)
    return (
        f"SELECT x.patient_id, min(x.t) AS e, false AS unknown FROM ({dated}) x "
        f"JOIN ({start_sql}) st ON st.patient_id = x.patient_id WHERE x.t >= st.s GROUP BY x.patient_id"
    )


def time_to_event_join(
    survival: TimeToEvent, alias: str, cohort: str, data_end: dt.date, params: list[Any]
) -> tuple[str, str]:
    """The LEFT JOIN of one time-to-event variable (its parameters appended to `params`, in order) and
    the select expression of its value."""
    start_params: list[Any] = []
    start_sql = _start(survival.start, cohort, start_params)
    event_params: list[Any] = []
    event_sql = _event(survival.event, start_sql, start_params, event_params)
    usable = "st.s <= CAST(? AS DATE) AND NOT coalesce(ev.unknown, false) AND (ev.e IS NULL OR ev.e >= st.s)"
    seen = "ev.e IS NOT NULL AND ev.e <= CAST(? AS DATE)"
    join = (
        f"LEFT JOIN (SELECT st.patient_id, "
        f"CASE WHEN NOT ({usable}) THEN NULL WHEN {seen} THEN CAST(date_diff('day', st.s, ev.e) AS DOUBLE) "
        f"ELSE CAST(date_diff('day', st.s, CAST(? AS DATE)) AS DOUBLE) END AS time, "
        f"CASE WHEN NOT ({usable}) THEN NULL WHEN {seen} THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS event "
        f"FROM ({start_sql}) st LEFT JOIN ({event_sql}) ev ON ev.patient_id = st.patient_id) {alias} "
        f"ON {alias}.patient_id = c.patient_id"
    )
    params.extend([data_end, data_end, data_end, data_end, data_end])
    params.extend(start_params)
    params.extend(event_params)
    return join, f"{alias}.{survival.value}"
