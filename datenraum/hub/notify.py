"""Waking long-polls when what they wait for changes, within one hub process.

A long-poll must not hold a database connection while it waits, so it registers interest, looks at the
database once, and sleeps until a notification or its time runs out. Changes made by this process
(a new query, a site's result, the sweeper's timeouts) notify; this is why one hub process is the unit
of deployment: a second process against the same database would make changes this one is not told of,
which its waiters would see only when their bounded wait ends.

A change can be marked `partial`: it is news, but cannot be what a waiter is finally waiting for (a site
started on a task, or answered while other sites are still at work). A waiter that already has something
newer to report may sleep through partial changes (see `Signal`), so that a burst of them becomes one
answer instead of one answer each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Hashable, Iterable, Iterator

__all__ = ["Notifier", "Signal", "query_key", "site_key", "wait_for"]


def query_key(query_id: str) -> Hashable:
    return ("query", query_id)


def site_key(site_id: int) -> Hashable:
    return ("site", site_id)


class Signal:
    """What one waiter is woken by: `changed` by every notification of its key, `decisive` only by those
    that are not partial."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self.decisive = asyncio.Event()


class Notifier:
    """Keys to wake, and the signals of those who wait for them; used from the event loop only."""

    def __init__(self) -> None:
        self._waiting: defaultdict[Hashable, set[Signal]] = defaultdict(set)

    @contextlib.contextmanager
    def listen(self, key: Hashable) -> Iterator[Signal]:
        """A signal set by the next `notify(key)`; register before looking, so no change is missed."""
        signal = Signal()
        self._waiting[key].add(signal)
        try:
            yield signal
        finally:
            self._waiting[key].discard(signal)
            if not self._waiting[key]:
                del self._waiting[key]

    def notify(self, keys: Iterable[Hashable], *, partial: bool = False) -> None:
        for key in keys:
            for signal in self._waiting.get(key, ()):
                signal.changed.set()
                if not partial:
                    signal.decisive.set()


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Until the event is set or `seconds` have passed, whichever is first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
