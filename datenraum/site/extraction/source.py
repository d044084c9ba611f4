"""How extraction reads the store: the one place that does.

The original JSON of every resource is in the store's `resource` table (with its patient; core resources,
such as Medication, have none). Everything here is plain SELECTs over that table in SQL that DuckDB and
Spark both read (no dialect functions), run through `sql(statement) -> pyarrow.Table`, the shape of the
site's engine interface (`datenraum.site.engines.SiteEngine`); `StoreSource` takes any object with that
method, and `StoreSource.of_snapshot` wraps a snapshot's own DuckDB connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

from datenraum.site.store import Snapshot

__all__ = ["SqlEngine", "StoreSource"]

_CHUNK = 2000  # ids in one IN list


class SqlEngine(Protocol):
    def sql(self, statement: str) -> Any: ...


class _SnapshotEngine:
    dialect = "duckdb"

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def sql(self, statement: str) -> Any:
        return self.snapshot.connection.sql(statement).to_arrow_table()


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _in(values: Iterable[str]) -> str:
    return "(" + ", ".join(_literal(v) for v in values) + ")"


class StoreSource:
    def __init__(self, engine: SqlEngine) -> None:
        self.engine = engine

    @classmethod
    def of_snapshot(cls, snapshot: Snapshot) -> StoreSource:
        return cls(_SnapshotEngine(snapshot))

    def _rows(self, statement: str) -> Iterator[tuple[str, dict[str, Any]]]:
        table = self.engine.sql(statement)
        patients = table.column("patient_id").to_pylist()
        for patient, text in zip(patients, table.column("json").to_pylist(), strict=True):
            yield patient, orjson.loads(text)

    def patient_resources(
        self, patient_ids: list[str], types: Iterable[str]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(patient id, resource) of the patients' resources of `types`, in id order."""
        type_list = sorted(set(types))
        if not type_list or not patient_ids:
            return
        for start in range(0, len(patient_ids), _CHUNK):
            chunk = patient_ids[start : start + _CHUNK]
            yield from self._rows(
                "SELECT patient_id, json FROM resource"
                f" WHERE patient_id IN {_in(chunk)} AND resource_type IN {_in(type_list)}"
                " ORDER BY patient_id, resource_type, id"
            )

    def core_resources(self, types: Iterable[str]) -> Iterator[dict[str, Any]]:
        """The resources of `types` that belong to no patient (Medication, Organization, ...)."""
        type_list = sorted(set(types))
        if not type_list:
            return
        for _, resource in self._rows(
            "SELECT patient_id, json FROM resource"
            f" WHERE patient_id IS NULL AND resource_type IN {_in(type_list)} ORDER BY resource_type, id"
        ):
            yield resource

    def existing_patients(self, patient_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(patient_ids), _CHUNK):
            chunk = patient_ids[start : start + _CHUNK]
            table = self.engine.sql(
                f"SELECT id FROM resource WHERE resource_type = 'Patient' AND id IN {_in(chunk)}"
            )
            found.update(table.column("id").to_pylist())
        return found
