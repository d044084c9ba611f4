"""Biosamples on a site store: per biobank, sample category and storage temperature class, how many
patients, samples, specimens and available aliquots a cohort has, and how much material.

The counting rules (brief `biobank-studies-linkage.md`, A5 and E1.3):
- only specimens with status `available` count (`unavailable`, `unsatisfactory`, `entered-in-error` never);
- a *sample* is the BBMRI-ERIC/MIABIS one: distinct patient + fine sample type + collection time, so two
  tubes of one draw are one sample; *specimens* are the Specimen resources;
- *aliquots available*: each available specimen of level ALIQUOT is one; an available aliquot group
  counts its declared number (`anzahlAliquots`) only when none of its aliquots is in the store, since
  once they are, they are counted themselves (a used, unavailable one no longer);
- the *quantity* (`container.specimenQuantity`) is summed per UCUM unit, never across units, over the
  specimens that have no child of the same category in the store (a group and its own aliquots are the
  same material, counted once);
- the storage temperature class is that of the specimen's current storage step (the open one, else the
  latest started; `Unknown` without any);
- a diagnosis filter matches a specimen whose `festgestellteDiagnose` is a Condition *of the same patient*
  with that ICD-10-GM code (or below it): a reference to another patient's diagnosis (the ingest warns
  about it) says nothing about this specimen.

The counts are exact: they leave the site only through `datenraum.privacy.samples` (the agent), or the
site's own command line (`datenraum samples`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from datenraum.privacy.samples import SamplePolicy, release_group
from datenraum.protocol.samples import BiobankPatients, SampleCellResult, SampleResult
from datenraum.query.biobank.search import SampleFilter
from datenraum.query.biobank.terminology import (
    MIABIS_SAMPLE_TYPE,
    SNOMED,
    UNKNOWN,
    sample_types,
    temperature_class,
)
from datenraum.query.model import StructuredQuery
from datenraum.site.feasibility import StoreEngine
from datenraum.site.store import Snapshot

__all__ = [
    "ICD10GM_SYSTEMS",
    "Biobank",
    "BiobankCount",
    "SampleCell",
    "SampleCounts",
    "sample_counts",
    "specimen_types",
]

ICD10GM_SYSTEMS = ("http://fhir.de/CodeSystem/bfarm/icd-10-gm", "http://fhir.de/CodeSystem/dimdi/icd-10-gm")


@dataclass(frozen=True)
class Biobank:
    """A managing organization (biobank or collection) of the store: id, name, BBMRI-ERIC id, part of."""

    id: str
    name: str | None
    bbmri_id: str | None
    part_of: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "bbmri_id": self.bbmri_id, "part_of": self.part_of}


@dataclass(frozen=True)
class SampleCell:
    """The exact counts of one (biobank, category, temperature class); `biobank` None: no managing
    organization named. `key` is a digest of the cell's sorted specimen ids, which keys its noise."""

    biobank: str | None
    category: str
    temperature: str
    patients: int
    samples: int
    specimens: int
    aliquots: int
    quantities: tuple[tuple[str, float], ...]
    key: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "biobank": self.biobank,
            "category": self.category,
            "temperature": self.temperature,
            "patients": self.patients,
            "samples": self.samples,
            "specimens": self.specimens,
            "aliquots": self.aliquots,
            "quantities": {unit: value for unit, value in self.quantities},
        }


