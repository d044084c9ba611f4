"""The dashboard's public API (`/api/v1/dashboard`): the released series as JSON and CSV (CC BY 4.0).

The URLs and the JSON shape are stable, for the FAIR catalogue's dataset distributions:
`GET /api/v1/dashboard` lists every series with its URLs; `GET /api/v1/dashboard/{disease}/{indicator}.json`
is `{"disease", "indicator", "title", "bucket", "licence", "data_as_of", "definitions_version", "sites",
"k", "min_sites", "rows": [{"period", "level", "sex", "age_rki", "state", "los_bin", "value",
"suppressed", "n_sites", ["withheld"], ["first_published"], ["average_7d"]}]}`; `.csv` has the same rows
(suppressed and withheld values empty). No sign-in: these are exactly the numbers the public page shows.
`GET /api/v1/dashboard/schema.json` is the CSV's Frictionless Table Schema (the catalogue's distributions
conform to it). The exports in other networks' layouts are made from the same released rows
(`datenraum.indicators.exports`): `/api/v1/dashboard/{disease}/exports/4ce-dailycounts.csv` (4CE Phase 1.2
`DailyCounts`) and `/api/v1/dashboard/{disease}/exports/rki-weekly.csv`.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from datenraum.hub.runtime import HubDep
from datenraum.indicators.exports import fource_daily_counts, rki_weekly

__all__ = ["CSV_COLUMNS", "TABLE_SCHEMA", "router", "series_csv"]

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])

CSV_COLUMNS = (
    "period", "level", "sex", "age_rki", "state", "los_bin", "value", "suppressed", "n_sites",
    "first_published", "average_7d",
)  # fmt: skip


_TEXT_COLUMNS = {
    "period": "The day (YYYY-MM-DD, Europe/Berlin) or ISO week (YYYY-Www) of the event.",
    "level": "Highest care level that day (ward, icu, ventilation, ecmo); empty: all levels.",
    "sex": "Sex (female, male, diverse, unknown); empty: all.",
    "age_rki": "RKI age group at the event (00-04, 05-14, 15-34, 35-59, 60-79, 80+); empty: all.",
    "state": "Federal state of residence (ISO 3166-2:DE code without DE-; other: small states merged); "
    "empty: all.",
    "los_bin": "Length of stay bin in days; empty: all.",
}
#: The Frictionless Table Schema of every series' CSV (https://specs.frictionlessdata.io/table-schema/).
TABLE_SCHEMA: dict[str, Any] = {
    "fields": [
        *({"name": name, "type": "string", "description": text} for name, text in _TEXT_COLUMNS.items()),
        {
            "name": "value",
            "type": "integer",
            "description": "Patients, pooled over the sites; empty where suppressed (1 to k-1, or what would "
            "reveal such a value) or withheld (fewer sites than the minimum).",
            "constraints": {"minimum": 0},
        },
        {"name": "suppressed", "type": "boolean", "trueValues": ["True"], "falseValues": ["False"]},
        {"name": "n_sites", "type": "integer", "description": "Sites whose data cover the period."},
        {
            "name": "first_published",
            "type": "integer",
            "description": 'The total as first published (RKI\'s "fixiert"); only on totals.',
        },
        {
            "name": "average_7d",
            "type": "number",
            "description": "Trailing 7-day average of released daily totals; empty unless all 7 are released.",
        },
    ],
    "missingValues": [""],
}
_FOURCE_INDICATORS = (
    "new_inpatient_cases", "icu_admissions", "in_hospital_deaths", "severe_cases", "inpatients_on_day",
)  # fmt: skip


def _download(text: str, filename: str) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


def series_csv(body: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in body["rows"]:
        writer.writerow(["" if row.get(c) is None else row[c] for c in CSV_COLUMNS])
    return out.getvalue()


@router.get("")
async def dashboard_catalogue(hub: HubDep) -> dict[str, Any]:
    return await hub.run(hub.dashboard.catalogue)


@router.get("/schema.json")
async def table_schema() -> dict[str, Any]:
    return TABLE_SCHEMA


@router.get("/{disease}/exports/4ce-dailycounts.csv")
async def fource_export(hub: HubDep, disease: str) -> Response:
    bodies = {}
    for indicator in _FOURCE_INDICATORS:
        series = await hub.run(hub.dashboard.series, disease, indicator)
        bodies[indicator] = series.to_json()
    return _download(fource_daily_counts(bodies), f"datenraum-{disease}-DailyCounts.csv")


@router.get("/{disease}/exports/rki-weekly.csv")
async def rki_export(hub: HubDep, disease: str) -> Response:
    series = await hub.run(hub.dashboard.series, disease, "weekly_new_inpatient_cases")
    registry = await hub.run(hub.dashboard.registry)
    return _download(
        rki_weekly(series.to_json(), registry.care.states), f"datenraum-{disease}-rki-weekly.csv"
    )


@router.get("/{disease}/{indicator}.json")
async def series_json(hub: HubDep, disease: str, indicator: str) -> dict[str, Any]:
    series = await hub.run(hub.dashboard.series, disease, indicator)
    return series.to_json()


@router.get("/{disease}/{indicator}.csv")
async def series_csv_download(hub: HubDep, disease: str, indicator: str) -> Response:
    series = await hub.run(hub.dashboard.series, disease, indicator)
    return _download(series_csv(series.to_json()), f"datenraum-{disease}-{indicator}.csv")
