"""Biosample requests inside a Use & Access proposal: per (site, biobank) a request item with the access
form's fields, moved through its own state machine (`sample_workflow`), with an append-only history.

Every public method is one database transaction and locks the proposal's row first (as `service` does),
so two steps on one proposal's items happen one after the other. A transition appends exactly one
history row and tells whoever must act next; a refused one changes nothing. When every item of a
proposal has reached a final state, the request concludes: one proposal event `samples-concluded`, and
the researcher's team is told. `remind` tells whoever must act on an item that has not moved for
`reminder_days` (once per quiet period).

Errors: `NotFound` (no such proposal or item, or one the actor may not see), `Invalid` (a form value; the
text starts with the field), `ActionForbidden` (403) and `sample_workflow.ItemRefused` (409).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.db import Clock, utcnow
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.proposals.sample_workflow import (
    FINAL_STATES,
    ITEM_ACTIVE_PROPOSAL_STATES,
    ItemEvent,
    ItemRefused,
    ItemState,
    acting_role,
    decide_item,
    item_events,
)
from datenraum.hub.proposals.service import RoleHolders
from datenraum.hub.proposals.tables import (
    EventRow,
    NotificationRow,
    ProposalRow,
    ProposalSiteRow,
    SampleItemHistoryRow,
    SampleItemRow,
    TeamMemberRow,
)
from datenraum.hub.proposals.values import EDITING_ROLES, MAX_TEXT
from datenraum.hub.proposals.workflow import ActionForbidden, ProposalFacts, State, may_read
from datenraum.hub.roles import Actor, Role
from datenraum.hub.text import clean_text
from datenraum.query.biobank.terminology import CATEGORIES

__all__ = ["Collection", "ItemHistory", "SampleItem", "SampleRequestForm", "SampleRequests"]

MAX_DONORS = 1_000_000
MAX_SAMPLES_PER_DONOR = 1000
_CATEGORY_CODES = frozenset(category.code for category in CATEGORIES)
_EDITABLE = frozenset({State.DRAFT, State.REVISION_REQUESTED})


class Collection(StrEnum):
    RETROSPECTIVE = "retrospective"  # samples already in the biobank
    PROSPECTIVE = "prospective"  # samples to be collected for the project


@dataclass(frozen=True)
class SampleRequestForm:
    """The access form of one item (the Negotiator's BBMRI form: donors, samples per donor, types,
    volume, collection, and the storage needs)."""

    site_id: int
    biobank: str
    donors: int
    samples_per_donor: int
    sample_types: tuple[str, ...]
    volume: str
    collection: Collection
    storage: str = ""


@dataclass(frozen=True)
class SampleItem:
    id: int
    proposal_id: int
    form: SampleRequestForm
    state: ItemState
    moved: dt.datetime
    next_events: tuple[ItemEvent, ...]


@dataclass(frozen=True)
class ItemHistory:
    actor_id: int
    event: str
    from_state: str
    to_state: str
    message: str | None
    created: dt.datetime


def _checked(form: SampleRequestForm) -> SampleRequestForm:
    def whole(value: object, field: str, maximum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            raise Invalid(f"{field}: a whole number from 1 to {maximum}")
        return value

    types = tuple(form.sample_types)
    if not types or len(types) > len(_CATEGORY_CODES):
        raise Invalid("sample_types: name at least one sample category")
    for index, code in enumerate(types):
        if code not in _CATEGORY_CODES:
            raise Invalid(f"sample_types[{index}]: {str(code)[:60]!r} is not a sample category")
    try:
        collection = Collection(form.collection)
    except ValueError:
        raise Invalid("collection: retrospective or prospective") from None
    return SampleRequestForm(
        site_id=form.site_id,
        biobank=clean_text(form.biobank, "biobank", max_length=200, collapse_spaces=True),
        donors=whole(form.donors, "donors", MAX_DONORS),
        samples_per_donor=whole(form.samples_per_donor, "samples_per_donor", MAX_SAMPLES_PER_DONOR),
        sample_types=tuple(sorted(set(types))),
        volume=clean_text(form.volume, "volume", max_length=500),
        collection=collection,
        storage=clean_text(form.storage, "storage", max_length=500, required=False),
    )


class SampleRequests:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        role_holders: RoleHolders,
        clock: Clock = utcnow,
        reminder_days: int = 14,
    ) -> None:
        if reminder_days < 1:
            raise ValueError("reminder_days: at least 1")
        self._sessions = sessions
        self._holders = role_holders
        self._clock = clock
        self._quiet = dt.timedelta(days=reminder_days)

    def add(self, actor: Actor, proposal_id: int, form: SampleRequestForm) -> int:
        """A new item of the proposal's draft (its owner or an editor), in state `submitted`."""
        form = _checked(form)
        with self._sessions.begin() as session:
            facts = self._locked(session, actor, proposal_id)[1]
            if actor.user_id not in facts.editor_ids | {facts.owner_id}:
                raise ActionForbidden("add: only the proposal's owner and editors may request samples")
            if facts.state not in _EDITABLE:
                raise ItemRefused(f"add: the proposal is {facts.state}; samples are requested with the draft")
            if form.site_id not in facts.selected_site_ids:
                raise Invalid("site_id: not one of the proposal's sites")
            now = self._clock()
            item = SampleItemRow(
                proposal_id=proposal_id,
                site_id=form.site_id,
                biobank=form.biobank,
                donors=form.donors,
                samples_per_donor=form.samples_per_donor,
                sample_types=list(form.sample_types),
                volume=form.volume,
                collection=form.collection.value,
                storage=form.storage,
                state=ItemState.SUBMITTED.value,
                created=now,
                moved=now,
            )
            session.add(item)
            session.flush()
            return item.id

    def move(
        self, actor: Actor, proposal_id: int, item_id: int, event: ItemEvent, message: str = ""
    ) -> ItemState:
        """Take one step of an item; returns its new state. The message goes to whoever acts next."""
        text = clean_text(message, "message", max_length=MAX_TEXT, required=False) or None
        with self._sessions.begin() as session:
            row, facts = self._locked(session, actor, proposal_id)
            item = session.get(SampleItemRow, item_id)
            if item is None or item.proposal_id != proposal_id:
                raise NotFound(f"sample request item {item_id}")
            before = ItemState(item.state)
            after = decide_item(
                facts.state,
                before,
                ItemEvent(event),
                is_researcher=actor.user_id in facts.editor_ids | {facts.owner_id},
                is_office=Role.ADMIN in actor.roles,
                is_representative=Role.SITE_ADMIN in actor.roles and item.site_id in actor.site_ids,
            )
            now = self._clock()
            item.state, item.moved, item.reminded = after.value, now, None
            session.add(
                SampleItemHistoryRow(
                    item_id=item.id,
                    actor_id=actor.user_id,
                    event=ItemEvent(event).value,
                    from_state=before.value,
                    to_state=after.value,
                    message=text,
                    created=now,
                )
            )
            what = f"Sample request {item.biobank} of “{row.title}” (proposal {row.id}) is now {after}"
            acting = self._acting(session, facts, item)
            self._tell(session, row, acting - {actor.user_id}, f"{what}; it waits for you", text)
            informed = (facts.team_ids | {facts.owner_id}) - acting - {actor.user_id}
            self._tell(session, row, informed, what, text)
            self._conclude_if_final(session, row, facts, actor)
            return after

    def items(self, actor: Actor, proposal_id: int) -> list[SampleItem]:
        """The proposal's items, as anyone who may see the proposal sees them."""
        with self._sessions.begin() as session:
            self._readable(session, actor, proposal_id)
            rows = session.scalars(
                sa.select(SampleItemRow)
                .where(SampleItemRow.proposal_id == proposal_id)
                .order_by(SampleItemRow.id)
            )
            return [_item(row) for row in rows]

    def history(self, actor: Actor, proposal_id: int, item_id: int) -> list[ItemHistory]:
        with self._sessions.begin() as session:
            self._readable(session, actor, proposal_id)
            item = session.get(SampleItemRow, item_id)
            if item is None or item.proposal_id != proposal_id:
                raise NotFound(f"sample request item {item_id}")
            rows = session.scalars(
                sa.select(SampleItemHistoryRow)
                .where(SampleItemHistoryRow.item_id == item_id)
                .order_by(SampleItemHistoryRow.id)
            )
            return [
                ItemHistory(r.actor_id, r.event, r.from_state, r.to_state, r.message, r.created) for r in rows
            ]

    def remind(self) -> int:
        """Tell whoever must act on each item that has not moved (or been reminded) for the quiet period;
        returns how many items were reminded. Items of proposals that are not moving yet wait for nobody."""
        now = self._clock()
        cutoff = now - self._quiet
        reminded = 0
        with self._sessions.begin() as session:
            candidates = session.scalars(
                sa.select(SampleItemRow)
                .where(
                    SampleItemRow.state.not_in([state.value for state in FINAL_STATES]),
                    SampleItemRow.moved <= cutoff,
                    sa.or_(SampleItemRow.reminded.is_(None), SampleItemRow.reminded <= cutoff),
                )
                .order_by(SampleItemRow.id)
                .with_for_update()
            ).all()
            for item in candidates:
                row = session.get_one(ProposalRow, item.proposal_id)
                facts = _facts(session, row)
                if facts.state not in ITEM_ACTIVE_PROPOSAL_STATES:
                    continue
                days = (now - item.moved).days
                text = (
                    f"Sample request {item.biobank} of “{row.title}” (proposal {row.id}) "
                    f"has waited {days} days for you: {item.state}"
                )
                self._tell(session, row, self._acting(session, facts, item), text, None)
                item.reminded = now
                reminded += 1
        return reminded

    # -- internals

    def _locked(self, session: Session, actor: Actor, proposal_id: int) -> tuple[ProposalRow, ProposalFacts]:
        row = session.scalar(sa.select(ProposalRow).where(ProposalRow.id == proposal_id).with_for_update())
        return self._seen(actor, proposal_id, session, row)

    def _readable(
        self, session: Session, actor: Actor, proposal_id: int
    ) -> tuple[ProposalRow, ProposalFacts]:
        return self._seen(actor, proposal_id, session, session.get(ProposalRow, proposal_id))

    @staticmethod
    def _seen(
        actor: Actor, proposal_id: int, session: Session, row: ProposalRow | None
    ) -> tuple[ProposalRow, ProposalFacts]:
        if row is None:
            raise NotFound(f"proposal {proposal_id}")
        facts = _facts(session, row)
        if not may_read(facts, actor):
            raise NotFound(f"proposal {proposal_id}")
        return row, facts

    def _acting(self, session: Session, facts: ProposalFacts, item: SampleItemRow) -> set[int]:
        """Who must take the item's next step."""
        role = acting_role(ItemState(item.state))
        if role is None:
            return set()
        if role is Role.RESEARCHER:
            return set(facts.editor_ids | {facts.owner_id})
        if role is Role.SITE_ADMIN:
            return set(self._holders.user_ids(session, role.value, item.site_id))
        return set(self._holders.user_ids(session, role.value))

    def _tell(
        self, session: Session, row: ProposalRow, users: Iterable[int], text: str, message: str | None
    ) -> None:
        body = text if message is None else f"{text}: {message}"
        now = self._clock()
        for user_id in sorted(set(users)):
            session.add(NotificationRow(user_id=user_id, proposal_id=row.id, text=body, created=now))

    def _conclude_if_final(
        self, session: Session, row: ProposalRow, facts: ProposalFacts, actor: Actor
    ) -> None:
        states = set(
            session.scalars(sa.select(SampleItemRow.state).where(SampleItemRow.proposal_id == row.id))
        )
        if not states <= {state.value for state in FINAL_STATES}:
            return
        all_states = list(
            session.scalars(sa.select(SampleItemRow.state).where(SampleItemRow.proposal_id == row.id))
        )
        made = all_states.count(ItemState.MADE_AVAILABLE.value)
        text = f"{made} of {len(all_states)} biobanks made samples available"
        session.add(
            EventRow(
                proposal_id=row.id,
                actor_id=actor.user_id,
                kind="samples-concluded",
                from_state=facts.state.value,
                to_state=facts.state.value,
                text=text,
                created=self._clock(),
            )
        )
        team = facts.team_ids | {facts.owner_id}
        now = self._clock()
        for user_id in sorted(team):
            session.add(
                NotificationRow(
                    user_id=user_id,
                    proposal_id=row.id,
                    text=f"The sample request of “{row.title}” (proposal {row.id}) is concluded: {text}",
                    created=now,
                )
            )


def _facts(session: Session, row: ProposalRow) -> ProposalFacts:
    team = session.execute(
        sa.select(TeamMemberRow.user_id, TeamMemberRow.project_role).where(
            TeamMemberRow.proposal_id == row.id
        )
    ).all()
    sites = session.scalars(sa.select(ProposalSiteRow.site_id).where(ProposalSiteRow.proposal_id == row.id))
    return ProposalFacts(
        state=State(row.state),
        owner_id=row.owner_id,
        editor_ids=frozenset(user for user, role in team if role in EDITING_ROLES),
        team_ids=frozenset(user for user, _ in team),
        selected_site_ids=frozenset(sites),
    )


def _item(row: SampleItemRow) -> SampleItem:
    state = ItemState(row.state)
    form = SampleRequestForm(
        row.site_id,
        row.biobank,
        row.donors,
        row.samples_per_donor,
        tuple(row.sample_types),
        row.volume,
        Collection(row.collection),
        row.storage,
    )
    return SampleItem(row.id, row.proposal_id, form, state, row.moved, tuple(item_events(state)))
