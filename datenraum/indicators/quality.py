"""Plausibility checks of a site's delivery (after 4CE's QC of daily counts): a failing cube is rejected.

`check_cube(cube, registry, as_of)` returns the problems, each a sentence naming the series, period and
stratum; none means the delivery is taken. The rules:

- the delivery answers the task: its `data_as_of` and `definitions_version` are the task's, every series
  of the definitions is there, every period lies between the disease's start and `data_as_of`;
- counts never decrease when accumulated (no negative count) and derived series stay within their base:
  ICU or above <= inpatients, ventilated <= ICU or above, ECMO <= ventilated, ICU admissions and deaths
  <= inpatients of the day, positive tests <= tests, severe cases <= new cases, SARI with the disease <=
  all SARI;
- strata sum to totals: within every period, the cells of one dimension (e.g. the four sexes) add up to
  the cell without it (every event has exactly one value of each dimension, "unknown" included).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from datenraum.indicators.cube import DIMENSIONS, CubeError, parse_cube
from datenraum.indicators.registry import Registry

__all__ = ["check_cube"]

_MAX_PROBLEMS = 20
_LEVEL_ORDER = ("ward", "icu", "ventilation", "ecmo")

# (smaller, larger, what): per period total of `smaller` must not exceed that of `larger`.
_WITHIN = (
    ("ventilated_on_day", "@icu_or_above", "ventilated <= ICU or above"),
    ("ecmo_on_day", "ventilated_on_day", "ECMO <= ventilated"),
    ("icu_admissions", "@all_inpatients", "ICU admissions <= inpatients"),
    ("in_hospital_deaths", "@all_inpatients", "deaths <= inpatients"),
    ("positive_tests", "tests", "positive tests <= tests"),
    ("severe_cases", "new_inpatient_cases", "severe cases <= new cases"),
    ("disease_sari", "sari_inpatient", "SARI with the disease <= all SARI"),
)


def _period_day(period: str) -> dt.date:
    if "W" in period:
        year, week = period.split("-W")
        return dt.date.fromisocalendar(int(year), int(week), 1)
    return dt.date.fromisoformat(period)


def check_cube(cube: Any, registry: Registry, as_of: dt.date) -> list[str]:
    """The delivery's problems (empty: accept it)."""
    try:
        parse_cube(cube)
    except CubeError as error:
        return [str(error)]
    problems: list[str] = []
    if cube["data_as_of"] != as_of.isoformat():
        problems.append(f"data_as_of is {cube['data_as_of']}, the task asked for {as_of.isoformat()}")
    if cube["definitions_version"] != registry.version:
        problems.append(
            f"definitions_version is {cube['definitions_version']}, the task's definitions are {registry.version}"
        )
    series = {(s["disease"], s["indicator"]): s["rows"] for s in cube["series"]}
    for disease in registry.diseases.values():
        if disease.start > as_of:
            continue
        for indicator in registry.indicators:
            if (disease.id, indicator) not in series:
                problems.append(f"{disease.id}/{indicator}: missing")
    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (disease_id, indicator_id), rows in series.items():
        disease = registry.diseases.get(disease_id)
        indicator = registry.indicators.get(indicator_id)
        if disease is None or indicator is None:
            problems.append(f"{disease_id}/{indicator_id}: not in the definitions")
            continue
        cells: dict[tuple[str, tuple[Any, ...]], int] = {}
        first_day = disease.start - dt.timedelta(days=6) if indicator.bucket == "iso_week" else disease.start
        for row in rows:
            period, stratum, value = row[0], tuple(row[1:-1]), row[-1]
            try:
                day = _period_day(period)
            except ValueError:
                problems.append(f"{disease_id}/{indicator_id}: period {period} is not a date")
                continue
            if not first_day <= day <= as_of:
                problems.append(
                    f"{disease_id}/{indicator_id}: period {period} outside {disease.start}..{as_of}"
                )
            if (period, stratum) in cells:
                problems.append(f"{disease_id}/{indicator_id}: {period} {stratum} twice")
            cells[period, stratum] = value
        for (period, stratum), value in cells.items():
            if all(v is None for v in stratum):
                totals[disease_id, indicator_id][period] = value
            if indicator.kind == "occupancy" and stratum[0] is not None:
                key = "@all_inpatients"
                totals[disease_id, key][period] = totals[disease_id, key].get(period, 0)
                if all(v is None for v in stratum[1:]):
                    totals[disease_id, "@levels_sum"][period] = (
                        totals[disease_id, "@levels_sum"].get(period, 0) + value
                    )
                    if _LEVEL_ORDER.index(stratum[0]) >= 1:
                        icu = totals[disease_id, "@icu_or_above"]
                        icu[period] = icu.get(period, 0) + value
        # Strata sum to totals: children along each dimension add up to their parent.
        sums: dict[tuple[str, tuple[Any, ...], int], int] = defaultdict(int)
        for (period, stratum), value in cells.items():
            for index, part in enumerate(stratum):
                if part is not None:
                    parent = (*stratum[:index], None, *stratum[index + 1 :])
                    sums[period, parent, index] += value
        for (period, parent, index), total in sums.items():
            expected = cells.get((period, parent))
            if expected is None and all(v is None for v in parent) and indicator.kind == "length_of_stay":
                continue  # LOS has no total row: its strata are the bins
            if expected is not None and total != expected:
                problems.append(
                    f"{disease_id}/{indicator_id}: {period}: the {DIMENSIONS[index]} strata sum to {total}, "
                    f"the total is {expected}"
                )
        if len(problems) >= _MAX_PROBLEMS:
            break
    for disease in registry.diseases.values():
        if disease.start > as_of:
            continue
        inpatients = totals[disease.id, "inpatients_on_day"]
        levels = totals[disease.id, "@levels_sum"]
        for period, value in levels.items():
            if inpatients.get(period, 0) != value:
                problems.append(
                    f"{disease.id}/inpatients_on_day: {period}: the levels sum to {value}, not the total"
                )
        totals[disease.id, "@all_inpatients"] = inpatients
        for smaller, larger, what in _WITHIN:
            small, large = totals[disease.id, smaller], totals[disease.id, larger]
            for period, value in small.items():
                if value > large.get(period, 0):
                    problems.append(
                        f"{disease.id}/{smaller}: {period}: {value} breaks {what} ({large.get(period, 0)})"
                    )
                    break
    return problems[:_MAX_PROBLEMS]
