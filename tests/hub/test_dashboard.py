"""The crisis dashboard at the hub: indicators tasks over the site API, quality checks that reject a bad
delivery, pooling over fresh sites only (48 h), the release rules, first-published values, crisis mode."""

from __future__ import annotations

import datetime as dt
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datenraum.hub.dashboard.service import Dashboard
from datenraum.indicators.cube import COLUMNS, CUBE_FORMAT
from datenraum.indicators.quality import check_cube
from datenraum.indicators.registry import Registry, default_registry
from datenraum.privacy.cells import margin_groups, suppress

from .helpers import HubFixture, SiteClient, serving

pytestmark = pytest.mark.anyio

AS_OF = dt.date(2021, 1, 31)
SEXES = ("female", "male")
AGES = ("35-59", "60-79", "80+")
STATES = ("BY", "NW")


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "hub.sqlite"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


def events_for(seed: int, n: int = 300) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    return [
        (
            (AS_OF - dt.timedelta(days=rng.randrange(60))).isoformat(),
            rng.choice(SEXES),
            rng.choice(AGES),
            rng.choice(STATES),
        )
        for _ in range(n)
    ]


def make_cube(
    registry: Registry, events: list[tuple[str, str, str, str]], as_of: dt.date = AS_OF
) -> dict[str, Any]:
    """A cube whose new inpatient cases are `events` (all other series empty)."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for day, sex, age, state in events:
        counts[day, None, None, None, None, None] += 1
        counts[day, None, sex, None, None, None] += 1
        counts[day, None, None, age, None, None] += 1
        counts[day, None, None, None, state, None] += 1
    rows = sorted(
        ([*key, value] for key, value in counts.items()), key=lambda r: tuple(str(v or "") for v in r[:-1])
    )
    series = []
    for disease in registry.diseases.values():
        if disease.start > as_of:
            continue
        for indicator in registry.indicators:
            chosen = rows if (disease.id, indicator) == ("covid19", "new_inpatient_cases") else []
            series.append({"disease": disease.id, "indicator": indicator, "rows": chosen})
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


async def deliver(site: SiteClient, cube_for) -> list[dict[str, Any]]:
    answers = []
    for task in await site.poll():
        assert task["type"] == "indicators"
        registry = Registry.from_json(task["payload"]["definitions"])
        cube = cube_for(registry, dt.date.fromisoformat(task["payload"]["as_of"]))
        response = await site.post(task["id"], {"task_id": task["id"], "state": "answered", "cube": cube})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


async def series(client, indicator: str = "new_inpatient_cases") -> dict[str, Any]:
    response = await client.get(f"/api/v1/dashboard/covid19/{indicator}.json")
    assert response.status_code == 200, response.text
    return response.json()


async def test_sites_deliver_and_the_pooled_series_is_released(hub: HubFixture) -> None:
    names = ["uk-a", "uk-b", "uk-c", "uk-d"]
    credentials = hub.sites(*names)
    dashboard = Dashboard(hub.sessions, hub.config, hub.clock)
    events = {name: events_for(number) for number, name in enumerate(names)}
    async with serving(hub.app()) as client:
        dashboard.start_run(AS_OF)
        for name in names:
            site = SiteClient(client, credentials[name])
            answers = await deliver(
                site, lambda registry, as_of, name=name: make_cube(registry, events[name], as_of)
            )
            assert answers == [{"state": "answered", "accepted": True, "problems": []}]
        body = await series(client)
        assert body["licence"] == "CC BY 4.0" and body["sites"] == 4 and body["data_as_of"] == "2021-01-31"
        rows = body["rows"]
        # Every day from the disease's start, the total and each stratum's cells; nothing in 1..k-1.
        totals = [r for r in rows if r["sex"] is None and r["age_rki"] is None and r["state"] is None]
        assert totals[0]["period"] == "2020-01-27" and totals[-1]["period"] == "2021-01-31"
        assert all(r["n_sites"] == 4 for r in totals)
        assert not [r for r in rows if r["value"] is not None and 0 < r["value"] < 5]
        pooled = Counter(day for name in names for day, *_ in events[name])
        for row in totals:
            exact = pooled.get(row["period"], 0)
            assert row["value"] in (exact, None)
            if exact >= 5 and row["value"] is None:
                assert row["suppressed"]  # complementary suppression
        # The same rows as CSV.
        csv = (await client.get("/api/v1/dashboard/covid19/new_inpatient_cases.csv")).text.splitlines()
        assert csv[0].startswith("period,level,sex") and len(csv) == len(rows) + 1
        catalogue = (await client.get("/api/v1/dashboard")).json()
        assert (
            catalogue["diseases"][0]["series"][0]["json"]
            == "/api/v1/dashboard/covid19/new_inpatient_cases.json"
        )

        # 49 hours later only three sites have delivered again: the silent one drops out.
        hub.clock.advance(49 * 3600)
        dashboard.start_run(AS_OF + dt.timedelta(days=2))
        for name in names[:3]:
            site = SiteClient(client, credentials[name])
            await deliver(site, lambda registry, as_of, name=name: make_cube(registry, events[name], as_of))
        body = await series(client)
        assert body["sites"] == 3
        last = [r for r in body["rows"] if r["sex"] is None and r["age_rki"] is None and r["state"] is None]
        assert last[0]["n_sites"] == 3
        # First published values stay as they were; the values now are the three sites' sums.
        first = {r["period"]: r["first_published"] for r in totals}
        assert all(r["first_published"] == first.get(r["period"], r["first_published"]) for r in last)
        # Another site goes silent: two sites are too few for the public view.
        hub.clock.advance(49 * 3600)
        dashboard.start_run(AS_OF + dt.timedelta(days=4))
        for name in names[:2]:
            site = SiteClient(client, credentials[name])
            await deliver(site, lambda registry, as_of, name=name: make_cube(registry, events[name], as_of))
        body = await series(client)
        assert all(r["value"] is None and r["withheld"] for r in body["rows"])
        page = await client.get("/dashboard/covid19")
        assert page.status_code == 200 and 'data-chart="spec-c0"' in page.text


async def test_a_bad_delivery_is_rejected_and_the_site_is_told(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    dashboard = Dashboard(hub.sessions, hub.config, hub.clock)

    def broken(registry: Registry, as_of: dt.date) -> dict[str, Any]:
        cube = make_cube(registry, events_for(1), as_of)
        rows = next(s for s in cube["series"] if s["indicator"] == "new_inpatient_cases")["rows"]
        next(r for r in rows if r[2] == "female")[-1] += 1  # the sexes no longer sum to the total
        return cube

    async with serving(hub.app()) as client:
        dashboard.start_run(AS_OF)
        answers = await deliver(SiteClient(client, credentials["uk-a"]), broken)
        assert answers[0]["state"] == "failed" and not answers[0]["accepted"]
        assert "the sex strata sum to" in answers[0]["problems"][0]
        status = dashboard.status()
        assert status[0]["accepted"] is False and "sex strata" in status[0]["problems"]
        assert (await series(client))["sites"] == 0


def test_quality_rules() -> None:
    registry = default_registry()
    good = make_cube(registry, events_for(3))
    assert check_cube(good, registry, AS_OF) == []
    assert "data_as_of" in check_cube(good, registry, AS_OF + dt.timedelta(days=1))[0]
    wrong = make_cube(registry, events_for(3))
    wrong["definitions_version"] = "0" * 16
    assert "definitions_version" in check_cube(wrong, registry, AS_OF)[0]
    icu = make_cube(registry, events_for(3))
    for entry in icu["series"]:
        if entry["indicator"] == "ventilated_on_day":
            entry["rows"] = [["2021-01-10", None, None, None, None, None, 2]]
    assert any("ventilated <= ICU" in p for p in check_cube(icu, registry, AS_OF))
    negative = make_cube(registry, events_for(3))
    negative["series"][0]["rows"][0][-1] = -1
    assert "must be a count" in check_cube(negative, registry, AS_OF)[0]


cells = st.dictionaries(
    st.tuples(st.sampled_from([None, "f", "m", "d"]), st.sampled_from([None, "a", "b", "c"])),
    st.integers(0, 30),
    min_size=1,
)


@settings(max_examples=300, deadline=None)
@given(cells, st.integers(2, 10))
def test_suppression_leaves_nothing_below_k_and_nothing_derivable(table: dict, k: int) -> None:
    # A consistent table: the cells of sex x age, and every margin as the sum of its children.
    values: dict[tuple[str | None, str | None], int] = {k: v for k, v in table.items() if None not in k}
    for (sex, age), value in list(values.items()):
        for margin in ((sex, None), (None, age), (None, None)):
            values[margin] = values.get(margin, 0) + value
    margins = margin_groups(values)
    hidden = suppress(values, k, margins=margins)
    assert all(not 0 < v < k for key, v in values.items() if key not in hidden)
    for margin, children in margins:
        unknown = [c for c in children if c in hidden and values[c] > 0]
        if margin not in hidden:
            assert len(unknown) != 1, (margin, children, hidden)
        elif not unknown:
            assert all(values[c] == 0 for c in children)
