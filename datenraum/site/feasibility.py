"""Feasibility on a site store: how many patients, and which, meet a structured query.

The library API that the CLI, the federation and later extraction and analysis use (they select
their cohort through `patient_ids`). Queries are compiled by `datenraum.query.engines.sql` and run on the
snapshot's DuckDB connection, so a count sees one consistent generation of the store. `StoreEngine`
is the store's `Engine` (`datenraum.query.engines.base`); the functions are it, called once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from datenraum.query.engines.base import resolve_today
from datenraum.query.engines.sql import compile_count, compile_query
from datenraum.query.model import StructuredQuery
from datenraum.site.store import Snapshot

__all__ = ["StoreEngine", "count", "explain", "iter_patient_ids", "patient_ids"]

_FETCH = 65536  # ids fetched from DuckDB at a time


class StoreEngine:
    """The compiled SQL run on one snapshot of a site store, as an `Engine`."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def patient_ids(self, query: StructuredQuery, *, today: dt.date | None = None) -> list[str]:
        """The ids of the cohort's patients, sorted; raises QueryError for a query the site cannot answer."""
        return list(self.iter_patient_ids(query, today=today))

    def iter_patient_ids(self, query: StructuredQuery, *, today: dt.date | None = None) -> Iterator[str]:
        """The ids of `patient_ids` as they come from the database, a portion at a time (a cohort of a
        million patients is not held as one list). The query is compiled at once, so QueryError is raised
        by this call; the snapshot must stay open until the iterator is exhausted."""
        result = self.snapshot.connection.execute(compile_query(query, today=resolve_today(today)))

        def rows() -> Iterator[str]:
            while batch := result.fetchmany(_FETCH):
                for (patient_id,) in batch:
                    yield patient_id

        return rows()

    def count(self, query: StructuredQuery, *, today: dt.date | None = None) -> int:
        """The exact number of the cohort's patients at this site (no obfuscation: that is the hub's job)."""
        sql = compile_count(query, today=resolve_today(today))
        (row,) = self.snapshot.connection.execute(sql).fetchall()
        return row[0]


def patient_ids(snapshot: Snapshot, query: StructuredQuery, *, today: dt.date | None = None) -> list[str]:
    """The ids of the cohort's patients, sorted; raises QueryError for a query the site cannot answer."""
    return StoreEngine(snapshot).patient_ids(query, today=today)


def iter_patient_ids(
    snapshot: Snapshot, query: StructuredQuery, *, today: dt.date | None = None
) -> Iterator[str]:
    """`patient_ids`, streamed (see `StoreEngine.iter_patient_ids`): what the agent keys the noise on."""
    return StoreEngine(snapshot).iter_patient_ids(query, today=today)


def count(snapshot: Snapshot, query: StructuredQuery, *, today: dt.date | None = None) -> int:
    """The exact number of the cohort's patients at this site (no obfuscation: that is the hub's job)."""
    return StoreEngine(snapshot).count(query, today=today)


def explain(query: StructuredQuery, *, dialect: str = "duckdb", today: dt.date | None = None) -> str:
    """The SQL that `patient_ids` runs, formatted for reading, in the given dialect."""
    return compile_query(query, today=resolve_today(today), dialect=dialect, pretty=True)
