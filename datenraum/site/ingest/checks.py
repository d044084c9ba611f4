"""What a load is told about, not refused for: resources that are stored but say something doubtful.

A specimen's diagnosis (`festgestellteDiagnose`) that is a Condition of another patient is such a case
(the MII KDS biobank test data has 16): the specimen is stored, the report warns, and sample searches by
diagnosis do not count it for that diagnosis (site/samples.py). The checks read the published generation,
restricted to the specimens of this load, so a warning is given once, by the load that brought it.
"""

from __future__ import annotations

from pathlib import Path

from datenraum.site.ingest.plan import kind_of, location
from datenraum.site.ingest.report import MAX_REPORTED_REJECTS, LoadWarning
from datenraum.site.store import Snapshot, parquet_listing

__all__ = ["cross_patient_diagnoses"]


def cross_patient_diagnoses(snapshot: Snapshot, load_id: str) -> tuple[int, list[LoadWarning]]:
    """How many specimens of load `load_id` have another patient's Condition as their diagnosis, and a
    warning for each of the first `MAX_REPORTED_REJECTS`."""
    files = [
        snapshot.store.path / file
        for segment in snapshot.manifest.segments
        if segment.id == load_id
        for file in segment.files.get("specimen", ())
    ]
    if not files:
        return 0, []
    db = snapshot.connection
    db.execute(
        f"""
        CREATE TEMP TABLE _cross_patient AS
        SELECT DISTINCT s.id, s.patient_id, s.diagnosis_id, c.patient_id AS owner
        FROM read_parquet({parquet_listing(files)}, union_by_name = true) s
        JOIN condition c ON c.id = s.diagnosis_id
        WHERE c.patient_id IS DISTINCT FROM s.patient_id
        """
    )
    (total,) = db.execute("SELECT count(*) FROM _cross_patient").fetchone()
    rows = db.execute(
        f"""
        SELECT x.id, x.patient_id, x.diagnosis_id, x.owner, r.source_file, r.source_line
        FROM _cross_patient x LEFT JOIN resource r ON r.resource_type = 'Specimen' AND r.id = x.id
        ORDER BY r.source_file, r.source_line, x.id LIMIT {MAX_REPORTED_REJECTS}
        """
    ).fetchall()
    return total, [
        LoadWarning(
            location(source_file, kind_of(Path(source_file)), source_line)
            if source_file
            else f"Specimen/{specimen}",
            f"Specimen/{specimen}: its diagnosis Condition/{condition} is of Patient/{owner}, "
            f"not of the specimen's Patient/{patient}",
        )
        for specimen, patient, condition, owner, source_file, source_line in rows
    ]
