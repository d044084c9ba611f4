"""How extraction reads the store: the one place that does.

The original JSON of every resource is in the store's `resource` table (with its patient; core resources,
such as Medication, have none). Everything here is plain SELECTs over that table in SQL that DuckDB and
Spark both read (no dialect functions but for string literals), run through the site's engine interface
(`datenraum.site.engines.SiteEngine`: `sql` for small results, `sql_batches` for the job's resources,
which are never held whole).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datenraum.site.engines import SiteEngine

__all__ = ["Candidates", "StoreSource"]

_CHUNK = 2000  # ids in one IN list
_STREAM_ROWS = 4096  # rows of a streamed result in one portion


@dataclass(frozen=True)
class Candidates:
    """Which resources a job can use, as a superset the store can filter: per resource type the
    substrings one of which a resource's JSON must contain (a profile URL, a code), or None for every
    resource of the type. The job still decides on the decoded resource; this only spares it reading
    what cannot match. JSON text that holds a backslash may spell a substring with an escape, so it is
    always a candidate."""

    needles: Mapping[str, tuple[tuple[str, ...], ...] | None]

    def where(self, dialect: str) -> str:
        clauses = []
        for kind in sorted(self.needles):
            alternatives = self.needles[kind]
            clause = f"resource_type = {_literal(kind, dialect)}"
            if alternatives is not None:
                any_of = []
                for conjunction in alternatives:
                    any_of.append(
                        " AND ".join(f"instr(json, {_literal(n, dialect)}) > 0" for n in conjunction)
                        or "TRUE"
                    )
                any_of.append(f"instr(json, {_literal(chr(92), dialect)}) > 0")
                clause += " AND (" + " OR ".join(f"({a})" for a in any_of) + ")"
            clauses.append(f"({clause})")
        return " OR ".join(clauses) or "FALSE"


def _literal(value: str, dialect: str = "duckdb") -> str:
    if dialect == "spark":  # Spark's string literals take backslash escapes
        value = value.replace("\\", "\\\\")
    return "'" + value.replace("'", "''") + "'"


def _in(values: Iterable[str], dialect: str) -> str:
    return "(" + ", ".join(_literal(v, dialect) for v in values) + ")"


class StoreSource:
    def __init__(self, engine: SiteEngine) -> None:
        self.engine = engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect

    def _stream(self, statement: str) -> Iterator[Any]:
        yield from self.engine.sql_batches(statement, _STREAM_ROWS)

    def patient_batches(
        self, batches: list[list[str]], candidates: Candidates, skip: Iterable[int] = ()
    ) -> Iterator[dict[str, list[tuple[str, str, str]]]]:
        """Per batch of patients (each batch's ids ascending, the batches in ascending order), their
        candidate resources as (patient id) -> [(resource type, id, JSON text)] in (type, id) order; an
        empty dict for a batch in `skip` (a resumed job's finished batches, not decoded).

        One scan of the store for the whole job, sorted by patient, merged with the batches as it
        streams: the time is linear in the store's size and memory bounded by the largest batch."""
        skipped = set(skip)
        owner: dict[str, int] = {}
        for index, batch in enumerate(batches):
            for patient in batch:
                owner[patient] = index
        statement = (
            "SELECT patient_id, resource_type, id, json FROM resource"
            f" WHERE patient_id IS NOT NULL AND ({candidates.where(self.dialect)})"
            " ORDER BY patient_id, resource_type, id"
        )
        current = 0
        found: dict[str, list[tuple[str, str, str]]] = {}
        for portion in self._stream(statement):
            patients = portion.column(0).to_pylist()
            rows = None
            for row, patient in enumerate(patients):
                index = owner.get(patient)
                if index is None:
                    continue
                if index < current:
                    raise ValueError("the store does not sort patient ids as the batches are sorted")
                while index > current:
                    yield found
                    found = {}
                    current += 1
                if index in skipped:
                    continue
                if rows is None:
                    rows = (
                        portion.column(1).to_pylist(),
                        portion.column(2).to_pylist(),
                        portion.column(3).to_pylist(),
                    )
                found.setdefault(patient, []).append((rows[0][row], rows[1][row], rows[2][row]))
        while current < len(batches):
            yield found
            found = {}
            current += 1

    def core_candidates(self, candidates: Candidates) -> Iterator[tuple[str, str, str]]:
        """(type, id, JSON text) of the resources of no patient among `candidates`, in no particular
        order (the job looks them up by id): unsorted, the engine streams them without holding them."""
        for portion in self._stream(
            "SELECT resource_type, id, json FROM resource"
            f" WHERE patient_id IS NULL AND ({candidates.where(self.dialect)})"
        ):
            yield from zip(*(portion.column(i).to_pylist() for i in range(3)), strict=True)

    def patient_rows(
        self, patient_ids: list[str], candidates: Candidates
    ) -> Iterator[tuple[str, str, str, str]]:
        """(patient, type, id, JSON text) of the candidates of some patients, in (patient, type, id) order."""
        for start in range(0, len(patient_ids), _CHUNK):
            chunk = patient_ids[start : start + _CHUNK]
            table = self.engine.sql(
                "SELECT patient_id, resource_type, id, json FROM resource"
                f" WHERE patient_id IN {_in(chunk, self.dialect)} AND ({candidates.where(self.dialect)})"
                " ORDER BY patient_id, resource_type, id"
            )
            yield from zip(*(table.column(i).to_pylist() for i in range(4)), strict=True)
