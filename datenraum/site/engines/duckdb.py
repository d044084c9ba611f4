"""`DuckDBEngine`: the `SiteEngine` of the embedded default, the snapshot's own DuckDB connection."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from datenraum.site.store import Snapshot, table_schemas

__all__ = ["DuckDBEngine"]


class DuckDBEngine:
    """SQL (DuckDB dialect) on the views of `snapshot.connection` (see `datenraum.site.store.Snapshot`)."""

    dialect = "duckdb"

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def tables(self) -> list[str]:
        return list(table_schemas())

    def sql(self, statement: str) -> pa.Table:
        return self.snapshot.connection.sql(statement).to_arrow_table()

    def sql_batches(self, statement: str, rows: int) -> Iterator[pa.RecordBatch]:
        yield from self.snapshot.connection.sql(statement).to_arrow_reader(rows)

    def close(self) -> None:
        """Nothing of its own: the connection is the snapshot's, and closes with it."""
