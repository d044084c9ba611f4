"""The hub's background sweep: overdue tasks, expired leases and deliveries every `sweep_interval_seconds`,
the crisis dashboard's daily run once its time of day has come (`dashboard_run_at`), and the sample
requests' reminders every `reminder_interval_seconds` of the hub's clock.

The reminders need no second timer: a quiet item is one that has not moved for days, so asking once an
hour is soon enough, and asking every second would lock every open item each time for nothing.

With several hub workers on PostgreSQL, one of them sweeps: the one that holds the sweep's advisory
lock (`SweepTurn`), on a connection of its own for as long as it lives. Its changes reach the other
workers' waiters through `broadcast`. When it stops or dies, PostgreSQL ends its session and the lock
with it, and the next worker to try takes over within a sweep interval. (Sweeping in all workers would
be safe for the tasks, which are locked row by row, but N workers would do each sweep's reads N times,
and the reminders, counted in each process's memory, would go out N times.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging

import sqlalchemy as sa

from datenraum.hub.db import Clock
from datenraum.hub.feasibility.notify import query_key, site_key
from datenraum.hub.runtime import Hub
from datenraum.hub.samples.api import search_key

__all__ = ["Every", "SweepTurn", "sweep", "sweep_forever"]

log = logging.getLogger(__name__)

# Any fixed number (PostgreSQL names advisory locks by numbers): "hub-swep", apart from the migrations'.
SWEEP_LOCK = 0x6875622D73776570


class SweepTurn:
    """Whether this process is the one that sweeps (always, on SQLite: one process serves it)."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._holder: sa.Connection | None = None

    def mine(self) -> bool:
        """Whether this process holds the sweep's lock, taking it if it is free (blocks: a thread's)."""
        if self._engine.dialect.name != "postgresql":
            return True
        if self._holder is not None:
            try:
                self._holder.exec_driver_sql("SELECT 1").close()
                self._holder.commit()
                return True
            except sa.exc.DBAPIError:
                self.close()  # the session, and the lock with it, is gone: take it again if free
        connection = self._engine.connect()
        try:
            held = connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({SWEEP_LOCK})").scalar()
            connection.commit()  # a session's lock outlives the transaction
        except BaseException:
            connection.invalidate()
            raise
        if held:
            self._holder = connection
            return True
        connection.close()
        return False

    def close(self) -> None:
        """Give the lock up, at once (a closed connection's session ends a moment later, at the server),
        and never return the connection to the pool with the lock on it."""
        holder, self._holder = self._holder, None
        if holder is None:
            return
        with contextlib.suppress(sa.exc.DBAPIError):
            holder.exec_driver_sql(f"SELECT pg_advisory_unlock({SWEEP_LOCK})").close()
        holder.invalidate()
        holder.close()


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
    turn = SweepTurn(hub.engine)
    failing = False
    try:
        while True:
            failing = await _sweep_if_mine(hub, turn, reminders, failing)
            await asyncio.sleep(hub.config.sweep_interval_seconds)
    finally:
        turn.close()


async def _sweep_if_mine(hub: Hub, turn: SweepTurn, reminders: Every, failing: bool) -> bool:
    """One sweep if this process sweeps; whether it is failing now (said once, when it starts failing)."""
    try:
        if await hub.run(turn.mine):
            await sweep(hub, reminders)
    except Exception:
        # The database may be away for a while; say so once, and keep trying.
        if not failing:
            log.exception("sweeping overdue tasks failed; retrying")
        return True
    if failing:
        log.info("sweeping overdue tasks works again")
    return False
