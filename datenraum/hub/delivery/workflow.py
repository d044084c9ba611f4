"""The delivery's states: per site, and for the delivery as a whole, and the events that move them.

Each site's part runs `requested -> extracting -> awaiting-release -> released -> uploaded`, or ends
`rejected` (by the site's custodian, with a reason) or `failed` (the site reported why, or the period ran
out). The delivery's state follows from its parts (`delivery_state`): waiting for data while any part is
open, `partial` while some are uploaded and others still open, `delivered` when every part has ended and
at least one package is there, `no-data` when none is, and `fetched` once a researcher downloaded it.
Like the proposals' `workflow`, the table is the rule: the service asks `advance` and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from datenraum.hub.errors import Conflict

__all__ = ["DeliveryState", "Event", "SiteState", "StateRefused", "advance", "delivery_state"]


class SiteState(StrEnum):
    REQUESTED = "requested"
    EXTRACTING = "extracting"
    AWAITING_RELEASE = "awaiting-release"
    RELEASED = "released"
    UPLOADED = "uploaded"
    REJECTED = "rejected"
    FAILED = "failed"


class DeliveryState(StrEnum):
    WAITING_FOR_DATA = "waiting-for-data"
    PARTIAL = "partial"
    DELIVERED = "delivered"
    NO_DATA = "no-data"
    FETCHED = "fetched"


class Event(StrEnum):
    CLAIMED = "claimed"  # the agent fetched the extraction task (again, after a lease ran out)
    EXTRACTED = "extracted"  # the agent answered with the summary of a sealed package
    FAILED = "failed"  # the agent reported why it could not
    RELEASED = "released"  # the site's custodian lets the package leave
    REJECTED = "rejected"  # the site's custodian keeps it, with a reason
    UPLOADED = "uploaded"  # the whole package arrived and its SHA-256 matched
    MISSED = "missed"  # the delivery period ended before the package arrived


_OPEN = (SiteState.REQUESTED, SiteState.EXTRACTING, SiteState.AWAITING_RELEASE, SiteState.RELEASED)
_TABLE: dict[tuple[SiteState, Event], SiteState] = {
    (SiteState.REQUESTED, Event.CLAIMED): SiteState.EXTRACTING,
    (SiteState.EXTRACTING, Event.CLAIMED): SiteState.EXTRACTING,
    (SiteState.EXTRACTING, Event.EXTRACTED): SiteState.AWAITING_RELEASE,
    (SiteState.EXTRACTING, Event.FAILED): SiteState.FAILED,
    (SiteState.AWAITING_RELEASE, Event.RELEASED): SiteState.RELEASED,
    (SiteState.AWAITING_RELEASE, Event.REJECTED): SiteState.REJECTED,
    (SiteState.RELEASED, Event.UPLOADED): SiteState.UPLOADED,
    **{(state, Event.MISSED): SiteState.FAILED for state in _OPEN},
}
TERMINAL = frozenset({SiteState.UPLOADED, SiteState.REJECTED, SiteState.FAILED})


class StateRefused(Conflict):
    """An event that the site's part cannot take in its state (e.g. a release of a failed extraction)."""


def advance(state: SiteState, event: Event) -> SiteState:
    """The state after `event`; raises StateRefused (409) naming both when the table has no such step."""
    try:
        return _TABLE[(state, event)]
    except KeyError:
        raise StateRefused(f"delivery: a site's part that is {state} cannot be {event}") from None


def delivery_state(parts: Iterable[SiteState], *, fetched: bool) -> DeliveryState:
    states = list(parts)
    uploaded = SiteState.UPLOADED in states
    if all(state in TERMINAL for state in states):
        if not uploaded:
            return DeliveryState.NO_DATA
        return DeliveryState.FETCHED if fetched else DeliveryState.DELIVERED
    return DeliveryState.PARTIAL if uploaded else DeliveryState.WAITING_FOR_DATA
