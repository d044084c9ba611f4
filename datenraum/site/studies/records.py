"""What the EDC's database holds, as frozen values, and the reads the pages and operations share."""

from __future__ import annotations

import datetime as dt
import sqlite3
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from datenraum.site.studies.database import EdcDatabase
from datenraum.studies.quality import Finding

__all__ = [
    "AuditEntry",
    "FieldQuery",
    "FormInstance",
    "FormStatus",
    "Participant",
    "QueryMessage",
    "QueryState",
    "Records",
]


class FormStatus(StrEnum):
    """REDCap's `<form>_complete` 0/1/2."""

    INCOMPLETE = "incomplete"
    UNVERIFIED = "unverified"
    COMPLETE = "complete"


class QueryState(StrEnum):
    OPEN = "open"  # the monitor asked; the site has not answered
    ANSWERED = "answered"  # the site answered; the monitor may close it or ask again
    CLOSED = "closed"


@dataclass(frozen=True)
class Participant:
    study_id: str
    pseudonym: str
    patient_id: str  # the site patient: shown only inside the site's EDC
    arm: str
    allocation_id: str
    strata: dict[str, str]
    enrolled_at: dt.datetime
    enrolled_by: str


@dataclass(frozen=True)
class FormInstance:
    id: int
    study_id: str
    pseudonym: str
    visit: str
    form: str  # the Questionnaire's url|version the response answers
    instance: int  # repeat instance, 1 for a form that does not repeat
    status: FormStatus
    locked: bool
    signed_by: str | None
    signed_at: dt.datetime | None
    response: dict[str, Any]
    saved_at: dt.datetime
    saved_by: str


@dataclass(frozen=True)
class AuditEntry:
    kind: str  # "field" (one answer changed), "status", "lock", "unlock", "sign"
    link_id: str | None
    old: str | None
    new: str | None
    who: str
    at: dt.datetime
    reason: str | None


@dataclass(frozen=True)
class QueryMessage:
    who: str
    at: dt.datetime
    action: str  # "open", "answer", "reopen", "close"
    text: str


@dataclass(frozen=True)
class FieldQuery:
    id: int
    form_instance: int
    link_id: str
    state: QueryState
    opened_by: str
    opened_at: dt.datetime
    messages: tuple[QueryMessage, ...]


