"""The crisis dashboard's life over days: the daily run the hub's sweep starts at its Berlin time of day
(once, whichever hub process comes first), a release history that outlives a hub restart and keeps a
site's dropping out from being subtracted, overdue tasks timed out, and one computation per generation."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from datenraum.hub.config import ConfigError, HubConfig
from datenraum.hub.dashboard.service import Dashboard
from datenraum.hub.dashboard.tables import DashboardTaskRow
from datenraum.hub.runtime import Hub
from datenraum.hub.sweep import Every, sweep
from datenraum.indicators.cube import DIMENSIONS
from datenraum.privacy.cells import DEFAULT_K

from .helpers import HubFixture, SiteClient, serving
from .test_dashboard import AS_OF, deliver, events_for, make_cube

pytestmark = pytest.mark.anyio

BERLIN_0230_IN_WINTER = dt.datetime(2021, 2, 1, 1, 30, tzinfo=dt.UTC)


def tasks(hub: HubFixture) -> list[tuple[str, int, str]]:
    with hub.sessions() as session:
        return [
            (row.run_id, row.site_id, row.as_of)
            for row in session.scalars(sa.select(DashboardTaskRow).order_by(DashboardTaskRow.created))
        ]


def totals(body: dict) -> dict[str, int | None]:
    return {r["period"]: r["value"] for r in body["rows"] if all(r[n] is None for n in DIMENSIONS)}


def test_the_daily_run_starts_once_a_day_when_its_berlin_time_of_day_has_come(hub: HubFixture) -> None:
    hub.sites("uk-a", "uk-b")
    config = dataclasses.replace(hub.config, dashboard_run_at="03:00")
    hub.clock.now = BERLIN_0230_IN_WINTER
    dashboard = Dashboard(hub.sessions, config, hub.clock)
    assert dashboard.run_if_due() == frozenset()  # 02:30 in Berlin
    hub.clock.advance(30 * 60)
    woken = dashboard.run_if_due()
    assert len(woken) == 2 and [as_of for *_, as_of in tasks(hub)] == ["2021-01-31"] * 2
    assert dashboard.run_if_due() == frozenset()
    # Another hub process, later the same day, finds today's run started.
    hub.clock.advance(3600)
    assert Dashboard(hub.sessions, config, hub.clock).run_if_due() == frozenset()
    assert len(tasks(hub)) == 2
    hub.clock.advance(23 * 3600)
    assert len(dashboard.run_if_due()) == 2
    assert sorted({as_of for *_, as_of in tasks(hub)}) == ["2021-01-31", "2021-02-01"]


def test_no_time_of_day_no_scheduled_run_and_a_bad_one_is_named() -> None:
    with pytest.raises(ConfigError, match="dashboard_run_at: a time of day as HH:MM, got '25:00'"):
        HubConfig(dashboard_run_at="25:00")
    assert HubConfig().dashboard_daily_run is None


async def test_the_hubs_sweep_starts_the_daily_run_and_times_out_what_no_site_delivered(
    hub: HubFixture,
) -> None:
    hub.sites("uk-a")
    hub.clock.now = BERLIN_0230_IN_WINTER + dt.timedelta(hours=1)
    runtime: Hub = hub.app(dashboard_run_at="03:00").state.hub
    reminders = Every(dt.timedelta(hours=1), hub.clock)
    try:
        await sweep(runtime, reminders)
        with hub.sessions() as session:
            states = session.scalars(sa.select(DashboardTaskRow.state)).all()
        assert states == ["pending"]
        hub.clock.advance(7 * 3600)  # the six hours a site has to deliver are over
        await sweep(runtime, reminders)
        with hub.sessions() as session:
            states = session.scalars(sa.select(DashboardTaskRow.state)).all()
        assert states == ["timed-out"]
    finally:
        runtime.engine.dispose()


async def test_a_site_that_drops_out_cannot_be_subtracted_even_across_a_hub_restart(
    hub: HubFixture,
) -> None:
    """Four sites, then three: every total that moved by 1..k-1 is hidden, so the dropped site's
    contribution to a day is never one release minus the other; the history is in the database, so a
    restarted hub remembers what the first one showed."""
    names = ["uk-a", "uk-b", "uk-c", "uk-d"]
    credentials = hub.sites(*names)
    # The leaving site adds 0..3 cases a day: exactly what a difference of two releases would tell.
    events = {name: events_for(number, n=900 if name != "uk-d" else 40) for number, name in enumerate(names)}
    async with serving(hub.app()) as client:
        Dashboard(hub.sessions, hub.config, hub.clock).start_run(AS_OF)
        for name in names:
            await deliver(
                SiteClient(client, credentials[name]),
                lambda registry, as_of, name=name: make_cube(registry, events[name], as_of),
            )
        before = totals((await client.get("/api/v1/dashboard/covid19/new_inpatient_cases.json")).json())
    hub.clock.advance(49 * 3600)
    async with serving(hub.app()) as client:  # a restarted hub
        Dashboard(hub.sessions, hub.config, hub.clock).start_run(AS_OF)
        for name in names[:3]:
            await deliver(
                SiteClient(client, credentials[name]),
                lambda registry, as_of, name=name: make_cube(registry, events[name], as_of),
            )
        after = totals((await client.get("/api/v1/dashboard/covid19/new_inpatient_cases.json")).json())
    both = [(before[p], after[p]) for p in before if before[p] is not None and after.get(p) is not None]
    assert both, "some totals are shown in both releases"
    assert not [(b, a) for b, a in both if 0 < abs(b - a) < DEFAULT_K]
    moved = [p for p in before if before[p] is not None and after.get(p) is None]
    assert moved, "the site's small contributions were hidden, not shown"


async def test_readers_between_two_deliveries_share_one_release(hub: HubFixture) -> None:
    names = ["uk-a", "uk-b", "uk-c"]
    credentials = hub.sites(*names)
    dashboard = Dashboard(hub.sessions, hub.config, hub.clock)
    async with serving(hub.app()) as client:
        dashboard.start_run(AS_OF)
        for name in names:
            await deliver(
                SiteClient(client, credentials[name]),
                lambda registry, as_of, name=name: make_cube(registry, events_for(7), as_of),
            )
    first = dashboard.series("covid19", "new_inpatient_cases")
    assert dashboard.series("covid19", "new_inpatient_cases") is first
    hub.clock.advance(3600)
    dashboard.start_run(AS_OF)
    async with serving(hub.app()) as client:
        await deliver(
            SiteClient(client, credentials["uk-a"]),
            lambda registry, as_of: make_cube(registry, events_for(8), as_of),
        )
    assert dashboard.series("covid19", "new_inpatient_cases") is not first