@dataclass(frozen=True)
class BiobankCount:
    """The exact number of patients with samples in one biobank (None: without a managing organization)."""

    biobank: str | None
    patients: int
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class SampleCounts:
    """A site's exact sample counts for one search: totals over all cells (a patient with samples in two
    cells is one patient) and the cells."""

    patients: int
    samples: int
    specimens: int
    aliquots: int
    cells: tuple[SampleCell, ...]
    biobanks: tuple[Biobank, ...]
    by_biobank: tuple[BiobankCount, ...]
    key: bytes = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "samples": self.samples,
            "specimens": self.specimens,
            "aliquots": self.aliquots,
            "cells": [cell.to_json() for cell in self.cells],
            "biobanks": [biobank.to_json() for biobank in self.biobanks],
            "by_biobank": [{"biobank": b.biobank, "patients": b.patients} for b in self.by_biobank],
        }

    def release(self, site_secret: bytes, policy: SamplePolicy) -> SampleResult:
        """The counts as they may leave the site (`datenraum.privacy.samples`)."""
        names = {biobank.id: biobank.name for biobank in self.biobanks}
        total = release_group(
            {"patients": self.patients, "samples": self.samples, "specimens": self.specimens},
            self.key,
            site_secret,
            policy,
        )
        cells = []
        for cell in self.cells:
            exact = {
                "patients": cell.patients,
                "samples": cell.samples,
                "specimens": cell.specimens,
                "aliquots": cell.aliquots,
            }
            figures = release_group(exact, cell.key, site_secret, policy)
            cells.append(SampleCellResult(cell.biobank, cell.category, cell.temperature, **figures))
        biobanks = tuple(
            BiobankPatients(
                count.biobank,
                names.get(count.biobank) if count.biobank is not None else None,
                release_group({"patients": count.patients}, count.key, site_secret, policy)["patients"],
            )
            for count in self.by_biobank
        )
        return SampleResult(total["patients"], total["specimens"], total["samples"], biobanks, tuple(cells))


_TYPES_SCHEMA = pa.schema([("system", pa.string()), ("code", pa.string()), ("category", pa.string())])
_CLASS_SCHEMA = pa.schema(
    [
        ("low", pa.float64()),
        ("high", pa.float64()),
        ("unit", pa.string()),
        ("miabis", pa.string()),
        ("class", pa.string()),
    ]
)

# One row per specimen, with its category (MIABIS before SNOMED CT), fine type and current storage step.
_SPECIMENS = f"""
CREATE TEMP TABLE _specimens AS
WITH typed AS (
    SELECT s.id,
        any_value(s.patient_id) AS patient_id, any_value(s.status) AS status,
        any_value(s.collected) AS collected, any_value(s.organization_id) AS biobank,
        any_value(s.diagnosis_id) AS diagnosis_id, any_value(s.parent_id) AS parent_id,
        any_value(s.level) AS level, any_value(s.aliquot_count) AS aliquot_count,
        any_value(s.quantity_value) AS quantity, any_value(s.quantity_unit) AS unit,
        coalesce(min(t.category) FILTER (WHERE t.system = '{MIABIS_SAMPLE_TYPE}'),
                 min(t.category) FILTER (WHERE t.system = '{SNOMED}'), '{UNKNOWN}') AS category,
        coalesce(min(s.type_code) FILTER (WHERE s.type_system = '{SNOMED}'), min(s.type_code), '') AS fine_type
    FROM specimen s LEFT JOIN _sample_types t ON t.system = s.type_system AND t.code = s.type_code
    GROUP BY s.id
), storage AS (
    SELECT id, temperature_low, temperature_high, temperature_unit, temperature_class,
        row_number() OVER (PARTITION BY id ORDER BY ("end" IS NULL) DESC, start DESC NULLS LAST) AS position
    FROM specimen_processing WHERE is_storage
)
SELECT typed.*, coalesce(c.class, '{UNKNOWN}') AS temperature
FROM typed
LEFT JOIN storage ON storage.id = typed.id AND storage.position = 1
LEFT JOIN _temperature_classes c
    ON c.low IS NOT DISTINCT FROM storage.temperature_low AND c.high IS NOT DISTINCT FROM storage.temperature_high
    AND c.unit IS NOT DISTINCT FROM storage.temperature_unit AND c.miabis IS NOT DISTINCT FROM storage.temperature_class
"""

