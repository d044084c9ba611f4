"""Biosample requests inside a proposal, on a real database (SQLite and PostgreSQL): the per-biobank state
machine (every refused step changes nothing, every allowed one appends exactly one history row), who is
told, reminders, and the conclusion when every biobank has answered (issue 21)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.proposals.sample_requests import Collection, SampleRequestForm, SampleRequests
from datenraum.hub.proposals.sample_workflow import (
    FINAL_STATES,
    TRANSITIONS,
    ItemEvent,
    ItemRefused,
    ItemState,
)
from datenraum.hub.proposals.tables import EventRow, NotificationRow, SampleItemHistoryRow, SampleItemRow
from datenraum.hub.proposals.values import DocumentKind
from datenraum.hub.proposals.workflow import Action, ActionForbidden
from datenraum.hub.roles import Actor, Role
from datenraum.hub.runtime import Hub
from datenraum.hub.sweep import Every, sweep

from .helpers import HubFixture
from .proposals_helpers import ETHICS_VOTE, World, make_world

DAY = 24 * 3600


@pytest.fixture
def world(hub: HubFixture, tmp_path: Path) -> World:
    return make_world(hub, tmp_path)


@pytest.fixture
def requests(world: World) -> SampleRequests:
    return SampleRequests(world.hub.sessions, world.roles, world.hub.clock, reminder_days=7)


def form(world: World, site: str = "uk-a", **changes: object) -> SampleRequestForm:
    values: dict[str, object] = {
        "site_id": world.site_ids[site],
        "biobank": f"Zentrale Biobank {site}",
        "donors": 120,
        "samples_per_donor": 2,
        "sample_types": ("blood-serum", "blood-plasma"),
        "volume": "2 × 0,5 ml je Spender",
        "collection": Collection.RETROSPECTIVE,
        "storage": "−80 °C, Versand auf Trockeneis",
    }
    values.update(changes)
    return SampleRequestForm(**values)  # type: ignore[arg-type]


def draft_with_items(world: World, requests: SampleRequests) -> tuple[int, list[int]]:
    proposal_id = world.proposals.create(world.researcher, world.draft())
    items = [requests.add(world.researcher, proposal_id, form(world, site)) for site in ("uk-a", "uk-b")]
    return proposal_id, items


def submitted_with_items(world: World, requests: SampleRequests) -> tuple[int, list[int]]:
    proposal_id, items = draft_with_items(world, requests)
    world.proposals.upload(world.researcher, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", ETHICS_VOTE)
    world.proposals.apply(world.researcher, proposal_id, Action.SUBMIT)
    return proposal_id, items


def approved_with_items(world: World, requests: SampleRequests) -> tuple[int, list[int]]:
    """A proposal with one item per site, submitted and approved by the committee."""
    proposal_id, items = submitted_with_items(world, requests)
    p = world.proposals
    p.apply(world.office, proposal_id, Action.START_FORMAL_CHECK)
    p.apply(world.office, proposal_id, Action.FORWARD_TO_COMMITTEE)
    for member in world.committee[:2]:
        p.apply(member, proposal_id, Action.VOTE_APPROVE)
    return proposal_id, items


def actor_for(world: World, role: Role, site: str = "uk-a") -> Actor:
    return {
        Role.ADMIN: world.office,
        Role.SITE_ADMIN: world.site_admins[site],
        Role.RESEARCHER: world.researcher,
    }[role]


def snapshot(world: World, item_id: int) -> tuple:
    with world.hub.sessions() as session:
        row = session.get_one(SampleItemRow, item_id)
        history = session.scalar(sa.select(sa.func.count()).where(SampleItemHistoryRow.item_id == item_id))
        return (row.state, row.moved, row.reminded, history)


def force_state(world: World, item_id: int, state: ItemState) -> None:
    with world.hub.sessions.begin() as session:
        session.get_one(SampleItemRow, item_id).state = state.value


def test_every_refused_step_changes_nothing_and_every_allowed_one_appends_one_history_row(
    world: World, requests: SampleRequests
) -> None:
    proposal_id, (item_id, _) = approved_with_items(world, requests)
    by_event = {transition.event: transition for transition in TRANSITIONS}
    for state in ItemState:
        for event in ItemEvent:
            force_state(world, item_id, state)
            transition = by_event[event]
            actor = actor_for(world, transition.role)
            before = snapshot(world, item_id)
            if state in transition.sources:
                world.hub.clock.advance(1)
                assert requests.move(actor, proposal_id, item_id, event, "weiter") is transition.target
                after = snapshot(world, item_id)
                assert after[0] == transition.target.value and after[3] == before[3] + 1, (state, event)
                last = requests.history(world.office, proposal_id, item_id)[-1]
                assert (last.event, last.from_state, last.to_state, last.actor_id) == (
                    event.value,
                    state.value,
                    transition.target.value,
                    actor.user_id,
                )
            else:
                with pytest.raises(ItemRefused) as refused:
                    requests.move(actor, proposal_id, item_id, event)
                assert refused.value.status == 409
                assert snapshot(world, item_id) == before, (state, event)


def test_only_whoever_takes_a_step_may_take_it(world: World, requests: SampleRequests) -> None:
    proposal_id, (item_a, _) = approved_with_items(world, requests)
    before = snapshot(world, item_a)
    for actor, event in [
        (world.researcher, ItemEvent.CONTACT),  # the office contacts
        (world.site_admins["uk-b"], ItemEvent.CONTACT),
        (world.office, ItemEvent.ACCEPT_ACCESS_CONDITIONS),  # the researcher accepts
    ]:
        with pytest.raises(ActionForbidden):
            requests.move(actor, proposal_id, item_a, event)
    requests.move(world.office, proposal_id, item_a, ItemEvent.CONTACT)
    with pytest.raises(ActionForbidden):  # the other site's representative is not this biobank's
        requests.move(world.site_admins["uk-b"], proposal_id, item_a, ItemEvent.CHECK_AVAILABILITY)
    assert snapshot(world, item_a)[3] == before[3] + 1
    with pytest.raises(NotFound):  # a stranger does not see the proposal, nor its items
        requests.items(world.stranger, proposal_id)


def test_items_wait_until_the_proposal_is_approved(world: World, requests: SampleRequests) -> None:
    proposal_id, (item_id, _) = submitted_with_items(world, requests)
    before = snapshot(world, item_id)
    with pytest.raises(ItemRefused, match="sample requests move once it is approved"):
        requests.move(world.office, proposal_id, item_id, ItemEvent.CONTACT)
    assert snapshot(world, item_id) == before
    with pytest.raises(ItemRefused, match="samples are requested with the draft"):
        requests.add(world.researcher, proposal_id, form(world))


def test_a_request_answered_by_two_biobanks_concludes_and_tells_who_must_act(
    world: World, requests: SampleRequests
) -> None:
    proposal_id, (item_a, item_b) = approved_with_items(world, requests)
    rep_a, rep_b = world.site_admins["uk-a"], world.site_admins["uk-b"]

    def inbox(actor: Actor) -> list[str]:
        return [n.text for n in world.proposals.notifications(actor)]

    requests.move(world.office, proposal_id, item_a, ItemEvent.CONTACT, "Bitte Bestand prüfen")
    assert any("waits for you: Bitte Bestand prüfen" in text for text in inbox(rep_a))
    assert not any("Zentrale Biobank uk-a" in text for text in inbox(rep_b))
    requests.move(rep_a, proposal_id, item_a, ItemEvent.CHECK_AVAILABILITY)
    requests.move(rep_a, proposal_id, item_a, ItemEvent.MARK_AVAILABLE)
    requests.move(rep_a, proposal_id, item_a, ItemEvent.INDICATE_ACCESS_CONDITIONS, "MTA nötig")
    assert any("waits for you: MTA nötig" in text for text in inbox(world.researcher))
    requests.move(world.researcher, proposal_id, item_a, ItemEvent.ACCEPT_ACCESS_CONDITIONS)
    requests.move(rep_a, proposal_id, item_a, ItemEvent.MAKE_AVAILABLE)

    requests.move(world.office, proposal_id, item_b, ItemEvent.CONTACT)
    with world.hub.sessions() as session:
        concluded = session.scalar(sa.select(sa.func.count()).where(EventRow.kind == "samples-concluded"))
    assert concluded == 0  # uk-b has not answered
    requests.move(rep_b, proposal_id, item_b, ItemEvent.STEP_AWAY, "Keine Proben dieser Art")

    states = [item.state for item in requests.items(world.researcher, proposal_id)]
    assert states == [ItemState.MADE_AVAILABLE, ItemState.UNAVAILABLE] and set(states) <= FINAL_STATES
    with world.hub.sessions() as session:
        events = session.scalars(sa.select(EventRow).where(EventRow.kind == "samples-concluded")).all()
    assert [event.text for event in events] == ["1 of 2 biobanks made samples available"]
    assert any("is concluded: 1 of 2" in text for text in inbox(world.researcher))
    assert [h.event for h in requests.history(world.researcher, proposal_id, item_b)] == [
        "contact",
        "step-away",
    ]


def test_a_quiet_item_reminds_whoever_must_act_once_per_quiet_period(
    world: World, requests: SampleRequests
) -> None:
    proposal_id, (item_a, _) = approved_with_items(world, requests)
    requests.move(world.office, proposal_id, item_a, ItemEvent.CONTACT)
    world.hub.clock.advance(6 * DAY)
    assert requests.remind() == 0
    world.hub.clock.advance(2 * DAY)
    assert requests.remind() == 2  # item a waits for uk-a's representative, item b for the office
    assert requests.remind() == 0  # told once per quiet period
    rep_inbox = [n.text for n in world.proposals.notifications(world.site_admins["uk-a"])]
    assert any("has waited 8 days for you: representative-contacted" in text for text in rep_inbox)
    office_inbox = [n.text for n in world.proposals.notifications(world.office)]
    assert any("Zentrale Biobank uk-b" in text and "has waited 8 days" in text for text in office_inbox)
    world.hub.clock.advance(7 * DAY)
    assert requests.remind() == 2


def reminded_items(world: World) -> int:
    with world.hub.sessions() as session:
        return session.scalar(sa.select(sa.func.count()).where(SampleItemRow.reminded.is_not(None)))


@pytest.mark.anyio
async def test_the_hubs_sweep_reminds_quiet_items_at_most_once_per_reminder_interval(
    world: World, requests: SampleRequests
) -> None:
    approved_with_items(world, requests)  # both items moved now, and wait for the office
    hub: Hub = world.hub.app(sample_reminder_days=7, reminder_interval_seconds=3600).state.hub
    reminders = Every(dt.timedelta(seconds=hub.config.reminder_interval_seconds), world.hub.clock)
    try:
        world.hub.clock.advance(7 * DAY - 1800)
        await sweep(hub, reminders)  # the first sweep looks at once: nothing is quiet yet
        world.hub.clock.advance(2400)
        await sweep(hub, reminders)  # quiet now, but the last look was only 40 minutes ago
        assert reminded_items(world) == 0
        world.hub.clock.advance(1200)
        await sweep(hub, reminders)  # an hour since the last look
        assert reminded_items(world) == 2
        office_inbox = [n.text for n in world.proposals.notifications(world.office)]
        assert sum("has waited 7 days for you" in text for text in office_inbox) == 2
    finally:
        hub.engine.dispose()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"donors": 0}, "donors: a whole number from 1 to"),
        ({"donors": True}, "donors: a whole number from 1 to"),
        ({"samples_per_donor": 5000}, "samples_per_donor: a whole number from 1 to 1000"),
        ({"sample_types": ()}, "sample_types: name at least one sample category"),
        ({"sample_types": ("serum", "blood-serum")}, "sample_types[0]: 'serum' is not a sample category"),
        ({"collection": "both"}, "collection: retrospective or prospective"),
        ({"biobank": ""}, "biobank"),
        ({"volume": "x" * 501}, "volume"),
    ],
)
def test_a_bad_access_form_is_refused_naming_its_field_and_stores_nothing(
    world: World, requests: SampleRequests, changes: dict, message: str
) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft())
    with pytest.raises(Invalid) as caught:
        requests.add(world.researcher, proposal_id, form(world, **changes))
    assert str(caught.value).startswith(message)
    assert requests.items(world.researcher, proposal_id) == []


def test_samples_are_requested_by_the_team_with_the_draft_and_at_its_sites(
    world: World, requests: SampleRequests
) -> None:
    proposal_id = world.proposals.create(world.researcher, world.draft(site_ids=(world.site_ids["uk-a"],)))
    with pytest.raises(Invalid, match="site_id: not one of the proposal's sites"):
        requests.add(world.researcher, proposal_id, form(world, "uk-b"))
    with pytest.raises(NotFound):
        requests.add(world.stranger, proposal_id, form(world))
    item_id = requests.add(world.colleague, proposal_id, form(world))  # an editing co-investigator
    (item,) = requests.items(world.researcher, proposal_id)
    assert item.id == item_id and item.state is ItemState.SUBMITTED
    assert item.form == dataclasses.replace(form(world), sample_types=("blood-plasma", "blood-serum"))
    assert item.next_events == (ItemEvent.CONTACT, ItemEvent.MARK_UNREACHABLE)
    with world.hub.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(NotificationRow)) == 0
