"""The job folder (TORCH's layout, brief R-OUTPUT) and the analysis tables.

    job.json                     the job: id, status, today, recorded, the CRTDL (v1), the cohort
    {batchId}.ndjson             one transaction Bundle per patient (PUT Type/id, a Provenance per group)
    {batchId}_consent.ndjson     per patient a collection Bundle of the Consents and Encounters decided on
    core.ndjson                  one transaction Bundle of the shared resources (load it first)
    batches/{batchId}.json       what a batch found (exclusions, core references): written last, so a
                                 batch with this file is complete and a resumed job skips it
    reports/job-summary.json     counts; Num-Cohort-Patients = Num-Final-Patients + patient exclusions
    reports/patient-exclusions.csv   Batch-ID,Stage,Patient-ID
    reports/resource-exclusions.csv  Batch-ID,Reason,Group,Attribute,Resource-ID,Patient-ID
    reports/consent-explanations.ndjson  per patient: provisions, gate, window, dropped resources, why
    tables/{slug}.parquet, tables/{slug}.csv   per group one row per extracted resource
    tables/data-dictionary.csv   group, column, attributeRef, FHIR type, description
    manifest.json                the bulk-data style manifest (what GET __status returns)

Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import csv
import io
import os
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from datenraum.extraction.crtdl import crtdl_to_json, file_slugs
from datenraum.extraction.plan import path_values

__all__ = ["JobFolder", "write_atomically"]


def write_atomically(path: Path, data: bytes) -> None:
    """`data` at `path`, all or nothing (a temporary file beside it, synced and renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _ndjson(items: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


class JobFolder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def open(
        self, job_id: str, prepared: Any, cohort: list[str], options: Any, cohort_ms: int = 0
    ) -> dict[str, Any]:
        import datetime as dt

        job_file = self.path / "job.json"
        if job_file.exists():
            job = orjson.loads(job_file.read_bytes())
            if job["id"] != job_id:
                raise FileExistsError(f"{self.path} holds another job ({job['id']}); choose an empty folder")
            return job
        if self.path.exists() and any(not p.name.startswith(".") for p in self.path.iterdir()):
            raise FileExistsError(f"{self.path} is not empty and holds no job")
        job = {
            "id": job_id,
            "status": "RUNNING_PROCESS_BATCH",
            "today": prepared.today.isoformat(),
            "recorded": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "batchSize": options.batch_size,
            "cohortQueryMs": cohort_ms,
            "consentCodes": prepared.consent_codes,
            "warnings": prepared.plan.warnings,
            "crtdl": crtdl_to_json(prepared.crtdl),
            "cohort": cohort,
        }
        write_atomically(job_file, orjson.dumps(job, option=orjson.OPT_INDENT_2))
        return job

    @staticmethod
    def batch_id(job_id: str, index: int) -> str:
        return str(uuid.uuid5(uuid.UUID(job_id), f"batch-{index}"))

    def has_batch(self, batch_id: str) -> bool:
        return (self.path / "batches" / f"{batch_id}.json").exists()

    def write_batch(self, batch_id: str, result: Any) -> None:
        if result.bundles:
            write_atomically(self.path / f"{batch_id}.ndjson", _ndjson(result.bundles))
        if result.consent_bundles:
            write_atomically(self.path / f"{batch_id}_consent.ndjson", _ndjson(result.consent_bundles))
        report = {
            "patients": len(result.bundles),
            "patientExclusions": result.patient_exclusions,
            "resourceExclusions": result.resource_exclusions,
            "coreRefs": result.core_refs,
            "explanations": result.explanations,
            "inclusions": result.inclusions,
            "tables": result.rows,
        }
        write_atomically(self.path / "batches" / f"{batch_id}.json", orjson.dumps(report))

    def finish(self, job_id: str, extractor: Any, batches: list[list[str]], cohort_ms: int) -> dict[str, Any]:
        plan = extractor.plan
        reports = []
        for index in range(len(batches)):
            batch_id = self.batch_id(job_id, index)
            reports.append(
                (batch_id, orjson.loads((self.path / "batches" / f"{batch_id}.json").read_bytes()))
            )
        referenced = {ref for _, r in reports for ref in r["coreRefs"]}
        core, _ = extractor.core_bundle(referenced)
        if core is not None:
            write_atomically(self.path / "core.ndjson", _ndjson([core]))
        patient_rows = [[b, stage, patient] for b, r in reports for stage, patient in r["patientExclusions"]]
        resource_rows = [
            [b, *row[:2], row[2], row[3], row[4]] for b, r in reports for row in r["resourceExclusions"]
        ]
        write_atomically(
            self.path / "reports" / "patient-exclusions.csv",
            _csv(["Batch-ID", "Stage", "Patient-ID"], patient_rows),
        )
        write_atomically(
            self.path / "reports" / "resource-exclusions.csv",
            _csv(["Batch-ID", "Reason", "Group", "Attribute", "Resource-ID", "Patient-ID"], resource_rows),
        )
        write_atomically(
            self.path / "reports" / "consent-explanations.ndjson",
            _ndjson([e for _, r in reports for e in r["explanations"] if e.get("enforced")]),
        )
        cohort_size = sum(len(b) for b in batches)
        final = sum(r["patients"] for _, r in reports)
        exclusions = Counter(
            stage
            for _, _, stage in ((b, s, st) for b, s, st in ((row[0], row[2], row[1]) for row in patient_rows))
        )
        resource_exclusions: dict[str, Counter] = {}
        for row in resource_rows:
            resource_exclusions.setdefault(row[2], Counter())[row[1]] += 1
        inclusions: Counter = Counter()
        bundle_files = sorted(
            p
            for p in self.path.glob("*.ndjson")
            if not p.name.endswith("_consent.ndjson") and p.name != "core.ndjson"
        )
        specs = table_specs(plan)
        rows: dict[str, list[list[str | None]]] = {}
        if all("tables" in r and "inclusions" in r for _, r in reports):
            for _, report in reports:
                inclusions.update(report["inclusions"])
                for group_id, group_rows in report["tables"].items():
                    rows.setdefault(group_id, []).extend(group_rows)
            written = [core] if core else []
        else:  # batches written by an earlier version: read the bundles back
            written = _bundles(bundle_files + ([self.path / "core.ndjson"] if core else []))
        for bundle in written:
            for entry in bundle["entry"]:
                inclusions[entry["resource"]["resourceType"]] += 1
            bundle_rows(bundle, specs, rows)
        summary = {
            "Job-ID": job_id,
            "Today": orjson.loads((self.path / "job.json").read_bytes())["today"],
            "Num-Cohort-Patients": cohort_size,
            "Num-Final-Patients": final,
            "Cohort-Query-Duration-Ms": orjson.loads((self.path / "job.json").read_bytes()).get(
                "cohortQueryMs", cohort_ms
            ),
            "Patient-Exclusions": dict(sorted(exclusions.items())),
            "Resource-Exclusions": {
                g: dict(sorted(c.items())) for g, c in sorted(resource_exclusions.items())
            },
            "Resource-Inclusions": dict(sorted(inclusions.items())),
        }
        write_atomically(
            self.path / "reports" / "job-summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2)
        )
        write_tables(self.path, plan, rows)
        outputs = [{"type": "NDJSON Bundle", "url": p.name} for p in bundle_files]
        if core:
            outputs.append({"type": "NDJSON Bundle", "url": "core.ndjson"})
        job = orjson.loads((self.path / "job.json").read_bytes())
        manifest = {
            "transactionTime": job["recorded"],
            "request": "$extract-data",
            "requiresAccessToken": False,
            "output": outputs,
            "error": [],
            "extension": [
                {"url": "torch-job-diagnostics-summary", "valueString": "reports/job-summary.json"},
                {"url": "torch-resource-exclusions", "valueString": "reports/resource-exclusions.csv"},
                {"url": "torch-patient-exclusions", "valueString": "reports/patient-exclusions.csv"},
                {
                    "url": "datenraum-consent-explanations",
                    "valueString": "reports/consent-explanations.ndjson",
                },
                {"url": "datenraum-tables", "valueString": "tables/data-dictionary.csv"},
            ],
        }
        write_atomically(self.path / "manifest.json", orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        job["status"] = "COMPLETED"
        write_atomically(self.path / "job.json", orjson.dumps(job, option=orjson.OPT_INDENT_2))
        return summary


def _bundles(files: list[Path]):
    for path in files:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)


# --- tables ----------------------------------------------------------------------------------------


def _columns(path: Any) -> list[tuple[str, str, Any]]:
    """(column suffix, type, extractor) of one attribute: codes as system/code/display of the first
    coding, quantities as value/unit/code, periods as start/end, references as the reference,
    primitives as the value, anything else as JSON."""
    types = path.types
    kind = types[0] if len(types) == 1 else "choice"

    def first(values):
        return values[0] if values else None

    if kind == "CodeableConcept":

        def coding(v, k):
            c = first((v or {}).get("coding", [])) if isinstance(v, dict) else None
            return c.get(k) if isinstance(c, dict) else None

        return [(s, "string", (lambda k: lambda v: coding(v, k))(s)) for s in ("system", "code", "display")]
    if kind == "Coding":
        return [
            (s, "string", (lambda k: lambda v: v.get(k) if isinstance(v, dict) else None)(s))
            for s in ("system", "code", "display")
        ]
    if kind in ("Quantity", "Age", "Duration"):
        return [
            (s, "string", (lambda k: lambda v: v.get(k) if isinstance(v, dict) else None)(s))
            for s in ("value", "unit", "code")
        ]
    if kind == "Period":
        return [
            (s, "string", (lambda k: lambda v: v.get(k) if isinstance(v, dict) else None)(s))
            for s in ("start", "end")
        ]
    if kind == "Reference":
        return [("reference", "string", lambda v: v.get("reference") if isinstance(v, dict) else None)]
    if kind[:1].islower() and kind != "choice":
        return [("", kind, lambda v: v if not isinstance(v, dict) else None)]
    return [("json", "json", lambda v: orjson.dumps(v).decode() if v is not None else None)]


@dataclass
class TableSpec:
    """One group's table, compiled once per job: its columns and how each is read from a resource."""

    group: Any
    columns: list[str]
    described: list[tuple[str, str, str, str]]
    getters: list[tuple[Any, Any]]  # (element path, value -> cell) per attribute column

    def row(self, patient: str | None, resource: dict[str, Any]) -> list[str | None]:
        group = self.group
        cells: list[str | None] = [
            resource["id"],
            patient if group.profile.patient_reference or group.is_patient else None,
        ]
        for path, getter in self.getters:
            values = path_values(resource, path)
            value = getter(values[0]) if values else None
            cells.append(None if value is None else str(value))
        return cells


def table_specs(plan: Any) -> dict[str, TableSpec]:
    from datenraum.extraction.crtdl import slugify

    specs = {}
    for group in plan.groups:
        if group.id in specs:
            continue
        columns = ["id", "patient_id"]
        described = [("id", "id", f"{group.type}.id", "the resource's id")]
        described.append(("patient_id", "id", "", "the patient's id (empty for shared resources)"))
        getters = []
        for path, attribute in group.attributes:
            base = slugify(attribute.ref.split(".", 1)[1].replace("[x]", ""))
            for suffix, kind, getter in _columns(path):
                name = f"{base}_{suffix}" if suffix else base
                while name in columns:
                    name += "_"
                columns.append(name)
                getters.append((path, getter))
                described.append((name, kind, attribute.ref, f"{suffix or 'value'} of {attribute.ref}"))
        specs[group.id] = TableSpec(group, columns, described, getters)
    return specs


def bundle_rows(
    bundle: dict[str, Any], specs: dict[str, TableSpec], rows: dict[str, list[list[str | None]]]
) -> None:
    """Add the table rows of one written Bundle (one per Provenance target: the group's resources)."""
    resources = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"]
    }
    patient = next((r["id"] for r in resources.values() if r["resourceType"] == "Patient"), None)
    for resource in resources.values():
        if resource["resourceType"] != "Provenance":
            continue
        group_id = next(
            (
                e["what"]["identifier"]["value"]
                for e in resource.get("entity", [])
                if e["what"]["identifier"]["system"].endswith("attribute_group")
            ),
            None,
        )
        if group_id not in specs:
            continue
        for target in resource.get("target", []):
            if target["reference"] in resources:
                rows.setdefault(group_id, []).append(
                    specs[group_id].row(patient, resources[target["reference"]])
                )


def write_tables(folder: Path, plan: Any, rows: dict[str, list[list[str | None]]]) -> None:
    """Per group a Parquet and a CSV table (one row per extracted resource of the group, ordered by
    patient and id), and the data dictionary."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    slugs = file_slugs(plan.crtdl)
    specs = table_specs(plan)
    dictionary = []
    for group in plan.groups:
        spec = specs[group.id]
        ordered = sorted(rows.get(group.id, ()), key=lambda r: (r[1] or "", r[0]))
        table = pa.table(
            {name: pa.array([r[i] for r in ordered], type=pa.string()) for i, name in enumerate(spec.columns)}
        )
        slug = slugs[group.id]
        tmp = folder / "tables" / f".{slug}.parquet.tmp"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, folder / "tables" / f"{slug}.parquet")
        write_atomically(folder / "tables" / f"{slug}.csv", _csv(spec.columns, ordered))
        dictionary.extend([group.id, slug, *d] for d in spec.described)
    write_atomically(
        folder / "tables" / "data-dictionary.csv",
        _csv(["group", "table", "column", "type", "attributeRef", "description"], dictionary),
    )
