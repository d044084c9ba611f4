"""Field queries: a monitor asks about one item of a form instance, the site answers, the monitor closes.

open -> answered (the site's answer) -> closed, or back to open when the monitor asks again. Every step is
a message with its author and time, so the conversation is its own audit trail. A closed query stays
closed; a new question is a new query.
"""

from __future__ import annotations

import datetime as dt

from datenraum.site.studies.database import EdcDatabase
from datenraum.site.studies.permissions import Action, PermissionDenied, allowed
from datenraum.site.studies.records import FieldQuery, FormInstance, QueryState, Records
from datenraum.site.studies.staff import Staff

__all__ = ["FieldQueries", "QueryError"]

MAX_TEXT = 4000


class QueryError(ValueError):
    """The query step cannot be taken (empty text, wrong state, unknown item)."""


def _text(text: str) -> str:
    text = text.strip()
    if not text:
        raise QueryError("the text must not be empty")
    if len(text) > MAX_TEXT:
        raise QueryError(f"the text has {len(text)} characters, at most {MAX_TEXT}")
    return text


def _require(staff: Staff, action: Action) -> None:
    if not allowed(staff.role, action):
        role = staff.role.value if staff.role else "no role"
        raise PermissionDenied(f"{staff.email} ({role}) may not {action.value} in study {staff.study_id}")


class FieldQueries:
    def __init__(self, database: EdcDatabase) -> None:
        self._db = database
        self._records = Records(database)

    def open(
        self,
        staff: Staff,
        instance: FormInstance,
        link_id: str,
        text: str,
        known_items: set[str],
        now: dt.datetime,
    ) -> FieldQuery:
        _require(staff, Action.OPEN_QUERY)
        if link_id not in known_items:
            raise QueryError(f"item {link_id!r} is not in the form {instance.form}")
        body = _text(text)
        with self._db.transaction() as db:
            cursor = db.execute(
                "INSERT INTO field_query (form_instance, link_id, state, opened_by, opened_at) VALUES (?, ?, ?, ?, ?)",
                (instance.id, link_id, QueryState.OPEN.value, staff.email, now.isoformat()),
            )
            query_id = int(cursor.lastrowid or 0)
            self._message(db, query_id, staff, now, "open", body)
        return self._get(query_id)

    def answer(self, staff: Staff, query: FieldQuery, text: str, now: dt.datetime) -> FieldQuery:
        _require(staff, Action.ANSWER_QUERY)
        return self._step(staff, query, text, now, "answer", {QueryState.OPEN}, QueryState.ANSWERED)

    def reopen(self, staff: Staff, query: FieldQuery, text: str, now: dt.datetime) -> FieldQuery:
        _require(staff, Action.OPEN_QUERY)
        return self._step(staff, query, text, now, "reopen", {QueryState.ANSWERED}, QueryState.OPEN)

    def close(self, staff: Staff, query: FieldQuery, text: str, now: dt.datetime) -> FieldQuery:
        _require(staff, Action.CLOSE_QUERY)
        return self._step(
            staff, query, text, now, "close", {QueryState.OPEN, QueryState.ANSWERED}, QueryState.CLOSED
        )

    def _step(
        self,
        staff: Staff,
        query: FieldQuery,
        text: str,
        now: dt.datetime,
        action: str,
        states: set[QueryState],
        new_state: QueryState,
    ) -> FieldQuery:
        body = _text(text)
        with self._db.transaction() as db:
            # The state is read again inside the transaction: two people answering at once step once.
            row = db.execute("SELECT state FROM field_query WHERE id = ?", (query.id,)).fetchone()
            state = QueryState(row["state"])
            if state not in states:
                raise QueryError(f"the query is {state.value}; it cannot be given the step {action!r}")
            db.execute("UPDATE field_query SET state = ? WHERE id = ?", (new_state.value, query.id))
            self._message(db, query.id, staff, now, action, body)
        return self._get(query.id)

    @staticmethod
    def _message(db, query_id: int, staff: Staff, now: dt.datetime, action: str, text: str) -> None:
        db.execute(
            "INSERT INTO query_message (field_query, who, at, action, text) VALUES (?, ?, ?, ?, ?)",
            (query_id, staff.email, now.isoformat(), action, text),
        )

    def _get(self, query_id: int) -> FieldQuery:
        query = self._records.query(query_id)
        assert query is not None  # written above
        return query
