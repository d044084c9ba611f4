"""Wake-ups across hub worker processes on PostgreSQL: LISTEN/NOTIFY.

With `datenraum hub serve --workers N`, a query submitted to one worker must wake a site's long-poll held
by another, and that site's answer a researcher's long-poll held by a third. Each worker keeps its own
`Notifier` for its own waiters, and a `Broadcast` beside it: the keys the worker's changes notify are
sent with NOTIFY (`publish`, one round trip per batch), and one listener connection per worker receives
every other worker's and wakes its waiters (`Notifier.wake`).

A channel per key kind (`datenraum_query`, `datenraum_site`, `datenraum_sample_search`), and one more
per kind for partial changes (`..._partial`, see `notify`); the payload is the key's id. PostgreSQL
delivers a notification to every listening connection, the sender's own included: the listener skips
those of its own worker's publishing connection, whose waiters were woken when the change was made.

Notifications are not stored: a worker whose listener lost its connection misses what was sent
meanwhile. Once it is back, it wakes all its waiters to look again (a waiter that finds nothing new
waits on), so a lost connection costs one database read per waiter, never a missed answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import psycopg
import sqlalchemy as sa

from datenraum.hub.feasibility.notify import Notifier

__all__ = ["Broadcast", "channel_of", "key_of", "libpq_url"]

log = logging.getLogger(__name__)

# The kinds of key (see `notify.query_key`, `site_key`, `samples.api.search_key`) and their ids' type.
_KINDS: dict[str, Callable[[str], object]] = {"query": str, "site": int, "sample-search": str}
_PREFIX = "datenraum_"
_PARTIAL = "_partial"
# A pause before connecting again after the database went away: a restart takes seconds.
RECONNECT_SECONDS = 1.0


def channel_of(key: Hashable, partial: bool) -> tuple[str, str]:
    """The channel and payload that carry `key`; a key of no known kind is a programming error."""
    if not (isinstance(key, tuple) and len(key) == 2 and key[0] in _KINDS):
        raise ValueError(f"no channel for wake-up key {key!r}")
    kind, identity = key
    return _PREFIX + kind.replace("-", "_") + (_PARTIAL if partial else ""), str(identity)


def key_of(channel: str, payload: str) -> tuple[Hashable, bool] | None:
    """The key and partial-ness a notification carries; None for one that is not ours (or garbled)."""
    name = channel.removeprefix(_PREFIX)
    partial = name.endswith(_PARTIAL)
    kind = name.removesuffix(_PARTIAL).replace("_", "-")
    if not channel.startswith(_PREFIX) or kind not in _KINDS:
        return None
    try:
        return (kind, _KINDS[kind](payload)), partial
    except ValueError:
        return None


def _channels() -> list[str]:
    return [channel_of((kind, ""), partial)[0] for kind in _KINDS for partial in (False, True)]


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it (without the `+psycopg` driver name)."""
    url = sa.make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


@dataclass
class _Batch:
    keys: list[Hashable]
    partial: bool


class Broadcast:
    """This worker's side of the wake-ups: publish its changes, wake its waiters for the others'."""

    def __init__(self, database_url: str, notifier: Notifier) -> None:
        self._url = libpq_url(database_url)
        self._notifier = notifier
        self._outgoing: asyncio.Queue[_Batch] = asyncio.Queue()
        self._publisher_pid: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()

    async def start(self) -> None:
        """Listen and publish from now on (until `close`); returns once the listener listens, so that
        no change made after the start is missed."""
        self._tasks = [
            asyncio.create_task(self._listen_forever(), name="broadcast listener"),
            asyncio.create_task(self._publish_forever(), name="broadcast publisher"),
        ]
        self._notifier.relay = self.publish
        await self._listening.wait()

    def publish(self, keys: list[Hashable], partial: bool) -> None:
        """Send the keys to the other workers (from the event loop; never waits)."""
        for key in keys:
            channel_of(key, partial)  # a key without a channel fails here, at its caller
        self._outgoing.put_nowait(_Batch(keys, partial))

    async def close(self) -> None:
        self._notifier.relay = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen_forever(self) -> None:
        failing = False
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as connection:
                    for channel in _channels():
                        await connection.execute(f"LISTEN {channel}")
                    if failing:
                        log.info("wake-ups from the other hub workers work again")
                        self._notifier.wake_all()  # what was sent while away is lost: look again
                    failing = False
                    self._listening.set()
                    async for note in connection.notifies():
                        if note.pid == self._publisher_pid:
                            continue
                        found = key_of(note.channel, note.payload)
                        if found is not None:
                            self._notifier.wake([found[0]], partial=found[1])
            except psycopg.Error as error:
                if not failing:
                    log.error("wake-ups from the other hub workers stopped (%s); reconnecting", error)
                failing = True
                self._listening.set()  # the start must not wait for a database that is away
                await asyncio.sleep(RECONNECT_SECONDS)

    async def _publish_forever(self) -> None:
        notes: list[tuple[str, str]] = []
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as connection:
                    self._publisher_pid = connection.info.backend_pid
                    while True:
                        notes = notes or await self._gather()
                        channels, payloads = zip(*notes, strict=True)
                        await connection.execute(
                            "SELECT pg_notify(c, p) FROM unnest(%s::text[], %s::text[]) AS t(c, p)",
                            (list(channels), list(payloads)),
                        )
                        notes = []
            except psycopg.Error as error:
                # The notes are sent again on a new connection; the other workers' waiters time out
                # into a look at the database meanwhile.
                log.error("wake-ups to the other hub workers failed (%s); reconnecting", error)
                self._publisher_pid = None
                await asyncio.sleep(RECONNECT_SECONDS)

    async def _gather(self) -> list[tuple[str, str]]:
        """The next batch and whatever else is waiting by then, for one statement."""
        batches = [await self._outgoing.get()]
        while not self._outgoing.empty():
            batches.append(self._outgoing.get_nowait())
        return [channel_of(key, batch.partial) for batch in batches for key in batch.keys]
