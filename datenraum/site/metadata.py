"""The site's answer to a `site-metadata` task: what the FAIR catalogue says about this site's data.

Everything is computed inside the site on one snapshot and leaves it only under the disclosure rules of
`datenraum.privacy.metadata` (rounded counts, typical ages in 5-year bins, coverage years with enough
patients). The table descriptions come from the standard views (`fhir/views/*.json`), not from the data.
"""

from __future__ import annotations

import datetime as dt

from datenraum.fhir.viewdef.model import standard_view_definitions
from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.privacy.metadata import coverage_years, disclosed_count, held_by_enough, typical_ages
from datenraum.protocol.messages import BiobankListing, SiteMetadata, TableDescription
from datenraum.site.samples import SampleCell, sample_counts
from datenraum.site.store import RAW_TABLE, Snapshot

__all__ = ["biobank_listings", "site_metadata", "table_descriptions"]

# Tables whose `code_system` column names the coding systems the store's data use.
_CODED = ("condition", "observation", "procedure", "diagnostic_report", "medication", "specimen")
_SYSTEM_COLUMN = {"specimen": "type_system"}


def table_descriptions() -> tuple[TableDescription, ...]:
    """The store's flattened tables (one per standard view) with their columns."""
    return tuple(
        TableDescription(
            view.name,
            view.description or f"One row per {view.resource} resource.",
            tuple(
                (column.name, column.type, f"FHIR {view.resource}: {column.source}")
                for column in view.columns
            ),
        )
        for view in standard_view_definitions()
    )


def site_metadata(
    snapshot: Snapshot, policy: ObfuscationPolicy, today: dt.date | None = None
) -> SiteMetadata:
    today = today or dt.date.today()
    db = snapshot.connection
    patients = db.execute("SELECT count(DISTINCT id) FROM patient").fetchone()[0]
    records = db.execute(f"SELECT count(*) FROM {RAW_TABLE}").fetchone()[0]
    ages = [
        row[0]
        for row in db.execute(
            "SELECT date_diff('year', birth_date, ?::DATE) FROM patient WHERE birth_date IS NOT NULL", [today]
        ).fetchall()
        if row[0] is not None and row[0] >= 0
    ]
    per_year = dict(
        db.execute(
            "SELECT year(period_start), count(DISTINCT patient_id) FROM encounter "
            "WHERE period_start IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    systems: set[str] = set()
    for table in _CODED:
        column = _SYSTEM_COLUMN.get(table, "code_system")
        query = f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL"
        systems.update(row[0] for row in db.execute(query).fetchall())
    age_range = typical_ages(ages, policy)
    years = coverage_years(per_year, policy)
    return SiteMetadata(
        generation=snapshot.generation,
        patients=disclosed_count(patients, policy),
        records=disclosed_count(records, policy),
        min_age=age_range[0] if age_range else None,
        max_age=age_range[1] if age_range else None,
        first_year=years[0] if years else None,
        last_year=years[1] if years else None,
        coding_systems=tuple(sorted(systems)),
        tables=table_descriptions(),
        biobanks=biobank_listings(snapshot, policy),
    )


def biobank_listings(snapshot: Snapshot, policy: ObfuscationPolicy) -> tuple[BiobankListing, ...]:
    """The store's biobanks with available samples of enough patients, each with the sample categories
    and temperature classes it holds for enough patients (`privacy.metadata.held_by_enough`)."""
    counts = sample_counts(snapshot)
    listed = set(
        held_by_enough({b.biobank: b.patients for b in counts.by_biobank if b.biobank is not None}, policy)
    )
    return tuple(
        BiobankListing(
            biobank.id,
            biobank.name or biobank.id,
            biobank.bbmri_id,
            biobank.part_of,
            held_by_enough(_largest(counts.cells, biobank.id, "category"), policy),
            held_by_enough(_largest(counts.cells, biobank.id, "temperature"), policy),
        )
        for biobank in sorted(counts.biobanks, key=lambda b: b.id)
        if biobank.id in listed
    )


def _largest(cells: tuple[SampleCell, ...], biobank: str, dimension: str) -> dict[str, int]:
    """Per value of `dimension` (category or temperature), the patients of its largest cell: a patient
    with samples in two cells of one category is in both, so the largest cell is the most that can be
    said without counting again, and never more than the category's patients."""
    largest: dict[str, int] = {}
    for cell in cells:
        if cell.biobank == biobank:
            value = getattr(cell, dimension)
            largest[value] = max(largest.get(value, 0), cell.patients)
    return largest
