"""Queries, the tasks they become and the sites' results: the hub's domain logic.

Every public method is one database transaction, so a request either happens entirely or not at all,
and everything lives in the database: a restarted hub still delivers pending tasks and shows results.
Methods are synchronous (the HTTP layer runs them in a thread pool) and return what changed, so that the
caller can wake whoever waits for it (see `notify`). Transactions lock rows in one order (a user, then
sites, then tasks, then queries, sorted by id), so that concurrent requests may wait for each other but
never deadlock.

A site answers only so many tasks a day (`site_daily_tasks`, 24 hours back from now), and one
researcher's queries may take only a share of that at each site (`researcher_site_share`), so that
exhausting a site for everyone takes many approved accounts. A query that would go beyond either at one
of its sites is refused with 429 naming the site (`SiteLimitReached`), before anything is stored: the
site is not sent tasks it would refuse or let time out.

A task's life: `pending` (created) -> `running` (fetched by its site, leased for `lease_seconds`; offered
again when the lease runs out without a result) -> `answered` or `failed` (the site's result), or
`timed-out` when its deadline passes first. Overdue tasks are marked by `sweep`, which the hub runs every
`sweep_interval_seconds` (and once at start, for what became overdue while it was down), and by a
result that arrives too late; a reader may see an overdue task open until the next sweep.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.service import Site, User
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Clock, QueryRequest, QueryRow, SiteRow, TaskRow, UserRow, UtcDateTime, utcnow
from datenraum.hub.errors import Conflict, Invalid, NotFound, TooMany
from datenraum.hub.feasibility.distinct import DistinctCount, LinkageUnit, LinkageUnitUnavailable, explanation
from datenraum.hub.limits import MAX_COUNT
from datenraum.hub.roles import Role
from datenraum.privacy.aggregation import Total, check_submission, query_fingerprint, total
from datenraum.protocol.messages import LINKAGE_DELIVERED, SiteCount, Task, TaskResult, TaskState, TaskType
from datenraum.query.canonical import canonical_query
from datenraum.query.check import check_query
from datenraum.query.mapping import Mapping, load_mapping
from datenraum.query.model import QueryError, StructuredQuery, canonical_json, parse_query

__all__ = [
    "MAX_TASKS_PER_POLL",
    "Changes",
    "Claim",
    "DistinctAnswer",
    "Federation",
    "QueryResult",
    "Recorded",
    "SiteAnswer",
    "SiteLimitReached",
    "SiteStatus",
    "Submission",
    "answerable_query",
]

# A site asked by many queries at once gets them in portions; the rest come with its next poll.
MAX_TASKS_PER_POLL = 100

_OPEN = (TaskState.PENDING.value, TaskState.RUNNING.value)
_TIMED_OUT_REASON = "no result before the deadline"


DAY = dt.timedelta(days=1)


class SiteLimitReached(TooMany):
    """A site asked by the query has had its tasks for the day, or the researcher's share of them."""


@dataclass(frozen=True)
class Submission:
    query_id: str
    reused: bool
    site_ids: tuple[int, ...]  # sites that got a new task


@dataclass(frozen=True)
class Claim:
    tasks: list[Task]
    query_ids: frozenset[str]  # queries whose tasks went from pending to running


@dataclass(frozen=True)
class Recorded:
    query_id: str
    state: TaskState  # TIMED_OUT: the result came too late and was not taken
    changed: bool
    query_complete: bool = False  # no task of the query is open any more (known only when changed)


@dataclass(frozen=True)
class Changes:
    query_ids: frozenset[str]  # queries with tasks that timed out
    site_ids: frozenset[int]  # sites with tasks whose lease ran out, to be offered again


