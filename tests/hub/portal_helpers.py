"""Helpers for the portal's tests: browsers that keep cookies and send forms as the pages do, and people
of every role, set up directly in the hub's database."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import email
import email.policy
import hashlib
import html
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi import FastAPI

from datenraum.deidentify.package import new_recipient_key
from datenraum.hub.accounts.audit import AuditEntry, AuditSource, search
from datenraum.hub.accounts.outbox import Message, Outbox
from datenraum.hub.accounts.secrets import hash_secret, new_secret
from datenraum.hub.accounts.service import PortalRoleHolders, User
from datenraum.hub.accounts.service import Site as AgentSite
from datenraum.hub.accounts.users import Registration, Status, Users
from datenraum.hub.db import Base, SiteRow, UserRow, WebSessionRow
from datenraum.hub.delivery.service import Deliveries
from datenraum.hub.directory.service import Directory, Entry, EntryKind, Site
from datenraum.hub.portal.web import workflow_actor
from datenraum.hub.proposals.service import Proposals, ProposalSettings
from datenraum.hub.proposals.uploads import UploadPolicy
from datenraum.hub.proposals.values import Analysis, CohortQuery, DocumentKind, Draft
from datenraum.hub.proposals.workflow import Action
from datenraum.hub.roles import Actor, Role
from datenraum.hub.runtime import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from datenraum.protocol.messages import TaskResult, TaskState

from .helpers import HubFixture, older_than
from .proposals_helpers import ETHICS_VOTE

PASSWORD = "a long enough passphrase"
OFFICE = AuditSource(None, "test setup")


class Browser:
    """One person's browser: its own cookies, and every form sent with the CSRF token of its pages."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @property
    def csrf(self) -> str:
        token = self.client.cookies.get(CSRF_COOKIE)
        assert token, "the browser has no CSRF cookie yet"
        return token

    @property
    def session(self) -> str | None:
        return self.client.cookies.get(SESSION_COOKIE)

    async def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self.client.get(path, **kwargs)

    async def submit(
        self,
        path: str,
        data: dict[str, str] | None = None,
        csrf: str | None = "",
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> httpx.Response:
        """POST a form as its page would (with `files`, as multipart); `csrf` None leaves the token out,
        a string other than "" sends it."""
        if CSRF_COOKIE not in self.client.cookies:
            await self.get("/login")
        form = dict(data or {})
        if csrf is not None:
            form["csrf"] = csrf or self.csrf
        return await self.client.post(path, data=form, files=files)

    async def login(self, email: str, password: str = PASSWORD, **form: str) -> httpx.Response:
        return await self.submit("/login", {"email": email, "password": password, **form})

    async def api(
        self, method: str, path: str, json: Any = None, csrf: bool = True, **kwargs: Any
    ) -> httpx.Response:
        """An API request as the portal's scripts make it: the session cookie and the X-CSRF-Token header."""
        if CSRF_COOKIE not in self.client.cookies:
            await self.get("/login")
        headers = {CSRF_HEADER: self.csrf} if csrf else {}
        return await self.client.request(method, path, json=json, headers=headers, **kwargs)


@contextlib.asynccontextmanager
async def browser(app: FastAPI, ip: str = "127.0.0.1", https: bool = False) -> AsyncIterator[Browser]:
    """A browser on `app` (served by `helpers.serving`), connecting from the address `ip`."""
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    base_url = "https://hub" if https else "http://hub"
    async with httpx.AsyncClient(transport=transport, base_url=base_url, timeout=10) as client:
        yield Browser(client)


@dataclass
class People:
    """The hub's account services on the test's database, for setting people up as a test needs them."""

    hub: HubFixture

    @property
    def outbox(self) -> Outbox:
        folder = Path(self.hub.config.mail_folder) if self.hub.config.mail_folder else None
        return Outbox(self.hub.sessions, clock=self.hub.clock, folder=folder)

    @property
    def users(self) -> Users:
        return Users(self.hub.sessions, self.outbox, clock=self.hub.clock)

    def register(self, email: str, name: str = "Erika Muster", password: str = PASSWORD) -> int:
        return self.users.register(Registration(name, "Uniklinik Nord", email, password))

    def approved(self, email: str, role: Role = Role.RESEARCHER, site: str | None = None) -> int:
        """An approved account that signs in with PASSWORD, holding `role` alone."""
        user_id = self.register(email)
        self.users.set_status(OFFICE, user_id, Status.APPROVED)
        if role != Role.RESEARCHER:
            self.users.grant(OFFICE, user_id, role, site)
            self.users.revoke(OFFICE, user_id, Role.RESEARCHER)
        return user_id

    def session_for(self, user_id: int) -> str:
        """A session token for the user, made behind the portal's back (as if they had signed in)."""
        token = new_secret("drw_")
        now = self.hub.clock()
        with self.hub.sessions.begin() as session:
            session.add(
                WebSessionRow(
                    token_hash=hash_secret(token),
                    user_id=user_id,
                    created=now,
                    expires=now + dt.timedelta(hours=12),
                )
            )
        return token

    def acting(self, user_id: int) -> Actor:
        """The person as the Use & Access rules see them, with the roles and sites the portal gives them."""
        user = self.users.session_user(self.session_for(user_id))
        assert user is not None, f"user {user_id} cannot sign in"
        return workflow_actor(user)

    def status(self, email: str) -> str:
        with self.hub.sessions() as session:
            return session.scalar(sa.select(UserRow.status).where(UserRow.email == email)) or ""

    def messages(self, recipient: str) -> list[Message]:
        """The mail `recipient` received (from the hub's mail folder), newest first, links and all (the
        outbox keeps them masked)."""
        folder = Path(self.hub.config.mail_folder)
        found = []
        for path in sorted(folder.glob("*.eml"), reverse=True) if folder.is_dir() else []:
            mail = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if mail["To"] == recipient:
                body = mail.get_content()
                found.append(Message(int(path.stem), recipient, str(mail["Subject"]), body, True, None))
        return found

    def audit(self, **filters: Any) -> list[AuditEntry]:
        return search(self.hub.sessions, **filters)


def _deliveries(hub: HubFixture, folder: Path) -> Deliveries:
    return Deliveries(hub.sessions, dataclasses.replace(hub.config, delivery_folder=str(folder)), hub.clock)


def _user(actor: Actor) -> User:
    return User(actor.user_id, f"user-{actor.user_id}@example.org", actor.roles, actor.site_ids)


@dataclass
class UseAndAccess:
    """Proposals and directory objects made through the hub's services, for the pages to act on.

    Its documents go to `uploads`, which must be the app's `upload_folder` for them to be downloaded."""

    proposals: Proposals
    directory: Directory
    site_id: int  # the one site every proposal selects
    numbers: itertools.count = field(default_factory=itertools.count)

    @classmethod
    def on(cls, hub: HubFixture, uploads: Path, site: str) -> UseAndAccess:
        # One vote decides, so that a single committee member takes a proposal on to the sites.
        settings = ProposalSettings(uploads=UploadPolicy(folder=uploads), quorum=1)
        with hub.sessions() as session:
            site_id = session.scalars(sa.select(SiteRow.id).where(SiteRow.name == site)).one()
        return cls(
            Proposals(hub.sessions, settings, PortalRoleHolders(), hub.clock),
            Directory(hub.sessions),
            site_id,
        )

    def draft(self, owner: Actor, analysis: Analysis = Analysis.FEDERATED_ANALYSIS) -> int:
        """A draft that lacks only its ethics vote to be submitted."""
        draft = Draft(
            title="Diabetes und Niere",
            abstract="Wie häufig folgt eine Niereninsuffizienz?",
            questions=("Inzidenz der CKD",),
            cohort=(CohortQuery("Alte", older_than(50), 610, {"uk-a": 610}),),
            modules=("Person", "Diagnose"),
            analysis=analysis,
            site_ids=(self.site_id,),
        )
        return self.proposals.create(owner, draft)

    def submitted(self, owner: Actor, analysis: Analysis = Analysis.FEDERATED_ANALYSIS) -> tuple[int, int]:
        """A submitted proposal and the id of its ethics vote."""
        proposal_id = self.draft(owner, analysis)
        vote = self.proposals.upload(owner, proposal_id, DocumentKind.ETHICS_VOTE, "votum.pdf", ETHICS_VOTE)
        self.proposals.apply(owner, proposal_id, Action.SUBMIT)
        return proposal_id, vote.id

    def delivered(
        self,
        owner: Actor,
        office: Actor,
        committee: Actor,
        site_admin: Actor,
    ) -> int:
        proposal_id, _ = self.submitted(owner)
        steps = [
            (office, Action.START_FORMAL_CHECK),
            (office, Action.FORWARD_TO_COMMITTEE),
            (committee, Action.VOTE_APPROVE),
            (office, Action.REQUEST_SITE_DECISIONS),
            (site_admin, Action.SITE_AGREE),
            (office, Action.MARK_DELIVERED),
        ]
        for actor, action in steps:
            self.proposals.apply(actor, proposal_id, action, site_id=self.site_id)
        return proposal_id

    def awaiting_release(
        self, hub: HubFixture, folder: Path, people: tuple[Actor, Actor, Actor, Actor], site: str
    ) -> tuple[int, str]:
        """A data-delivery proposal whose site `site` has sealed its package, and that part's task id,
        which waits for its custodian's release. `people`: owner, office, committee, site admin."""
        owner, office, committee, site_admin = people
        proposal_id, _ = self.submitted(owner, Analysis.DATA_DELIVERY)
        steps = [
            (office, Action.START_FORMAL_CHECK),
            (office, Action.FORWARD_TO_COMMITTEE),
            (committee, Action.VOTE_APPROVE),
            (office, Action.REQUEST_SITE_DECISIONS),
            (site_admin, Action.SITE_AGREE),
        ]
        for actor, action in steps:
            self.proposals.apply(actor, proposal_id, action, site_id=self.site_id)
        deliveries = _deliveries(hub, folder)
        _private, public = new_recipient_key()
        crtdl = {"cohortDefinition": {"inclusionCriteria": []}, "dataExtraction": {"attributeGroups": []}}
        (part,) = deliveries.start(_user(office), proposal_id, crtdl, public.decode()).parts
        agent = AgentSite(self.site_id, site)
        assert part.task_id in {task.id for task in deliveries.claim(agent)}
        summary = {"Leak-Gate-Findings": 0}
        deliveries.record(agent, part.task_id, TaskResult(part.task_id, TaskState.ANSWERED, summary=summary))
        return proposal_id, part.task_id

    def downloadable(
        self, hub: HubFixture, folder: Path, people: tuple[Actor, Actor, Actor, Actor], site: str
    ) -> int:
        """A data-delivery proposal whose one site's package has arrived."""
        proposal_id, task_id = self.awaiting_release(hub, folder, people, site)
        deliveries = _deliveries(hub, folder)
        deliveries.release(_user(people[3]), task_id)
        agent = AgentSite(self.site_id, site)
        package = b"sealed package"
        deliveries.receive(agent, task_id, 0, package, hashlib.sha256(package).hexdigest())
        deliveries.complete(agent, task_id, len(package), hashlib.sha256(package).hexdigest())
        return proposal_id

    def directory_site(self, office: Actor) -> str:
        slug = f"uk-test-{next(self.numbers)}"
        self.directory.save_site(office, Site(slug, "Uniklinik Test", "Teststadt"))
        return slug

    def directory_entry(self, office: Actor) -> str:
        slug = f"projekt-{next(self.numbers)}"
        self.directory.save_entry(office, Entry(slug, EntryKind.PROJECT, slug.upper(), "Ein Projekt"))
        return slug


def link_in(message: Message) -> str:
    """The path and query of the one link in a message."""
    match = re.search(r"https?://[^/\s]+(/\S+)", message.body)
    assert match, message.body
    return match.group(1)


def alert(response: httpx.Response) -> str:
    """The error a page shows (its role="alert" paragraph), without markup."""
    match = re.search(r'<p class="error" role="alert"[^>]*>(.*?)</p>', response.text, re.S)
    assert match, f"no error shown on the page ({response.status_code})"
    return html.unescape(match.group(1).strip())


def routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) the app answers, HEAD aside; a mounted folder as its path + "/*"."""
    found: set[tuple[str, str]] = set()

    def walk(route: Any) -> None:
        if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI >= 0.160)
            for context in route.effective_route_contexts():
                walk(context)
        elif getattr(route, "methods", None):
            found.update((method, route.path) for method in route.methods if method != "HEAD")
        else:
            found.add(("GET", route.path + "/*"))

    for route in app.routes:
        walk(route)
    return found


def database_contents(hub: HubFixture) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, to show that a refused request changed nothing."""
    with hub.engine.connect() as connection:
        return {
            table.name: sorted(tuple(map(str, row)) for row in connection.execute(sa.select(table)))
            for table in Base.metadata.sorted_tables
        }
