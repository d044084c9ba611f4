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

import contextlib
import csv
import functools
import io
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from datenraum.extraction.crtdl import crtdl_to_json, file_slugs
from datenraum.extraction.plan import path_values

__all__ = ["JobFolder", "TableWriter", "open_atomically", "write_atomically"]

# Rows of a table written at once (a Parquet row group): the tables' share of the job's memory.
TABLE_ROW_GROUP = 10_000


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
    return _csv_body([header, *rows])


def _csv_body(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


@contextlib.contextmanager
def open_atomically(path: Path) -> Iterator[BinaryIO]:
    """A file to write `path` with, a portion at a time: a temporary file beside it, synced and renamed
    when the block ends without an error (after an error `path` is as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


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

    def _reports(self, job_id: str, batches: list[list[str]]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(batch id, report) of every batch in order, read one at a time."""
        for index in range(len(batches)):
            batch_id = self.batch_id(job_id, index)
            yield batch_id, orjson.loads((self.path / "batches" / f"{batch_id}.json").read_bytes())

    def finish(self, job_id: str, extractor: Any, batches: list[list[str]], cohort_ms: int) -> dict[str, Any]:
        """The files made of every batch's report: core.ndjson, the reports, the tables, the manifest.

        The reports are read twice, one at a time (never all at once: the job's memory does not grow
        with the cohort): first for the core resources the patients reference, the exclusions and the
        counts, then for the tables, whose rows begin with the core resources'."""
        plan = extractor.plan
        referenced: set[str] = set()
        final = 0
        exclusions: Counter = Counter()
        resource_exclusions: dict[str, Counter] = {}
        inclusions: Counter = Counter()
        reports = self.path / "reports"
        with (
            open_atomically(reports / "patient-exclusions.csv") as patient_csv,
            open_atomically(reports / "resource-exclusions.csv") as resource_csv,
            open_atomically(reports / "consent-explanations.ndjson") as explanations,
        ):
            patient_csv.write(_csv(["Batch-ID", "Stage", "Patient-ID"], []))
            resource_csv.write(
                _csv(["Batch-ID", "Reason", "Group", "Attribute", "Resource-ID", "Patient-ID"], [])
            )
            for batch_id, report in self._reports(job_id, batches):
                referenced.update(report["coreRefs"])
                final += report["patients"]
                patient_rows = [[batch_id, stage, patient] for stage, patient in report["patientExclusions"]]
                patient_csv.write(_csv_body(patient_rows))
                exclusions.update(stage for stage, _ in report["patientExclusions"])
                resource_csv.write(_csv_body([[batch_id, *row] for row in report["resourceExclusions"]]))
                for reason, group, *_ in report["resourceExclusions"]:
                    resource_exclusions.setdefault(group, Counter())[reason] += 1
                explanations.write(_ndjson([e for e in report["explanations"] if e.get("enforced")]))
                if "inclusions" in report:
                    inclusions.update(report["inclusions"])
                else:  # a batch written by an earlier version: counted from its Bundles
                    for bundle in _bundles(self._batch_files(batch_id)):
                        inclusions.update(e["resource"]["resourceType"] for e in bundle["entry"])
        core, _ = extractor.core_bundle(referenced)
        if core is not None:
            write_atomically(self.path / "core.ndjson", _ndjson([core]))
            inclusions.update(e["resource"]["resourceType"] for e in core["entry"])
        specs = table_specs(plan)
        with TableWriter(self.path, plan) as tables:
            if core is not None:
                tables.add_bundles([core], specs)
            for batch_id, report in self._reports(job_id, batches):
                if "tables" in report:
                    for group_id, group_rows in report["tables"].items():
                        tables.add(group_id, sorted(group_rows, key=_row_order))
                else:
                    tables.add_bundles(list(_bundles(self._batch_files(batch_id))), specs)
        job = orjson.loads((self.path / "job.json").read_bytes())
        summary = {
            "Job-ID": job_id,
            "Today": job["today"],
            "Num-Cohort-Patients": sum(len(b) for b in batches),
            "Num-Final-Patients": final,
            "Cohort-Query-Duration-Ms": job.get("cohortQueryMs", cohort_ms),
            "Patient-Exclusions": dict(sorted(exclusions.items())),
            "Resource-Exclusions": {
                g: dict(sorted(c.items())) for g, c in sorted(resource_exclusions.items())
            },
            "Resource-Inclusions": dict(sorted(inclusions.items())),
        }
        write_atomically(reports / "job-summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2))
        bundle_files = sorted(
            p
            for p in self.path.glob("*.ndjson")
            if not p.name.endswith("_consent.ndjson") and p.name != "core.ndjson"
        )
        outputs = [{"type": "NDJSON Bundle", "url": p.name} for p in bundle_files]
        if core:
            outputs.append({"type": "NDJSON Bundle", "url": "core.ndjson"})
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

    def _batch_files(self, batch_id: str) -> list[Path]:
        path = self.path / f"{batch_id}.ndjson"
        return [path] if path.exists() else []


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
        for path, getters in self.by_path:
            values = path_values(resource, path)
            for getter in getters:
                value = getter(values[0]) if values else None
                cells.append(None if value is None else str(value))
        return cells

    @functools.cached_property
    def by_path(self) -> list[tuple[Any, list[Any]]]:
        """The getters of each attribute's columns (one path, read once per row), in column order."""
        grouped: list[tuple[Any, list[Any]]] = []
        for path, getter in self.getters:
            if grouped and grouped[-1][0] is path:
                grouped[-1][1].append(getter)
            else:
                grouped.append((path, [getter]))
        return grouped


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


def _row_order(row: list[str | None]) -> tuple[str, str]:
    """Table rows by patient (shared resources, of no patient, first), then id."""
    return (row[1] or "", row[0] or "")


class TableWriter:
    """Per group a Parquet and a CSV table, written a portion at a time in the order the rows are
    added, and the data dictionary; the files appear (renamed into place) when the writer closes
    without an error."""

    def __init__(self, folder: Path, plan: Any) -> None:
        self.folder = folder / "tables"
        self.plan = plan
        self.specs = table_specs(plan)
        self.slugs = file_slugs(plan.crtdl)
        self.pending: dict[str, list[list[str | None]]] = {group.id: [] for group in plan.groups}
        self.parquet: dict[str, Any] = {}
        self.csv: dict[str, Any] = {}

    def __enter__(self) -> TableWriter:
        import pyarrow.parquet as pq

        self.folder.mkdir(parents=True, exist_ok=True)
        for group_id in self.pending:
            slug = self.slugs[group_id]
            columns = self.specs[group_id].columns
            self.parquet[group_id] = pq.ParquetWriter(self._tmp(f"{slug}.parquet"), _schema(columns))
            handle = open(self._tmp(f"{slug}.csv"), "wb")  # closed in __exit__
            handle.write(_csv(columns, []))
            self.csv[group_id] = handle
        return self

    def _tmp(self, name: str) -> Path:
        return self.folder / f".{name}.tmp"

    def add(self, group_id: str, rows: list[list[str | None]]) -> None:
        pending = self.pending[group_id]
        pending.extend(rows)
        if len(pending) >= TABLE_ROW_GROUP:
            self._flush(group_id)

    def add_bundles(self, bundles: list[dict[str, Any]], specs: dict[str, TableSpec]) -> None:
        """The rows of written Bundles, in the table order."""
        rows: dict[str, list[list[str | None]]] = {}
        for bundle in bundles:
            bundle_rows(bundle, specs, rows)
        for group_id, group_rows in rows.items():
            self.add(group_id, sorted(group_rows, key=_row_order))

    def _flush(self, group_id: str) -> None:
        import pyarrow as pa

        rows = self.pending[group_id]
        if not rows:
            return
        columns = self.specs[group_id].columns
        self.parquet[group_id].write_table(
            pa.table({n: pa.array([r[i] for r in rows], type=pa.string()) for i, n in enumerate(columns)})
        )
        self.csv[group_id].write(_csv_body(rows))
        self.pending[group_id] = []

    def __exit__(self, kind: Any, error: Any, trace: Any) -> None:
        for group_id in self.pending:
            if kind is None:
                self._flush(group_id)
            self.parquet[group_id].close()
            handle = self.csv[group_id]
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        if kind is not None:
            for group_id in self.pending:
                for name in (f"{self.slugs[group_id]}.parquet", f"{self.slugs[group_id]}.csv"):
                    self._tmp(name).unlink(missing_ok=True)
            return
        dictionary = []
        for group in self.plan.groups:
            slug = self.slugs[group.id]
            for name in (f"{slug}.parquet", f"{slug}.csv"):
                os.replace(self._tmp(name), self.folder / name)
            dictionary.extend([group.id, slug, *d] for d in self.specs[group.id].described)
        write_atomically(
            self.folder / "data-dictionary.csv",
            _csv(["group", "table", "column", "type", "attributeRef", "description"], dictionary),
        )


def _schema(columns: list[str]) -> Any:
    import pyarrow as pa

    return pa.schema([(name, pa.string()) for name in columns])


def write_tables(folder: Path, plan: Any, rows: dict[str, list[list[str | None]]]) -> None:
    """Per group a Parquet and a CSV table of `rows` (ordered by patient and id), and the data
    dictionary."""
    with TableWriter(folder, plan) as tables:
        for group_id, group_rows in rows.items():
            tables.add(group_id, sorted(group_rows, key=_row_order))
