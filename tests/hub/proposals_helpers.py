"""A small Use & Access world for the proposal tests: users in every role, two sites, the service."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session

from datenraum.hub.db import SiteRow
from datenraum.hub.proposals.service import Proposals, ProposalSettings
from datenraum.hub.proposals.uploads import UploadPolicy
from datenraum.hub.proposals.values import Analysis, CohortQuery, DocumentKind, Draft, ProjectRole, TeamMember
from datenraum.hub.proposals.workflow import Action
from datenraum.hub.roles import Actor, Role

from .helpers import HubFixture, older_than

ETHICS_VOTE = b"%PDF-1.7\n% Ethikvotum der Ethikkommission\n%%EOF\n"


class MappedRoles:
    """Role holders as the portal will know them; here a plain mapping."""

    def __init__(self) -> None:
        self.roles: dict[str, set[int]] = {}
        self.sites: dict[int, set[int]] = {}

    def user_ids(self, session: Session, role: str, site_id: int | None = None) -> Iterable[int]:
        if role == "site-admin":
            return set() if site_id is None else self.sites.get(site_id, set())
        return self.roles.get(role, set())


@dataclass
class World:
    hub: HubFixture
    proposals: Proposals
    researcher: Actor
    colleague: Actor  # on the researcher's team, as co-investigator
    stranger: Actor  # another researcher
    office: Actor
    committee: list[Actor]
    site_admins: dict[str, Actor]  # by site name
    site_ids: dict[str, int]
    uploads: Path
    roles: MappedRoles

    def draft(self, **changes: object) -> Draft:
        values: dict[str, object] = {
            "title": "Diabetes und Niereninsuffizienz",
            "abstract": "Wie häufig folgt auf Typ-2-Diabetes eine chronische Niereninsuffizienz?",
            "questions": ("Inzidenz der CKD nach Erstdiagnose E11",),
            "cohort": (CohortQuery("Älter als 50", older_than(50), 1230, {"uk-a": 610, "uk-b": 620}),),
            "modules": ("Person", "Diagnose", "Laborbefund"),
            "analysis": Analysis.FEDERATED_ANALYSIS,
            "site_ids": tuple(self.site_ids.values()),
            "team": (TeamMember(self.colleague.user_id, ProjectRole.CO_INVESTIGATOR),),
        }
        values.update(changes)
        return Draft(**values)  # type: ignore[arg-type]

    def submitted(self, **changes: object) -> int:
        proposal_id = self.proposals.create(self.researcher, self.draft(**changes))
        self.proposals.upload(
            self.researcher, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", ETHICS_VOTE
        )
        self.proposals.apply(self.researcher, proposal_id, Action.SUBMIT)
        return proposal_id

    def in_review(self, **changes: object) -> int:
        proposal_id = self.submitted(**changes)
        self.proposals.apply(self.office, proposal_id, Action.START_FORMAL_CHECK)
        self.proposals.apply(self.office, proposal_id, Action.FORWARD_TO_COMMITTEE)
        return proposal_id

    def approved(self, **changes: object) -> int:
        proposal_id = self.in_review(**changes)
        for member in self.committee[:2]:
            self.proposals.apply(member, proposal_id, Action.VOTE_APPROVE)
        return proposal_id

    def at_sites(self, **changes: object) -> int:
        proposal_id = self.approved(**changes)
        self.proposals.apply(self.office, proposal_id, Action.REQUEST_SITE_DECISIONS)
        return proposal_id


def make_world(hub: HubFixture, folder: Path, quorum: int = 2) -> World:
    numbers = itertools.count(1)

    def user(role: str, sites: frozenset[int] = frozenset()) -> Actor:
        # The users table knows researchers and admins today; the portal's roles come with it.
        stored = Role.ADMIN if role == "admin" else Role.RESEARCHER
        account = hub.accounts.user_for(hub.user(f"{role}-{next(numbers)}@example.org", stored))
        assert account is not None
        return Actor(account.id, frozenset({role}), sites)

    hub.sites("uk-a", "uk-b")
    with hub.engine.connect() as connection:
        site_ids = {
            name: site_id for name, site_id in connection.execute(sa.select(SiteRow.name, SiteRow.id))
        }
    roles = MappedRoles()
    office = user("admin")
    committee = [user("committee") for _ in range(3)]
    site_admins = {name: user("site-admin", frozenset({site_id})) for name, site_id in site_ids.items()}
    roles.roles = {"admin": {office.user_id}, "committee": {member.user_id for member in committee}}
    roles.sites = {site_ids[name]: {admin.user_id} for name, admin in site_admins.items()}
    uploads = folder / "uploads"
    settings = ProposalSettings(uploads=UploadPolicy(folder=uploads, max_bytes=64 * 1024), quorum=quorum)
    return World(
        hub=hub,
        proposals=Proposals(hub.sessions, settings, roles, hub.clock),
        researcher=user("researcher"),
        colleague=user("researcher"),
        stranger=user("researcher"),
        office=office,
        committee=committee,
        site_admins=site_admins,
        site_ids=site_ids,
        uploads=uploads,
        roles=roles,
    )
