"""A researcher's saved feasibility queries and the history of what they asked.

A saved query keeps the structured query as the model reads it: checked like a submitted query (parse
and site mapping), then written back from the parsed query, display texts included, so that an export
is a query the national portal reads. What the model does not read (unknown keys) is not stored, so
nothing is stored that cannot be written back. A row that an older version stored exactly as given
and that cannot be written back (nested too deep, a lone surrogate) is listed as unreadable, to be
deleted, instead of failing the whole list. Each researcher sees only their own.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.service import User
from datenraum.hub.db import Clock, QueryRequest, QueryRow, SavedQueryRow, utcnow
from datenraum.hub.errors import Conflict, Invalid, NotFound
from datenraum.hub.feasibility.service import answerable_query
from datenraum.hub.text import clean_text
from datenraum.query.mapping import load_mapping
from datenraum.query.model import query_to_json

__all__ = ["HistoryEntry", "SavedQueries", "SavedQuery"]

MAX_SAVED_PER_USER = 1000


@dataclass(frozen=True)
class SavedQuery:
    id: int
    name: str
    query: dict[str, Any] | None  # None when the stored query cannot be read (see `unreadable`)
    created: dt.datetime
    updated: dt.datetime
    last_query_id: str | None
    unreadable: str | None = None  # why the stored query cannot be read back, and what to do

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "query": self.query,
            "created": self.created.isoformat(),
            "updated": self.updated.isoformat(),
            "last_query_id": self.last_query_id,
            "unreadable": self.unreadable,
        }

    def readable_query(self) -> dict[str, Any]:
        """The query, or Conflict when the stored one cannot be read."""
        if self.query is None:
            raise Conflict(f"saved query {self.id}: {self.unreadable}")
        return self.query


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
    """The query as stored: written back from the parsed query, once this hub's mapping can answer it.

    The parser refuses what cannot be written back (nesting deeper than a query needs, NUL, lone
    surrogates), and keys it does not read are dropped, so the stored JSON can always be sent again.
    """
    return query_to_json(answerable_query(query, load_mapping(), field="query"))


# Deeper than this, a JSON answer fails to serialise (orjson and pydantic stop at 255 levels).
_MAX_READABLE_DEPTH = 128


def _unreadable(name: str, query: Any) -> str | None:
    """Why a stored row cannot be sent back as JSON (rows stored exactly as given by older versions)."""
    stack = [(query, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > _MAX_READABLE_DEPTH:
            return "the stored query is nested too deep to be read back; delete it"
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)
    try:
        orjson.dumps({"name": name, "query": query})
    except (TypeError, orjson.JSONEncodeError) as error:
        return f"the stored query cannot be read back ({error}); delete it"
    return None


def _saved(row: SavedQueryRow) -> SavedQuery:
    problem = _unreadable(row.name, row.query)
    if problem is None:
        return SavedQuery(row.id, row.name, row.query, row.created, row.updated, row.last_query_id)
    # The name may be what cannot be written (a lone surrogate): shown as its escape.
    name = row.name.encode("utf-8", "backslashreplace").decode("utf-8")
    return SavedQuery(row.id, name, None, row.created, row.updated, row.last_query_id, problem)


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
        return self.save(user, copy_name, original.readable_query())

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
