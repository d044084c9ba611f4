"""Sample searches: one `sample-search` task per site asked, the sites' released answers, the totals.

Like feasibility (`feasibility.service`), everything lives in the database and every public method is one
transaction. A task's life is a feasibility task's: `pending` -> `running` (fetched, leased) ->
`answered` / `failed` (the site's result; a site whose `tasks.allowed` lacks `sample-search` answers
"failed" with its reason, which the researcher sees for that site) or `timed-out` (`sweep`).

A site's answer is checked (`protocol.samples.SampleResult`) before it is stored; the figures in it were
released by the site (`privacy.samples`). What the hub adds, the totals, follows `privacy.sample_totals`.
Searches count against the researcher's query quota (`privacy.aggregation.check_quota`), because each
asks every site for new figures.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.service import Site, User
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Clock, SiteRow, UserRow, utcnow
from datenraum.hub.errors import Conflict, Invalid, NotFound
from datenraum.hub.feasibility.service import answerable_query, is_id
from datenraum.hub.roles import Role
from datenraum.hub.samples.tables import SampleSearchRow, SampleTaskRow
from datenraum.privacy.aggregation import Total, check_quota
from datenraum.privacy.sample_totals import SampleTotals, sample_totals
from datenraum.protocol.messages import ProtocolError, Task, TaskResult, TaskState, TaskType
from datenraum.protocol.samples import SampleResult
from datenraum.query.biobank.search import parse_sample_filter
from datenraum.query.mapping import load_mapping
from datenraum.query.model import QueryError, canonical_json

__all__ = ["SampleSearches", "SearchResult", "SiteSamples"]

_OPEN = (TaskState.PENDING.value, TaskState.RUNNING.value)
_TIMED_OUT_REASON = "no result before the deadline"
MAX_TASKS_PER_POLL = 20


@dataclass(frozen=True)
class SiteSamples:
    site_id: int
    site: str
    state: TaskState
    result: SampleResult | None
    reason: str | None


@dataclass(frozen=True)
class SearchResult:
    id: str
    created: dt.datetime
    query: dict[str, Any] | None
    sample_filter: dict[str, Any]
    sites: tuple[SiteSamples, ...]
    totals: SampleTotals

    @property
    def complete(self) -> bool:
        return all(site.state.value not in _OPEN for site in self.sites)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created.isoformat(),
            "state": "complete" if self.complete else "running",
            "query": self.query,
            "samples": self.sample_filter,
            "sites": [
                {
                    "site": site.site,
                    "state": site.state.value,
                    "result": None if site.result is None else site.result.to_json(),
                    "reason": site.reason,
                }
                for site in self.sites
            ],
            "totals": {
                "patients": _total_json(self.totals.patients),
                "samples": _total_json(self.totals.samples),
                "cells": [
                    {
                        "category": cell.category,
                        "temperature": cell.temperature,
                        "patients": _total_json(cell.patients),
                        "samples": _total_json(cell.samples),
                    }
                    for cell in self.totals.cells
                ],
            },
        }


def _total_json(value: Total | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"value": value.value, "sites": value.sites, "at_least": value.at_least}


def checked_filter(body: Any, *, field: str = "samples") -> dict[str, list[str]]:
    """The sample filter as the sites will read it; Invalid names the JSON path of the first problem."""
    try:
        return parse_sample_filter(body).to_json()
    except QueryError as error:
        raise Invalid(field + str(error).removeprefix("samples")) from None


class SampleSearches:
    def __init__(self, sessions: sessionmaker[Session], config: HubConfig, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._config = config
        self._clock = clock
        self._mapping = load_mapping()

    # -- researchers

    def submit(
        self, user: User, query_json: Any, filter_json: Any, site_names: Sequence[str] | None = None
    ) -> tuple[str, frozenset[int]]:
        """A new search and its tasks; returns its id and the sites asked. Raises Invalid (nothing is
        stored) and privacy.QuotaExceeded."""
        query = (
            None
            if query_json is None
            else canonical_json(answerable_query(query_json, self._mapping, field="query"))
        )
        sample_filter = checked_filter(filter_json)
        now = self._clock()
        with self._sessions.begin() as session:
            session.execute(sa.select(UserRow.id).where(UserRow.id == user.id).with_for_update())
            earlier = session.scalars(
                sa.select(SampleSearchRow.created).where(
                    SampleSearchRow.user_id == user.id, SampleSearchRow.created > now - dt.timedelta(days=1)
                )
            ).all()
            check_quota(earlier, now, self._config.policy)
            sites = _chosen_sites(session, site_names)
            search_id = str(uuid.uuid4())
            session.add(
                SampleSearchRow(
                    id=search_id, user_id=user.id, query=query, sample_filter=sample_filter, created=now
                )
            )
            session.flush()
            deadline = now + self._config.task_deadline
            for site in sites:
                session.add(
                    SampleTaskRow(
                        id=str(uuid.uuid4()),
                        search_id=search_id,
                        site_id=site.id,
                        state=TaskState.PENDING.value,
                        deadline=deadline,
                    )
                )
            return search_id, frozenset(site.id for site in sites)

    def result(self, user: User, search_id: str) -> SearchResult:
        """The search's per-site answers and totals as far as they are known; raises NotFound."""
        with self._sessions() as session:
            search = session.get(SampleSearchRow, search_id) if is_id(search_id) else None
            if search is None or (search.user_id != user.id and not user.has(Role.ADMIN)):
                raise NotFound(f"no sample search {search_id!r}")
            rows = session.execute(
                sa.select(
                    SiteRow.id, SiteRow.name, SampleTaskRow.state, SampleTaskRow.result, SampleTaskRow.reason
                )
                .join(SiteRow, SiteRow.id == SampleTaskRow.site_id)
                .where(SampleTaskRow.search_id == search_id)
                .order_by(SiteRow.name)
            ).all()
            sites = tuple(
                SiteSamples(
                    row.id,
                    row.name,
                    TaskState(row.state),
                    None if row.result is None else SampleResult.from_json(row.result),
                    _TIMED_OUT_REASON if row.state == TaskState.TIMED_OUT.value else row.reason,
                )
                for row in rows
            )
            answers = [site.result for site in sites if site.result is not None]
            return SearchResult(
                search.id,
                search.created,
                search.query,
                search.sample_filter,
                sites,
                sample_totals(answers, self._config.policy),
            )

    # -- sites

    def claim(self, site: Site) -> list[Task]:
        """The site's pending sample-search tasks and those whose lease ran out, now running."""
        now = self._clock()
        with self._sessions.begin() as session:
            rows = session.execute(
                sa.select(SampleTaskRow, SampleSearchRow.query, SampleSearchRow.sample_filter)
                .join(SampleSearchRow, SampleSearchRow.id == SampleTaskRow.search_id)
                .where(
                    SampleTaskRow.site_id == site.id,
                    SampleTaskRow.deadline > now,
                    sa.or_(
                        SampleTaskRow.state == TaskState.PENDING.value,
                        sa.and_(
                            SampleTaskRow.state == TaskState.RUNNING.value,
                            SampleTaskRow.leased_until <= now,
                        ),
                    ),
                )
                .order_by(SampleTaskRow.deadline, SampleTaskRow.id)
                .limit(MAX_TASKS_PER_POLL)
                .with_for_update(of=SampleTaskRow, skip_locked=True)
            ).all()
            tasks = []
            for task, query, sample_filter in rows:
                task.state = TaskState.RUNNING.value
                task.leased_until = now + self._config.lease
                payload = {"query": query, "samples": sample_filter}
                tasks.append(Task(task.id, TaskType.SAMPLE_SEARCH, payload, task.deadline))
            return tasks

    def owns(self, task_id: str) -> bool:
        if not is_id(task_id):
            return False
        with self._sessions() as session:
            return session.get(SampleTaskRow, task_id) is not None

    def record(self, site: Site, task_id: str, result: TaskResult) -> tuple[str, TaskState]:
        """Take a site's answer for its task (a replay is a no-op); returns the search and the task's state.
        Raises NotFound, Conflict (another answer already), Invalid (not a sample search's answer)."""
        if result.state == TaskState.ANSWERED:
            if result.samples is None or result.count is not None or result.cube is not None:
                raise Invalid("samples: a sample-search task is answered with samples")
            try:
                SampleResult.from_json(result.samples)
            except ProtocolError as error:
                raise Invalid(str(error)) from None
        if result.reason is not None and "\x00" in result.reason:
            raise Invalid("reason: must not contain NUL characters")
        now = self._clock()
        with self._sessions.begin() as session:
            task = session.get(SampleTaskRow, task_id, with_for_update=True)
            if task is None or task.site_id != site.id:
                raise NotFound(f"no task {task_id!r}")
            if task.state not in _OPEN:
                same = task.state == result.state.value and (task.result, task.reason) == (
                    result.samples,
                    result.reason,
                )
                if same or task.state == TaskState.TIMED_OUT.value:
                    return task.search_id, TaskState(task.state)
                raise Conflict(f"task {task_id} has a different result already")
            task.finished, task.leased_until = now, None
            if task.deadline <= now:
                task.state = TaskState.TIMED_OUT.value
            else:
                task.state, task.reason, task.result = result.state.value, result.reason, result.samples
            return task.search_id, TaskState(task.state)

    def sweep(self) -> frozenset[str]:
        """Time out overdue tasks; returns the searches that changed."""
        now = self._clock()
        with self._sessions.begin() as session:
            return frozenset(
                session.scalars(
                    sa.update(SampleTaskRow)
                    .where(SampleTaskRow.state.in_(_OPEN), SampleTaskRow.deadline <= now)
                    .values(state=TaskState.TIMED_OUT.value, finished=now, leased_until=None)
                    .returning(SampleTaskRow.search_id)
                    .execution_options(synchronize_session=False)
                ).all()
            )


def _chosen_sites(session: Session, names: Sequence[str] | None) -> list[SiteRow]:
    active = session.scalars(sa.select(SiteRow).where(SiteRow.active).order_by(SiteRow.name)).all()
    if names is None:
        if not active:
            raise Invalid("sites: there is no active site to ask")
        return list(active)
    by_name = {site.name: site for site in active}
    if not names:
        raise Invalid("sites: must not be empty (leave it out to ask every active site)")
    for index, name in enumerate(names):
        if name not in by_name:
            raise Invalid(f"sites[{index}]: there is no active site {name!r}")
    return [by_name[name] for name in sorted(set(names))]
