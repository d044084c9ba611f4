"""The EDC's working data: one SQLite database at the site (`[site] database`, `edc.sqlite`).

It holds what only the site may know: the link of study pseudonym and site patient id (the other place it
exists is the ResearchSubject in the site store), the form instances with their current responses, the
append-only audit trail, the field queries, the data-quality findings, the local accounts and sessions,
and the study definitions as last pulled from the hub.

Why one SQLite file, like the agent's release log: the EDC is one process at one site, every change is a
few rows, and one transaction per change makes "a refused response writes nothing" a rollback. WAL mode
lets pages read while a save commits; `synchronous=NORMAL` leaves a commit in the operating system's
hands, which a killed process cannot undo.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["EdcDatabase"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS account (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS session (
    token_hash TEXT PRIMARY KEY,
    email TEXT NOT NULL REFERENCES account (email) ON DELETE CASCADE,
    expires_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS definition (
    study_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    pulled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS participant (
    study_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    arm TEXT NOT NULL,
    allocation_id TEXT NOT NULL,
    strata TEXT NOT NULL,
    enrolled_at TEXT NOT NULL,
    enrolled_by TEXT NOT NULL,
    PRIMARY KEY (study_id, pseudonym),
    UNIQUE (study_id, patient_id)
);
CREATE TABLE IF NOT EXISTS form_instance (
    id INTEGER PRIMARY KEY,
    study_id TEXT NOT NULL,
    pseudonym TEXT NOT NULL,
    visit TEXT NOT NULL,
    form TEXT NOT NULL,
    instance INTEGER NOT NULL,
    status TEXT NOT NULL,
    locked INTEGER NOT NULL DEFAULT 0,
    signed_by TEXT,
    signed_at TEXT,
    response TEXT NOT NULL,
    saved_at TEXT NOT NULL,
    saved_by TEXT NOT NULL,
    UNIQUE (study_id, pseudonym, visit, form, instance),
    FOREIGN KEY (study_id, pseudonym) REFERENCES participant (study_id, pseudonym)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    form_instance INTEGER NOT NULL REFERENCES form_instance (id),
    kind TEXT NOT NULL,
    link_id TEXT,
    old TEXT,
    new TEXT,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_instance ON audit (form_instance, id);
CREATE TABLE IF NOT EXISTS field_query (
    id INTEGER PRIMARY KEY,
    form_instance INTEGER NOT NULL REFERENCES form_instance (id),
    link_id TEXT NOT NULL,
    state TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    opened_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS query_message (
    id INTEGER PRIMARY KEY,
    field_query INTEGER NOT NULL REFERENCES field_query (id),
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    action TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dq_finding (
    id INTEGER PRIMARY KEY,
    form_instance INTEGER NOT NULL REFERENCES form_instance (id),
    rule TEXT NOT NULL,
    link_id TEXT,
    message TEXT NOT NULL,
    found_at TEXT NOT NULL
);
"""


class EdcDatabase:
    """The database, one connection shared by the web app's threads and serialised by a lock."""

    def __init__(self, path: Path | None = None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All of a change or none of it: an exception inside rolls everything back."""
        with self._lock:
            if self._db.in_transaction:  # nested: part of the caller's transaction
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def rows(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()
