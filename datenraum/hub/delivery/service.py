"""Data delivery at the hub: from an approved proposal to the researcher's download, one audited path.

**Start** (`start`, the coordination office): a proposal that is `ready-for-delivery` and asked for
data delivery gets one delivery, with the project's CRTDL (pinned by its SHA-256), the project's public
key (packages are sealed for it at the sites; the private key stays with the project) and a deadline
(`delivery_days`). Every site that agreed gets a part: an `extraction` task for its agent.

**At the site** the agent extracts, de-identifies, runs the leak gate and seals the package, and answers
with counts only (the protocol's summary); the part then awaits release by the site's custodian (a site
administrator of that site), who sees those counts and the leak gate's verdict and releases or rejects
with a reason. Only a released part is offered for upload.

**Upload** (`receive`, `complete`): chunks at the acknowledged offset, each with its SHA-256, so an
interrupted upload (an agent killed, a hub restarted) continues where it stopped; the whole package's
SHA-256 and size are checked before it is kept (`storage`).

**Download** (`download`): the proposal's owner and team only (anyone else: 404, as if there were
none); one tar stream of every site's sealed package under its site's name with an index
(`delivery.json`: per site its state, counts, SHA-256 and size).

Every step of a part is an entry in the proposal's timeline (kind `delivery-<event>`, with the site);
the entries that the agents cause are recorded for the person who started the delivery, the text
naming the site's agent. The custodians are notified of a package awaiting release, the team when data
arrives. When every part has ended with at least one package, the proposal becomes `delivered`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa, x25519
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.service import Site, User
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Clock, SiteRow, UserRoleRow, utcnow
from datenraum.hub.delivery.storage import PackageStore
from datenraum.hub.delivery.tables import DataDeliveryRow, DeliveryPartRow
from datenraum.hub.delivery.workflow import (
    TERMINAL,
    DeliveryState,
    Event,
    SiteState,
    advance,
    delivery_state,
)
from datenraum.hub.errors import Conflict, Forbidden, Invalid, NotFound
from datenraum.hub.proposals.tables import (
    EventRow,
    NotificationRow,
    ProposalRow,
    ProposalSiteRow,
    TeamMemberRow,
)
from datenraum.hub.proposals.values import Analysis
from datenraum.hub.proposals.workflow import State
from datenraum.hub.roles import Role
from datenraum.protocol.messages import Task, TaskResult, TaskState, TaskType

__all__ = ["CHUNK_MAX", "PROFILES", "Deliveries", "Delivery", "Part", "Upload", "project_id"]

CHUNK_MAX = 8 << 20  # bytes of one upload chunk: what the hub holds of a package at a time
PROFILES = ("fdpg", "fts")
MAX_CRTDL_BYTES = 512 * 1024


def project_id(proposal_id: int) -> str:
    """The project's name at the sites: its keys and pseudonym namespace derive from it, so every run
    of one project gives the same pseudonyms and another project different ones."""
    return f"datenraum-proposal-{proposal_id}"


@dataclass(frozen=True)
class Part:
    task_id: str
    site_id: int
    site: str
    state: SiteState
    summary: dict[str, Any] | None
    reason: str | None
    received: int
    package_bytes: int | None
    package_sha256: str | None
    updated: dt.datetime


@dataclass(frozen=True)
class Delivery:
    id: int
    proposal_id: int
    title: str
    state: DeliveryState
    crtdl_sha256: str
    profile: str
    created: dt.datetime
    deadline: dt.datetime
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class Upload:
    """A released part the site's agent should upload, and where to continue."""

    task_id: str
    project: str
    received: int

    def to_json(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "project": self.project, "received": self.received}


def _check_recipient_key(pem: str) -> None:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, UnicodeEncodeError):
        raise Invalid("recipient_key: expected the project's public key in PEM (X25519 or RSA)") from None
    if not isinstance(key, x25519.X25519PublicKey | rsa.RSAPublicKey):
        raise Invalid("recipient_key: the project's key must be X25519 or RSA")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 3072:
        raise Invalid(f"recipient_key: an RSA key needs at least 3072 bits, this one has {key.key_size}")


