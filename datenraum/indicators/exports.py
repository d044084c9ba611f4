"""Exports of released series in the layouts other networks read: 4CE's Phase 1.2 `DailyCounts` and an
RKI-style weekly file of new inpatient cases by federal state and age group.

Both are made from released rows only (`release.release`, as the public API serves them), never from a
cube: an export shows nothing the dashboard does not. That decides the 4CE cumulative columns: a running
total is the sum of released daily values, and from the first day that is suppressed or withheld on it is
masked (`-99`), because carrying it on would give away the hidden day. Columns without a Datenraum
indicator behind them are `-999` (4CE's "not applicable"), as are days for which a series has no row.

A series body is the JSON of `/api/v1/dashboard/{disease}/{indicator}.json`: `{"rows": [{"period",
"level", "sex", "age_rki", "state", "los_bin", "value", "suppressed", "n_sites", ["first_published"]}]}`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from datenraum.indicators.release import MERGED_STATES

__all__ = [
    "FOURCE_DAILY_COUNTS",
    "MASKED",
    "NOT_APPLICABLE",
    "RKI_WEEKLY",
    "fource_daily_counts",
    "rki_weekly",
]

MASKED = -99
NOT_APPLICABLE = -999
FOURCE_DAILY_COUNTS = (
    "siteid", "cohort", "calendar_date",
    "cumulative_pts_all", "cumulative_pts_icu", "cumulative_pts_dead",
    "cumulative_pts_severe", "cumulative_pts_severe_icu", "cumulative_pts_severe_dead",
    "pts_in_hosp_on_this_date", "pts_in_icu_on_this_date",
    "pts_severe_in_hosp_on_date", "pts_severe_in_icu_on_date",
)  # fmt: skip
RKI_WEEKLY = (
    "Aufnahmewoche", "Bundesland", "Bundesland_Id", "Altersgruppe",
    "fixierte_Faelle", "aktualisierte_Faelle", "Standorte",
)  # fmt: skip
_DIMENSIONS = ("level", "sex", "age_rki", "state", "los_bin")
_ICU_LEVELS = ("icu", "ventilation", "ecmo")

Series = Mapping[str, Any]


def _only(row: Mapping[str, Any], *dimensions: str) -> bool:
    """The row is broken down by exactly these dimensions."""
    return all((row.get(d) is not None) == (d in dimensions) for d in _DIMENSIONS)


def _totals(series: Series | None) -> dict[str, int | None]:
    """Released total per day (None: suppressed or withheld)."""
    if series is None:
        return {}
    return {row["period"]: row["value"] for row in series["rows"] if _only(row)}


def _icu(series: Series | None) -> dict[str, int | None]:
    """Patients at an ICU level per day: the sum of the released level cells, None if one is hidden."""
    if series is None:
        return {}
    out: dict[str, int | None] = {}
    for row in series["rows"]:
        if _only(row, "level") and row["level"] in _ICU_LEVELS:
            before = out.get(row["period"], 0)
            out[row["period"]] = None if before is None or row["value"] is None else before + row["value"]
    return out


def _running(daily: Mapping[str, int | None], days: list[str]) -> dict[str, int | None]:
    """Running totals of released values; None from the first hidden (or missing) day on."""
    total: int | None = 0
    out: dict[str, int | None] = {}
    for day in days:
        value = daily.get(day)
        total = None if total is None or value is None else total + value
        out[day] = total
    return out


def _cell(value: int | None, present: bool) -> int:
    if not present:
        return NOT_APPLICABLE
    return MASKED if value is None else value


def _csv(header: tuple[str, ...], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def fource_daily_counts(
    series: Mapping[str, Series], *, siteid: str = "Datenraum", cohort: str = "PosAdm"
) -> str:
    """4CE Phase 1.2 `DailyCounts` from released daily series by indicator id (`new_inpatient_cases`,
    `icu_admissions`, `in_hospital_deaths`, `severe_cases`, `inpatients_on_day`; any may be missing).
    4CE counts every ICU patient as severe, so the severe ICU columns are the ICU columns."""
    admitted = _totals(series.get("new_inpatient_cases"))
    icu_admitted = _totals(series.get("icu_admissions"))
    deaths = _totals(series.get("in_hospital_deaths"))
    severe = _totals(series.get("severe_cases"))
    in_hospital = _totals(series.get("inpatients_on_day"))
    in_icu = _icu(series.get("inpatients_on_day"))
    days = sorted({*admitted, *icu_admitted, *deaths, *severe, *in_hospital})
    cumulative = {
        name: _running(daily, days)
        for name, daily in (("all", admitted), ("icu", icu_admitted), ("dead", deaths), ("severe", severe))
    }
    rows = []
    for day in days:
        icu_total = _cell(cumulative["icu"][day], day in icu_admitted)
        icu_now = _cell(in_icu.get(day), day in in_icu)
        rows.append(
            [
                siteid,
                cohort,
                day,
                _cell(cumulative["all"][day], day in admitted),
                icu_total,
                _cell(cumulative["dead"][day], day in deaths),
                _cell(cumulative["severe"][day], day in severe),
                icu_total,
                NOT_APPLICABLE,  # deaths of ever-severe patients: no Datenraum indicator
                _cell(in_hospital.get(day), day in in_hospital),
                icu_now,
                NOT_APPLICABLE,  # ever-severe patients still in hospital: no Datenraum indicator
                icu_now,
            ]
        )
    return _csv(FOURCE_DAILY_COUNTS, rows)


def rki_weekly(weekly: Series, states: Mapping[str, Mapping[str, str]]) -> str:
    """An RKI-style weekly file (as `COVID-19-Hospitalisierungen_in_Deutschland`, by admission week, not
    Meldedatum, and counts, not incidences: Datenraum has no population): per ISO week the total
    ("Bundesgebiet", "00", "00+"), each age group and each federal state; "fixiert" is the total as first
    published, "aktualisiert" the latest; a suppressed or withheld value is empty."""
    rows = []
    for row in weekly["rows"]:
        if _only(row):
            place, code, age = "Bundesgebiet", "00", "00+"
            fixed = row.get("first_published")
        elif _only(row, "age_rki"):
            place, code, age, fixed = "Bundesgebiet", "00", row["age_rki"], None
        elif _only(row, "state") and row["state"] == MERGED_STATES:
            place, code, age, fixed = "Übrige Länder (zusammengefasst)", "", "00+", None
        elif _only(row, "state"):
            state = states.get(row["state"])
            place = state["name"] if state else row["state"]
            code = state["ags"] if state else ""
            age, fixed = "00+", None
        else:
            continue
        value = row["value"]
        rows.append(
            [
                row["period"],
                place,
                code,
                age,
                "" if fixed is None else fixed,
                "" if value is None else value,
                row["n_sites"],
            ]
        )
    return _csv(RKI_WEEKLY, rows)