_CELLS = """
WITH counted AS (
    SELECT a.*,
        CASE WHEN a.level = 'ALIQUOT' THEN 1
             WHEN a.level = 'ALIQUOTGRUPPE' AND NOT EXISTS (
                 SELECT 1 FROM _specimens c WHERE c.parent_id = a.id AND c.level = 'ALIQUOT')
             THEN coalesce(a.aliquot_count, 0)
             ELSE 0 END AS aliquots
    FROM _selected a
)
SELECT biobank, category, temperature,
    count(DISTINCT patient_id), count(DISTINCT (patient_id, fine_type, collected)), count(*), sum(aliquots),
    sha256(string_agg(id, chr(10) ORDER BY id))
FROM counted
GROUP BY ALL ORDER BY biobank NULLS LAST, category, temperature
"""

# Per cell and unit, the material of the specimens without a child of their own category.
_QUANTITIES = """
SELECT biobank, category, temperature, unit, sum(quantity)
FROM _selected s
WHERE quantity IS NOT NULL AND unit IS NOT NULL
    AND NOT EXISTS (SELECT 1 FROM _specimens c WHERE c.parent_id = s.id AND c.category = s.category)
GROUP BY ALL ORDER BY ALL
"""


def _temperature_classes(snapshot: Snapshot) -> pa.Table:
    """Each distinct storage step temperature of the store with its class, from the terminology's rule."""
    steps = snapshot.connection.execute(
        "SELECT DISTINCT temperature_low, temperature_high, temperature_unit, temperature_class "
        "FROM specimen_processing WHERE is_storage"
    ).fetchall()
    rows = [
        (low, high, unit, miabis, temperature_class(low, high, unit, miabis))
        for low, high, unit, miabis in steps
    ]
    return pa.Table.from_pylist(
        [dict(zip(_CLASS_SCHEMA.names, row, strict=True)) for row in rows], schema=_CLASS_SCHEMA
    )


def specimen_types(query: StructuredQuery) -> list[str]:
    """The sample types (`system|code`) the query's Specimen criteria ask for (in its inclusion, not
    negated): the specimens a sample count of that cohort is about. Empty: the query names none."""
    return sorted(
        {
            f"{code.system}|{code.code}"
            for group in query.inclusion
            for criterion in group
            if criterion.context.code == "Specimen" and not criterion.negated
            for code in criterion.term_codes
        }
    )


def _conditions(sample_filter: SampleFilter, types: list[str]) -> tuple[str, list[Any]]:
    clauses, parameters = ["status = 'available'"], []
    if types:
        clauses.append(
            "EXISTS (SELECT 1 FROM specimen t WHERE t.id = _specimens.id "
            "AND t.type_system || '|' || t.type_code IN (SELECT unnest(?)))"
        )
        parameters.append(types)
    if sample_filter.categories:
        clauses.append("category IN (SELECT unnest(?))")
        parameters.append(sorted(sample_filter.categories))
    if sample_filter.temperatures:
        clauses.append("temperature IN (SELECT unnest(?))")
        parameters.append(sorted(sample_filter.temperatures))
    if sample_filter.biobanks:
        clauses.append(
            "(biobank IN (SELECT unnest(?)) OR biobank IN "
            "(SELECT id FROM organization WHERE bbmri_id IN (SELECT unnest(?))))"
        )
        parameters += [sorted(sample_filter.biobanks)] * 2
    if sample_filter.diagnoses:
        clauses.append(
            "EXISTS (SELECT 1 FROM condition c, (SELECT unnest(?) AS code) d WHERE c.id = diagnosis_id "
            "AND c.patient_id = _specimens.patient_id AND c.code_system IN (SELECT unnest(?)) "
            "AND starts_with(c.code, d.code))"
        )
        parameters += [sorted(sample_filter.diagnoses), list(ICD10GM_SYSTEMS)]
    return " AND ".join(clauses), parameters