def _check_crtdl(crtdl: Any) -> bytes:
    """The CRTDL's canonical bytes. The hub checks only its outline; the sites validate it in full
    (the extraction rules are a site library) and a site that cannot use it fails its part, saying why."""
    if not isinstance(crtdl, dict):
        raise Invalid("crtdl: expected the CRTDL as a JSON object")
    for key in ("cohortDefinition", "dataExtraction"):
        if not isinstance(crtdl.get(key), dict):
            raise Invalid(f"crtdl.{key}: required, a JSON object")
    canonical = orjson.dumps(crtdl, option=orjson.OPT_SORT_KEYS)
    if len(canonical) > MAX_CRTDL_BYTES:
        raise Invalid(f"crtdl: at most {MAX_CRTDL_BYTES} bytes")
    return canonical


def _tar_member(name: str, size: int, mtime: dt.datetime) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, int(mtime.timestamp()), 0o644
    return info.tobuf(format=tarfile.PAX_FORMAT)


def _padding(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


class Deliveries:
    def __init__(self, sessions: sessionmaker[Session], config: HubConfig, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._config = config
        self._clock = clock
        self.packages = PackageStore(Path(config.delivery_folder))

    # -- the coordination office

    def start(
        self, user: User, proposal_id: int, crtdl: Any, recipient_key: str, profile: str = "fdpg"
    ) -> Delivery:
        if not user.has(Role.ADMIN):
            raise Forbidden("delivery: only the coordination office starts a data delivery")
        canonical = _check_crtdl(crtdl)
        if not isinstance(recipient_key, str):
            raise Invalid("recipient_key: expected the project's public key in PEM")
        _check_recipient_key(recipient_key)
        if profile not in PROFILES:
            raise Invalid(f"profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
        now = self._clock()
        with self._sessions.begin() as session:
            proposal = session.get(ProposalRow, proposal_id, with_for_update=True)
            if proposal is None:
                raise NotFound(f"no proposal {proposal_id}")
            if proposal.analysis != Analysis.DATA_DELIVERY.value:
                raise Conflict(
                    f"delivery: proposal {proposal_id} asked for {proposal.analysis}, not data delivery"
                )
            if proposal.state != State.READY_FOR_DELIVERY.value:
                raise Conflict(
                    f"delivery: proposal {proposal_id} is {proposal.state}, not ready-for-delivery"
                )
            if session.scalar(
                sa.select(DataDeliveryRow.id).where(DataDeliveryRow.proposal_id == proposal_id)
            ):
                raise Conflict(f"delivery: proposal {proposal_id} has a delivery already")
            sites = session.execute(
                sa.select(SiteRow.id, SiteRow.name)
                .join(ProposalSiteRow, ProposalSiteRow.site_id == SiteRow.id)
                .where(ProposalSiteRow.proposal_id == proposal_id, ProposalSiteRow.agreed.is_(True))
                .where(SiteRow.active.is_(True))
                .order_by(SiteRow.name)
            ).all()
            if not sites:
                raise Conflict(f"delivery: no active site agreed to proposal {proposal_id}")
            row = DataDeliveryRow(
                proposal_id=proposal_id,
                crtdl=orjson.loads(canonical),
                crtdl_sha256=hashlib.sha256(canonical).hexdigest(),
                recipient_key=recipient_key,
                profile=profile,
                started_by=user.id,
                created=now,
                deadline=now + dt.timedelta(days=self._config.delivery_days),
            )
            session.add(row)
            session.flush()
            for site_id, _name in sites:
                session.add(
                    DeliveryPartRow(
                        task_id=str(uuid.uuid4()),
                        delivery_id=row.id,
                        site_id=site_id,
                        state=SiteState.REQUESTED.value,
                        received=0,
                        updated=now,
                    )
                )
            names = ", ".join(name for _id, name in sites)
            self._timeline(
                session,
                row,
                "delivery-requested",
                f"CRTDL sha256:{row.crtdl_sha256}, profile {profile}, sites {names}, "
                f"due {row.deadline:%Y-%m-%d}",
                actor_id=row.started_by,
            )
            return self._delivery(session, row)

    # -- reading

    def get(self, user: User, proposal_id: int) -> Delivery:
        """The delivery of a proposal, for its team, the coordination office and its sites' custodians
        (these two without the counts of other sites' packages)."""
        with self._sessions() as session:
            row = self._row(session, proposal_id)
            delivery = self._delivery(session, row)
            if self._on_team(session, user, proposal_id):
                return delivery
            custodian = user.has(Role.SITE_ADMIN) and {p.site_id for p in delivery.parts} & user.site_ids
            if not (user.has(Role.ADMIN) or custodian):
                raise NotFound(f"no delivery for proposal {proposal_id}")
            # The counts are of the project's patients: for its team and each site's own custodian only.
            parts = tuple(
                p if p.site_id in user.site_ids else dataclasses.replace(p, summary=None)
                for p in delivery.parts
            )
            return dataclasses.replace(delivery, parts=parts)

    def on_team(self, user: User, proposal_id: int) -> bool:
        with self._sessions() as session:
            return self._on_team(session, user, proposal_id)

    def awaiting_release(self, user: User) -> list[Delivery]:
        """The deliveries with a part at one of `user`'s sites that waits for their release."""
        if not user.has(Role.SITE_ADMIN) or not user.site_ids:
            return []
        with self._sessions() as session:
            ids = session.scalars(
                sa.select(DeliveryPartRow.delivery_id)
                .where(
                    DeliveryPartRow.site_id.in_(sorted(user.site_ids)),
                    DeliveryPartRow.state == SiteState.AWAITING_RELEASE.value,
                )
                .distinct()
            ).all()
            rows = session.scalars(sa.select(DataDeliveryRow).where(DataDeliveryRow.id.in_(ids))).all()
            return [self._delivery(session, row) for row in sorted(rows, key=lambda r: r.id)]

    # -- the custodian at the site

    def release(self, user: User, task_id: str) -> Part:
        return self._decide(user, task_id, Event.RELEASED, None)

    def reject(self, user: User, task_id: str, reason: str) -> Part:
        reason = (reason or "").strip()
        if not reason:
            raise Invalid("reason: a rejection needs a reason")
        return self._decide(user, task_id, Event.REJECTED, reason[:2000])

    def _decide(self, user: User, task_id: str, event: Event, reason: str | None) -> Part:
        with self._sessions.begin() as session:
            part = session.get(DeliveryPartRow, task_id, with_for_update=True)
            if part is None:
                raise NotFound(f"no delivery part {task_id!r}")
            if not user.has(Role.SITE_ADMIN) or part.site_id not in user.site_ids:
                raise Forbidden(
                    "delivery: only a custodian (site administrator) of this site releases its data"
                )
            row = session.get_one(DataDeliveryRow, part.delivery_id)
            self._move(session, row, part, event, reason=reason, actor_id=user.id)
            return self._part(session, part)

    # -- the site's agent

    def claim(self, site: Site) -> list[Task]:
        """The site's extraction tasks that are new or whose lease ran out, now extracting."""
        now = self._clock()
        with self._sessions.begin() as session:
            parts = session.scalars(
                sa.select(DeliveryPartRow)
                .where(
                    DeliveryPartRow.site_id == site.id,
                    sa.or_(
                        DeliveryPartRow.state == SiteState.REQUESTED.value,
                        sa.and_(
                            DeliveryPartRow.state == SiteState.EXTRACTING.value,
                            DeliveryPartRow.leased_until <= now,
                        ),
                    ),
                )
                .order_by(DeliveryPartRow.updated)
                .limit(5)
                .with_for_update()
            ).all()
            tasks = []
            for part in parts:
                row = session.get_one(DataDeliveryRow, part.delivery_id)
                if row.deadline <= now:
                    continue  # the sweep marks it missed
                first = part.state == SiteState.REQUESTED.value
                part.state = advance(SiteState(part.state), Event.CLAIMED).value
                # An extraction runs for a while; the lease only decides when a silent agent is asked again.
                part.leased_until = now + max(self._config.lease, dt.timedelta(minutes=10))
                if first:
                    self._timeline(
                        session, row, "delivery-extracting", f"{site.name} (agent): extracting", part
                    )
                payload = {
                    "crtdl": row.crtdl,
                    "crtdl_sha256": row.crtdl_sha256,
                    "project": project_id(row.proposal_id),
                    "profile": row.profile,
                    "recipient_key": row.recipient_key,
                }
                tasks.append(Task(part.task_id, TaskType.EXTRACTION, payload, row.deadline))
            return tasks

    def owns(self, task_id: str) -> bool:
        with self._sessions() as session:
            return session.get(DeliveryPartRow, task_id) is not None

    def record(self, site: Site, task_id: str, result: TaskResult) -> SiteState:
        """The agent's answer: a sealed package's counts (now awaiting release) or why it failed. The same
        answer again, e.g. re-posted from the agent's journal, changes nothing."""
        with self._sessions.begin() as session:
            part = self._site_part(session, site, task_id)
            if part.state != SiteState.EXTRACTING.value:
                return SiteState(part.state)
            row = session.get_one(DataDeliveryRow, part.delivery_id)
            if result.state == TaskState.FAILED:
                self._move(session, row, part, Event.FAILED, reason=result.reason)
            elif result.summary is None:
                raise Invalid("result.summary: an extraction task is answered with the package's summary")
            else:
                part.summary = result.summary
                self._move(session, row, part, Event.EXTRACTED)
            return SiteState(part.state)

    def uploads(self, site: Site) -> list[Upload]:
        with self._sessions() as session:
            rows = session.execute(
                sa.select(DeliveryPartRow, DataDeliveryRow.proposal_id)
                .join(DataDeliveryRow, DataDeliveryRow.id == DeliveryPartRow.delivery_id)
                .where(DeliveryPartRow.site_id == site.id, DeliveryPartRow.state == SiteState.RELEASED.value)
                .order_by(DeliveryPartRow.updated)
            ).all()
            return [
                Upload(part.task_id, project_id(proposal_id), part.received) for part, proposal_id in rows
            ]

    def upload_offset(self, site: Site, task_id: str) -> int:
        with self._sessions() as session:
            part = self._site_part(session, site, task_id)
            self._uploading(part)
            return part.received

    def receive(self, site: Site, task_id: str, offset: int, data: bytes, sha256: str) -> int:
        """Write one chunk at `offset`, which must be the acknowledged size; returns the new one."""
        if len(data) > CHUNK_MAX:
            raise Invalid(f"chunk: at most {CHUNK_MAX} bytes")
        if not data:
            raise Invalid("chunk: empty")
        if hashlib.sha256(data).hexdigest() != sha256.lower():
            raise Invalid("chunk: its content does not have the SHA-256 of the X-Chunk-SHA256 header")
        with self._sessions.begin() as session:
            part = self._site_part(session, site, task_id, lock=True)
            self._uploading(part)
            if offset != part.received:
                raise Conflict(f"chunk: the upload continues at offset {part.received}, not {offset}")
            part.received = self.packages.write_chunk(task_id, offset, data)
            part.updated = self._clock()
            return part.received

    def complete(self, site: Site, task_id: str, size: int, sha256: str) -> Part:
        """The upload is complete: keep it if it is the package the site sealed, else start it over."""
        with self._sessions.begin() as session:
            part = self._site_part(session, site, task_id, lock=True)
            if part.state == SiteState.UPLOADED.value and part.package_sha256 == sha256:
                return self._part(session, part)  # said twice: the first one kept it
            self._uploading(part)
            if size != part.received:
                raise Conflict(f"complete: {part.received} bytes were received, not {size}")
            problem = self.packages.finish(task_id, size, sha256.lower())
            row = session.get_one(DataDeliveryRow, part.delivery_id)
            if problem is not None:
                part.received = 0
                self._timeline(
                    session, row, "delivery-upload-refused", f"{site.name} (agent): {problem}", part
                )
                session.commit()
                raise Conflict(f"complete: the package is refused and must be sent again: {problem}")
            part.package_bytes, part.package_sha256 = size, sha256.lower()
            self._move(session, row, part, Event.UPLOADED)
            return self._part(session, part)

    def sweep(self) -> int:
        """Parts not uploaded by their delivery's deadline have missed the period; returns how many."""
        now = self._clock()
        missed = 0
        with self._sessions.begin() as session:
            rows = session.execute(
                sa.select(DeliveryPartRow, DataDeliveryRow)
                .join(DataDeliveryRow, DataDeliveryRow.id == DeliveryPartRow.delivery_id)
                .where(DataDeliveryRow.deadline <= now)
                .where(DeliveryPartRow.state.not_in([s.value for s in TERMINAL]))
                .with_for_update(of=DeliveryPartRow)
            ).all()
            for part, row in rows:
                self.packages.discard(part.task_id)
                self._move(session, row, part, Event.MISSED, reason="the site missed the delivery period")
                missed += 1
        return missed

    # -- the researcher

    def download(self, user: User, proposal_id: int) -> tuple[Delivery, Iterator[bytes]]:
        """The merged delivery as one tar stream, for the proposal's owner and team (else 404)."""
        with self._sessions.begin() as session:
            row = self._row(session, proposal_id)
            if not self._on_team(session, user, proposal_id):
                raise NotFound(f"no delivery for proposal {proposal_id}")
            delivery = self._delivery(session, row)
            if delivery.state not in (DeliveryState.PARTIAL, DeliveryState.DELIVERED, DeliveryState.FETCHED):
                raise Conflict(f"delivery: no package has arrived yet ({delivery.state})")
            if row.fetched is None and delivery.state is DeliveryState.DELIVERED:
                row.fetched = self._clock()
                self._timeline(
                    session, row, "delivery-fetched", f"downloaded by {user.email}", actor_id=user.id
                )
                delivery = self._delivery(session, row)
        return delivery, self._tar(delivery)

    def _tar(self, delivery: Delivery) -> Iterator[bytes]:
        index = {
            "project": project_id(delivery.proposal_id),
            "proposal": delivery.proposal_id,
            "crtdl_sha256": delivery.crtdl_sha256,
            "profile": delivery.profile,
            "state": delivery.state.value,
            "sites": [
                {
                    "site": part.site,
                    "state": part.state.value,
                    "reason": part.reason,
                    "summary": part.summary,
                    "file": f"sites/{part.site}.dpkg" if part.state is SiteState.UPLOADED else None,
                    "sha256": part.package_sha256,
                    "bytes": part.package_bytes,
                }
                for part in delivery.parts
            ],
        }
        index_bytes = orjson.dumps(index, option=orjson.OPT_INDENT_2)
        yield _tar_member("delivery.json", len(index_bytes), delivery.created) + index_bytes
        yield _padding(len(index_bytes))
        for part in delivery.parts:
            if part.state is not SiteState.UPLOADED:
                continue
            size = self.packages.size(part.task_id)
            yield _tar_member(f"sites/{part.site}.dpkg", size, part.updated)
            yield from self.packages.read(part.task_id)
            yield _padding(size)
        yield b"\0" * (2 * tarfile.BLOCKSIZE)

    # -- inside

    @staticmethod
    def _row(session: Session, proposal_id: int) -> DataDeliveryRow:
        row = session.scalar(sa.select(DataDeliveryRow).where(DataDeliveryRow.proposal_id == proposal_id))
        if row is None:
            raise NotFound(f"no delivery for proposal {proposal_id}")
        return row

    @staticmethod
    def _on_team(session: Session, user: User, proposal_id: int) -> bool:
        owner = session.scalar(sa.select(ProposalRow.owner_id).where(ProposalRow.id == proposal_id))
        member = session.scalar(
            sa.select(TeamMemberRow.user_id).where(
                TeamMemberRow.proposal_id == proposal_id, TeamMemberRow.user_id == user.id
            )
        )
        return user.id == owner or member is not None

    @staticmethod
    def _site_part(session: Session, site: Site, task_id: str, *, lock: bool = False) -> DeliveryPartRow:
        part = session.get(DeliveryPartRow, task_id, with_for_update=lock)
        if part is None or part.site_id != site.id:
            raise NotFound(f"no task {task_id!r}")
        return part

    @staticmethod
    def _uploading(part: DeliveryPartRow) -> None:
        if part.state != SiteState.RELEASED.value:
            raise Conflict(f"upload: this part is {part.state}; only a released package may be uploaded")

    def _move(
        self,
        session: Session,
        row: DataDeliveryRow,
        part: DeliveryPartRow,
        event: Event,
        *,
        reason: str | None = None,
        actor_id: int | None = None,
    ) -> None:
        before = self._delivery(session, row).state
        part.state = advance(SiteState(part.state), event).value
        part.updated = self._clock()
        if reason is not None:
            part.reason = reason
        site = session.get_one(SiteRow, part.site_id).name
        who = f"{site} (custodian)" if actor_id is not None else f"{site} (agent)"
        text = f"{who}: {part.state}" + (f": {reason}" if reason else "")
        self._timeline(session, row, f"delivery-{event.value}", text, part, actor_id=actor_id)
        if part.state == SiteState.AWAITING_RELEASE.value:
            self._tell_custodians(session, row, part.site_id, f"a data package of {site} awaits your release")
        if event is Event.MISSED:
            missed = f"{site} missed the delivery period ({row.deadline:%Y-%m-%d})"
            self._tell_custodians(session, row, part.site_id, missed)
            self._notify(session, row, {row.started_by}, missed)
        after = self._delivery(session, row).state
        if after is not before:
            self._timeline(session, row, f"delivery-{after.value}", f"the delivery is {after.value}")
            if after in (DeliveryState.PARTIAL, DeliveryState.DELIVERED):
                self._tell_team(
                    session, row, f"data of your project has arrived: the delivery is {after.value}"
                )
            if after is DeliveryState.DELIVERED:
                proposal = session.get_one(ProposalRow, row.proposal_id)
                if proposal.state == State.READY_FOR_DELIVERY.value:
                    proposal.state = State.DELIVERED.value
                    proposal.updated = self._clock()
                    self._timeline(
                        session,
                        row,
                        "delivered",
                        "every site's part has ended",
                        before=State.READY_FOR_DELIVERY,
                    )

    def _timeline(
        self,
        session: Session,
        row: DataDeliveryRow,
        kind: str,
        text: str,
        part: DeliveryPartRow | None = None,
        *,
        actor_id: int | None = None,
        before: State | None = None,
    ) -> None:
        state = State(session.get_one(ProposalRow, row.proposal_id).state)
        session.add(
            EventRow(
                proposal_id=row.proposal_id,
                actor_id=actor_id,
                kind=kind[:30],
                from_state=(before or state).value,
                to_state=state.value,
                text=text,
                site_id=part.site_id if part is not None else None,
                created=self._clock(),
            )
        )
        session.flush()

    def _notify(self, session: Session, row: DataDeliveryRow, user_ids: set[int], text: str) -> None:
        title = session.get_one(ProposalRow, row.proposal_id).title
        for user_id in sorted(user_ids):
            session.add(
                NotificationRow(
                    user_id=user_id,
                    proposal_id=row.proposal_id,
                    text=f"“{title}” (proposal {row.proposal_id}): {text}",
                    created=self._clock(),
                )
            )

    def _tell_custodians(self, session: Session, row: DataDeliveryRow, site_id: int, text: str) -> None:
        users = session.scalars(
            sa.select(UserRoleRow.user_id).where(
                UserRoleRow.role == Role.SITE_ADMIN.value, UserRoleRow.site_id == site_id
            )
        )
        self._notify(session, row, set(users), text)

    def _tell_team(self, session: Session, row: DataDeliveryRow, text: str) -> None:
        team = set(
            session.scalars(
                sa.select(TeamMemberRow.user_id).where(TeamMemberRow.proposal_id == row.proposal_id)
            )
        )
        team.add(session.get_one(ProposalRow, row.proposal_id).owner_id)
        self._notify(session, row, team, text)

    def _part(self, session: Session, part: DeliveryPartRow) -> Part:
        return Part(
            part.task_id,
            part.site_id,
            session.get_one(SiteRow, part.site_id).name,
            SiteState(part.state),
            part.summary,
            part.reason,
            part.received,
            part.package_bytes,
            part.package_sha256,
            part.updated,
        )

    def _delivery(self, session: Session, row: DataDeliveryRow) -> Delivery:
        parts = session.scalars(
            sa.select(DeliveryPartRow)
            .where(DeliveryPartRow.delivery_id == row.id)
            .order_by(DeliveryPartRow.site_id)
        ).all()
        values = tuple(sorted((self._part(session, p) for p in parts), key=lambda p: p.site))
        title = session.get_one(ProposalRow, row.proposal_id).title
        state = delivery_state((p.state for p in values), fetched=row.fetched is not None)
        return Delivery(
            row.id,
            row.proposal_id,
            title,
            state,
            row.crtdl_sha256,
            row.profile,
            row.created,
            row.deadline,
            values,
        )
