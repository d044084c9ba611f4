"""The state machine of one biosample request item: a (site, biobank) of a proposal, as the BBMRI-ERIC
Negotiator has one per resource of a negotiation (`ResourceStateMachineConfig`, brief A6 and E1.6).

`TRANSITIONS` is the table (event, from which states, to which state, who acts); `decide_item` is the one
pure function that checks an event against it and returns the next state. Who acts:
- the coordination office (`admin`) contacts the biobank's representative, or marks them unreachable;
- the biobank's representative (the `site-admin` of the item's site) checks availability, answers
  available / unavailable / unavailable but willing to collect, states access conditions, steps away,
  and finally makes the samples available;
- the researcher (owner or an editing team member) accepts or declines the access conditions.
Items move only once the proposal is approved (the Negotiator's `NegotiationIsApprovedGuard`): before,
the committee has not said yes to the project, and no biobank should spend work on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from datenraum.hub.errors import Conflict
from datenraum.hub.proposals.workflow import ActionForbidden, State
from datenraum.hub.roles import Role

__all__ = [
    "FINAL_STATES",
    "ITEM_ACTIVE_PROPOSAL_STATES",
    "TRANSITIONS",
    "ItemEvent",
    "ItemRefused",
    "ItemState",
    "ItemTransition",
    "acting_role",
    "decide_item",
    "item_events",
]


class ItemState(StrEnum):
    SUBMITTED = "submitted"
    REPRESENTATIVE_UNREACHABLE = "representative-unreachable"
    REPRESENTATIVE_CONTACTED = "representative-contacted"
    CHECKING_AVAILABILITY = "checking-availability"
    AVAILABLE = "available"
    UNAVAILABLE = "unavailable"
    UNAVAILABLE_WILLING_TO_COLLECT = "unavailable-willing-to-collect"
    ACCESS_CONDITIONS_INDICATED = "access-conditions-indicated"
    ACCESS_CONDITIONS_MET = "access-conditions-met"
    NOT_MADE_AVAILABLE = "not-made-available"
    MADE_AVAILABLE = "made-available"


class ItemEvent(StrEnum):
    CONTACT = "contact"
    MARK_UNREACHABLE = "mark-unreachable"
    CHECK_AVAILABILITY = "check-availability"
    STEP_AWAY = "step-away"
    MARK_AVAILABLE = "mark-available"
    MARK_UNAVAILABLE = "mark-unavailable"
    MARK_WILLING_TO_COLLECT = "mark-willing-to-collect"
    INDICATE_ACCESS_CONDITIONS = "indicate-access-conditions"
    ACCEPT_ACCESS_CONDITIONS = "accept-access-conditions"
    DECLINE_ACCESS_CONDITIONS = "decline-access-conditions"
    MAKE_AVAILABLE = "make-available"


@dataclass(frozen=True)
class ItemTransition:
    event: ItemEvent
    sources: frozenset[ItemState]
    target: ItemState
    role: Role  # RESEARCHER: the proposal's owner or an editing team member


def _t(event: ItemEvent, sources: tuple[ItemState, ...], target: ItemState, role: Role) -> ItemTransition:
    return ItemTransition(event, frozenset(sources), target, role)


S = ItemState
TRANSITIONS: tuple[ItemTransition, ...] = (
    _t(
        ItemEvent.CONTACT, (S.SUBMITTED, S.REPRESENTATIVE_UNREACHABLE), S.REPRESENTATIVE_CONTACTED, Role.ADMIN
    ),
    _t(ItemEvent.MARK_UNREACHABLE, (S.SUBMITTED,), S.REPRESENTATIVE_UNREACHABLE, Role.ADMIN),
    _t(ItemEvent.CHECK_AVAILABILITY, (S.REPRESENTATIVE_CONTACTED,), S.CHECKING_AVAILABILITY, Role.SITE_ADMIN),
    _t(ItemEvent.STEP_AWAY, (S.REPRESENTATIVE_CONTACTED,), S.UNAVAILABLE, Role.SITE_ADMIN),
    _t(ItemEvent.MARK_AVAILABLE, (S.CHECKING_AVAILABILITY,), S.AVAILABLE, Role.SITE_ADMIN),
    _t(ItemEvent.MARK_UNAVAILABLE, (S.CHECKING_AVAILABILITY,), S.UNAVAILABLE, Role.SITE_ADMIN),
    _t(
        ItemEvent.MARK_WILLING_TO_COLLECT,
        (S.CHECKING_AVAILABILITY,),
        S.UNAVAILABLE_WILLING_TO_COLLECT,
        Role.SITE_ADMIN,
    ),
    _t(
        ItemEvent.INDICATE_ACCESS_CONDITIONS,
        (S.AVAILABLE, S.UNAVAILABLE_WILLING_TO_COLLECT),
        S.ACCESS_CONDITIONS_INDICATED,
        Role.SITE_ADMIN,
    ),
    _t(
        ItemEvent.ACCEPT_ACCESS_CONDITIONS,
        (S.ACCESS_CONDITIONS_INDICATED,),
        S.ACCESS_CONDITIONS_MET,
        Role.RESEARCHER,
    ),
    _t(
        ItemEvent.DECLINE_ACCESS_CONDITIONS,
        (S.ACCESS_CONDITIONS_INDICATED,),
        S.NOT_MADE_AVAILABLE,
        Role.RESEARCHER,
    ),
    _t(ItemEvent.MAKE_AVAILABLE, (S.ACCESS_CONDITIONS_MET,), S.MADE_AVAILABLE, Role.SITE_ADMIN),
)
_BY_EVENT = {transition.event: transition for transition in TRANSITIONS}

# Nothing follows these: an item in one waits for nobody, and when all items are, the request concludes.
FINAL_STATES = frozenset({S.UNAVAILABLE, S.NOT_MADE_AVAILABLE, S.MADE_AVAILABLE})
ITEM_ACTIVE_PROPOSAL_STATES = frozenset(
    {State.APPROVED, State.SITE_DECISIONS, State.READY_FOR_DELIVERY, State.DELIVERED}
)


class ItemRefused(Conflict):
    """The event does not apply to the item in its state, or to the proposal in its state (409)."""


def item_events(state: ItemState) -> list[ItemEvent]:
    """The events that move an item on from `state`, in table order."""
    return [transition.event for transition in TRANSITIONS if state in transition.sources]


def acting_role(state: ItemState) -> Role | None:
    """Whose move it is in `state` (None: nobody's, a final state). The reminders go to them."""
    roles = [transition.role for transition in TRANSITIONS if state in transition.sources]
    return roles[0] if roles else None


def decide_item(
    proposal_state: State,
    state: ItemState,
    event: ItemEvent,
    *,
    is_researcher: bool,
    is_office: bool,
    is_representative: bool,
) -> ItemState:
    """The state that `event` moves an item to; ItemRefused when it does not apply (the item's state or
    the proposal's), ActionForbidden when the actor is not the one who takes this step."""
    transition = _BY_EVENT[event]
    allowed = {Role.ADMIN: is_office, Role.SITE_ADMIN: is_representative, Role.RESEARCHER: is_researcher}
    if not allowed[transition.role]:
        raise ActionForbidden(f"{event}: only the {transition.role} of this request item may do this")
    if proposal_state not in ITEM_ACTIVE_PROPOSAL_STATES:
        raise ItemRefused(
            f"{event}: the proposal is {proposal_state}; sample requests move once it is approved"
        )
    if state not in transition.sources:
        raise ItemRefused(f"{event}: not possible for a request item that is {state}")
    return transition.target
