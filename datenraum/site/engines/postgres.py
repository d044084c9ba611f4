"""A snapshot's tables in PostgreSQL: `load_snapshot` copies them into a schema, `PostgresEngine` runs the
PostgreSQL dialect there (a `SiteEngine`).

Not a store engine of its own (a PostgreSQL copy is not the store); it is how the spec suite runs the
compiler's PostgreSQL output on real PostgreSQL, and how a site would fill a warehouse schema from its
store. Text columns use the "C" collation, so that comparisons and ORDER BY follow code points, as on
DuckDB and Spark (a locale's collation would sort codes and ids differently).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from datenraum.site.store import SEQ_COLUMN, Snapshot, table_schemas

__all__ = ["PostgresEngine", "load_snapshot"]

_TYPES = {
    pa.string(): 'TEXT COLLATE "C"',
    pa.bool_(): "BOOLEAN",
    pa.float64(): "DOUBLE PRECISION",
    pa.int64(): "BIGINT",
    pa.date32(): "DATE",
    pa.timestamp("us"): "TIMESTAMP",
}


def _visible(schema: pa.Schema) -> pa.Schema:
    return schema.remove(schema.get_field_index(SEQ_COLUMN)) if SEQ_COLUMN in schema.names else schema


def load_snapshot(snapshot: Snapshot, connection: Any, schema: str) -> None:
    """Create `schema` on the psycopg `connection` with every table of the snapshot, rows included."""
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA "{schema}"')
        for table, table_schema in table_schemas().items():
            fields = _visible(table_schema)
            columns = ", ".join(f'"{f.name}" {_TYPES[f.type]}' for f in fields)
            cursor.execute(f'CREATE TABLE "{schema}"."{table}" ({columns})')
            if not snapshot.files(table):
                continue
            names = ", ".join(f'"{f.name}"' for f in fields)
            rows = snapshot.connection.execute(f"SELECT {names} FROM {table}").fetchall()
            with cursor.copy(f'COPY "{schema}"."{table}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(f'ANALYZE "{schema}"."{table}"')
    connection.commit()


class PostgresEngine:
    """SQL (PostgreSQL dialect) over the tables `load_snapshot` put into `schema`."""

    dialect = "postgres"

    def __init__(self, connection: Any, schema: str) -> None:
        self.connection = connection
        self.schema = schema

    def tables(self) -> list[str]:
        return list(table_schemas())

    def sql(self, statement: str) -> pa.Table:
        with self.connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{self.schema}"')
            cursor.execute(statement)
            names = [column.name for column in cursor.description]
            rows = cursor.fetchall()
        self.connection.rollback()  # a read; nothing to keep, and no transaction left open
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})

    def sql_batches(self, statement: str, rows: int) -> Iterator[pa.RecordBatch]:
        """Through a server-side cursor, `rows` rows a fetch."""
        with self.connection.cursor() as setup:
            setup.execute(f'SET search_path TO "{self.schema}"')
        try:
            with self.connection.cursor(name="datenraum_batches") as cursor:
                cursor.execute(statement)
                while fetched := cursor.fetchmany(rows):
                    names = [column.name for column in cursor.description]
                    yield pa.record_batch([[row[i] for row in fetched] for i in range(len(names))], names)
        finally:
            self.connection.rollback()

    def close(self) -> None:
        """Nothing of its own: the connection and the schema are the caller's."""
