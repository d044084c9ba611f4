"""Waking long-polls when what they wait for changes, within one hub process.

A long-poll must not hold a database connection while it waits, so it registers interest, looks at the
database once, and sleeps until a notification or its time runs out. Changes made by this process
(a new query, a site's result, the sweeper's timeouts) notify; this is why one hub process is the unit
of deployment: a second process against the same database would make changes this one is not told of,
which its waiters would see only when their bounded wait ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator

__all__ = ["Notifier", "query_key", "site_key", "wait_for"]


def query_key(query_id: str) -> Hashable:
    return ("query", query_id)


def site_key(site_id: int) -> Hashable:
    return ("site", site_id)


class Notifier:
    """Keys to wake, and the events of those who wait for them; used from the event loop only."""

    def __init__(self) -> None:
        self._waiting: defaultdict[Hashable, set[asyncio.Event]] = defaultdict(set)

    @contextlib.contextmanager
    def listen(self, key: Hashable) -> Iterator[asyncio.Event]:
        """An event set by the next `notify(key)`; register before looking, so no change is missed."""
        event = asyncio.Event()
        self._waiting[key].add(event)
        try:
            yield event
        finally:
            self._waiting[key].discard(event)
            if not self._waiting[key]:
                del self._waiting[key]

    def notify(self, keys: Iterable[Hashable]) -> None:
        for key in keys:
            for event in self._waiting.get(key, ()):
                event.set()


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Until the event is set or `seconds` have passed, whichever is first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
