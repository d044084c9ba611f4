"""What a site store holds, as plain values that tests compare (the ingest's and the strict reader's)."""

from __future__ import annotations

from datenraum.site.store import Store


def table_contents(store: Store) -> dict[str, list[tuple]]:
    """Every table's rows, sorted, so that two stores of the same data compare equal."""
    with store.snapshot() as snapshot:
        return {
            table: sorted(snapshot.connection.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in snapshot.row_counts()
        }