@dataclass(frozen=True)
class SiteAnswer:
    site: str
    state: TaskState
    count: SiteCount | None
    reason: str | None
    linkage: str | None = None  # asked for distinct persons: "delivered", or why the site did not

    @property
    def delivered(self) -> bool:
        return self.state == TaskState.ANSWERED and self.linkage == LINKAGE_DELIVERED

    def to_json(self) -> dict[str, Any]:
        body = {
            "site": self.site,
            "state": self.state.value,
            "count": None if self.count is None else self.count.to_json(),
            "reason": self.reason,
        }
        if self.linkage is not None:  # only queries that asked for distinct persons have a status
            body["linkage"] = self.linkage
        return body


@dataclass(frozen=True)
class DistinctAnswer:
    """The distinct-person count of a query: released by the linkage unit, still waiting, or why not."""

    state: str  # "waiting" (tasks open), "released", "failed"
    count: DistinctCount | None
    explanation: str | None
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"state": self.state, "explanation": self.explanation, "reason": self.reason}
        body.update(
            self.count.to_json()
            if self.count is not None
            else {"value": None, "interval": None, "below_threshold": False, "sites": []}
        )
        return body


@dataclass(frozen=True)
class QueryResult:
    """What a researcher sees of a query; `version` grows with every change of it."""

    id: str
    created: dt.datetime
    version: int
    sites: list[SiteAnswer]
    total: Total | None
    distinct: DistinctAnswer | None = None  # asked for distinct persons across sites

    @property
    def complete(self) -> bool:
        return all(answer.state.value not in _OPEN for answer in self.sites)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created": self.created.isoformat(),
            "state": "complete" if self.complete else "running",
            "version": self.version,
            "sites": [answer.to_json() for answer in self.sites],
            "total": None
            if self.total is None
            else {"value": self.total.value, "sites": self.total.sites, "at_least": self.total.at_least},
        } | ({} if self.distinct is None else {"distinct": self.distinct.to_json()})


@dataclass(frozen=True)
class SiteStatus:
    name: str
    active: bool
    last_seen: dt.datetime | None
    agent_version: str | None
    generation: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": "active" if self.active else "revoked",
            "last_seen": None if self.last_seen is None else self.last_seen.isoformat(),
            "version": self.agent_version,
            "generation": self.generation,
        }


# The hot paths (sites fetching tasks and posting results, researchers following results) run these
# statements, built once: building a statement and its cache key anew for every request, and ORM objects
# for rows that are read once and dropped, cost more than the database's own work.
_tasks = TaskRow.__table__
_queries = QueryRow.__table__
_sites = SiteRow.__table__
_NOW = sa.bindparam("p_now", type_=UtcDateTime)