def sample_counts(
    snapshot: Snapshot,
    query: StructuredQuery | None = None,
    sample_filter: SampleFilter | None = None,
    *,
    today: dt.date | None = None,
) -> SampleCounts:
    """The exact sample counts of the cohort `query` selects (every patient without one) under the filter.
    When the query has Specimen criteria, only specimens of the types they name count (the CCDL criterion
    selects the patients; the sample counts are of the samples it asked for). Raises QueryError for a
    query the site cannot answer."""
    # On the snapshot's own connection, so that whatever interrupts its queries (the agent's time limit)
    # interrupts these too; the temporary tables and registrations are gone again afterwards.
    db = snapshot.connection
    try:
        return _counts(db, snapshot, query, sample_filter or SampleFilter(), today)
    finally:
        db.execute("DROP TABLE IF EXISTS _selected")
        db.execute("DROP TABLE IF EXISTS _specimens")
        for name in ("_sample_types", "_temperature_classes", "_cohort"):
            db.unregister(name)


def _counts(
    db: duckdb.DuckDBPyConnection,
    snapshot: Snapshot,
    query: StructuredQuery | None,
    sample_filter: SampleFilter,
    today: dt.date | None,
) -> SampleCounts:
    types = [{"system": s, "code": c, "category": category} for (s, c), category in sample_types().items()]
    db.register("_sample_types", pa.Table.from_pylist(types, schema=_TYPES_SCHEMA))
    db.register("_temperature_classes", _temperature_classes(snapshot))
    db.execute(_SPECIMENS)
    where, parameters = _conditions(sample_filter, specimen_types(query) if query is not None else [])
    cohort = ""
    if query is not None:
        ids = StoreEngine(snapshot).patient_ids(query, today=today)
        db.register("_cohort", pa.table({"id": pa.array(ids, pa.string())}))
        cohort = " AND patient_id IN (SELECT id FROM _cohort)"
    db.execute(f"CREATE TEMP TABLE _selected AS SELECT * FROM _specimens WHERE {where}{cohort}", parameters)
    quantities: dict[tuple, list[tuple[str, float]]] = {}
    for biobank, category, temperature, unit, total in db.execute(_QUANTITIES).fetchall():
        quantities.setdefault((biobank, category, temperature), []).append((unit, float(total)))
    cells = [
        SampleCell(
            biobank,
            category,
            temperature,
            patients,
            samples,
            specimens,
            int(aliquots),
            tuple(quantities.get((biobank, category, temperature), ())),
            bytes.fromhex(key),
        )
        for biobank, category, temperature, patients, samples, specimens, aliquots, key in db.execute(
            _CELLS
        ).fetchall()
    ]
    (patients, samples, specimens, key) = db.execute(
        "SELECT count(DISTINCT patient_id), count(DISTINCT (patient_id, fine_type, collected)), count(*), "
        "sha256(coalesce(string_agg(id, chr(10) ORDER BY id), '')) FROM _selected"
    ).fetchone()
    by_biobank = tuple(
        BiobankCount(biobank, patients, bytes.fromhex(key))
        for biobank, patients, key in db.execute(
            "SELECT biobank, count(DISTINCT patient_id), sha256(string_agg(id, chr(10) ORDER BY id)) "
            "FROM _selected GROUP BY biobank ORDER BY biobank NULLS LAST"
        ).fetchall()
    )
    named = sorted({cell.biobank for cell in cells if cell.biobank is not None})
    biobanks = tuple(
        Biobank(*row)
        for row in db.execute(
            "SELECT id, name, bbmri_id, part_of_id FROM organization WHERE id IN (SELECT unnest(?)) ORDER BY id",
            [named],
        ).fetchall()
    )
    return SampleCounts(
        patients,
        samples,
        specimens,
        sum(cell.aliquots for cell in cells),
        tuple(cells),
        biobanks,
        by_biobank,
        bytes.fromhex(key),
    )
