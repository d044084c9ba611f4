"""Graceful overload: a worker answers beyond its capacity at once, with 503 and Retry-After.

Past the point where the cores are busy, every further request in flight only waits longer for its share
of them: a queue of seconds is a portal people leave, and the load generator of bench/bench_load.py
showed throughput *falling* as the queue grew. So each hub worker process admits at most
`max_concurrent_requests` requests at once (`ConcurrencyLimit`); the next is answered 503 with
`Retry-After` and the JSON error body before the application sees it, costing microseconds.

Long-polls and event streams are different: they hold no core while they wait, so they must not take a
request's place for a minute. A handler that is about to wait moves its request from the working to the
waiting requests (`hold_wait`): the waits are bounded per user (`max_waits_per_user`, 429 naming the
limit: that user's own tabs and scripts) and in total (`max_waits`, 503). Both bounds hold per worker
process: the worker keeps the counts in memory, which is where a request lives (a request never moves
between workers, and counts of requests that ended with a killed worker would stay in a database).

The site API (`/api/site/`) is exempt: its traffic is bounded by the number of registered sites (one
long-poll and one answer at a time per agent), and refusing a site's result under a researchers' crowd
would only let the query time out and be asked again.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from datenraum.hub.errors import HubError, TooMany

__all__ = ["Capacity", "ConcurrencyLimit", "TooManyWaits", "WaitsFull", "hold_wait"]

RETRY_AFTER_SECONDS = 1


class TooManyWaits(TooMany):
    """A long-poll or event stream beyond the caller's own bound (429); the text names it."""

    def __init__(
        self, message: str, retry_after: dt.timedelta = dt.timedelta(seconds=RETRY_AFTER_SECONDS)
    ) -> None:
        super().__init__(message, retry_after)


class WaitsFull(HubError):
    """A long-poll or event stream beyond the worker's bound (503); the text names it."""

    status = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


@dataclass
class Capacity:
    """One worker's counts of requests at work and waiting (used from its event loop only)."""

    max_requests: int
    max_waits: int
    max_waits_per_user: int
    working: int = 0
    waiting: Counter[int] = field(default_factory=Counter)

    @property
    def waits(self) -> int:
        return self.waiting.total()


@dataclass
class _Slot:
    """What one admitted request holds: a place among the working requests, or among the waiting."""

    capacity: Capacity
    waiter: int | None = None

    def wait_as(self, user_id: int) -> None:
        if self.waiter is not None:  # an event stream waits again and again under one place
            return
        capacity = self.capacity
        if capacity.waiting[user_id] >= capacity.max_waits_per_user:
            raise TooManyWaits(
                f"too many long-polls and event streams of this account at once (max_waits_per_user = "
                f"{capacity.max_waits_per_user}); close one or try again later"
            )
        if capacity.waits >= capacity.max_waits:
            raise WaitsFull(
                f"the hub holds as many long-polls and event streams as it can (max_waits = "
                f"{capacity.max_waits}); try again later"
            )
        capacity.working -= 1
        capacity.waiting[user_id] += 1
        self.waiter = user_id

    def release(self) -> None:
        if self.waiter is None:
            self.capacity.working -= 1
            return
        self.capacity.waiting[self.waiter] -= 1
        if not self.capacity.waiting[self.waiter]:
            del self.capacity.waiting[self.waiter]


# The slot of the request being handled: the middleware sets it, and the handler's task (and the tasks
# it starts, such as a streaming response's, which copy the context) sees it.
_slot: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("request_slot", default=None)


def hold_wait(user_id: int) -> None:
    """Count the current request as a long-poll or event stream of `user_id` from now on, until it ends;
    raises TooManyWaits or WaitsFull beyond a bound. Outside `ConcurrencyLimit` (a service called directly), nothing."""
    slot = _slot.get()
    if slot is not None:
        slot.wait_as(user_id)


class ConcurrencyLimit:
    """ASGI middleware: at most `capacity.max_requests` requests at work; `exempt` path prefixes pass."""

    def __init__(self, app: ASGIApp, capacity: Capacity, exempt: Sequence[str] = ()) -> None:
        self.app = app
        self.capacity = capacity
        self.exempt = tuple(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        capacity = self.capacity
        if capacity.working >= capacity.max_requests:
            busy = (
                f"the hub is busy: {capacity.max_requests} requests at once in this worker "
                f"(max_concurrent_requests); try again in {RETRY_AFTER_SECONDS} s"
            )
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
            await JSONResponse({"error": busy}, status_code=503, headers=headers)(scope, receive, send)
            return
        capacity.working += 1
        slot = _Slot(capacity)
        token = _slot.set(slot)
        try:
            await self.app(scope, receive, send)
        finally:
            _slot.reset(token)
            slot.release()
