"""The values of Use & Access: what a proposal is, as the service returns it and the pages show it.

Plain frozen values and enums, with no database and no transaction: the service (`service`) builds them
from its rows, the export (`export`) writes them as JSON and PDF, and the pages (`portal/proposals_pages`)
show them and build `Draft`s from forms.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from datenraum.hub.proposals.workflow import Action, State

__all__ = [
    "EDITING_ROLES",
    "KDS_MODULES",
    "MAX_TEXT",
    "Analysis",
    "CohortQuery",
    "Document",
    "DocumentKind",
    "Draft",
    "Event",
    "Notification",
    "ProjectRole",
    "Proposal",
    "Publication",
    "SiteDecision",
    "Summary",
    "TeamMember",
    "Vote",
]

# The modules of the MII core data set a proposal may request (base and extension modules).
KDS_MODULES = frozenset(
    {
        "Person",
        "Fall",
        "Diagnose",
        "Prozedur",
        "Laborbefund",
        "Medikation",
        "Bioprobe",
        "Consent",
        "Bildgebung",
        "Intensivmedizin",
        "Mikrobiologie",
        "Molekulargenetischer Befundbericht",
        "Onkologie",
        "Pathologie-Befund",
        "Studie",
    }
)
MAX_TEXT = 20_000


class Analysis(StrEnum):
    DATA_DELIVERY = "data-delivery"  # the sites deliver the approved data to the project
    FEDERATED_ANALYSIS = "federated-analysis"  # the analysis runs at the sites; only results leave


class ProjectRole(StrEnum):
    PRINCIPAL_INVESTIGATOR = "principal-investigator"
    CO_INVESTIGATOR = "co-investigator"
    PROJECT_MANAGER = "project-manager"
    DATA_SCIENTIST = "data-scientist"
    OBSERVER = "observer"


# The project roles that may edit the proposal and act for it as its owner does.
EDITING_ROLES = frozenset(
    {ProjectRole.PRINCIPAL_INVESTIGATOR, ProjectRole.CO_INVESTIGATOR, ProjectRole.PROJECT_MANAGER}
)


class DocumentKind(StrEnum):
    ETHICS_VOTE = "ethics-vote"
    DATA_USE_AGREEMENT = "data-use-agreement"
    OTHER = "other"


@dataclass(frozen=True)
class CohortQuery:
    """A saved feasibility query and the counts it had when the researcher chose it."""

    name: str
    query: Mapping[str, Any]  # MII structured query (CCDL JSON)
    total: int | None = None  # None: no total was shown (too few sites)
    site_counts: Mapping[str, int | None] = field(default_factory=dict)  # None: below threshold


@dataclass(frozen=True)
class TeamMember:
    user_id: int
    project_role: ProjectRole


@dataclass(frozen=True)
class Draft:
    """Everything a researcher writes into a proposal; every field may stay empty until submission."""

    title: str = ""
    abstract: str = ""
    questions: tuple[str, ...] = ()
    cohort: tuple[CohortQuery, ...] = ()
    modules: tuple[str, ...] = ()
    data_from: dt.date | None = None
    data_to: dt.date | None = None
    biosamples: str = ""
    analysis: Analysis | None = None
    site_ids: tuple[int, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None
    team: tuple[TeamMember, ...] = ()


@dataclass(frozen=True)
class SiteDecision:
    site_id: int
    site_name: str
    agreed: bool | None  # None: not decided (yet)
    reason: str | None
    decided_by: int | None
    decided: dt.datetime | None


@dataclass(frozen=True)
class Vote:
    user_id: int
    in_favour: bool
    reason: str | None
    created: dt.datetime


@dataclass(frozen=True)
class Document:
    id: int
    kind: DocumentKind
    file_name: str
    media_type: str
    size: int
    uploaded_by: int
    created: dt.datetime


@dataclass(frozen=True)
class Publication:
    id: int
    title: str
    reference: str
    added_by: int
    created: dt.datetime


@dataclass(frozen=True)
class Event:
    id: int
    kind: str  # a workflow action, "create", "comment" or "upload"
    actor_id: int | None  # None: a site's agent or the hub itself
    actor_email: str  # or "agent of <site>", "hub"
    from_state: State
    to_state: State
    text: str | None
    site_id: int | None
    created: dt.datetime


@dataclass(frozen=True)
class Proposal:
    id: int
    owner_id: int
    state: State
    draft: Draft
    created: dt.datetime
    updated: dt.datetime
    submitted: dt.datetime | None
    sites: tuple[SiteDecision, ...]
    votes: tuple[Vote, ...]  # only for the coordination office and the committee
    documents: tuple[Document, ...]
    publications: tuple[Publication, ...]
    allowed: tuple[Action, ...]  # what the reading actor may do now


@dataclass(frozen=True)
class Summary:
    id: int
    title: str
    state: State
    owner_id: int
    updated: dt.datetime
    due: tuple[Action, ...]


@dataclass(frozen=True)
class Notification:
    id: int
    proposal_id: int
    text: str
    created: dt.datetime
    read: dt.datetime | None
