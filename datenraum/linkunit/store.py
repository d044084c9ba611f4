"""The linkage unit's own storage: one SQLite file (not the hub's database).

Registrations (a site's CLKs for a project, to build link tables) and cohort deliveries (a site's CLKs of
one federated count) are each replaced whole in one transaction, so a failed or repeated delivery never
leaves a mix of old and new rows. A count once released to the hub is frozen: later deliveries are refused.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registration (
    project TEXT NOT NULL, site TEXT NOT NULL, pseudonym TEXT NOT NULL, clk BLOB NOT NULL,
    PRIMARY KEY (project, site, pseudonym));
CREATE TABLE IF NOT EXISTS cohort_delivery (
    project TEXT NOT NULL, count_id TEXT NOT NULL, site TEXT NOT NULL,
    PRIMARY KEY (project, count_id, site));
CREATE TABLE IF NOT EXISTS cohort_record (
    project TEXT NOT NULL, count_id TEXT NOT NULL, site TEXT NOT NULL, pseudonym TEXT NOT NULL,
    clk BLOB NOT NULL, PRIMARY KEY (project, count_id, site, pseudonym));
CREATE TABLE IF NOT EXISTS released_count (
    project TEXT NOT NULL, count_id TEXT NOT NULL, released_at REAL NOT NULL, sites TEXT NOT NULL,
    PRIMARY KEY (project, count_id));
"""

Records = Sequence[tuple[str, bytes]]


class Store:
    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            # WAL: a commit is still atomic and durable against a crash of the process, without a sync
            # of the whole file per delivery.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def replace_registration(self, project: str, site: str, records: Records) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM registration WHERE project = ? AND site = ?", (project, site))
                self._db.executemany(
                    "INSERT INTO registration VALUES (?, ?, ?, ?)",
                    [(project, site, p, c) for p, c in records],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def registrations(self, project: str) -> dict[str, list[tuple[str, bytes]]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT site, pseudonym, clk FROM registration WHERE project = ? ORDER BY site, pseudonym",
                (project,),
            ).fetchall()
        out: dict[str, list[tuple[str, bytes]]] = {}
        for site, pseudonym, clk in rows:
            out.setdefault(site, []).append((pseudonym, clk))
        return out

    def is_released(self, project: str, count_id: str) -> bool:
        with self._lock:
            return self._released(project, count_id)

    def _released(self, project: str, count_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM released_count WHERE project = ? AND count_id = ?", (project, count_id)
        ).fetchone()
        return row is not None

    def replace_cohort(self, project: str, count_id: str, site: str, records: Records) -> bool:
        """Stores the site's cohort; False (nothing changed) when the count was already released."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._released(project, count_id):
                    self._db.execute("ROLLBACK")
                    return False
                key = (project, count_id, site)
                self._db.execute(
                    "DELETE FROM cohort_record WHERE project = ? AND count_id = ? AND site = ?", key
                )
                self._db.execute("INSERT OR IGNORE INTO cohort_delivery VALUES (?, ?, ?)", key)
                self._db.executemany(
                    "INSERT INTO cohort_record VALUES (?, ?, ?, ?, ?)", [(*key, p, c) for p, c in records]
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return True

    def cohort(self, project: str, count_id: str) -> dict[str, list[tuple[str, bytes]]]:
        """The delivered cohorts by site (a site that delivered an empty cohort maps to [])."""
        with self._lock:
            sites = self._db.execute(
                "SELECT site FROM cohort_delivery WHERE project = ? AND count_id = ?", (project, count_id)
            ).fetchall()
            rows = self._db.execute(
                "SELECT site, pseudonym, clk FROM cohort_record WHERE project = ? AND count_id = ?"
                " ORDER BY site, pseudonym",
                (project, count_id),
            ).fetchall()
        out: dict[str, list[tuple[str, bytes]]] = {site: [] for (site,) in sites}
        for site, pseudonym, clk in rows:
            out[site].append((pseudonym, clk))
        return out

    def released_sites(self, project: str, count_id: str) -> tuple[str, ...] | None:
        """The sites a released count was released over; None while it is not released."""
        with self._lock:
            row = self._db.execute(
                "SELECT sites FROM released_count WHERE project = ? AND count_id = ?", (project, count_id)
            ).fetchone()
        return None if row is None else tuple(row[0].split(","))

    def mark_released(self, project: str, count_id: str, at: float, sites: Sequence[str]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO released_count VALUES (?, ?, ?, ?)",
                (project, count_id, at, ",".join(sites)),
            )

    def releases_since(self, project: str, since: float) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT count(*) FROM released_count WHERE project = ? AND released_at >= ?", (project, since)
            ).fetchone()
        return n
