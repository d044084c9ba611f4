"""Feasibility on a site store: how many patients, and which, meet a structured query.

The library API that the CLI, the federation and later extraction and analysis use (they select
their cohort through `patient_ids`). Queries are compiled by `datenraum.query.sql` and run on the
snapshot's DuckDB connection, so a count sees one consistent generation of the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

from datenraum.query.model import StructuredQuery
from datenraum.query.sql import compile_count, compile_query
from datenraum.site.store import Snapshot

__all__ = ["count", "explain", "iter_patient_ids", "patient_ids"]

_FETCH = 65536  # ids fetched from DuckDB at a time


def _today(today: dt.date | None) -> dt.date:
    return today if today is not None else dt.datetime.now(dt.UTC).date()


def patient_ids(snapshot: Snapshot, query: StructuredQuery, *, today: dt.date | None = None) -> list[str]:
    """The ids of the cohort's patients, sorted; raises QueryError for a query the site cannot answer."""
    return list(iter_patient_ids(snapshot, query, today=today))


def iter_patient_ids(
    snapshot: Snapshot, query: StructuredQuery, *, today: dt.date | None = None
) -> Iterator[str]:
    """The ids of `patient_ids` as they come from the database, a portion at a time (a cohort of a million
    patients is not held as one list). The query is compiled at once, so QueryError is raised by this call;
    the snapshot must stay open until the iterator is exhausted."""
    sql = compile_query(query, today=_today(today))
    result = snapshot.connection.execute(sql)

    def rows() -> Iterator[str]:
        while batch := result.fetchmany(_FETCH):
            for (patient_id,) in batch:
                yield patient_id

    return rows()


def count(snapshot: Snapshot, query: StructuredQuery, *, today: dt.date | None = None) -> int:
    """The exact number of the cohort's patients at this site (no obfuscation: that is the hub's job)."""
    sql = compile_count(query, today=_today(today))
    (row,) = snapshot.connection.execute(sql).fetchall()
    return row[0]


def explain(query: StructuredQuery, *, dialect: str = "duckdb", today: dt.date | None = None) -> str:
    """The SQL that `patient_ids` runs, formatted for reading, in the given dialect."""
    return compile_query(query, today=_today(today), dialect=dialect, pretty=True)
