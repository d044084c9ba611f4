"""Waking long-polls when what they wait for changes.

A long-poll must not hold a database connection while it waits, so it registers interest, looks at the
database once, and sleeps until a notification or its time runs out. Changes made by this process
(a new query, a site's result, the sweeper's timeouts) notify: the waiters of this process are woken at
once, and, with several hub worker processes on PostgreSQL, `relay` hands the keys on to the other
workers (`hub.broadcast`, LISTEN/NOTIFY), whose listeners wake their own waiters (`wake`). This
`Notifier` stays the local fan-out of each process.

When the hub stops, `close` wakes every waiter and each answers with what it has at once: the server
waits for open requests before it stops, and would otherwise wait out every long-poll (or cut it off
after its grace period, with an error instead of an answer).

A change can be marked `partial`: it is news, but cannot be what a waiter is finally waiting for (a site
started on a task, or answered while other sites are still at work). A waiter that already has something
newer to report may sleep through partial changes (see `Signal`), so that a burst of them becomes one
answer instead of one answer each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any

__all__ = ["Notifier", "Signal", "close_on_exit_signal", "query_key", "site_key", "wait_for"]


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
        self.closed = False
        # Where this process's changes go beyond it (set by `hub.broadcast` on PostgreSQL); None: nowhere.
        self.relay: Callable[[list[Hashable], bool], None] | None = None

    @contextlib.contextmanager
    def listen(self, key: Hashable) -> Iterator[Signal]:
        """A signal set by the next `notify(key)`; register before looking, so no change is missed.
        Once the notifier is closed, the signal is set already."""
        wakeup = Signal()
        if self.closed:
            wakeup.changed.set()
            wakeup.decisive.set()
        self._waiting[key].add(wakeup)
        try:
            yield wakeup
        finally:
            self._waiting[key].discard(wakeup)
            if not self._waiting[key]:
                del self._waiting[key]

    def notify(self, keys: Iterable[Hashable], *, partial: bool = False) -> None:
        """A change made in this process: wake its waiters, and relay the keys to the other processes."""
        keys = list(keys)
        self.wake(keys, partial=partial)
        if self.relay is not None and keys:
            self.relay(keys, partial)

    def wake(self, keys: Iterable[Hashable], *, partial: bool = False) -> None:
        """Wake this process's waiters of `keys` (a change made here, or relayed from another process)."""
        for key in keys:
            for wakeup in self._waiting.get(key, ()):
                wakeup.changed.set()
                if not partial:
                    wakeup.decisive.set()

    def close(self) -> None:
        """Wake every waiter, now and from now on: the hub is stopping."""
        self.closed = True
        self.wake(list(self._waiting))

    def wake_all(self) -> None:
        """Wake every waiter once, to look again: changes of other processes may have been missed."""
        self.wake(list(self._waiting))


@contextlib.contextmanager
def close_on_exit_signal(notifier: Notifier) -> Iterator[None]:
    """Close the notifier when SIGINT or SIGTERM arrives, before whatever handled them until now (the
    server's own handler, which starts its graceful stop) handles them as before.

    The server has no hook of its own for this: it tells the application that it stops only after all
    open requests have finished. Signal handlers belong to the main thread; elsewhere (an application
    served by a test client in a thread of its own) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(signum: int, frame: Any) -> None:
        loop.call_soon_threadsafe(notifier.close)
        chained = previous[signum]
        if callable(chained):
            chained(signum, frame)
        elif chained == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


async def wait_for(event: asyncio.Event, seconds: float) -> None:
    """Until the event is set or `seconds` have passed, whichever is first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, seconds)):
            await event.wait()
