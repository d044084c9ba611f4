"""The Use & Access state machine: which action moves a proposal where, and who may take it.

The rules live here and nowhere else: `TRANSITIONS` is the table (from which states, by which role,
to which state, whether a reason is required), and `decide` is the one pure function that checks an
action against it and against the facts of one proposal, and returns the state that follows. The
service records what `decide` allows; the web pages ask `allowed_actions` what to offer. Neither
repeats a rule, so a page can never offer what the service would refuse.

Two steps have no fixed target, because several people take part in them:
- committee review: each member votes once; as soon as `quorum` votes are cast, the majority decides
  (a tie waits for the next vote). Members of the proposal's team never vote on it.
- site decisions: the administrator of each selected site agrees or declines; when every site has
  answered, the project goes on with the sites that agreed, or ends if none did.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from datenraum.hub.errors import Conflict, Forbidden, HubError
from datenraum.hub.roles import Actor, Role

__all__ = [
    "TRANSITIONS",
    "Action",
    "ActionForbidden",
    "ProposalFacts",
    "Refused",
    "State",
    "Transition",
    "TransitionError",
    "allowed_actions",
    "decide",
    "due_actions",
    "may_read",
    "waiting_roles",
]


class State(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    FORMAL_CHECK = "formal-check"
    REVISION_REQUESTED = "revision-requested"
    COMMITTEE_REVIEW = "committee-review"
    APPROVED = "approved"
    REJECTED = "rejected"
    SITE_DECISIONS = "site-decisions"
    NO_SITE_AGREED = "no-site-agreed"
    READY_FOR_DELIVERY = "ready-for-delivery"
    DELIVERED = "delivered"
    FINISHED = "finished"
    WITHDRAWN = "withdrawn"


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    START_FORMAL_CHECK = "start-formal-check"
    REQUEST_REVISION = "request-revision"
    FORWARD_TO_COMMITTEE = "forward-to-committee"
    VOTE_APPROVE = "vote-approve"
    VOTE_REJECT = "vote-reject"
    REQUEST_SITE_DECISIONS = "request-site-decisions"
    SITE_AGREE = "site-agree"
    SITE_DECLINE = "site-decline"
    MARK_DELIVERED = "mark-delivered"
    ADD_PUBLICATION = "add-publication"
    FINISH = "finish"


@dataclass(frozen=True)
class ProposalFacts:
    """What the rules need to know of one proposal; the service reads it from the database."""

    state: State
    owner_id: int
    editor_ids: frozenset[int] = frozenset()  # team members whose project role may edit
    team_ids: frozenset[int] = frozenset()  # every team member, editing or not
    missing_for_submission: tuple[str, ...] = ()  # fields a submission needs that are empty
    quorum: int = 1
    votes_for: frozenset[int] = frozenset()
    votes_against: frozenset[int] = frozenset()
    selected_site_ids: frozenset[int] = frozenset()
    agreed_site_ids: frozenset[int] = frozenset()
    declined_site_ids: frozenset[int] = frozenset()

    @property
    def pending_site_ids(self) -> frozenset[int]:
        return self.selected_site_ids - self.agreed_site_ids - self.declined_site_ids


@dataclass(frozen=True)
class Transition:
    action: Action
    sources: frozenset[State]
    role: Role
    target: State | None  # None: decided by the votes or the sites' decisions
    reason_required: bool = False


def _from(*states: State) -> frozenset[State]:
    return frozenset(states)


BEFORE_APPROVAL = _from(
    State.DRAFT, State.SUBMITTED, State.FORMAL_CHECK, State.REVISION_REQUESTED, State.COMMITTEE_REVIEW
)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(Action.EDIT, _from(State.DRAFT, State.REVISION_REQUESTED), Role.RESEARCHER, None),
    Transition(Action.SUBMIT, _from(State.DRAFT, State.REVISION_REQUESTED), Role.RESEARCHER, State.SUBMITTED),
    Transition(Action.WITHDRAW, BEFORE_APPROVAL, Role.RESEARCHER, State.WITHDRAWN),
    Transition(Action.START_FORMAL_CHECK, _from(State.SUBMITTED), Role.ADMIN, State.FORMAL_CHECK),
    Transition(
        Action.REQUEST_REVISION,
        _from(State.FORMAL_CHECK),
        Role.ADMIN,
        State.REVISION_REQUESTED,
        reason_required=True,
    ),
    Transition(Action.FORWARD_TO_COMMITTEE, _from(State.FORMAL_CHECK), Role.ADMIN, State.COMMITTEE_REVIEW),
    Transition(Action.VOTE_APPROVE, _from(State.COMMITTEE_REVIEW), Role.COMMITTEE, None),
    Transition(Action.VOTE_REJECT, _from(State.COMMITTEE_REVIEW), Role.COMMITTEE, None, reason_required=True),
    Transition(Action.REQUEST_SITE_DECISIONS, _from(State.APPROVED), Role.ADMIN, State.SITE_DECISIONS),
    Transition(Action.SITE_AGREE, _from(State.SITE_DECISIONS), Role.SITE_ADMIN, None),
    Transition(Action.SITE_DECLINE, _from(State.SITE_DECISIONS), Role.SITE_ADMIN, None, reason_required=True),
    Transition(Action.MARK_DELIVERED, _from(State.READY_FOR_DELIVERY), Role.ADMIN, State.DELIVERED),
    Transition(Action.ADD_PUBLICATION, _from(State.DELIVERED, State.FINISHED), Role.RESEARCHER, None),
    Transition(Action.FINISH, _from(State.DELIVERED), Role.RESEARCHER, State.FINISHED),
)

_BY_ACTION = {transition.action: transition for transition in TRANSITIONS}
# What someone may do but nobody waits for: these put nothing on a dashboard and notify no one.
_OPTIONAL = frozenset({Action.EDIT, Action.WITHDRAW, Action.ADD_PUBLICATION})


class TransitionError(HubError):
    """An action that `decide` does not allow; the text says why."""

    status = 409


class ActionForbidden(TransitionError, Forbidden):
    """The actor may not take this action on this proposal (role, ownership, site)."""

    status = 403


class Refused(TransitionError, Conflict):
    """The action is not possible now (state, a missing reason, a guard)."""

    status = 409


def decide(
    facts: ProposalFacts,
    actor: Actor,
    action: Action,
    *,
    reason: str | None = None,
    site_id: int | None = None,
) -> State:
    """The state after `actor` takes `action` (the same state for edits, votes short of a decision and
    all but the last site decision); raises Forbidden or Refused."""
    transition = _BY_ACTION[action]
    if transition.role not in actor.roles:
        raise ActionForbidden(f"{action}: only the role '{transition.role}' may do this")
    if facts.state not in transition.sources:
        raise Refused(f"{action}: not possible while the proposal is {facts.state}")
    if transition.role == Role.RESEARCHER and actor.user_id not in facts.editor_ids | {facts.owner_id}:
        raise ActionForbidden(f"{action}: only the proposal's owner or a team member who edits may do this")
    if transition.reason_required and not (reason and reason.strip()):
        raise Refused(f"{action}: a reason is required")
    if action is Action.SUBMIT and facts.missing_for_submission:
        raise Refused(f"{action}: these fields are still empty: {', '.join(facts.missing_for_submission)}")
    if action in (Action.VOTE_APPROVE, Action.VOTE_REJECT):
        return _after_vote(facts, actor, in_favour=action is Action.VOTE_APPROVE)
    if action is Action.REQUEST_SITE_DECISIONS and not facts.selected_site_ids:
        raise Refused(f"{action}: the proposal has no participating sites")
    if action in (Action.SITE_AGREE, Action.SITE_DECLINE):
        return _after_site_decision(facts, actor, site_id, agreed=action is Action.SITE_AGREE)
    return transition.target or facts.state


def allowed_actions(facts: ProposalFacts, actor: Actor, site_ids: Iterable[int] = ()) -> list[Action]:
    """What `actor` may do now (the buttons a page shows); site actions count if allowed for any of
    `site_ids`. Actions that need a reason are listed: the page asks for it."""
    allowed = []
    for action in Action:
        sites: Iterable[int | None] = site_ids if _BY_ACTION[action].role == Role.SITE_ADMIN else (None,)
        for site_id in sites:
            try:
                decide(facts, actor, action, reason="(asked for by the page)", site_id=site_id)
            except TransitionError:
                continue
            allowed.append(action)
            break
    return allowed


def _after_vote(facts: ProposalFacts, actor: Actor, *, in_favour: bool) -> State:
    if actor.user_id in facts.team_ids | {facts.owner_id}:
        raise ActionForbidden("vote: members of the proposal's team do not vote on it")
    if actor.user_id in facts.votes_for | facts.votes_against:
        raise Refused("vote: this committee member has voted already")
    votes_for = len(facts.votes_for) + in_favour
    votes_against = len(facts.votes_against) + (not in_favour)
    if votes_for + votes_against < facts.quorum or votes_for == votes_against:
        return State.COMMITTEE_REVIEW
    return State.APPROVED if votes_for > votes_against else State.REJECTED


def _after_site_decision(facts: ProposalFacts, actor: Actor, site_id: int | None, *, agreed: bool) -> State:
    if site_id is None or site_id not in actor.site_ids:
        raise ActionForbidden(f"site decision: the actor does not administer site {site_id}")
    if site_id not in facts.selected_site_ids:
        raise Refused(f"site decision: site {site_id} does not take part in this proposal")
    if site_id not in facts.pending_site_ids:
        raise Refused(f"site decision: site {site_id} has decided already")
    if facts.pending_site_ids != {site_id}:
        return State.SITE_DECISIONS
    return State.READY_FOR_DELIVERY if agreed or facts.agreed_site_ids else State.NO_SITE_AGREED


def due_actions(facts: ProposalFacts, actor: Actor) -> list[Action]:
    """The allowed actions that the proposal waits for from `actor` (what a dashboard lists). An
    incomplete draft waits for its team all the same: completing and submitting it is what is due."""
    complete = dataclasses.replace(facts, missing_for_submission=())
    return [action for action in allowed_actions(complete, actor, actor.site_ids) if action not in _OPTIONAL]


def waiting_roles(state: State) -> frozenset[Role]:
    """The roles a proposal in `state` waits for: who is notified when it gets there."""
    return frozenset(t.role for t in TRANSITIONS if state in t.sources and t.action not in _OPTIONAL)


def may_read(facts: ProposalFacts, actor: Actor) -> bool:
    """Whether `actor` may see the proposal at all. A draft is its team's own; once submitted, the
    coordination office and the committee see it, and the administrators of its sites."""
    if actor.user_id in facts.team_ids | {facts.owner_id}:
        return True
    if facts.state is State.DRAFT:
        return False
    return bool(actor.roles & {Role.ADMIN, Role.COMMITTEE}) or (
        Role.SITE_ADMIN in actor.roles and bool(actor.site_ids & facts.selected_site_ids)
    )
