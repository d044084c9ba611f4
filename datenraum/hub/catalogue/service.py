"""The hub's FAIR catalogue: what the sites report about their data, and the documents made of it.

- **Site figures**: the hub asks each active site for its figures with a `site-metadata` task
  (`issue`): once a day (`REPORT_INTERVAL`), and as soon as the site's heartbeat shows a new store
  generation. The agent fetches it from `/api/site/v1/metadata-tasks` and answers with `SiteMetadata`
  (rounded at the site, never below the threshold: `privacy.metadata`); `record` keeps the last answer.
  An unanswered task is issued anew after `TASK_LEASE`.
- **Documents**: the catalog (paged), each dataset, the public series' catalogue and harvested ones, as
  rdflib graphs (`datenraum.catalogue.build`) from the sites, their reports, the directory's
  infrastructures and projects, and the dashboard's public series (`series`, a function the dashboard
  provides; none until it does).
- **Validation**: the whole catalogue against the HealthDCAT-AP R8 non-public shapes and the public
  series against DCAT-AP 3.0.1 (`validate`), cached until a dataset changes.
- **Harvesting**: the coordination office imports another DCAT catalogue (`harvest`); it is served as a
  sub-catalogue of ours (`dct:hasPart`), with its source URL and time.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from rdflib import Graph, Literal, URIRef
from sqlalchemy.orm import Session, sessionmaker

from datenraum.catalogue import build, paging
from datenraum.catalogue.harvest import Fetch, Harvested, HarvestError, fetch_http, harvest
from datenraum.catalogue.model import (
    Access,
    Agent,
    Column,
    Kind,
    Network,
    PublicSeries,
    Record,
    SiteData,
    Study,
    Table,
)
from datenraum.catalogue.validate import Profile, Report, validate
from datenraum.catalogue.vocab import DCAT, DCTERMS, RDF, XSD
from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.audit import record as audit_record
from datenraum.hub.accounts.service import Site
from datenraum.hub.catalogue.tables import HarvestedCatalogueRow, SiteReportRow
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Clock, SiteRow, utcnow
from datenraum.hub.directory.service import Directory, EntryKind, replace_biobanks
from datenraum.hub.errors import Conflict, Forbidden, Invalid, NotFound
from datenraum.hub.roles import Actor, Role
from datenraum.protocol.messages import SiteMetadata, Task, TaskResult, TaskState, TaskType

__all__ = [
    "REPORT_INTERVAL",
    "TASK_LEASE",
    "Catalogue",
    "HarvestSummary",
    "HarvestedSource",
    "SeriesSource",
    "no_series",
]

REPORT_INTERVAL = dt.timedelta(days=1)
TASK_LEASE = dt.timedelta(minutes=10)

SeriesSource = Callable[[], Sequence[PublicSeries]]


def no_series() -> Sequence[PublicSeries]:
    return ()


@dataclass(frozen=True)
class HarvestSummary:
    id: int
    url: str
    pages: int
    datasets: int
    stopped: str


@dataclass(frozen=True)
class HarvestedSource:
    """A harvested catalogue as the harvest page lists it."""

    id: int
    url: str
    title: str
    harvested: dt.datetime
    pages: int
    datasets: int
    stopped: str


def _figure(value: dict[str, Any] | None) -> int | None:
    return None if not value or value.get("below_threshold") else value.get("obfuscated")


class Catalogue:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: HubConfig,
        directory: Directory,
        clock: Clock = utcnow,
        series: SeriesSource = no_series,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._directory = directory
        self._clock = clock
        self.series = series
        self._cache_lock = threading.Lock()
        self._reports: dict[tuple, tuple[Report, Report | None]] = {}

    # -- the sites' reports

    def issue(self, site: Site) -> list[Task]:
        """The site's site-metadata task, if its figures are due (none otherwise)."""
        now = self._clock()
        with self._sessions.begin() as session:
            row = session.get(SiteReportRow, site.id, with_for_update=True)
            generation = session.scalar(sa.select(SiteRow.generation).where(SiteRow.id == site.id))
            if row is None:
                row = SiteReportRow(site_id=site.id)
                session.add(row)
            due = (
                row.reported is None
                or row.reported <= now - REPORT_INTERVAL
                or (generation is not None and row.generation != generation)
            )
            if not due:
                return []
            if row.task_id is None or row.task_issued is None or row.task_issued <= now - TASK_LEASE:
                row.task_id, row.task_issued = str(uuid.uuid4()), now
            return [Task(row.task_id, TaskType.SITE_METADATA, {}, row.task_issued + TASK_LEASE)]

    def record(self, site: Site, task_id: str, result: TaskResult) -> str:
        """Take the site's answer to its task; the same answer again is a no-op. Raises NotFound, Invalid."""
        if result.task_id != task_id:
            raise Invalid(f"task_id: {result.task_id!r} is not the task {task_id!r} of the URL")
        with self._sessions.begin() as session:
            row = session.get(SiteReportRow, site.id, with_for_update=True)
            if row is None or task_id not in (row.task_id, row.answered_task):
                raise NotFound(f"no metadata task {task_id!r}")
            if task_id == row.answered_task:
                return "recorded before"
            if result.state == TaskState.FAILED:
                row.failure, row.task_id = result.reason, None
                return "failed"
            if result.metadata is None:
                raise Invalid("metadata: a site-metadata task is answered with metadata")
            row.metadata_json = json.dumps(result.metadata.to_json())
            replace_biobanks(session, site.name, result.metadata.biobanks)
            row.generation = result.metadata.generation
            row.reported = self._clock()
            row.answered_task, row.task_id, row.failure = task_id, None, None
            return "recorded"

    # -- what the catalogue lists

    def network(self, modified: dt.datetime | None = None) -> Network:
        base = self._config.public_url.rstrip("/")
        office = Agent("coordination-office", "Datenraum coordination office", None, f"{base}/directory")
        access = Agent(
            "use-and-access-office",
            "Datenraum Use & Access office (until a health data access body exists)",
            None,
            f"{base}/proposals",
        )
        return Network(
            base_url=base,
            title="Datenraum catalogue",
            description="Machine-readable metadata of the network's sites, infrastructures, projects and "
            "published series (DCAT-AP 3, HealthDCAT-AP).",
            publisher=office,
            access_body=access,
            modified=modified or self._clock(),
            dashboard=bool(self.series()),
        )

    def records(self) -> tuple[Network, list[Record]]:
        with self._sessions() as session:
            sites = session.execute(
                sa.select(SiteRow.id, SiteRow.name, SiteReportRow.reported, SiteReportRow.metadata_json)
                .outerjoin(SiteReportRow, SiteReportRow.site_id == SiteRow.id)
                .where(SiteRow.active)
                .order_by(SiteRow.name)
            ).all()
            harvested = session.scalar(sa.select(sa.func.max(HarvestedCatalogueRow.harvested)))
        directory = self._directory.to_json()
        by_slug = {site["slug"]: site for site in directory["sites"]}
        reported = [row.reported for row in sites if row.reported is not None]
        modified = max([*reported, *([harvested] if harvested else [])], default=None)
        network = self.network(modified)
        site_values = [self._site(row, by_slug.get(row.name)) for row in sites]
        participants: dict[str, list[str]] = {}
        for site in directory["sites"]:
            for taking_part in site["participations"]:
                participants.setdefault(taking_part["entry"], []).append(site["name"])
        studies = [
            Study(
                entry["slug"],
                Kind.PROJECT if entry["kind"] == EntryKind.PROJECT.value else Kind.INFRASTRUCTURE,
                entry["acronym"],
                entry["name"],
                entry["description"] or "",
                tuple(sorted(participants.get(entry["slug"], ()))),
            )
            for entry in directory["entries"]
        ]
        return network, build.records(network, site_values, studies, self.series())

    @staticmethod
    def _site(row: sa.Row, listed: dict[str, Any] | None) -> SiteData:
        name = listed["name"] if listed else row.name
        contact = (listed or {}).get("contact") or ""
        centre = (listed or {}).get("data_integration_centre") or f"Data integration centre of {name}"
        custodian = Agent(
            f"dic-{row.name}", centre, contact if "@" in contact and " " not in contact else None
        )
        if row.metadata_json is None:
            return SiteData(row.name, name, (listed or {}).get("city"), custodian)
        metadata = SiteMetadata.from_json(json.loads(row.metadata_json))
        return SiteData(
            key=row.name,
            name=name,
            city=(listed or {}).get("city"),
            custodian=custodian,
            reported=row.reported,
            generation=metadata.generation,
            patients=_figure(metadata.patients and metadata.patients.to_json()),
            records=_figure(metadata.records and metadata.records.to_json()),
            min_age=metadata.min_age,
            max_age=metadata.max_age,
            first_year=metadata.first_year,
            last_year=metadata.last_year,
            coding_systems=metadata.coding_systems,
            tables=tuple(
                Table(t.name, t.description, tuple(Column(*column) for column in t.columns))
                for t in metadata.tables
            ),
        )

    # -- documents

    def catalog(
        self,
        url: str,
        *,
        page: int = 1,
        page_size: int = paging.MAX_PAGE_SIZE,
        q: str = "",
        modified_since: dt.datetime | None = None,
    ) -> Graph:
        """A page of the catalog (the non-public datasets; the public ones are in `public`)."""
        network, found = self.records()
        listed = [record for record in found if record.access == Access.NON_PUBLIC]
        chosen = paging.select(listed, page=page, page_size=page_size, q=q, modified_since=modified_since)
        graph = build.catalog_graph(network, chosen.records, served=listed, parts=self._parts(network, found))
        parameters = {"page_size": str(page_size)}
        if q:
            parameters["q"] = q
        if modified_since is not None:
            parameters["modified_since"] = modified_since.isoformat()
        paging.describe(graph, chosen, url, parameters)
        return graph

    def _parts(self, network: Network, found: Sequence[Record]) -> list[tuple[str, str]]:
        parts = []
        if any(record.access == Access.PUBLIC for record in found):
            parts.append((f"{build.catalog_iri(network)}/public", "Public series of the Datenraum dashboard"))
        with self._sessions() as session:
            for source_id, title in session.execute(
                sa.select(HarvestedCatalogueRow.id, HarvestedCatalogueRow.title).order_by(
                    HarvestedCatalogueRow.id
                )
            ):
                parts.append((f"{build.catalog_iri(network)}/harvested/{source_id}", title))
        return parts

    def public(self) -> Graph:
        """The catalogue of the public series (DCAT-AP 3.0.1; open data, CC BY 4.0)."""
        network, found = self.records()
        return build.public_catalog_graph(network, [r for r in found if r.access == Access.PUBLIC])

    def find(self, dataset_id: str) -> tuple[Network, Record]:
        network, found = self.records()
        for record in found:
            if record.id == dataset_id:
                return network, record
        raise NotFound(f"no dataset {dataset_id!r} in the catalogue")

    def dataset(self, dataset_id: str) -> Graph:
        network, record = self.find(dataset_id)
        return build.dataset_graph(network, record)

    # -- validation

    def validation(self) -> dict[str, Any]:
        """The latest SHACL report summary (validated again only when a dataset changed)."""
        network, found = self.records()
        key = tuple((record.id, record.modified.isoformat()) for record in found)
        with self._cache_lock:
            cached = self._reports.get(key)
        if cached is None:
            listed = [record for record in found if record.access == Access.NON_PUBLIC]
            graph = build.catalog_graph(network, listed, served=listed, parts=self._parts(network, found))
            non_public = validate(graph, Profile.NON_PUBLIC, self._clock())
            public_records = [record for record in found if record.access == Access.PUBLIC]
            public = None
            if public_records:
                public = validate(self.public(), Profile.PUBLIC, self._clock())
            cached = (non_public, public)
            with self._cache_lock:
                self._reports = {key: cached}
        return {
            "datasets": len(found),
            "reports": [
                _summary(report, profile) for report, profile in zip(cached, Profile, strict=True) if report
            ],
        }

    # -- harvesting

    def harvest(
        self,
        actor: Actor,
        url: str,
        title: str = "",
        fetch: Fetch = fetch_http,
        audit: AuditSource | None = None,
    ) -> HarvestSummary:
        """Import (or import again) the DCAT catalogue at `url`; only the coordination office. With `audit`
        (who asked, from where), the attempt goes into the audit log, a failed one too."""
        try:
            harvested = self.fetch(actor, url, fetch)
        except Conflict as error:
            if audit is not None:
                self.note_failure(url, str(error), audit)
            raise
        return self.keep(url, harvested, title, audit)

    def fetch(self, actor: Actor, url: str, fetch: Fetch = fetch_http) -> Harvested:
        """The catalogue at `url`, read (no database: a hub harvesting itself must not wait on itself);
        raises Forbidden, Invalid, or Conflict when it cannot be harvested."""
        if Role.ADMIN not in actor.roles:
            raise Forbidden("catalogue: only the coordination office harvests other catalogues")
        if not url.startswith(("https://", "http://")) or len(url) > 2000:
            raise Invalid("url: an http(s) URL of at most 2000 characters")
        try:
            return harvest(url, fetch, now=self._clock())
        except HarvestError as error:
            raise Conflict(f"harvesting {url} failed: {error}") from None

    def note_failure(self, url: str, reason: str, audit: AuditSource) -> None:
        with self._sessions.begin() as session:
            audit_record(session, self._clock(), audit, "catalogue.harvest", url, f"failed: {reason}"[:500])

    def keep(
        self, url: str, harvested: Harvested, title: str = "", audit: AuditSource | None = None
    ) -> HarvestSummary:
        """Store a fetched catalogue (replacing its earlier harvest) as a sub-catalogue of ours."""
        turtle = harvested.graph.serialize(format="turtle")
        with self._sessions.begin() as session:
            row = session.scalar(sa.select(HarvestedCatalogueRow).where(HarvestedCatalogueRow.url == url))
            if row is None:
                row = HarvestedCatalogueRow(url=url)
                session.add(row)
            row.title = (title or _title(harvested.graph) or url)[:300]
            row.harvested, row.pages, row.datasets = (
                harvested.started,
                len(harvested.pages),
                len(harvested.datasets),
            )
            row.stopped, row.turtle = harvested.stopped[:500], turtle
            session.flush()
            if audit is not None:
                detail = f"{row.datasets} datasets from {row.pages} pages ({row.stopped})"
                audit_record(session, self._clock(), audit, "catalogue.harvest", url, detail[:500])
            return HarvestSummary(row.id, url, row.pages, row.datasets, row.stopped)

    def sources(self) -> list[HarvestedSource]:
        """Every harvested catalogue, the latest harvest first."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(
                    HarvestedCatalogueRow.id,
                    HarvestedCatalogueRow.url,
                    HarvestedCatalogueRow.title,
                    HarvestedCatalogueRow.harvested,
                    HarvestedCatalogueRow.pages,
                    HarvestedCatalogueRow.datasets,
                    HarvestedCatalogueRow.stopped,
                ).order_by(HarvestedCatalogueRow.harvested.desc(), HarvestedCatalogueRow.id.desc())
            ).all()
        return [HarvestedSource(*row) for row in rows]

    def harvested(self, source_id: int) -> Graph:
        """A harvested catalogue as we serve it: its graph, in a sub-catalogue that names its source."""
        with self._sessions() as session:
            row = session.get(HarvestedCatalogueRow, source_id)
            if row is None:
                raise NotFound(f"no harvested catalogue {source_id}")
        # After the session: the network asks the dashboard for its series in a session of its own, which
        # on SQLite (every transaction takes the write lock) would wait for this one to end.
        network = self.network()
        graph = build.new_graph()
        graph.parse(data=row.turtle, format="turtle")
        node = URIRef(f"{build.catalog_iri(network)}/harvested/{row.id}")
        graph.add((node, RDF.type, DCAT.Catalog))
        graph.add((node, DCTERMS.title, Literal(row.title, lang="en")))
        graph.add((node, DCTERMS.source, URIRef(row.url)))
        graph.add((node, DCTERMS.issued, Literal(row.harvested.isoformat(), datatype=XSD.dateTime)))
        graph.add((node, DCTERMS.isPartOf, build.catalog_iri(network)))
        for dataset in graph.subjects(RDF.type, DCAT.Dataset):
            graph.add((node, DCAT.dataset, dataset))
        return graph


def _title(graph: Graph) -> str | None:
    for catalog in graph.subjects(RDF.type, DCAT.Catalog):
        title = graph.value(catalog, DCTERMS.title)
        if title:
            return str(title)
    return None


def _summary(report: Report, profile: Profile) -> dict[str, Any]:
    return {
        "profile": profile.value,
        "shapes": "HealthDCAT-AP R8 non-public" if profile == Profile.NON_PUBLIC else "DCAT-AP 3.0.1",
        "checked": report.checked.isoformat(),
        "conforms": report.conforms,
        "triples": report.triples,
        "violations": len(report.violations),
        "warnings": len(report.warnings),
        "results": [
            {"severity": severity, "path": path, "message": message, "count": count}
            for severity, path, message, count in report.summary()
        ],
    }
