"""The Use & Access state machine, as a specification: every state × action × role, then each guard."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from datenraum.hub.errors import Forbidden
from datenraum.hub.proposals.workflow import (
    TRANSITIONS,
    Action,
    ProposalFacts,
    Refused,
    State,
    allowed_actions,
    decide,
    due_actions,
    may_read,
    waiting_roles,
)
from datenraum.hub.roles import Actor
from datenraum.hub.roles import Role as ROLES

OWNER = 1
SITE = 10
OTHER_SITE = 11

# The specification, written out independently of the module's table: (state, action) -> (role, next).
# Self-loops (edits, a vote short of the quorum, the first of two site decisions) keep the state.
S = State
ALLOWED: dict[tuple[State, Action], tuple[str, State]] = {
    (S.DRAFT, Action.EDIT): ("researcher", S.DRAFT),
    (S.REVISION_REQUESTED, Action.EDIT): ("researcher", S.REVISION_REQUESTED),
    (S.DRAFT, Action.SUBMIT): ("researcher", S.SUBMITTED),
    (S.REVISION_REQUESTED, Action.SUBMIT): ("researcher", S.SUBMITTED),
    **{
        (state, Action.WITHDRAW): ("researcher", S.WITHDRAWN)
        for state in (S.DRAFT, S.SUBMITTED, S.FORMAL_CHECK, S.REVISION_REQUESTED, S.COMMITTEE_REVIEW)
    },
    (S.SUBMITTED, Action.START_FORMAL_CHECK): ("admin", S.FORMAL_CHECK),
    (S.FORMAL_CHECK, Action.REQUEST_REVISION): ("admin", S.REVISION_REQUESTED),
    (S.FORMAL_CHECK, Action.FORWARD_TO_COMMITTEE): ("admin", S.COMMITTEE_REVIEW),
    (S.COMMITTEE_REVIEW, Action.VOTE_APPROVE): ("committee", S.COMMITTEE_REVIEW),
    (S.COMMITTEE_REVIEW, Action.VOTE_REJECT): ("committee", S.COMMITTEE_REVIEW),
    (S.APPROVED, Action.REQUEST_SITE_DECISIONS): ("admin", S.SITE_DECISIONS),
    (S.SITE_DECISIONS, Action.SITE_AGREE): ("site-admin", S.SITE_DECISIONS),
    (S.SITE_DECISIONS, Action.SITE_DECLINE): ("site-admin", S.SITE_DECISIONS),
    (S.READY_FOR_DELIVERY, Action.MARK_DELIVERED): ("admin", S.DELIVERED),
    (S.DELIVERED, Action.ADD_PUBLICATION): ("researcher", S.DELIVERED),
    (S.FINISHED, Action.ADD_PUBLICATION): ("researcher", S.FINISHED),
    (S.DELIVERED, Action.FINISH): ("researcher", S.FINISHED),
}


def facts(state: State, **changes: object) -> ProposalFacts:
    """A proposal on which every guard passes: two sites, a quorum of two that one vote does not reach."""
    values: dict[str, object] = {
        "state": state,
        "owner_id": OWNER,
        "quorum": 2,
        "selected_site_ids": frozenset({SITE, OTHER_SITE}),
    }
    values.update(changes)
    return ProposalFacts(**values)  # type: ignore[arg-type]


def actor(role: str, user_id: int | None = None, sites: frozenset[int] = frozenset({SITE})) -> Actor:
    # A researcher acts on their own proposal; everyone else is someone else.
    default = OWNER if role == "researcher" else 50
    return Actor(user_id if user_id is not None else default, frozenset({role}), sites)


@pytest.mark.parametrize(
    ("state", "action", "role"),
    list(itertools.product(State, Action, sorted(ROLES))),
    ids=lambda value: str(value),
)
def test_every_action_is_allowed_exactly_in_its_states_for_its_role(
    state: State, action: Action, role: str
) -> None:
    expected = ALLOWED.get((state, action))
    taking = lambda: decide(facts(state), actor(role), action, reason="because", site_id=SITE)  # noqa: E731
    if expected is not None and expected[0] == role:
        assert taking() == expected[1]
    else:
        with pytest.raises((Forbidden, Refused)):
            taking()


def test_the_role_is_checked_before_the_state_so_strangers_learn_nothing_of_it() -> None:
    with pytest.raises(Forbidden):
        decide(facts(State.DELIVERED), actor("committee"), Action.START_FORMAL_CHECK)
    with pytest.raises(Refused):
        decide(facts(State.DELIVERED), actor("admin"), Action.START_FORMAL_CHECK)


def test_an_actor_with_several_roles_may_act_in_each() -> None:
    both = Actor(50, frozenset({"admin", "committee"}))
    assert decide(facts(State.SUBMITTED), both, Action.START_FORMAL_CHECK) == State.FORMAL_CHECK
    assert decide(facts(State.COMMITTEE_REVIEW, quorum=1), both, Action.VOTE_APPROVE) == State.APPROVED


@pytest.mark.parametrize("action", [Action.EDIT, Action.SUBMIT, Action.WITHDRAW])
def test_a_researcher_acts_only_on_their_own_proposals(action: Action) -> None:
    with pytest.raises(Forbidden, match="owner"):
        decide(facts(State.DRAFT), actor("researcher", user_id=2), action)


def test_a_team_member_with_an_editing_role_acts_like_the_owner() -> None:
    proposal = facts(State.DRAFT, editor_ids=frozenset({2}), team_ids=frozenset({2, 3}))
    assert decide(proposal, actor("researcher", user_id=2), Action.SUBMIT) == State.SUBMITTED
    with pytest.raises(Forbidden):
        decide(proposal, actor("researcher", user_id=3), Action.SUBMIT)


def test_a_submission_is_refused_while_required_fields_are_empty() -> None:
    proposal = facts(State.DRAFT, missing_for_submission=("title", "cohort"))
    with pytest.raises(Refused, match="title, cohort"):
        decide(proposal, actor("researcher"), Action.SUBMIT)


@pytest.mark.parametrize(
    ("state", "action", "role"),
    [
        (State.FORMAL_CHECK, Action.REQUEST_REVISION, "admin"),
        (State.COMMITTEE_REVIEW, Action.VOTE_REJECT, "committee"),
        (State.SITE_DECISIONS, Action.SITE_DECLINE, "site-admin"),
    ],
)
@pytest.mark.parametrize("reason", [None, "", "  \n"])
def test_send_back_reject_and_decline_need_a_reason(
    state: State, action: Action, role: str, reason: str | None
) -> None:
    with pytest.raises(Refused, match="reason"):
        decide(facts(state), actor(role), action, reason=reason, site_id=SITE)


# -- committee votes and the quorum


def vote(proposal: ProposalFacts, user_id: int, in_favour: bool) -> State:
    action = Action.VOTE_APPROVE if in_favour else Action.VOTE_REJECT
    return decide(proposal, actor("committee", user_id=user_id), action, reason="why")


def test_votes_short_of_the_quorum_decide_nothing() -> None:
    proposal = facts(State.COMMITTEE_REVIEW, quorum=3, votes_for=frozenset({51}))
    assert vote(proposal, 52, True) == State.COMMITTEE_REVIEW


def test_the_vote_that_reaches_the_quorum_decides_by_majority() -> None:
    two_for = facts(State.COMMITTEE_REVIEW, quorum=3, votes_for=frozenset({51, 52}))
    assert vote(two_for, 53, False) == State.APPROVED
    assert vote(two_for, 53, True) == State.APPROVED
    two_against = facts(State.COMMITTEE_REVIEW, quorum=3, votes_against=frozenset({51, 52}))
    assert vote(two_against, 53, True) == State.REJECTED


def test_a_tie_at_the_quorum_waits_for_the_next_vote() -> None:
    tie = facts(State.COMMITTEE_REVIEW, quorum=2, votes_for=frozenset({51}))
    assert vote(tie, 52, False) == State.COMMITTEE_REVIEW
    after_tie = facts(
        State.COMMITTEE_REVIEW, quorum=2, votes_for=frozenset({51}), votes_against=frozenset({52})
    )
    assert vote(after_tie, 53, False) == State.REJECTED


def test_a_quorum_of_one_lets_the_first_vote_decide() -> None:
    assert vote(facts(State.COMMITTEE_REVIEW, quorum=1), 51, False) == State.REJECTED


def test_a_committee_member_votes_only_once() -> None:
    proposal = facts(State.COMMITTEE_REVIEW, quorum=3, votes_for=frozenset({51}))
    with pytest.raises(Refused, match="voted already"):
        vote(proposal, 51, False)


def test_a_committee_member_on_the_proposals_team_does_not_vote_on_it() -> None:
    with pytest.raises(Forbidden, match="team"):
        vote(facts(State.COMMITTEE_REVIEW, team_ids=frozenset({51})), 51, True)
    with pytest.raises(Forbidden, match="team"):
        vote(facts(State.COMMITTEE_REVIEW), OWNER, True)


# -- site decisions


def site_decision(proposal: ProposalFacts, site_id: int, agreed: bool) -> State:
    action = Action.SITE_AGREE if agreed else Action.SITE_DECLINE
    admin = actor("site-admin", sites=frozenset({site_id}))
    return decide(proposal, admin, action, reason="capacity", site_id=site_id)


def test_site_decisions_go_on_until_every_selected_site_has_answered() -> None:
    assert site_decision(facts(State.SITE_DECISIONS), SITE, True) == State.SITE_DECISIONS


def test_the_project_proceeds_when_every_site_agreed() -> None:
    proposal = facts(State.SITE_DECISIONS, agreed_site_ids=frozenset({SITE}))
    assert site_decision(proposal, OTHER_SITE, True) == State.READY_FOR_DELIVERY


@pytest.mark.parametrize("last_agrees", [True, False])
def test_the_project_proceeds_when_some_sites_agreed(last_agrees: bool) -> None:
    earlier = (
        {"declined_site_ids": frozenset({SITE})} if last_agrees else {"agreed_site_ids": frozenset({SITE})}
    )
    proposal = facts(State.SITE_DECISIONS, **earlier)
    assert site_decision(proposal, OTHER_SITE, last_agrees) == State.READY_FOR_DELIVERY


def test_the_project_ends_when_no_site_agreed() -> None:
    proposal = facts(State.SITE_DECISIONS, declined_site_ids=frozenset({SITE}))
    assert site_decision(proposal, OTHER_SITE, False) == State.NO_SITE_AGREED


def test_a_site_admin_decides_only_for_their_own_sites() -> None:
    someone_else = actor("site-admin", sites=frozenset({OTHER_SITE}))
    with pytest.raises(Forbidden, match="administer"):
        decide(facts(State.SITE_DECISIONS), someone_else, Action.SITE_AGREE, site_id=SITE)
    with pytest.raises(Forbidden):
        decide(facts(State.SITE_DECISIONS), actor("site-admin"), Action.SITE_AGREE)


def test_a_site_decides_once_and_only_when_selected() -> None:
    decided = facts(State.SITE_DECISIONS, agreed_site_ids=frozenset({SITE}))
    with pytest.raises(Refused, match="decided already"):
        site_decision(decided, SITE, False)
    with pytest.raises(Refused, match="does not take part"):
        site_decision(facts(State.SITE_DECISIONS), 99, True)


def test_site_decisions_cannot_be_requested_without_participating_sites() -> None:
    with pytest.raises(Refused, match="no participating sites"):
        decide(
            facts(State.APPROVED, selected_site_ids=frozenset()),
            actor("admin"),
            Action.REQUEST_SITE_DECISIONS,
        )


# -- what a page offers


def test_allowed_actions_offers_exactly_what_decide_allows() -> None:
    assert allowed_actions(facts(State.DRAFT), actor("researcher")) == [
        Action.EDIT,
        Action.SUBMIT,
        Action.WITHDRAW,
    ]
    assert allowed_actions(facts(State.DRAFT), actor("researcher", user_id=2)) == []
    admin = actor("site-admin", sites=frozenset({SITE}))
    assert allowed_actions(facts(State.SITE_DECISIONS), admin, [SITE]) == [
        Action.SITE_AGREE,
        Action.SITE_DECLINE,
    ]
    assert (
        allowed_actions(facts(State.SITE_DECISIONS, agreed_site_ids=frozenset({SITE})), admin, [SITE]) == []
    )


def test_a_dashboard_lists_only_what_waits_for_the_actor() -> None:
    assert due_actions(facts(State.DRAFT), actor("researcher")) == [Action.SUBMIT]
    incomplete = facts(State.DRAFT, missing_for_submission=("title",))
    assert due_actions(incomplete, actor("researcher")) == [Action.SUBMIT]
    assert due_actions(facts(State.FINISHED), actor("researcher")) == []  # publications are optional
    assert due_actions(facts(State.SITE_DECISIONS), actor("site-admin")) == [
        Action.SITE_AGREE,
        Action.SITE_DECLINE,
    ]
    assert due_actions(facts(State.COMMITTEE_REVIEW, votes_for=frozenset({50})), actor("committee")) == []


@pytest.mark.parametrize(
    ("state", "roles"),
    [
        (State.SUBMITTED, {"admin"}),
        (State.FORMAL_CHECK, {"admin"}),
        (State.REVISION_REQUESTED, {"researcher"}),
        (State.COMMITTEE_REVIEW, {"committee"}),
        (State.APPROVED, {"admin"}),
        (State.SITE_DECISIONS, {"site-admin"}),
        (State.READY_FOR_DELIVERY, {"admin"}),
        (State.DELIVERED, {"researcher"}),
        (State.REJECTED, set()),
        (State.NO_SITE_AGREED, set()),
        (State.FINISHED, set()),
        (State.WITHDRAWN, set()),
    ],
)
def test_each_state_waits_for_the_roles_that_move_it_on(state: State, roles: set[str]) -> None:
    assert waiting_roles(state) == roles


def test_a_draft_is_seen_only_by_its_team() -> None:
    draft = facts(State.DRAFT, team_ids=frozenset({2}))
    assert may_read(draft, actor("researcher"))
    assert may_read(draft, actor("researcher", user_id=2))
    assert not may_read(draft, actor("admin"))
    assert not may_read(draft, actor("researcher", user_id=3))


def test_a_submitted_proposal_is_seen_by_the_office_committee_and_its_sites_only() -> None:
    submitted = facts(State.SUBMITTED)
    assert may_read(submitted, actor("admin"))
    assert may_read(submitted, actor("committee"))
    assert may_read(submitted, actor("site-admin", sites=frozenset({SITE})))
    assert not may_read(submitted, actor("site-admin", sites=frozenset({99})))
    assert not may_read(submitted, actor("researcher", user_id=3))


# -- the documentation's diagram

DOC = Path(__file__).parents[2] / "docs" / "use-and-access.md"
EDGE = re.compile(r"^\s*(\w+) --> (\w+): ([a-z-]+) \(([a-z-]+)")


def test_the_documented_diagram_shows_exactly_the_transitions_of_the_table() -> None:
    documented = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = EDGE.match(line)
        if match:
            source, target, action, role = match.groups()
            documented.add(
                (State(source.replace("_", "-")), Action(action), role, State(target.replace("_", "-")))
            )
    expected = set()
    for transition in TRANSITIONS:
        if transition.action in (Action.EDIT, Action.ADD_PUBLICATION):
            continue  # they never change the state
        for source in transition.sources:
            targets = (
                {transition.target}
                if transition.target
                else {
                    Action.VOTE_APPROVE: {State.APPROVED},
                    Action.VOTE_REJECT: {State.REJECTED},
                    Action.SITE_AGREE: {State.READY_FOR_DELIVERY},
                    Action.SITE_DECLINE: {State.READY_FOR_DELIVERY, State.NO_SITE_AGREED},
                }[transition.action]
            )
            expected |= {(source, transition.action, transition.role, target) for target in targets}
    assert documented == expected