# A poll refreshes when its site was last seen only once the time shown is this old: operators read it
# in minutes, and a write per poll would make every poll, even one that finds nothing, a write transaction
# (on PostgreSQL, one that waits for the disk).
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=5)
_TOUCH_SITE = (
    sa.update(_sites)
    .where(
        _sites.c.id == sa.bindparam("p_site"),
        sa.or_(_sites.c.last_seen.is_(None), _sites.c.last_seen < sa.bindparam("p_stale", type_=UtcDateTime)),
    )
    .values(last_seen=_NOW)
)
_CLAIMABLE = (
    sa.select(
        _tasks.c.id,
        _tasks.c.query_id,
        _tasks.c.state,
        _tasks.c.deadline,
        _queries.c.query,
        _queries.c.linkage_count_id,
    )
    .join(_queries, _tasks.c.query_id == _queries.c.id)
    .where(
        _tasks.c.site_id == sa.bindparam("p_site"),
        _tasks.c.deadline > _NOW,
        sa.or_(
            _tasks.c.state == TaskState.PENDING.value,
            sa.and_(_tasks.c.state == TaskState.RUNNING.value, _tasks.c.leased_until <= _NOW),
        ),
    )
    .order_by(_tasks.c.deadline, _tasks.c.id)
    .limit(MAX_TASKS_PER_POLL)
    .with_for_update(of=_tasks, skip_locked=True)
)
_START = (
    sa.update(_tasks)
    .where(_tasks.c.id.in_(sa.bindparam("p_ids", expanding=True)))
    .values(state=TaskState.RUNNING.value, leased_until=sa.bindparam("p_leased_until", type_=UtcDateTime))
)
_ASYNCHRONOUS_COMMIT = sa.text("SET LOCAL synchronous_commit = off")
_BUMP = (
    sa.update(_queries)
    .where(_queries.c.id.in_(sa.bindparam("p_ids", expanding=True)))
    .values(version=_queries.c.version + 1)
)
_TASK_OF_SITE = (
    sa.select(
        _tasks.c.query_id,
        _tasks.c.state,
        _tasks.c.deadline,
        _tasks.c.obfuscated,
        _tasks.c.below_threshold,
        _tasks.c.reason,
    )
    .where(_tasks.c.id == sa.bindparam("p_task"), _tasks.c.site_id == sa.bindparam("p_site"))
    .with_for_update()
)
# Only open tasks are finished, and their count columns and reason are still empty: setting all of them
# every time keeps this one statement.
_FINISH = (
    sa.update(_tasks)
    .where(_tasks.c.id == sa.bindparam("p_task"))
    .values(
        state=sa.bindparam("p_state"),
        finished=_NOW,
        leased_until=None,
        reason=sa.bindparam("p_reason"),
        obfuscated=sa.bindparam("p_obfuscated", type_=sa.BigInteger),
        below_threshold=sa.bindparam("p_below_threshold", type_=sa.Boolean),
        linkage=sa.bindparam("p_linkage"),
    )
)
_ANY_OPEN = sa.select(
    sa.exists(
        sa.select(_tasks.c.id).where(_tasks.c.query_id == sa.bindparam("p_query"), _tasks.c.state.in_(_OPEN))
    )
)
_QUERY_HEAD = sa.select(
    _queries.c.id,
    _queries.c.created,
    _queries.c.version,
    _queries.c.linkage_count_id,
    _queries.c.distinct_count,
).where(_queries.c.id == sa.bindparam("p_query"))
_ANSWERS = (
    sa.select(
        _sites.c.name,
        _tasks.c.state,
        _tasks.c.obfuscated,
        _tasks.c.below_threshold,
        _tasks.c.reason,
        _tasks.c.linkage,
    )
    .join(_sites, _tasks.c.site_id == _sites.c.id)
    .where(_tasks.c.query_id == sa.bindparam("p_query"))
    .order_by(_sites.c.name)
)
_requests = QueryRequest.__table__
_REQUESTED_BY = (
    sa.select(_requests.c.id)
    .where(_requests.c.query_id == sa.bindparam("p_query"), _requests.c.user_id == sa.bindparam("p_user"))
    .limit(1)
)


def answerable_query(query_json: Any, mapping: Mapping, *, field: str = "$") -> StructuredQuery:
    """The structured query, once it parses and the sites' mapping can answer it; otherwise Invalid,
    naming the JSON path below `field` (the name of the request field that holds the query)."""
    try:
        query = parse_query(query_json)
        check_query(query, mapping)
    except QueryError as error:
        raise Invalid(field + str(error).removeprefix("$")) from None
    return query


def _recent_tasks(site_ids: Sequence[int], user_id: int | None, now: dt.datetime) -> sa.Select:
    """The tasks of `site_ids` of the day before `now` (of queries `user_id` asked, unless None)."""
    tasks = (
        sa.select(TaskRow.id)
        .join(QueryRow, QueryRow.id == TaskRow.query_id)
        .where(TaskRow.site_id.in_(site_ids), QueryRow.created > now - DAY)
    )
    if user_id is None:
        return tasks
    return tasks.join(QueryRequest, QueryRequest.query_id == TaskRow.query_id).where(
        QueryRequest.user_id == user_id, QueryRequest.reused.is_(False)
    )


