"""The dashboard's public API (`/api/v1/dashboard`): the released series as JSON and CSV (CC BY 4.0).

The URLs and the JSON shape are stable, for the FAIR catalogue's dataset distributions:
`GET /api/v1/dashboard` lists every series with its URLs; `GET /api/v1/dashboard/{disease}/{indicator}.json`
is `{"disease", "indicator", "title", "bucket", "licence", "data_as_of", "definitions_version", "sites",
"k", "min_sites", "rows": [{"period", "level", "sex", "age_rki", "state", "los_bin", "value",
"suppressed", "n_sites", ["withheld"], ["first_published"], ["average_7d"]}]}`; `.csv` has the same rows
(suppressed and withheld values empty). No sign-in: these are exactly the numbers the public page shows.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from datenraum.hub.runtime import HubDep

__all__ = ["CSV_COLUMNS", "router", "series_csv"]

router = APIRouter(prefix="/api/v1/dashboard", tags=["dashboard"])

CSV_COLUMNS = (
    "period", "level", "sex", "age_rki", "state", "los_bin", "value", "suppressed", "n_sites",
    "first_published", "average_7d",
)  # fmt: skip


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


@router.get("/{disease}/{indicator}.json")
async def series_json(hub: HubDep, disease: str, indicator: str) -> dict[str, Any]:
    series = await hub.run(hub.dashboard.series, disease, indicator)
    return series.to_json()


@router.get("/{disease}/{indicator}.csv")
async def series_csv_download(hub: HubDep, disease: str, indicator: str) -> Response:
    series = await hub.run(hub.dashboard.series, disease, indicator)
    headers = {"Content-Disposition": f'attachment; filename="datenraum-{disease}-{indicator}.csv"'}
    return Response(series_csv(series.to_json()), media_type="text/csv; charset=utf-8", headers=headers)
