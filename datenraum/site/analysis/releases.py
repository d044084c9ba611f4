"""The site's release log: every analysis result that left the site, per project and analyst, on disk.

Two rules of `datenraum.privacy.analysis` need the past: differencing (a row set 1 to k-1 rows away from
an earlier release of the project is refused) and the custodian's daily budget per project. Both would
be void if an agent restart forgot what had been released, so the log is an SQLite database in the
agent's state folder (`releases.sqlite`), written in one transaction per release: after a kill -9 a
release is either wholly recorded or was never sent (the answer is posted only after `release`
returns). The log is in WAL mode with `synchronous=NORMAL`: a commit is in the operating system's hands
when `release` returns, which a killed process cannot undo; only a crash of the machine itself may lose
the last commits. Waiting for the disk at every release (`FULL`) cost 50 ms a round on this machine's
disk (bench_analysis), for a loss only a power cut could cause. The check and the record are one transaction under one lock, so
two answers computed side by side cannot both pass against a log that holds neither.

What is kept: the release (project, analyst, operation, day, time, the released result as JSON, for
the custodian) and each distinct row set of a project and source (packed bits), which the differencing
check compares. Differencing is checked per project across all its analysts: two analysts of one
project must not be able to difference each other's releases. Row sets are also held in memory once
read, as the check compares a new one against all earlier ones of its source.

`ReleaseLog()` without a path keeps the log in memory (local mode, tests).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from datenraum.privacy.analysis import AnalysisPolicy, check_budget, check_differencing

__all__ = ["Release", "ReleaseLog"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS release (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    analyst TEXT NOT NULL,
    operation TEXT NOT NULL,
    day TEXT NOT NULL,
    at TEXT NOT NULL,
    result BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS release_by_day ON release (project, day);
CREATE TABLE IF NOT EXISTS row_set (
    project TEXT NOT NULL,
    source TEXT NOT NULL,
    digest BLOB NOT NULL,
    length INTEGER NOT NULL,
    mask BLOB NOT NULL,
    PRIMARY KEY (project, source, digest)
);
"""


@dataclass(frozen=True)
class Release:
    project: str
    analyst: str
    operation: str
    day: dt.date
    at: dt.datetime
    result: dict[str, Any]


class ReleaseLog:
    def __init__(self, path: Path | None = None) -> None:
        # One connection for all of the agent's workers, serialised by the lock (check_same_thread off).
        self._db = sqlite3.connect(
            ":memory:" if path is None else path, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._row_sets: dict[tuple[str, str], dict[bytes, np.ndarray]] = {}

    def close(self) -> None:
        self._db.close()

    def release(
        self,
        *,
        project: str,
        analyst: str,
        operation: str,
        source: str | None,
        masks: Sequence[np.ndarray],
        result: dict[str, Any],
        policy: AnalysisPolicy,
        now: dt.datetime,
    ) -> None:
        """Record one release, or raise `Refused` (differencing, budget) and record nothing."""
        day = now.date().isoformat()
        packed = [(np.packbits(mask), len(mask)) for mask in masks]
        with self._lock:
            known = self._known(project, source) if source is not None else {}
            new: dict[bytes, tuple[np.ndarray, int]] = {}
            for bits, length in packed:
                digest = _digest(bits, length)
                if digest not in known and digest not in new:
                    check_differencing(
                        bits, [*known.values(), *(b for b, _ in new.values())], policy, operation
                    )
                    new[digest] = (bits, length)
            spent = self._db.execute(
                "SELECT count(*) FROM release WHERE project = ? AND day = ?", (project, day)
            ).fetchone()[0]
            check_budget(spent, 1, policy, operation)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO release (project, analyst, operation, day, at, result) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        project,
                        analyst,
                        operation,
                        day,
                        now.isoformat(),
                        orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY),
                    ),
                )
                self._db.executemany(
                    "INSERT INTO row_set (project, source, digest, length, mask) VALUES (?, ?, ?, ?, ?)",
                    [(project, source, d, n, bits.tobytes()) for d, (bits, n) in new.items()],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            known.update({d: bits for d, (bits, _n) in new.items()})

    def spent(self, project: str, day: dt.date) -> int:
        """Releases of the project on that day (what the budget counts)."""
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM release WHERE project = ? AND day = ?", (project, day.isoformat())
            ).fetchone()[0]

    def releases(self, project: str, analyst: str | None = None) -> list[Release]:
        """The project's releases (of one analyst), oldest first: what the custodian may review."""
        query = "SELECT project, analyst, operation, day, at, result FROM release WHERE project = ?"
        args: tuple[str, ...] = (project,)
        if analyst is not None:
            query += " AND analyst = ?"
            args += (analyst,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY id", args).fetchall()
        return [
            Release(p, a, op, dt.date.fromisoformat(day), dt.datetime.fromisoformat(at), orjson.loads(result))
            for p, a, op, day, at, result in rows
        ]

    def _known(self, project: str, source: str) -> dict[bytes, np.ndarray]:
        key = (project, source)
        if key not in self._row_sets:
            rows = self._db.execute(
                "SELECT digest, mask FROM row_set WHERE project = ? AND source = ?", key
            ).fetchall()
            self._row_sets[key] = {digest: np.frombuffer(mask, dtype=np.uint8) for digest, mask in rows}
        return self._row_sets[key]


def _digest(bits: np.ndarray, length: int) -> bytes:
    return hashlib.sha256(bits.tobytes() + length.to_bytes(8, "big")).digest()