def _bump(session: Session, query_ids: Iterable[str]) -> None:
    """Tell readers that these queries changed (see QueryResult.version)."""
    ids = sorted(set(query_ids))  # a fixed order, so concurrent bumps cannot deadlock
    if ids:
        session.execute(_BUMP, {"p_ids": ids})


def is_id(value: str) -> bool:
    """Whether `value` could be one of our ids at all; others need no database to be unknown (and some,
    with NUL characters, would upset PostgreSQL)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _check_result(result: TaskResult) -> None:
    """What the protocol allows but the database could not store."""
    if result.state == TaskState.ANSWERED and result.count is None:
        raise Invalid("count: a feasibility task is answered with a count")
    if result.cube is not None:
        raise Invalid("cube: a feasibility task is answered with a count, not a cube")
    if result.count is not None and (result.count.obfuscated or 0) > MAX_COUNT:
        raise Invalid(f"count.obfuscated: must be at most {MAX_COUNT}")
    if result.reason is not None and "\x00" in result.reason:
        raise Invalid("reason: must not contain NUL characters")
    if result.linkage is not None and "\x00" in result.linkage:
        raise Invalid("linkage: must not contain NUL characters")


def _same_result(task: sa.Row, result: TaskResult) -> bool:
    if task.state != result.state.value:
        return False
    if result.state == TaskState.FAILED:
        return task.reason == result.reason
    assert result.count is not None  # an answered result has a count (TaskResult checks)
    return (
        task.obfuscated == result.count.obfuscated
        and bool(task.below_threshold) == result.count.below_threshold
    )


class Federation:
    """Distributing queries to sites and collecting their answers."""

    def __init__(self, sessions: sessionmaker[Session], config: HubConfig, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._config = config
        self._clock = clock
        # Queries are checked against the default mapping; a site whose own mapping differs answers
        # what it cannot with a failure and a reason.
        self._mapping = load_mapping()
        self._linkage = LinkageUnit(config)

    # -- researchers

    def submit(
        self,
        user: User,
        query_json: Any,
        site_names: Sequence[str] | None,
        distinct_persons: bool = False,
    ) -> Submission:
        """Store a query and one task per site, or find an identical recent one; raises Invalid,
        privacy.QuotaExceeded and LinkageUnitUnavailable (nothing is stored then). With `distinct_persons`
        the linkage unit gives the query a count id first, which its tasks carry to the sites."""
        query = answerable_query(query_json, self._mapping)
        canonical = canonical_json(query)
        question = canonical_query(query)  # the same for every way of writing the question
        # An id unused (the query is reused or refused below) costs the unit nothing: it stores none.
        count_id = self._linkage.create_count() if distinct_persons else None
        now = self._clock()
        policy = self._config.policy
        with self._sessions.begin() as session:
            # Lock the user's row, so that one user's concurrent submissions are counted one after the other.
            session.execute(sa.select(UserRow.id).where(UserRow.id == user.id).with_for_update())
            sites = self._chosen_sites(session, site_names)
            asked_for = {"query": question.to_json(), "distinct_persons": True} if distinct_persons else None
            fingerprint = query_fingerprint(asked_for or question.to_json(), [site.name for site in sites])
            earlier = session.scalar(
                sa.select(QueryRow.id)
                .where(QueryRow.fingerprint == fingerprint, QueryRow.created > now - policy.reuse_window)
                .order_by(QueryRow.created.desc())
                .limit(1)
            )
            if earlier is not None:
                session.add(QueryRequest(query_id=earlier, user_id=user.id, created=now, reused=True))
                return Submission(earlier, True, ())
            # Only new questions count against the quota: a reused one asks no site and reveals nothing new.
            # Near-duplicates of the user's recent questions count more (privacy.aggregation).
            asked = session.execute(
                sa.select(QueryRequest.created, QueryRow.query)
                .join(QueryRow, QueryRow.id == QueryRequest.query_id)
                .where(
                    QueryRequest.user_id == user.id,
                    QueryRequest.reused.is_(False),
                    QueryRequest.created > now - dt.timedelta(days=1) - policy.near_duplicate_window,
                )
                .order_by(QueryRequest.created, QueryRequest.id)
            ).all()
            check_submission(asked, question, now, policy)
            self._check_site_limits(session, user, sites, now)
            query_id = str(uuid.uuid4())
            session.add(
                QueryRow(
                    id=query_id,
                    fingerprint=fingerprint,
                    query=canonical,
                    created=now,
                    version=1,
                    linkage_count_id=count_id,
                )
            )
            session.flush()  # the query row first: tasks and requests refer to it
            session.add(QueryRequest(query_id=query_id, user_id=user.id, created=now, reused=False))
            deadline = now + self._config.task_deadline
            for site in sites:
                session.add(
                    TaskRow(
                        id=str(uuid.uuid4()),
                        query_id=query_id,
                        site_id=site.id,
                        state=TaskState.PENDING.value,
                        deadline=deadline,
                    )
                )
            return Submission(query_id, False, tuple(site.id for site in sites))

    def result(self, user: User, query_id: str) -> QueryResult:
        """The query's per-site answers and total as far as they are known; raises NotFound."""
        with self._sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                # One snapshot for the query's version and its tasks: under READ COMMITTED each statement
                # sees its own, and a result could pair an old version with newer task states (SQLite's
                # transactions are one snapshot already).
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            query = session.execute(_QUERY_HEAD, {"p_query": query_id}).first() if is_id(query_id) else None
            if query is None or not self._may_read(session, user, query_id):
                raise NotFound(f"no query {query_id!r}")
            rows = session.execute(_ANSWERS, {"p_query": query_id}).all()
        answers = [self._answer(row) for row in rows]
        counts = [answer.count for answer in answers if answer.count is not None]
        result = QueryResult(
            query.id, query.created, query.version, answers, total(counts, self._config.policy)
        )
        if query.linkage_count_id is None:
            return result
        return dataclasses.replace(result, distinct=self._distinct(query, result))

    def _distinct(self, query: sa.Row, result: QueryResult) -> DistinctAnswer:
        """The query's distinct count: the stored one, or (once no task is open) read from the linkage unit
        over the sites that delivered and stored; an unreachable unit is asked again at the next read."""
        delivered = [answer.site for answer in result.sites if answer.delivered]
        missing = [answer.site for answer in result.sites if not answer.delivered]
        if query.distinct_count is not None:
            count = DistinctCount.from_json(query.distinct_count)
            return DistinctAnswer("released", count, explanation(count.sites, missing), None)
        if not result.complete:
            return DistinctAnswer("waiting", None, None, None)
        if not delivered:
            return DistinctAnswer("failed", None, None, "no site delivered its cohort to the linkage unit")
        try:
            count = self._linkage.released_count(query.linkage_count_id, delivered)
        except LinkageUnitUnavailable as error:
            return DistinctAnswer("failed", None, None, str(error))
        with self._sessions.begin() as session:
            session.execute(
                sa.update(QueryRow)
                .where(QueryRow.id == query.id, QueryRow.distinct_count.is_(None))
                .values(distinct_count=count.to_json())
            )
        return DistinctAnswer("released", count, explanation(count.sites, missing), None)

    def sites(self) -> list[SiteStatus]:
        with self._sessions() as session:
            rows = session.scalars(sa.select(SiteRow).order_by(SiteRow.name)).all()
            return [SiteStatus(r.name, r.active, r.last_seen, r.agent_version, r.generation) for r in rows]

    # -- sites

    def claim(self, site: Site) -> Claim:
        """The site's pending tasks and those whose lease ran out, now running under a new lease."""
        now = self._clock()
        with self._sessions.begin() as session:
            session.execute(
                _TOUCH_SITE, {"p_site": site.id, "p_now": now, "p_stale": now - LAST_SEEN_RESOLUTION}
            )
            rows = session.execute(_CLAIMABLE, {"p_site": site.id, "p_now": now}).all()
            if rows:
                if session.get_bind().dialect.name == "postgresql":
                    # A claim need not wait for the disk: should the database lose it in a crash, the
                    # tasks are pending again and offered again, and the site answers them from its journal.
                    session.execute(_ASYNCHRONOUS_COMMIT)
                leased_until = now + self._config.lease
                session.execute(_START, {"p_ids": [row.id for row in rows], "p_leased_until": leased_until})
            started = {row.query_id for row in rows if row.state == TaskState.PENDING.value}
            _bump(session, started)
            tasks = [
                Task(row.id, TaskType.FEASIBILITY_COUNT, self._payload(row), row.deadline) for row in rows
            ]
            return Claim(tasks, frozenset(started))

    def _payload(self, row: sa.Row) -> dict[str, Any]:
        if row.linkage_count_id is None:
            return {"query": row.query}
        linkage = {
            "unit_url": self._linkage.url,
            "project": self._linkage.project,
            "count_id": row.linkage_count_id,
        }
        return {"query": row.query, "linkage": linkage}

    def record(self, site: Site, task_id: str, result: TaskResult) -> Recorded:
        """Take a site's result for its task; a replay is a no-op. Raises NotFound, Conflict, Invalid."""
        if not is_id(task_id):
            raise NotFound(f"no task {task_id!r}")
        if result.task_id != task_id:
            raise Invalid(f"task_id: {result.task_id!r} is not the task {task_id!r} of the URL")
        _check_result(result)
        now = self._clock()
        with self._sessions.begin() as session:
            task = session.execute(_TASK_OF_SITE, {"p_task": task_id, "p_site": site.id}).first()
            if task is None:
                raise NotFound(f"no task {task_id!r}")
            state = TaskState(task.state)
            if state in (TaskState.ANSWERED, TaskState.FAILED):
                if _same_result(task, result):
                    return Recorded(task.query_id, state, changed=False)
                raise Conflict(f"task {task_id} has a different result already")
            if state == TaskState.TIMED_OUT:
                return Recorded(task.query_id, state, changed=False)
            if task.deadline <= now:
                # Too late: the task times out now (it would at the next sweep) and the result is not taken.
                state, reason, count = TaskState.TIMED_OUT, None, None
            else:
                state, reason = result.state, result.reason
                count = result.count if result.state == TaskState.ANSWERED else None
            finish = {
                "p_task": task_id,
                "p_now": now,
                "p_state": state.value,
                "p_reason": reason,
                "p_obfuscated": None if count is None else count.obfuscated,
                "p_below_threshold": None if count is None else count.below_threshold,
                "p_linkage": result.linkage if state == TaskState.ANSWERED else None,
            }
            session.execute(_FINISH, finish)
            _bump(session, [task.query_id])
            complete = not session.scalar(_ANY_OPEN, {"p_query": task.query_id})
            return Recorded(task.query_id, state, changed=True, query_complete=complete)

    def heartbeat(self, site: Site, agent_version: str, generation: int) -> None:
        with self._sessions.begin() as session:
            session.execute(
                sa.update(SiteRow)
                .where(SiteRow.id == site.id)
                .values(last_seen=self._clock(), agent_version=agent_version, generation=generation)
            )

    # -- upkeep

    def sweep(self) -> Changes:
        """Time out overdue tasks; find sites with tasks to offer again (their lease ran out)."""
        now = self._clock()
        with self._sessions.begin() as session:
            query_ids = set(
                session.scalars(
                    sa.update(TaskRow)
                    .where(TaskRow.state.in_(_OPEN), TaskRow.deadline <= now)
                    .values(state=TaskState.TIMED_OUT.value, finished=now, leased_until=None)
                    .returning(TaskRow.query_id)
                    .execution_options(synchronize_session=False)
                ).all()
            )
            _bump(session, query_ids)
            site_ids = session.scalars(
                sa.select(TaskRow.site_id)
                .where(
                    TaskRow.state == TaskState.RUNNING.value,
                    TaskRow.leased_until <= now,
                    TaskRow.deadline > now,
                )
                .distinct()
            ).all()
            return Changes(frozenset(query_ids), frozenset(site_ids))

    # -- helpers

    def _check_site_limits(
        self, session: Session, user: User, sites: Sequence[SiteRow], now: dt.datetime
    ) -> None:
        """Raise SiteLimitReached if a task more for one of `sites` would exceed its daily tasks, or the
        user's share of them (counting the tasks of queries created in the 24 hours before `now`)."""
        site_ids = [site.id for site in sites]
        # Lock the sites (in id order), so that concurrent submissions of several users are counted one
        # after the other against a site's limit.
        session.execute(
            sa.select(SiteRow.id).where(SiteRow.id.in_(site_ids)).order_by(SiteRow.id).with_for_update()
        )
        limits = (
            (None, self._config.site_daily_tasks, "{site!r} has reached its daily limit of {limit} tasks"),
            (
                user.id,
                self._config.researcher_site_tasks,
                "your queries have had their share of {limit} tasks a day at {site!r}",
            ),
        )
        for user_id, limit, text in limits:
            counts = dict(
                session.execute(
                    _recent_tasks(site_ids, user_id, now)
                    .with_only_columns(TaskRow.site_id, sa.func.count())
                    .group_by(TaskRow.site_id)
                ).all()
            )
            for site in sites:  # sorted by name, so the text names the same site each time
                over = counts.get(site.id, 0) - limit + 1
                if over > 0:
                    # once this many of the oldest have left the day, a task more fits
                    oldest = session.scalar(
                        _recent_tasks([site.id], user_id, now)
                        .with_only_columns(QueryRow.created)
                        .order_by(QueryRow.created)
                        .offset(over - 1)
                        .limit(1)
                    )
                    wait = oldest + DAY - now
                    raise SiteLimitReached(
                        "sites: "
                        + text.format(site=site.name, limit=limit)
                        + f"; leave it out or try again in {int(wait.total_seconds()) + 1} s",
                        wait,
                    )

    @staticmethod
    def _chosen_sites(session: Session, names: Sequence[str] | None) -> list[SiteRow]:
        active = session.scalars(sa.select(SiteRow).where(SiteRow.active).order_by(SiteRow.name)).all()
        if names is None:
            if not active:
                raise Invalid("sites: there is no active site to ask")
            return list(active)
        if not names:
            raise Invalid("sites: must not be empty (leave it out to ask every active site)")
        by_name = {site.name: site for site in active}
        for i, name in enumerate(names):
            if name not in by_name:
                raise Invalid(f"sites[{i}]: there is no active site {name!r}")
            if name in names[:i]:
                raise Invalid(f"sites[{i}]: {name!r} is named twice")
        return [by_name[name] for name in sorted(names)]

    @staticmethod
    def _may_read(session: Session, user: User, query_id: str) -> bool:
        """Admins read every query; researchers those they submitted (or were handed as a reuse)."""
        if user.has(Role.ADMIN):
            return True
        return session.scalar(_REQUESTED_BY, {"p_query": query_id, "p_user": user.id}) is not None

    @staticmethod
    def _answer(row: sa.Row) -> SiteAnswer:
        state = TaskState(row.state)
        count = None
        if state == TaskState.ANSWERED:
            count = SiteCount(None, True) if row.below_threshold else SiteCount(row.obfuscated)
        reason = _TIMED_OUT_REASON if state == TaskState.TIMED_OUT else row.reason
        return SiteAnswer(row.name, state, count, reason, row.linkage)
