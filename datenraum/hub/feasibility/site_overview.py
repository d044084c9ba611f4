"""What the portal shows of the sites: their state, and each site's task log for its administrators.

The task log says when a site was asked, how it answered and how long it took, never the count, so
that the log of a site is no way around the disclosure control of the results.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.db import QueryRow, SiteRow, TaskRow

__all__ = ["SiteInfo", "SiteOverview", "TaskLogEntry"]


@dataclass(frozen=True)
class SiteInfo:
    id: int
    name: str
    active: bool
    last_seen: dt.datetime | None
    agent_version: str | None
    generation: int | None


@dataclass(frozen=True)
class TaskLogEntry:
    task_id: str
    query_id: str
    asked: dt.datetime
    state: str
    finished: dt.datetime | None
    reason: str | None

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else (self.finished - self.asked).total_seconds()


class SiteOverview:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def sites(self) -> list[SiteInfo]:
        with self._sessions() as session:
            return [
                SiteInfo(row.id, row.name, row.active, row.last_seen, row.agent_version, row.generation)
                for row in session.scalars(sa.select(SiteRow).order_by(SiteRow.name))
            ]

    def task_log(self, site_id: int, limit: int = 100) -> list[TaskLogEntry]:
        with self._sessions() as session:
            rows = session.execute(
                sa.select(
                    TaskRow.id,
                    TaskRow.query_id,
                    QueryRow.created,
                    TaskRow.state,
                    TaskRow.finished,
                    TaskRow.reason,
                )
                .join(QueryRow, QueryRow.id == TaskRow.query_id)
                .where(TaskRow.site_id == site_id)
                .order_by(QueryRow.created.desc(), TaskRow.id)
                .limit(limit)
            ).all()
            return [TaskLogEntry(*row) for row in rows]