def _time(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _participant(row: sqlite3.Row) -> Participant:
    return Participant(
        row["study_id"],
        row["pseudonym"],
        row["patient_id"],
        row["arm"],
        row["allocation_id"],
        orjson.loads(row["strata"]),
        dt.datetime.fromisoformat(row["enrolled_at"]),
        row["enrolled_by"],
    )


def _instance(row: sqlite3.Row) -> FormInstance:
    return FormInstance(
        row["id"],
        row["study_id"],
        row["pseudonym"],
        row["visit"],
        row["form"],
        row["instance"],
        FormStatus(row["status"]),
        bool(row["locked"]),
        row["signed_by"],
        _time(row["signed_at"]),
        orjson.loads(row["response"]),
        dt.datetime.fromisoformat(row["saved_at"]),
        row["saved_by"],
    )


class Records:
    """Reads of participants, form instances, audit trail, queries and findings."""

    def __init__(self, database: EdcDatabase) -> None:
        self._db = database

    def participants(self, study_id: str) -> list[Participant]:
        rows = self._db.rows(
            "SELECT * FROM participant WHERE study_id = ? ORDER BY enrolled_at, pseudonym", (study_id,)
        )
        return [_participant(row) for row in rows]

    def participant(self, study_id: str, pseudonym: str) -> Participant | None:
        rows = self._db.rows(
            "SELECT * FROM participant WHERE study_id = ? AND pseudonym = ?", (study_id, pseudonym)
        )
        return _participant(rows[0]) if rows else None

    def participant_of_patient(self, study_id: str, patient_id: str) -> Participant | None:
        rows = self._db.rows(
            "SELECT * FROM participant WHERE study_id = ? AND patient_id = ?", (study_id, patient_id)
        )
        return _participant(rows[0]) if rows else None

    def enrolled_per_arm(self, study_id: str) -> dict[str, int]:
        rows = self._db.rows(
            "SELECT arm, count(*) AS n FROM participant WHERE study_id = ? GROUP BY arm", (study_id,)
        )
        return {row["arm"]: row["n"] for row in rows}

    def instances(self, study_id: str, pseudonym: str) -> list[FormInstance]:
        rows = self._db.rows(
            "SELECT * FROM form_instance WHERE study_id = ? AND pseudonym = ? ORDER BY visit, form, instance",
            (study_id, pseudonym),
        )
        return [_instance(row) for row in rows]

    def instance(self, instance_id: int) -> FormInstance | None:
        rows = self._db.rows("SELECT * FROM form_instance WHERE id = ?", (instance_id,))
        return _instance(rows[0]) if rows else None

    def find_instance(
        self, study_id: str, pseudonym: str, visit: str, form_url: str, instance: int
    ) -> FormInstance | None:
        """The instance of a form (any version of its url) at a visit."""
        rows = self._db.rows(
            "SELECT * FROM form_instance WHERE study_id = ? AND pseudonym = ? AND visit = ? "
            "AND form LIKE ? ESCAPE '\\' AND instance = ?",
            (study_id, pseudonym, visit, _like_prefix(form_url + "|"), instance),
        )
        return _instance(rows[0]) if rows else None

    def audit(self, instance_id: int) -> list[AuditEntry]:
        rows = self._db.rows("SELECT * FROM audit WHERE form_instance = ? ORDER BY id", (instance_id,))
        return [
            AuditEntry(
                row["kind"],
                row["link_id"],
                row["old"],
                row["new"],
                row["who"],
                dt.datetime.fromisoformat(row["at"]),
                row["reason"],
            )
            for row in rows
        ]

    def queries(self, instance_id: int) -> list[FieldQuery]:
        rows = self._db.rows("SELECT * FROM field_query WHERE form_instance = ? ORDER BY id", (instance_id,))
        return [self._query(row) for row in rows]

    def query(self, query_id: int) -> FieldQuery | None:
        rows = self._db.rows("SELECT * FROM field_query WHERE id = ?", (query_id,))
        return self._query(rows[0]) if rows else None

    def open_queries(self, study_id: str) -> list[tuple[FieldQuery, FormInstance]]:
        rows = self._db.rows(
            "SELECT q.id AS query_id, f.* FROM field_query q JOIN form_instance f ON f.id = q.form_instance "
            "WHERE f.study_id = ? AND q.state != 'closed' ORDER BY q.id",
            (study_id,),
        )
        result = []
        for row in rows:
            query = self.query(row["query_id"])
            assert query is not None  # read in the same breath
            result.append((query, _instance(row)))
        return result

    def _query(self, row: sqlite3.Row) -> FieldQuery:
        messages = self._db.rows(
            "SELECT * FROM query_message WHERE field_query = ? ORDER BY id", (row["id"],)
        )
        return FieldQuery(
            row["id"],
            row["form_instance"],
            row["link_id"],
            QueryState(row["state"]),
            row["opened_by"],
            dt.datetime.fromisoformat(row["opened_at"]),
            tuple(
                QueryMessage(m["who"], dt.datetime.fromisoformat(m["at"]), m["action"], m["text"])
                for m in messages
            ),
        )

    def findings(self, instance_id: int) -> list[Finding]:
        rows = self._db.rows("SELECT * FROM dq_finding WHERE form_instance = ? ORDER BY id", (instance_id,))
        instance = self.instance(instance_id)
        return [_finding(row, instance, row["link_id"]) for row in rows] if instance else []


def _finding(row: sqlite3.Row, instance: FormInstance, link_id: str | None) -> Finding:
    """A stored finding as the rules gave it (`datenraum.studies.quality.Finding`)."""
    return Finding(
        instance.pseudonym, instance.visit, instance.instance, link_id, row["rule"], row["message"]
    )


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"
