"""A researcher's saved feasibility queries and the history of what they asked.

A saved query keeps the structured query as the researcher built or imported it, display texts
included, so that an export is what the national portal would write and can be imported there
unchanged. It is checked like a submitted query (parse and site mapping) before it is stored, so a
saved query can always be run. Each researcher sees only their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.service import User
from datenraum.hub.db import Clock, QueryRequest, QueryRow, SavedQueryRow, utcnow
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.feasibility.service import answerable_query
from datenraum.hub.text import clean_text
from datenraum.query.mapping import load_mapping

__all__ = ["HistoryEntry", "SavedQueries", "SavedQuery"]

MAX_SAVED_PER_USER = 1000


@dataclass(frozen=True)
class SavedQuery:
    id: int
    name: str
    query: dict[str, Any]
    created: dt.datetime
    updated: dt.datetime
    last_query_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "query": self.query,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "last_query_id": self.last_query_id,
        }


@dataclass(frozen=True)
class HistoryEntry:
    query_id: str
    asked: dt.datetime
    reused: bool
    query: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "asked": self.asked.isoformat(),
            "reused": self.reused,
            "query": self.query,
        }


def _valid_name(name: str) -> str:
    return clean_text(name, "name", max_length=200, collapse_spaces=True)


def _valid_query(query: Any) -> dict[str, Any]:
    """The query as stored: exactly as given, once it parses and this hub's mapping can answer it.

    Not the parsed model's JSON: that adds defaults (`display`, `version`) and drops what the model does
    not keep (empty `attributeFilters`), so an export would differ from what the national portal wrote.
    """
    answerable_query(query, load_mapping(), field="query")
    return query


def _saved(row: SavedQueryRow) -> SavedQuery:
    return SavedQuery(row.id, row.name, row.query, row.created, row.updated, row.last_query_id)


class SavedQueries:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def save(self, user: User, name: str, query: Any) -> SavedQuery:
        name, stored = _valid_name(name), _valid_query(query)
        now = self._clock()
        with self._sessions.begin() as session:
            count = session.scalar(sa.select(sa.func.count()).where(SavedQueryRow.user_id == user.id))
            if (count or 0) >= MAX_SAVED_PER_USER:
                raise Invalid(
                    f"name: at most {MAX_SAVED_PER_USER} saved queries per person; delete some first"
                )
            row = SavedQueryRow(user_id=user.id, name=name, query=stored, created=now, updated=now)
            session.add(row)
            session.flush()
            return _saved(row)

    def update(self, user: User, saved_id: int, name: str | None, query: Any | None) -> SavedQuery:
        checked_name = None if name is None else _valid_name(name)
        checked_query = None if query is None else _valid_query(query)
        with self._sessions.begin() as session:
            row = self._own(session, user, saved_id)
            if checked_name is not None:
                row.name = checked_name
            if checked_query is not None:
                row.query = checked_query
            row.updated = self._clock()
            return _saved(row)

    def duplicate(self, user: User, saved_id: int) -> SavedQuery:
        with self._sessions() as session:
            original = _saved(self._own(session, user, saved_id))
        copy_name = f"{original.name} (copy)"[:200]
        return self.save(user, copy_name, original.query)

    def delete(self, user: User, saved_id: int) -> None:
        with self._sessions.begin() as session:
            session.delete(self._own(session, user, saved_id))

    def get(self, user: User, saved_id: int) -> SavedQuery:
        with self._sessions() as session:
            return _saved(self._own(session, user, saved_id))

    def list(self, user: User) -> list[SavedQuery]:
        with self._sessions() as session:
            rows = session.scalars(
                sa.select(SavedQueryRow)
                .where(SavedQueryRow.user_id == user.id)
                .order_by(SavedQueryRow.updated.desc(), SavedQueryRow.id.desc())
            )
            return [_saved(row) for row in rows]

    def ran(self, user: User, saved_id: int, query_id: str) -> None:
        """Remember the latest run of a saved query, so that its page can show that result.

        Only a query the user asked counts: another id would not be theirs to show (or not exist).
        """
        with self._sessions.begin() as session:
            row = self._own(session, user, saved_id)
            asked = session.scalar(
                sa.select(QueryRequest.id)
                .where(QueryRequest.query_id == query_id, QueryRequest.user_id == user.id)
                .limit(1)
            )
            if asked is None:
                raise NotFound(f"no query {query_id} of yours")
            row.last_query_id = query_id

    def history(self, user: User, limit: int = 100) -> list[HistoryEntry]:
        """What the user asked, newest first (the canonical query, as the sites were asked it)."""
        with self._sessions() as session:
            rows = session.execute(
                sa.select(QueryRequest.query_id, QueryRequest.created, QueryRequest.reused, QueryRow.query)
                .join(QueryRow, QueryRow.id == QueryRequest.query_id)
                .where(QueryRequest.user_id == user.id)
                .order_by(QueryRequest.created.desc(), QueryRequest.id.desc())
                .limit(limit)
            ).all()
            return [HistoryEntry(query_id, asked, reused, query) for query_id, asked, reused, query in rows]

    @staticmethod
    def _own(session: Session, user: User, saved_id: int) -> SavedQueryRow:
        row = session.get(SavedQueryRow, saved_id)
        if row is None or row.user_id != user.id:
            raise NotFound(f"no saved query {saved_id}")
        return row
