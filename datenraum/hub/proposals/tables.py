"""The database tables of Use & Access proposals; created by migration 0003 (invitations: 0004; biosample
request items and their history: 0008).

A proposal's own fields are one row; what it has several of (cohort queries, sites, team members,
votes, documents, publications, events) are rows of their own, so that each can be added, decided or
listed without rewriting the proposal. Document contents are files (see `uploads`), not rows.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = [
    "CohortRow",
    "DocumentRow",
    "EventRow",
    "InvitationRow",
    "NotificationRow",
    "ProposalRow",
    "ProposalSiteRow",
    "PublicationRow",
    "SampleItemHistoryRow",
    "SampleItemRow",
    "TeamMemberRow",
    "VoteRow",
]


class ProposalRow(Base):
    __tablename__ = "proposals"
    __table_args__ = (sa.Index("ix_proposals_state", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(sa.String(30))
    title: Mapped[str] = mapped_column(sa.String(300))
    abstract: Mapped[str] = mapped_column(sa.Text)
    questions: Mapped[list] = mapped_column(sa.JSON)  # the scientific questions, in order
    modules: Mapped[list] = mapped_column(sa.JSON)  # requested KDS modules
    data_from: Mapped[dt.date | None] = mapped_column(sa.Date)
    data_to: Mapped[dt.date | None] = mapped_column(sa.Date)
    biosamples: Mapped[str] = mapped_column(sa.Text)
    analysis: Mapped[str | None] = mapped_column(sa.String(30))
    start: Mapped[dt.date | None] = mapped_column(sa.Date)
    end: Mapped[dt.date | None] = mapped_column(sa.Date)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    submitted: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class CohortRow(Base):
    """One requested cohort: a feasibility query and its counts, as the researcher saw them."""

    __tablename__ = "proposal_cohorts"

    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    query: Mapped[dict] = mapped_column(sa.JSON)
    total: Mapped[int | None] = mapped_column(sa.BigInteger)
    site_counts: Mapped[dict] = mapped_column(sa.JSON)  # site name -> count, null below threshold
    frozen: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)  # the submission that froze it


class ProposalSiteRow(Base):
    """A participating site and, once its administrator has answered, its decision."""

    __tablename__ = "proposal_sites"
    __table_args__ = (sa.Index("ix_proposal_sites_site", "site_id"),)

    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    agreed: Mapped[bool | None]
    reason: Mapped[str | None] = mapped_column(sa.Text)
    decided_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    decided: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class TeamMemberRow(Base):
    __tablename__ = "proposal_team"
    __table_args__ = (sa.Index("ix_proposal_team_user", "user_id"),)

    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    project_role: Mapped[str] = mapped_column(sa.String(40))


class InvitationRow(Base):
    """A team member named by an address that has no approved account (yet): it becomes a member (a
    `TeamMemberRow`) when an account with that address is approved. The pages show both alike, so that the
    team field does not tell which addresses have accounts."""

    __tablename__ = "proposal_invitations"
    __table_args__ = (sa.Index("ix_proposal_invitations_email", "email"),)

    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), primary_key=True)
    project_role: Mapped[str] = mapped_column(sa.String(40))


class VoteRow(Base):
    """A committee member's one vote on a proposal (the key makes a second vote impossible)."""

    __tablename__ = "proposal_votes"

    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    in_favour: Mapped[bool]
    reason: Mapped[str | None] = mapped_column(sa.Text)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class DocumentRow(Base):
    """An uploaded document; its content is the file `storage_id` in the upload folder."""

    __tablename__ = "proposal_documents"
    __table_args__ = (sa.Index("ix_proposal_documents_proposal", "proposal_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"))
    uploaded_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(sa.String(30))
    file_name: Mapped[str] = mapped_column(sa.String(255))  # sanitised, for display and download only
    media_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    storage_id: Mapped[str] = mapped_column(sa.String(64))  # the content's SHA-256
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class PublicationRow(Base):
    __tablename__ = "proposal_publications"
    __table_args__ = (sa.Index("ix_proposal_publications_proposal", "proposal_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"))
    title: Mapped[str] = mapped_column(sa.String(500))
    reference: Mapped[str] = mapped_column(sa.String(500))  # a DOI or URL
    added_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class EventRow(Base):
    """One entry of a proposal's timeline: a transition, vote, site decision, comment, upload or
    publication, with who did it, when and why. Never changed or deleted: it is the audit trail."""

    __tablename__ = "proposal_events"
    __table_args__ = (sa.Index("ix_proposal_events_proposal", "proposal_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"))
    # None: a site's agent (with `site_id`) or the hub itself did it (migration 0013)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(sa.String(30))  # a workflow action, or comment / upload
    from_state: Mapped[str] = mapped_column(sa.String(30))
    to_state: Mapped[str] = mapped_column(sa.String(30))
    text: Mapped[str | None] = mapped_column(sa.Text)  # the reason, comment or document name
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id"))
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class NotificationRow(Base):
    __tablename__ = "notifications"
    __table_args__ = (sa.Index("ix_notifications_user_read", "user_id", "read"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"))
    text: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    read: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SampleItemRow(Base):
    """One biosample request item of a proposal: what the researcher asks of one biobank at one site (the
    access form's fields) and where the request stands (`sample_workflow.ItemState`)."""

    __tablename__ = "proposal_sample_items"
    __table_args__ = (sa.Index("ix_proposal_sample_items_proposal", "proposal_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    biobank: Mapped[str] = mapped_column(sa.String(200))  # the biobank's id (BBMRI-ERIC id where known)
    donors: Mapped[int]
    samples_per_donor: Mapped[int]
    sample_types: Mapped[list] = mapped_column(sa.JSON)  # sample categories
    volume: Mapped[str] = mapped_column(sa.String(500))  # e.g. "2 x 0.5 ml per donor"
    collection: Mapped[str] = mapped_column(sa.String(20))  # retrospective | prospective
    storage: Mapped[str] = mapped_column(sa.String(500))  # storage and shipping needs
    state: Mapped[str] = mapped_column(sa.String(40))
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    moved: Mapped[dt.datetime] = mapped_column(UtcDateTime)  # the last transition (or creation)
    reminded: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class SampleItemHistoryRow(Base):
    """One transition of a request item: who, when, from, to, and the message to whoever acts next.
    Never changed or deleted."""

    __tablename__ = "proposal_sample_item_history"
    __table_args__ = (sa.Index("ix_proposal_sample_item_history_item", "item_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("proposal_sample_items.id"))
    actor_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    event: Mapped[str] = mapped_column(sa.String(40))
    from_state: Mapped[str] = mapped_column(sa.String(40))
    to_state: Mapped[str] = mapped_column(sa.String(40))
    message: Mapped[str | None] = mapped_column(sa.Text)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
