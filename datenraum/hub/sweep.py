"""The hub's background sweep: overdue tasks, expired leases and deliveries every `sweep_interval_seconds`,
the crisis dashboard's daily run once its time of day has come (`dashboard_run_at`), and the sample
requests' reminders every `reminder_interval_seconds` of the hub's clock.

The reminders need no second timer: a quiet item is one that has not moved for days, so asking once an
hour is soon enough, and asking every second would lock every open item each time for nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from datenraum.hub.db import Clock
from datenraum.hub.feasibility.notify import query_key, site_key
from datenraum.hub.runtime import Hub
from datenraum.hub.samples.api import search_key

__all__ = ["Every", "sweep", "sweep_forever"]

log = logging.getLogger(__name__)


class Every:
    """Whether a job is due: at first, then once `interval` of `clock` has passed since it last ran."""

    def __init__(self, interval: dt.timedelta, clock: Clock) -> None:
        self._interval = interval
        self._clock = clock
        self._last: dt.datetime | None = None

    def due(self) -> bool:
        return self._last is None or self._clock() - self._last >= self._interval

    def ran(self) -> None:
        """The job ran through; one that failed stays due, for the next sweep to try again."""
        self._last = self._clock()


async def sweep(hub: Hub, reminders: Every) -> None:
    """One sweep; raises what the database raised (the caller keeps trying)."""
    changes = await hub.run(hub.federation.sweep)
    await hub.run(hub.deliveries.sweep)
    searches = await hub.run(hub.samples.sweep)
    await hub.run(hub.dashboard.sweep)
    scheduled = await hub.run(hub.dashboard.run_if_due)
    hub.notifier.notify([*map(query_key, changes.query_ids), *map(site_key, changes.site_ids)])
    hub.notifier.notify(map(search_key, searches))
    hub.notifier.notify(map(site_key, scheduled))
    if reminders.due():
        reminded = await hub.run(hub.sample_requests.remind)
        reminders.ran()
        if reminded:
            log.info("reminded whoever must act on %d quiet sample request items", reminded)


async def sweep_forever(hub: Hub, clock: Clock) -> None:
    """Sweep every sweep interval until cancelled."""
    reminders = Every(dt.timedelta(seconds=hub.config.reminder_interval_seconds), clock)
    failing = False
    while True:
        try:
            await sweep(hub, reminders)
        except Exception:
            # The database may be away for a while; say so once, and keep trying.
            if not failing:
                log.exception("sweeping overdue tasks failed; retrying")
            failing = True
        else:
            if failing:
                log.info("sweeping overdue tasks works again")
            failing = False
        await asyncio.sleep(hub.config.sweep_interval_seconds)
