"""The crisis dashboard's domain logic at the hub: runs of indicators tasks, deliveries, pooled series.

- `start_run(as_of)`: one `indicators` task per active site, with the registry's definitions (shipped
  plus crisis-mode ones) in the payload; the sites compute their cubes and post them as results.
- `record(site, task_id, result)`: a delivery is checked (`datenraum.indicators.quality`); a good one is
  kept as the site's state (full-state replace: the latest accepted delivery counts), a bad one is kept
  too, rejected, and the task fails with the problems as its reason, which the site's log shows.
- `series(disease, indicator)`: the pooled series over the sites with an accepted delivery in the last
  48 hours (`STALE_AFTER`; a silent site drops out and `n_sites` drops), released under the disclosure
  rules (`datenraum.indicators.release`) against the series' history of earlier releases (so that no
  two releases can be subtracted to a value under k), with each total's value "as first published"
  beside it. Released series are kept in memory for as long as the fresh deliveries and the definitions
  stay the same: a page or download computes nothing until a new delivery arrives or a site drops out.
  `site_series` is one site's own series for that site's members (exact: the site has the data anyway).
- `public_series()`: every public series as the FAIR catalogue lists it (a public dataset with CSV and
  JSON distributions conforming to the CSV's Frictionless Table Schema).
- `define(user, body)`: crisis mode. A new disease (codes, window, start) or indicator (a kind, bucket,
  strata) is checked by the same rules as the registry's files, stored, and pushed to every site at once.
- `run_if_due()`: the daily run at the configured time of day (`dashboard_run_at`, Europe/Berlin), which
  the hub's sweep calls; each day's run is started once, by whichever hub process comes first.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from datenraum.catalogue.model import PublicSeries
from datenraum.hub.accounts.service import Site, User
from datenraum.hub.config import HubConfig
from datenraum.hub.dashboard.tables import (
    DashboardTaskRow,
    DefinitionRow,
    DeliveryRow,
    PublishedRow,
    ReleaseHistoryRow,
    ScheduledRunRow,
)
from datenraum.hub.db import Clock, SiteRow, utcnow
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.roles import Role
from datenraum.indicators.quality import check_cube
from datenraum.indicators.registry import (
    DefinitionError,
    Registry,
    default_registry,
    parse_disease,
    parse_indicator,
)
from datenraum.indicators.release import (
    DEFAULT_MIN_SITES,
    Delivery,
    History,
    moving_average,
    pool,
    release,
    remember,
)
from datenraum.privacy.cells import DEFAULT_K
from datenraum.protocol.messages import Task, TaskResult, TaskState, TaskType

__all__ = ["STALE_AFTER", "Dashboard", "Recorded", "Series"]

#: A site's data are used for 48 hours after its last accepted delivery (the NUM dashboard's validity).
STALE_AFTER = dt.timedelta(hours=48)
#: A site has this long to compute and deliver its cube.
TASK_DEADLINE = dt.timedelta(hours=6)
LICENCE = "CC BY 4.0"
#: The daily run's time of day is a Berlin time, like the days of the series.
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
_OPEN = (TaskState.PENDING.value, TaskState.RUNNING.value)


@dataclass(frozen=True)
class Recorded:
    state: TaskState
    changed: bool
    accepted: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Series:
    """A released series. Its rows are shared by every reader of the same release: read them only."""

    disease: str
    indicator: str
    title: str
    bucket: str
    rows: list[dict[str, Any]]
    data_as_of: str | None
    definitions_version: str | None
    sites: int
    k: int
    min_sites: int

    def to_json(self) -> dict[str, Any]:
        return {
            "disease": self.disease,
            "indicator": self.indicator,
            "title": self.title,
            "bucket": self.bucket,
            "licence": LICENCE,
            "data_as_of": self.data_as_of,
            "definitions_version": self.definitions_version,
            "sites": self.sites,
            "k": self.k,
            "min_sites": self.min_sites,
            "rows": self.rows,
        }


class Dashboard:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        config: HubConfig,
        clock: Clock = utcnow,
        *,
        k: int = DEFAULT_K,
        min_sites: int = DEFAULT_MIN_SITES,
    ) -> None:
        self._sessions = sessions
        self._config = config
        self._clock = clock
        self.k = k
        self.min_sites = min_sites
        # The released series of one generation (definitions version, fresh delivery ids).
        self._lock = threading.Lock()
        self._generation: tuple[str, tuple[int, ...]] | None = None
        self._released: dict[tuple[str, str], Series] = {}
        # The Berlin day whose scheduled run this process knows to be started (saves a query a sweep).
        self._scheduled_day: str | None = None

    # -- definitions

    def registry(self) -> Registry:
        """The shipped registry with the coordination office's crisis-mode definitions."""
        with self._sessions() as session:
            rows = session.scalars(sa.select(DefinitionRow).order_by(DefinitionRow.id)).all()
        diseases = [parse_disease(r.body) for r in rows if r.kind == "disease"]
        indicators = [parse_indicator(r.body) for r in rows if r.kind == "indicator"]
        return default_registry().with_definitions(diseases, indicators)

    def define(self, user: User, kind: str, body: Any) -> tuple[str, frozenset[int]]:
        """Crisis mode: store a new (or changed) disease or indicator and push it to every site at once.
        Returns the run id and the sites to wake; raises Invalid naming the field."""
        if not user.has(Role.ADMIN):
            raise Invalid("only the coordination office defines indicators")
        try:
            parsed = parse_disease(body) if kind == "disease" else parse_indicator(body)
        except DefinitionError as error:
            raise Invalid(str(error)) from None
        if kind not in ("disease", "indicator"):
            raise Invalid("kind: expected disease or indicator")
        normal = parsed.to_json()
        with self._sessions.begin() as session:
            row = session.scalar(
                sa.select(DefinitionRow).where(DefinitionRow.kind == kind, DefinitionRow.ident == parsed.id)
            )
            if row is None:
                session.add(
                    DefinitionRow(
                        kind=kind, ident=parsed.id, body=normal, created=self._clock(), created_by=user.id
                    )
                )
            else:
                row.body = normal
        return self.start_run()

    # -- runs and tasks

    def default_as_of(self) -> dt.date:
        """Data "as of yesterday 24:00"."""
        return self._clock().date() - dt.timedelta(days=1)

    def start_run(self, as_of: dt.date | None = None) -> tuple[str, frozenset[int]]:
        """One indicators task per active site; returns the run id and the site ids to wake."""
        registry = self.registry()
        with self._sessions.begin() as session:
            return self._start_run(session, registry, as_of or self.default_as_of())

    def run_if_due(self) -> frozenset[int]:
        """Start today's scheduled run once the configured time of day (Berlin) has passed; returns the
        sites to wake (none when no time is configured, it is not yet time, or today's run was started)."""
        at = self._config.dashboard_daily_run
        if at is None:
            return frozenset()
        now = self._clock()
        local = now.astimezone(BERLIN)
        if local.time().replace(tzinfo=None) < at:
            return frozenset()
        today = local.date().isoformat()
        if self._scheduled_day == today:
            return frozenset()
        with self._sessions() as session:
            started = session.get(ScheduledRunRow, today) is not None
        sites: frozenset[int] = frozenset()
        if not started:
            registry = self.registry()
            try:
                with self._sessions.begin() as session:
                    run_id, sites = self._start_run(session, registry, local.date() - dt.timedelta(days=1))
                    session.add(ScheduledRunRow(day=today, run_id=run_id, started=now))
            except IntegrityError:
                # Another hub process started today's run between our look and our insert.
                sites = frozenset()
        self._scheduled_day = today
        return sites

    def _start_run(self, session: Session, registry: Registry, as_of: dt.date) -> tuple[str, frozenset[int]]:
        definitions = registry.to_json()
        now = self._clock()
        run_id = str(uuid.uuid4())
        sites = session.scalars(
            sa.select(SiteRow.id).where(SiteRow.active.is_(True)).order_by(SiteRow.id)
        ).all()
        for site_id in sites:
            session.add(
                DashboardTaskRow(
                    id=str(uuid.uuid4()),
                    run_id=run_id,
                    site_id=site_id,
                    state=TaskState.PENDING.value,
                    as_of=as_of.isoformat(),
                    definitions=definitions,
                    created=now,
                    deadline=now + TASK_DEADLINE,
                )
            )
        return run_id, frozenset(sites)

    def claim(self, site: Site) -> list[Task]:
        """The site's pending indicators tasks and those whose lease ran out, now running."""
        now = self._clock()
        with self._sessions.begin() as session:
            rows = session.scalars(
                sa.select(DashboardTaskRow)
                .where(
                    DashboardTaskRow.site_id == site.id,
                    DashboardTaskRow.deadline > now,
                    sa.or_(
                        DashboardTaskRow.state == TaskState.PENDING.value,
                        sa.and_(
                            DashboardTaskRow.state == TaskState.RUNNING.value,
                            DashboardTaskRow.leased_until <= now,
                        ),
                    ),
                )
                .order_by(DashboardTaskRow.created)
                .limit(10)
                .with_for_update()
            ).all()
            tasks = []
            for row in rows:
                row.state = TaskState.RUNNING.value
                row.leased_until = now + max(self._config.lease, dt.timedelta(minutes=10))
                payload = {"definitions": row.definitions, "as_of": row.as_of}
                tasks.append(Task(row.id, TaskType.INDICATORS, payload, row.deadline))
            return tasks

    def owns(self, task_id: str) -> bool:
        with self._sessions() as session:
            return session.get(DashboardTaskRow, task_id) is not None

    def record(self, site: Site, task_id: str, result: TaskResult) -> Recorded:
        """Take a site's delivery for its task: checked, kept, accepted or rejected. A replay is a no-op."""
        now = self._clock()
        with self._sessions.begin() as session:
            task = session.get(DashboardTaskRow, task_id, with_for_update=True)
            if task is None or task.site_id != site.id:
                raise NotFound(f"no task {task_id!r}")
            if task.state not in _OPEN:
                return Recorded(
                    TaskState(task.state), changed=False, accepted=task.state == TaskState.ANSWERED.value
                )
            if result.state == TaskState.FAILED:
                task.state, task.reason, task.finished = TaskState.FAILED.value, result.reason, now
                return Recorded(TaskState.FAILED, changed=True, accepted=False)
            cube = result.cube
            try:
                registry = Registry.from_json(task.definitions)
            except DefinitionError as error:  # cannot happen for definitions this hub wrote
                raise Invalid(str(error)) from None
            problems = check_cube(cube, registry, dt.date.fromisoformat(task.as_of))
            accepted = not problems
            session.add(
                DeliveryRow(
                    site_id=site.id,
                    task_id=task_id,
                    received=now,
                    data_as_of=str((cube or {}).get("data_as_of", ""))[:10],
                    definitions_version=str((cube or {}).get("definitions_version", ""))[:40],
                    accepted=accepted,
                    problems="\n".join(problems) or None,
                    cube=cube if accepted else None,
                )
            )
            task.finished = now
            if accepted:
                task.state = TaskState.ANSWERED.value
            else:
                task.state = TaskState.FAILED.value
                task.reason = "delivery rejected: " + "; ".join(problems)
            return Recorded(TaskState(task.state), changed=True, accepted=accepted, problems=tuple(problems))

    def sweep(self) -> None:
        now = self._clock()
        with self._sessions.begin() as session:
            session.execute(
                sa.update(DashboardTaskRow)
                .where(DashboardTaskRow.state.in_(_OPEN), DashboardTaskRow.deadline <= now)
                .values(state=TaskState.TIMED_OUT.value, finished=now)
            )

    # -- reading

    def _fresh_ids(self, session: Session, site_ids: Sequence[int] | None = None) -> tuple[int, ...]:
        """The ids of each site's latest accepted delivery of the last 48 hours, ascending."""
        since = self._clock() - STALE_AFTER
        latest = (
            sa.select(DeliveryRow.site_id, sa.func.max(DeliveryRow.id).label("id"))
            .where(DeliveryRow.accepted.is_(True), DeliveryRow.received > since)
            .group_by(DeliveryRow.site_id)
        )
        if site_ids is not None:
            latest = latest.where(DeliveryRow.site_id.in_(site_ids))
        return tuple(sorted(row.id for row in session.execute(latest)))

    def _fresh(self, session: Session, ids: Sequence[int]) -> list[Delivery]:
        """The deliveries `ids` (see `_fresh_ids`), by site name."""
        rows = session.execute(
            sa.select(SiteRow.name, DeliveryRow.cube)
            .join(SiteRow, SiteRow.id == DeliveryRow.site_id)
            .where(DeliveryRow.id.in_(ids))
            .order_by(SiteRow.name)
        ).all()
        return [Delivery(name, cube) for name, cube in rows]

    def catalogue(self) -> dict[str, Any]:
        """Every series the public API serves, with its URLs (the catalogue's datasets point here)."""
        registry = self.registry()
        return {
            "licence": LICENCE,
            "definitions_version": registry.version,
            "diseases": [
                {
                    "id": d.id,
                    "title": d.title,
                    "start": d.start.isoformat(),
                    "series": [
                        {
                            "indicator": i.id,
                            "code": i.code,
                            "title": i.title,
                            "bucket": i.bucket,
                            "json": f"/api/v1/dashboard/{d.id}/{i.id}.json",
                            "csv": f"/api/v1/dashboard/{d.id}/{i.id}.csv",
                        }
                        for i in registry.indicators.values()
                        if i.public
                    ],
                }
                for d in registry.diseases.values()
            ],
        }

    def public_series(self) -> list[PublicSeries]:
        """Every public series for the FAIR catalogue, modified as of the latest accepted delivery."""
        registry = self.registry()
        base = self._config.public_url.rstrip("/")
        with self._sessions() as session:
            latest = session.scalar(
                sa.select(sa.func.max(DeliveryRow.received)).where(DeliveryRow.accepted.is_(True))
            )
        modified = (latest or self._clock()).date()
        return [
            PublicSeries(
                key=f"{d.id}-{i.id}",
                title=f"Datenraum {d.title}: {i.title}",
                description=(
                    f"{i.description or i.title} Pooled over the network's sites, "
                    f"{'per day' if i.bucket == 'day' else 'per ISO week'} from {d.start.isoformat()}; "
                    f"values 1 to {self.k - 1} and what would reveal them are suppressed, periods with fewer "
                    f"than {self.min_sites} sites withheld."
                ),
                csv_url=f"{base}/api/v1/dashboard/{d.id}/{i.id}.csv",
                json_url=f"{base}/api/v1/dashboard/{d.id}/{i.id}.json",
                schema_url=f"{base}/api/v1/dashboard/schema.json",
                modified=modified,
                keywords=(d.title, i.code, "crisis dashboard", "indicators"),
            )
            for d in registry.diseases.values()
            for i in registry.indicators.values()
            if i.public
        ]

    def series(self, disease: str, indicator: str) -> Series:
        """The public pooled series; raises NotFound for an unknown one.

        A release is kept while its generation (the definitions and the fresh deliveries) stays the
        same, so readers between two deliveries share one computation; a new generation is released
        against the series' stored history, which it then extends (under a row lock, so that two hub
        processes extend it one after the other)."""
        registry = self.registry()
        d, i = registry.diseases.get(disease), registry.indicators.get(indicator)
        if d is None or i is None or not i.public:
            raise NotFound(f"no series {disease}/{indicator}")
        with self._lock:
            with self._sessions.begin() as session:
                ids = self._fresh_ids(session)
                generation = (registry.version, ids)
                if generation != self._generation:
                    self._generation, self._released = generation, {}
                cached = self._released.get((d.id, i.id))
                if cached is not None:
                    return cached
                pooled = pool(self._fresh(session, ids), d.id, i, d.start)
                stored = session.get(ReleaseHistoryRow, (d.id, i.id), with_for_update=True)
                history = History() if stored is None else History.from_json(stored.history)
                rows = release(pooled, i, k=self.k, min_sites=self.min_sites, history=history)
                extended = remember(history, pooled, rows, self.k)
                if extended != history:
                    if stored is None:
                        stored = ReleaseHistoryRow(disease=d.id, indicator=i.id)
                        session.add(stored)
                    stored.history = extended.to_json()
                    stored.updated = self._clock()
                self._first_published(session, d.id, i.id, rows)
            _add_averages(rows, i.bucket)
            released = Series(
                d.id, i.id, i.title, i.bucket, rows, pooled.data_as_of, pooled.definitions_version,
                len(pooled.sites), self.k, self.min_sites,
            )  # fmt: skip
            self._released[d.id, i.id] = released
            return released

    def site_series(self, user: User, site_name: str, disease: str, indicator: str) -> Series:
        """One site's own series, for that site's members only; raises NotFound otherwise."""
        registry = self.registry()
        d, i = registry.diseases.get(disease), registry.indicators.get(indicator)
        with self._sessions() as session:
            site_id = session.scalar(sa.select(SiteRow.id).where(SiteRow.name == site_name))
            if site_id is None or site_id not in user.site_ids or d is None or i is None:
                raise NotFound(f"no series {site_name}/{disease}/{indicator}")
            deliveries = self._fresh(session, self._fresh_ids(session, [site_id]))
        pooled = pool(deliveries, d.id, i, d.start)
        rows = release(pooled, i, k=1, min_sites=1)
        _add_averages(rows, i.bucket)
        return Series(
            d.id,
            i.id,
            i.title,
            i.bucket,
            rows,
            pooled.data_as_of,
            pooled.definitions_version,
            len(pooled.sites),
            1,
            1,
        )

    def status(self) -> list[dict[str, Any]]:
        """Per site: its last delivery, whether it was accepted, and whether it still counts."""
        since = self._clock() - STALE_AFTER
        with self._sessions() as session:
            sites = session.execute(sa.select(SiteRow.id, SiteRow.name).order_by(SiteRow.name)).all()
            out = []
            for site_id, name in sites:
                last = session.scalar(
                    sa.select(DeliveryRow)
                    .where(DeliveryRow.site_id == site_id)
                    .order_by(DeliveryRow.id.desc())
                    .limit(1)
                )
                good = session.scalar(
                    sa.select(sa.func.max(DeliveryRow.received)).where(
                        DeliveryRow.site_id == site_id, DeliveryRow.accepted.is_(True)
                    )
                )
                out.append(
                    {
                        "site": name,
                        "last_delivery": last.received.isoformat() if last else None,
                        "accepted": last.accepted if last else None,
                        "problems": last.problems if last else None,
                        "data_as_of": last.data_as_of if last else None,
                        "counts": good is not None and good > since,
                    }
                )
            return out

    def _first_published(
        self, session: Session, disease: str, indicator: str, rows: list[dict[str, Any]]
    ) -> None:
        """Record each released total the first time it is shown; attach the first value to every row."""
        totals = [
            r
            for r in rows
            if all(r[name] is None for name in ("level", "sex", "age_rki", "state", "los_bin"))
        ]
        known = {
            row.period: row
            for row in session.scalars(
                sa.select(PublishedRow).where(
                    PublishedRow.disease == disease, PublishedRow.indicator == indicator
                )
            )
        }
        now = self._clock()
        for row in totals:
            if row.get("withheld"):
                continue
            first = known.get(row["period"])
            if first is None:
                first = PublishedRow(
                    disease=disease,
                    indicator=indicator,
                    period=row["period"],
                    value=row["value"],
                    suppressed=row["suppressed"],
                    n_sites=row["n_sites"],
                    published=now,
                )
                session.add(first)
                known[row["period"]] = first
        for row in totals:
            first = known.get(row["period"])
            row["first_published"] = None if first is None else first.value


def _add_averages(rows: list[dict[str, Any]], bucket: str) -> None:
    """7-day averages of released daily totals (only from released values, see `release`)."""
    if bucket != "day":
        return
    totals = [r for r in rows if all(r[n] is None for n in ("level", "sex", "age_rki", "state", "los_bin"))]
    for row, average in zip(totals, moving_average([r["value"] for r in totals]), strict=True):
        row["average_7d"] = average
