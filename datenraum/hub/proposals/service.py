"""Use & Access proposals: the domain logic below the portal's pages.

Every public method is one database transaction (like `datenraum.hub.feasibility.service`), so a request happens
entirely or not at all. Whether an action is allowed is never decided here but by
`workflow.decide`; this module reads the facts it needs, records what it allows (with who, when and
why, as an event of the proposal's timeline) and notifies whoever the proposal now waits for.

What it returns are the values of `values`; a draft is checked by `checks.check_draft` before it is
stored, and texts by `datenraum.hub.text.clean_text`.

Transitions lock the proposal's row first, so that two committee members voting at once are counted
one after the other and exactly one of them reaches the quorum.

Errors: `NotFound` (no such proposal, or one the actor may not see: the two look the same),
`Invalid` (a value that cannot be stored; the text starts with the field), `workflow.ActionForbidden` and
`workflow.Refused` (an action the rules do not allow), `uploads.UploadRejected`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.db import Clock, SiteRow, UserRow, utcnow
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.proposals import export
from datenraum.hub.proposals.checks import check_draft
from datenraum.hub.proposals.tables import (
    CohortRow,
    DocumentRow,
    EventRow,
    NotificationRow,
    ProposalRow,
    ProposalSiteRow,
    PublicationRow,
    TeamMemberRow,
    VoteRow,
)
from datenraum.hub.proposals.uploads import UploadPolicy, read_stored, store_upload
from datenraum.hub.proposals.values import (
    EDITING_ROLES,
    MAX_TEXT,
    Analysis,
    CohortQuery,
    Document,
    DocumentKind,
    Draft,
    Event,
    Notification,
    ProjectRole,
    Proposal,
    Publication,
    SiteDecision,
    Summary,
    TeamMember,
    Vote,
)
from datenraum.hub.proposals.workflow import (
    Action,
    ActionForbidden,
    ProposalFacts,
    State,
    allowed_actions,
    decide,
    due_actions,
    may_read,
    waiting_roles,
)
from datenraum.hub.roles import Actor, Role
from datenraum.hub.text import clean_text

__all__ = ["ProposalSettings", "Proposals", "RoleHolders"]


@dataclass(frozen=True)
class ProposalSettings:
    uploads: UploadPolicy
    quorum: int = 2  # committee votes that decide (by majority; a tie waits for the next vote)

    def __post_init__(self) -> None:
        if self.quorum < 1:
            raise ValueError(f"quorum: must be at least 1, got {self.quorum}")


class RoleHolders(Protocol):
    """Who holds a portal role (the portal's accounts know; tests give a mapping)."""

    def user_ids(self, session: Session, role: str, site_id: int | None = None) -> Iterable[int]:
        """The users with `role`; for "site-admin", those who administer `site_id`."""
        ...


class Proposals:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: ProposalSettings,
        role_holders: RoleHolders,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._holders = role_holders
        self._clock = clock

    # -- drafts

    def create(self, actor: Actor, draft: Draft) -> int:
        """A new draft owned by `actor`; returns its id."""
        if Role.RESEARCHER not in actor.roles:
            raise ActionForbidden("create: only the role 'researcher' may write proposals")
        now = self._clock()
        with self._sessions.begin() as session:
            check_draft(session, draft)
            row = ProposalRow(
                owner_id=actor.user_id, state=State.DRAFT.value, created=now, updated=now, **_columns(draft)
            )
            session.add(row)
            session.flush()
            _write_children(session, row.id, draft)
            self._event(session, row.id, actor, "create", State.DRAFT, State.DRAFT)
            return row.id

    def edit(self, actor: Actor, proposal_id: int, draft: Draft) -> None:
        """Replace the draft's content (in draft and revision-requested only)."""
        with self._sessions.begin() as session:
            row, facts = self._locked(session, actor, proposal_id)
            decide(facts, actor, Action.EDIT)
            check_draft(session, draft)
            for name, value in _columns(draft).items():
                setattr(row, name, value)
            row.updated = self._clock()
            for table in (CohortRow, ProposalSiteRow, TeamMemberRow):
                session.execute(sa.delete(table).where(table.proposal_id == proposal_id))
            _write_children(session, proposal_id, draft)
            self._event(session, proposal_id, actor, Action.EDIT.value, facts.state, facts.state)

    # -- the workflow

    def apply(
        self,
        actor: Actor,
        proposal_id: int,
        action: Action,
        *,
        reason: str | None = None,
        site_id: int | None = None,
    ) -> State:
        """Take a workflow action (votes and site decisions included); returns the state that follows."""
        if action in (Action.EDIT, Action.ADD_PUBLICATION):
            raise Invalid(f"action: {action} has its own method (edit, add_publication)")
        reason = None if reason is None else clean_text(reason, "reason", max_length=MAX_TEXT, required=False)
        now = self._clock()
        with self._sessions.begin() as session:
            row, facts = self._locked(session, actor, proposal_id)
            after = decide(facts, actor, action, reason=reason, site_id=site_id)
            if action is Action.SUBMIT:
                row.submitted = now
                session.execute(
                    sa.update(CohortRow).where(CohortRow.proposal_id == proposal_id).values(frozen=now)
                )
            elif action in (Action.VOTE_APPROVE, Action.VOTE_REJECT):
                session.add(
                    VoteRow(
                        proposal_id=proposal_id,
                        user_id=actor.user_id,
                        in_favour=action is Action.VOTE_APPROVE,
                        reason=reason,
                        created=now,
                    )
                )
            elif action in (Action.SITE_AGREE, Action.SITE_DECLINE):
                decision = session.get_one(ProposalSiteRow, (proposal_id, site_id))
                decision.agreed = action is Action.SITE_AGREE
                decision.reason = reason
                decision.decided_by = actor.user_id
                decision.decided = now
            row.state = after.value
            row.updated = now
            self._event(session, proposal_id, actor, action.value, facts.state, after, reason, site_id)
            if after is not facts.state:
                self._notify(session, row, facts, actor, after)
            return after

    def add_publication(self, actor: Actor, proposal_id: int, title: str, reference: str) -> Publication:
        """Link a publication of the project (a DOI or URL) once its data has been delivered."""
        title = clean_text(title, "title", max_length=500)
        reference = clean_text(reference, "reference", max_length=500)
        with self._sessions.begin() as session:
            _, facts = self._locked(session, actor, proposal_id)
            decide(facts, actor, Action.ADD_PUBLICATION)
            publication = PublicationRow(
                proposal_id=proposal_id,
                title=title,
                reference=reference,
                added_by=actor.user_id,
                created=self._clock(),
            )
            session.add(publication)
            session.flush()
            self._event(
                session, proposal_id, actor, Action.ADD_PUBLICATION.value, facts.state, facts.state, title
            )
            return _publication(publication)

    # -- comments and documents

    def comment(self, actor: Actor, proposal_id: int, text: str) -> None:
        """A comment on the timeline, by anyone who may see the proposal."""
        text = clean_text(text, "text", max_length=MAX_TEXT)
        with self._sessions.begin() as session:
            _, facts = self._readable(session, actor, proposal_id)
            self._event(session, proposal_id, actor, "comment", facts.state, facts.state, text)

    def upload(
        self, actor: Actor, proposal_id: int, kind: DocumentKind, file_name: str, content: bytes
    ) -> Document:
        """Check, scan and store a document of the proposal; raises uploads.UploadRejected."""
        try:
            kind = DocumentKind(kind)
        except ValueError:
            raise Invalid(f"kind: must be one of {', '.join(DocumentKind)}") from None
        with self._sessions.begin() as session:
            self._readable(session, actor, proposal_id)  # before a stranger's file touches the disk
        # Stored before the row: a file without a row is harmless (and found again by its hash when
        # uploaded again), a row without its file would not be.
        stored = store_upload(self._settings.uploads, file_name, content)
        with self._sessions.begin() as session:
            _, facts = self._readable(session, actor, proposal_id)
            row = DocumentRow(
                proposal_id=proposal_id,
                uploaded_by=actor.user_id,
                kind=kind.value,
                file_name=stored.file_name,
                media_type=stored.media_type,
                size=stored.size,
                storage_id=stored.storage_id,
                created=self._clock(),
            )
            session.add(row)
            session.flush()
            self._event(
                session, proposal_id, actor, "upload", facts.state, facts.state, f"{kind}: {stored.file_name}"
            )
            return _document(row)

    def document(self, actor: Actor, proposal_id: int, document_id: int) -> tuple[Document, bytes]:
        """A document and its content, for download."""
        with self._sessions.begin() as session:
            self._readable(session, actor, proposal_id)
            row = session.get(DocumentRow, document_id)
            if row is None or row.proposal_id != proposal_id:
                raise NotFound(f"document {document_id}")
            document = _document(row)
        return document, read_stored(self._settings.uploads, row.storage_id)

    # -- reading

    def get(self, actor: Actor, proposal_id: int) -> Proposal:
        with self._sessions.begin() as session:
            row, facts = self._readable(session, actor, proposal_id)
            return self._proposal(session, row, facts, actor)

    def timeline(self, actor: Actor, proposal_id: int) -> list[Event]:
        """Everything that happened to the proposal, oldest first."""
        with self._sessions.begin() as session:
            self._readable(session, actor, proposal_id)
            return _events(session, proposal_id)

    def waiting_for(self, actor: Actor) -> list[Summary]:
        """The proposals that wait for `actor` to act, oldest change first: the role's dashboard."""
        with self._sessions.begin() as session:
            candidates = self._candidates(session, actor)
            summaries = []
            for row in session.scalars(
                sa.select(ProposalRow).where(ProposalRow.id.in_(candidates)).order_by(ProposalRow.updated)
            ):
                due = due_actions(self._facts(session, row), actor)
                if due:
                    summaries.append(
                        Summary(row.id, row.title, State(row.state), row.owner_id, row.updated, tuple(due))
                    )
            return summaries

    def visible(self, actor: Actor, state: State | None = None) -> list[Summary]:
        """Every proposal the actor may see (in `state`, if given), newest change first: a list page."""
        with self._sessions.begin() as session:
            team = sa.select(TeamMemberRow.proposal_id).where(TeamMemberRow.user_id == actor.user_id)
            own = sa.or_(ProposalRow.owner_id == actor.user_id, ProposalRow.id.in_(team))
            # A superset of what may_read allows, to spare reading every proposal; may_read decides.
            others = (
                ProposalRow.state != State.DRAFT.value
                if actor.roles & {Role.ADMIN, Role.COMMITTEE, Role.SITE_ADMIN}
                else sa.false()
            )
            query = sa.select(ProposalRow).where(sa.or_(own, others)).order_by(ProposalRow.updated.desc())
            if state is not None:
                query = query.where(ProposalRow.state == State(state).value)
            summaries = []
            for row in session.scalars(query):
                facts = self._facts(session, row)
                if may_read(facts, actor):
                    due = tuple(due_actions(facts, actor))
                    summaries.append(
                        Summary(row.id, row.title, State(row.state), row.owner_id, row.updated, due)
                    )
            return summaries

    def export_json(self, actor: Actor, proposal_id: int) -> dict[str, Any]:
        """The proposal with its decision history, as JSON-ready values."""
        proposal, events = self._for_export(actor, proposal_id)
        return export.to_json(proposal, events)

    def export_pdf(self, actor: Actor, proposal_id: int) -> bytes:
        proposal, events = self._for_export(actor, proposal_id)
        return export.to_pdf(proposal, events)

    # -- notifications

    def notifications(self, actor: Actor, *, unread_only: bool = False) -> list[Notification]:
        """The actor's notifications, newest first."""
        with self._sessions.begin() as session:
            query = sa.select(NotificationRow).where(NotificationRow.user_id == actor.user_id)
            if unread_only:
                query = query.where(NotificationRow.read.is_(None))
            rows = session.scalars(query.order_by(NotificationRow.id.desc()))
            return [Notification(row.id, row.proposal_id, row.text, row.created, row.read) for row in rows]

    def mark_read(self, actor: Actor, notification_ids: Sequence[int]) -> int:
        """Mark the actor's own notifications read (others' ids are ignored); returns how many changed."""
        with self._sessions.begin() as session:
            result = session.execute(
                sa.update(NotificationRow)
                .where(
                    NotificationRow.user_id == actor.user_id,
                    NotificationRow.id.in_(list(notification_ids)),
                    NotificationRow.read.is_(None),
                )
                .values(read=self._clock())
            )
            return result.rowcount

    # -- internals

    def _locked(self, session: Session, actor: Actor, proposal_id: int) -> tuple[ProposalRow, ProposalFacts]:
        row = session.scalar(sa.select(ProposalRow).where(ProposalRow.id == proposal_id).with_for_update())
        return self._seen(session, actor, proposal_id, row)

    def _readable(
        self, session: Session, actor: Actor, proposal_id: int
    ) -> tuple[ProposalRow, ProposalFacts]:
        return self._seen(session, actor, proposal_id, session.get(ProposalRow, proposal_id))

    def _seen(
        self, session: Session, actor: Actor, proposal_id: int, row: ProposalRow | None
    ) -> tuple[ProposalRow, ProposalFacts]:
        if row is None:
            raise NotFound(f"proposal {proposal_id}")
        facts = self._facts(session, row)
        if not may_read(facts, actor):
            raise NotFound(f"proposal {proposal_id}")
        return row, facts

    def _facts(self, session: Session, row: ProposalRow) -> ProposalFacts:
        team = session.execute(
            sa.select(TeamMemberRow.user_id, TeamMemberRow.project_role).where(
                TeamMemberRow.proposal_id == row.id
            )
        ).all()
        votes = session.execute(
            sa.select(VoteRow.user_id, VoteRow.in_favour).where(VoteRow.proposal_id == row.id)
        ).all()
        sites = session.execute(
            sa.select(ProposalSiteRow.site_id, ProposalSiteRow.agreed).where(
                ProposalSiteRow.proposal_id == row.id
            )
        ).all()
        return ProposalFacts(
            state=State(row.state),
            owner_id=row.owner_id,
            editor_ids=frozenset(user for user, role in team if role in EDITING_ROLES),
            team_ids=frozenset(user for user, _ in team),
            missing_for_submission=self._missing(session, row, [site for site, _ in sites]),
            quorum=self._settings.quorum,
            votes_for=frozenset(user for user, in_favour in votes if in_favour),
            votes_against=frozenset(user for user, in_favour in votes if not in_favour),
            selected_site_ids=frozenset(site for site, _ in sites),
            agreed_site_ids=frozenset(site for site, agreed in sites if agreed is True),
            declined_site_ids=frozenset(site for site, agreed in sites if agreed is False),
        )

    @staticmethod
    def _missing(session: Session, row: ProposalRow, site_ids: list[int]) -> tuple[str, ...]:
        has_cohort = session.scalar(sa.select(sa.func.count()).where(CohortRow.proposal_id == row.id))
        has_ethics_vote = session.scalar(
            sa.select(sa.func.count()).where(
                DocumentRow.proposal_id == row.id, DocumentRow.kind == DocumentKind.ETHICS_VOTE.value
            )
        )
        present = {
            "title": row.title,
            "abstract": row.abstract,
            "questions": row.questions,
            "cohort": has_cohort,
            "modules": row.modules,
            "analysis": row.analysis,
            "sites": site_ids,
            "ethics vote": has_ethics_vote,
        }
        return tuple(name for name, value in present.items() if not value)

    def _candidates(self, session: Session, actor: Actor) -> sa.Select:
        """Ids of the proposals that may wait for `actor`; `due_actions` decides which do."""
        states = {
            role: [state.value for state in State if role in waiting_roles(state)] for role in actor.roles
        }
        conditions = []
        if Role.RESEARCHER in actor.roles:
            team = sa.select(TeamMemberRow.proposal_id).where(TeamMemberRow.user_id == actor.user_id)
            conditions.append(
                sa.and_(
                    ProposalRow.state.in_(states[Role.RESEARCHER]),
                    sa.or_(ProposalRow.owner_id == actor.user_id, ProposalRow.id.in_(team)),
                )
            )
        for role in (Role.ADMIN, Role.COMMITTEE):
            if role in actor.roles:
                conditions.append(ProposalRow.state.in_(states[role]))
        if Role.SITE_ADMIN in actor.roles:
            pending = sa.select(ProposalSiteRow.proposal_id).where(
                ProposalSiteRow.site_id.in_(actor.site_ids), ProposalSiteRow.agreed.is_(None)
            )
            conditions.append(
                sa.and_(ProposalRow.state.in_(states[Role.SITE_ADMIN]), ProposalRow.id.in_(pending))
            )
        return sa.select(ProposalRow.id).where(sa.or_(sa.false(), *conditions))

    def _notify(
        self, session: Session, row: ProposalRow, facts: ProposalFacts, actor: Actor, after: State
    ) -> None:
        """Ask whoever the proposal now waits for, and tell its team what happened to it."""
        due: set[int] = set()
        for role in waiting_roles(after):
            if role == Role.RESEARCHER:
                due |= facts.editor_ids | {facts.owner_id}
            elif role == Role.SITE_ADMIN:
                for site_id in sorted(facts.pending_site_ids):
                    due |= set(self._holders.user_ids(session, role, site_id))
            else:
                due |= set(self._holders.user_ids(session, role))
        if Role.COMMITTEE in waiting_roles(after):
            due -= facts.team_ids | {facts.owner_id}  # they do not vote on their own proposal
        informed = (facts.team_ids | {facts.owner_id}) - due
        now = self._clock()
        title = f"“{row.title}” (proposal {row.id})"
        for user_id, text in sorted(
            [(user, f"{title} waits for you: {after}") for user in due - {actor.user_id}]
            + [(user, f"{title} is now {after}") for user in informed - {actor.user_id}]
        ):
            session.add(NotificationRow(user_id=user_id, proposal_id=row.id, text=text, created=now))

    def _event(
        self,
        session: Session,
        proposal_id: int,
        actor: Actor,
        kind: str,
        before: State,
        after: State,
        text: str | None = None,
        site_id: int | None = None,
    ) -> None:
        session.add(
            EventRow(
                proposal_id=proposal_id,
                actor_id=actor.user_id,
                kind=kind,
                from_state=before.value,
                to_state=after.value,
                text=text,
                site_id=site_id,
                created=self._clock(),
            )
        )

    def _proposal(self, session: Session, row: ProposalRow, facts: ProposalFacts, actor: Actor) -> Proposal:
        pid = row.id
        cohort = session.scalars(
            sa.select(CohortRow).where(CohortRow.proposal_id == pid).order_by(CohortRow.position)
        )
        team = session.scalars(
            sa.select(TeamMemberRow).where(TeamMemberRow.proposal_id == pid).order_by(TeamMemberRow.user_id)
        )
        sites = session.execute(
            sa.select(ProposalSiteRow, SiteRow.name)
            .join(SiteRow, SiteRow.id == ProposalSiteRow.site_id)
            .where(ProposalSiteRow.proposal_id == pid)
            .order_by(SiteRow.name)
        ).all()
        votes: list[VoteRow] = []
        if actor.roles & {Role.ADMIN, Role.COMMITTEE}:
            votes = list(
                session.scalars(
                    sa.select(VoteRow).where(VoteRow.proposal_id == pid).order_by(VoteRow.created)
                )
            )
        documents = session.scalars(
            sa.select(DocumentRow).where(DocumentRow.proposal_id == pid).order_by(DocumentRow.id)
        )
        publications = session.scalars(
            sa.select(PublicationRow).where(PublicationRow.proposal_id == pid).order_by(PublicationRow.id)
        )
        draft = Draft(
            title=row.title,
            abstract=row.abstract,
            questions=tuple(row.questions),
            cohort=tuple(CohortQuery(c.name, c.query, c.total, c.site_counts) for c in cohort),
            modules=tuple(row.modules),
            data_from=row.data_from,
            data_to=row.data_to,
            biosamples=row.biosamples,
            analysis=None if row.analysis is None else Analysis(row.analysis),
            site_ids=tuple(site.site_id for site, _ in sites),
            start=row.start,
            end=row.end,
            team=tuple(TeamMember(member.user_id, ProjectRole(member.project_role)) for member in team),
        )
        return Proposal(
            id=pid,
            owner_id=row.owner_id,
            state=State(row.state),
            draft=draft,
            created=row.created,
            updated=row.updated,
            submitted=row.submitted,
            sites=tuple(
                SiteDecision(site.site_id, name, site.agreed, site.reason, site.decided_by, site.decided)
                for site, name in sites
            ),
            votes=tuple(Vote(vote.user_id, vote.in_favour, vote.reason, vote.created) for vote in votes),
            documents=tuple(_document(document) for document in documents),
            publications=tuple(_publication(publication) for publication in publications),
            allowed=tuple(allowed_actions(facts, actor, actor.site_ids)),
        )

    def _for_export(self, actor: Actor, proposal_id: int) -> tuple[Proposal, list[Event]]:
        with self._sessions.begin() as session:
            row, facts = self._readable(session, actor, proposal_id)
            return self._proposal(session, row, facts, actor), _events(session, proposal_id)


def _events(session: Session, proposal_id: int) -> list[Event]:
    rows = session.execute(
        sa.select(EventRow, UserRow.email, SiteRow.name)
        .outerjoin(UserRow, UserRow.id == EventRow.actor_id)
        .outerjoin(SiteRow, SiteRow.id == EventRow.site_id)
        .where(EventRow.proposal_id == proposal_id)
        .order_by(EventRow.id)
    ).all()
    return [
        Event(
            event.id,
            event.kind,
            event.actor_id,
            email or (f"agent of {site}" if site else "hub"),
            State(event.from_state),
            State(event.to_state),
            event.text,
            event.site_id,
            event.created,
        )
        for event, email, site in rows
    ]


def _document(row: DocumentRow) -> Document:
    return Document(
        row.id, DocumentKind(row.kind), row.file_name, row.media_type, row.size, row.uploaded_by, row.created
    )


def _publication(row: PublicationRow) -> Publication:
    return Publication(row.id, row.title, row.reference, row.added_by, row.created)


def _columns(draft: Draft) -> dict[str, Any]:
    return {
        "title": draft.title,
        "abstract": draft.abstract,
        "questions": list(draft.questions),
        "modules": list(draft.modules),
        "data_from": draft.data_from,
        "data_to": draft.data_to,
        "biosamples": draft.biosamples,
        "analysis": None if draft.analysis is None else Analysis(draft.analysis).value,
        "start": draft.start,
        "end": draft.end,
    }


def _write_children(session: Session, proposal_id: int, draft: Draft) -> None:
    for position, cohort in enumerate(draft.cohort):
        session.add(
            CohortRow(
                proposal_id=proposal_id,
                position=position,
                name=cohort.name,
                query=dict(cohort.query),
                total=cohort.total,
                site_counts=dict(cohort.site_counts),
            )
        )
    for site_id in draft.site_ids:
        session.add(ProposalSiteRow(proposal_id=proposal_id, site_id=site_id))
    for member in draft.team:
        session.add(
            TeamMemberRow(
                proposal_id=proposal_id, user_id=member.user_id, project_role=member.project_role.value
            )
        )
