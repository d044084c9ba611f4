"""The dashboard's downloads beyond the series: the 4CE and RKI exports over the API, each chart as SVG and
PDF, and the page in German (the portal's default) and English."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from collections import Counter
from typing import Any

import pytest

from datenraum.hub.dashboard.service import Dashboard
from datenraum.indicators.cube import COLUMNS, CUBE_FORMAT
from datenraum.indicators.exports import FOURCE_DAILY_COUNTS, MASKED, RKI_WEEKLY
from datenraum.indicators.registry import Registry

from .helpers import HubFixture, SiteClient, serving

pytestmark = pytest.mark.anyio

AS_OF = dt.date(2021, 1, 31)
NAMES = ("uk-a", "uk-b", "uk-c")


def cube(registry: Registry, seed: int, as_of: dt.date) -> dict[str, Any]:
    """New inpatient cases (daily and weekly) by sex and federal state; every other series empty."""
    rng = random.Random(seed)
    daily: Counter[tuple[Any, ...]] = Counter()
    weekly: Counter[tuple[Any, ...]] = Counter()
    for _ in range(400):
        day = AS_OF - dt.timedelta(days=rng.randrange(40))
        year, week, _weekday = day.isocalendar()
        sex, state = rng.choice(("female", "male")), rng.choice(("BY", "NW", "BE"))
        for counter, period in ((daily, day.isoformat()), (weekly, f"{year}-W{week:02d}")):
            counter[period, None, None, None, None, None] += 1
            counter[period, None, sex, None, None, None] += 1
            counter[period, None, None, None, state, None] += 1
    chosen = {"new_inpatient_cases": daily, "weekly_new_inpatient_cases": weekly}
    series = [
        {
            "disease": disease.id,
            "indicator": indicator,
            "rows": [[*key, n] for key, n in sorted(chosen[indicator].items(), key=lambda kv: str(kv[0]))]
            if disease.id == "covid19" and indicator in chosen
            else [],
        }
        for disease in registry.diseases.values()
        if disease.start <= as_of
        for indicator in registry.indicators
    ]
    return {
        "format": CUBE_FORMAT,
        "site": None,
        "data_as_of": as_of.isoformat(),
        "run_at": "2021-02-01T01:00:00+00:00",
        "definitions_version": registry.version,
        "columns": list(COLUMNS[1:]),
        "completeness": {},
        "series": series,
    }


async def deliver_all(hub: HubFixture, client) -> None:
    credentials = hub.sites(*NAMES)
    Dashboard(hub.sessions, hub.config, hub.clock).start_run(AS_OF)
    for seed, name in enumerate(NAMES):
        site = SiteClient(client, credentials[name])
        for task in await site.poll():
            registry = Registry.from_json(task["payload"]["definitions"])
            body = {"task_id": task["id"], "state": "answered", "cube": cube(registry, seed, AS_OF)}
            response = await site.post(task["id"], body)
            assert response.json()["accepted"], response.text


async def test_the_exports_carry_only_released_numbers(hub: HubFixture) -> None:
    async with serving(hub.app()) as client:
        await deliver_all(hub, client)
        released = (await client.get("/api/v1/dashboard/covid19/new_inpatient_cases.json")).json()["rows"]
        response = await client.get("/api/v1/dashboard/covid19/exports/4ce-dailycounts.csv")
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert list(rows[0]) == list(FOURCE_DAILY_COUNTS)
        totals = {r["period"]: r["value"] for r in released if r["sex"] is None and r["state"] is None}
        running: int | None = 0
        for row in rows:
            value = totals[row["calendar_date"]]
            running = None if running is None or value is None else running + value
            assert int(row["cumulative_pts_all"]) == (MASKED if running is None else running)
        weekly = list(
            csv.DictReader(
                io.StringIO((await client.get("/api/v1/dashboard/covid19/exports/rki-weekly.csv")).text)
            )
        )
        assert list(weekly[0]) == list(RKI_WEEKLY)
        places = {r["Bundesland"] for r in weekly}
        assert {"Bundesgebiet", "Bayern", "Nordrhein-Westfalen", "Berlin"} <= places
        # Nothing in 1..k-1: a hidden value is empty.
        assert not [r for r in weekly if r["aktualisierte_Faelle"] and 0 < int(r["aktualisierte_Faelle"]) < 5]
        unknown = await client.get("/api/v1/dashboard/nosuch/exports/rki-weekly.csv")
        assert unknown.status_code == 404 and "nosuch" in unknown.text


async def test_each_chart_downloads_as_svg_and_pdf(hub: HubFixture) -> None:
    async with serving(hub.app()) as client:
        await deliver_all(hub, client)
        svg = await client.get("/dashboard/covid19/charts/c0.svg")
        assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
        assert svg.text.startswith("<svg") and "Neue stationäre Fälle pro Tag" in svg.text
        pdf = await client.get("/dashboard/covid19/charts/c6.pdf", headers={"Accept-Language": "en"})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        for bad in ("c7.svg", "c0.png", "x.svg", "c-1.pdf"):
            response = await client.get(f"/dashboard/covid19/charts/{bad}")
            assert response.status_code == 404, bad


async def test_the_dashboard_page_speaks_german_by_default_and_english_on_request(hub: HubFixture) -> None:
    async with serving(hub.app()) as client:
        await deliver_all(hub, client)
        german = (await client.get("/dashboard/covid19")).text
        assert "Krisen-Dashboard" in german and "Datentabelle" in german and "Lizenz CC BY 4.0" in german
        assert 'href="/dashboard/covid19/charts/c0.svg"' in german
        assert "/api/v1/dashboard/covid19/exports/4ce-dailycounts.csv" in german
        english = (await client.get("/dashboard/covid19", headers={"Accept-Language": "en"})).text
        assert "Crisis dashboard" in english and "Data table" in english and "Krisen" not in english
        # No text key shows as itself (a missing translation).
        assert "dashboard." not in german.replace("/dashboard", "") and "chart." not in german
