"""Reading one piece of input (an NDJSON byte range, a gzip file, a JSON file) into staging Parquet.

This is the hot path of the ingest: it runs in worker processes, one task at a time, and does the
parsing, validation and flattening. It never decides what is replaced, deleted or dangling; it only
records what it read (keys, load order, patient references) for the commit to decide with the whole
load in view.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from datenraum.fhir.bundle import BundleEntryError, read_bundle
from datenraum.fhir.references import resolve_reference
from datenraum.fhir.resource_types import R4_RESOURCE_TYPES
from datenraum.fhir.viewdef import CompiledView, Resolver, standard_views
from datenraum.site.store import RAW_TABLE, table_schemas

__all__ = ["MAX_BUNDLE_BYTES", "MAX_RESOURCE_BYTES", "Reject", "Task", "TaskResult", "run_task"]

MAX_RESOURCE_BYTES = 64 * 1024 * 1024
MAX_BUNDLE_BYTES = 1024 * 1024 * 1024
ROWS_PER_ROW_GROUP = 100_000
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}\Z")
# Where resources of the patient compartment name their patient.
_PATIENT_ELEMENTS = ("subject", "patient")


@dataclass(frozen=True)
class Task:
    index: int
    path: str
    kind: str  # "ndjson", "ndjson.gz" or "json"
    offset: int = 0
    length: int = -1
    first_line: int = 1
    staging: str = ""

    @property
    def seq_base(self) -> int:
        return self.index << 32


@dataclass(frozen=True)
class Reject:
    location: str
    reason: str


@dataclass
class TaskResult:
    index: int
    accepted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)
    patient_references: set[str] = field(default_factory=set)
    deletes: list[tuple[str, str, int, str]] = field(default_factory=list)  # type, key, seq, location
    files: dict[str, list[str]] = field(default_factory=dict)
    lines: int = 0


class _TableBuffer:
    """Rows of one table, written out as Parquet row groups as they fill up."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows: list[tuple] = []
        self.writer: pq.ParquetWriter | None = None

    def flush(self) -> None:
        if not self.rows:
            return
        columns = list(zip(*self.rows, strict=True))
        arrays = [pa.array(column, type=f.type) for column, f in zip(columns, self.schema, strict=True)]
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self.writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows = []

    def close(self) -> bool:
        self.flush()
        if self.writer is not None:
            self.writer.close()
            return True
        return False


class _TaskWriter:
    """Validates and flattens resources of one task into per-table buffers."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.result = TaskResult(task.index)
        self.views: dict[str, list[CompiledView]] = {}
        for view in standard_views().values():
            self.views.setdefault(view.resource, []).append(view)
        schemas = table_schemas()
        staging = Path(task.staging)
        self.buffers = {
            table: _TableBuffer(staging / table / f"t{task.index:06d}.parquet", schema)
            for table, schema in schemas.items()
        }
        self.raw = self.buffers[RAW_TABLE]
        self.view_buffers = {view.name: self.buffers[view.name] for view in standard_views().values()}
        self.rejects_file = None

    def reject(self, location: str, reason: str, raw: bytes | str, resource_type: str = "(unknown)") -> None:
        result = self.result
        result.rejected[resource_type] = result.rejected.get(resource_type, 0) + 1
        if len(result.rejects) < 1000:
            result.rejects.append(Reject(location, reason))
        if self.rejects_file is None:
            path = Path(self.task.staging) / "rejects" / f"t{self.task.index:06d}.ndjson"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.rejects_file = open(path, "wb")
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        self.rejects_file.write(orjson.dumps({"location": location, "reason": reason, "resource": text}) + b"\n")

    def accept(self, resource: Any, raw: bytes | str, line: int, location: str, resolve: Resolver) -> None:
        if type(resource) is not dict:
            self.reject(location, "a resource must be a JSON object", raw)
            return
        resource_type = resource.get("resourceType")
        if type(resource_type) is not str:
            self.reject(location, "resource has no resourceType", raw)
            return
        if resource_type not in R4_RESOURCE_TYPES or resource_type == "Bundle":
            reason = f"unknown resource type {resource_type!r} (not a FHIR R4 resource)"
            if resource_type == "Bundle":
                reason = "a Bundle inside NDJSON is not supported; give Bundles as .json files"
            self.reject(location, reason, raw, resource_type)
            return
        resource_id = resource.get("id")
        if type(resource_id) is not str or not _ID.match(resource_id):
            reason = "resource has no id" if resource_id is None else f"id {resource_id!r} is not a valid FHIR id"
            self.reject(location, reason, raw, resource_type)
            return
        seq = self.task.seq_base + line
        try:
            if resource_type == "Patient":
                patient_id = resource_id
            else:
                patient_id = None
                for element in _PATIENT_ELEMENTS:
                    value = resource.get(element)
                    if value is not None:
                        patient_id = resolve(value, "Patient")
                        break
            flattened = [(view, view.rows(resource, resolve)) for view in self.views.get(resource_type, ())]
        except Exception:
            self.reject(location, self._explain(resource, resolve), raw, resource_type)
            return
        for view, rows in flattened:
            buffer = self.view_buffers[view.name]
            buffer.rows.extend(row + (seq,) for row in rows)
            if len(buffer.rows) >= ROWS_PER_ROW_GROUP:
                buffer.flush()
        text = raw.decode() if isinstance(raw, bytes) else raw
        self.raw.rows.append((resource_type, resource_id, patient_id, self.task.path, line, seq, text))
        if len(self.raw.rows) >= ROWS_PER_ROW_GROUP:
            self.raw.flush()
        result = self.result
        result.accepted[resource_type] = result.accepted.get(resource_type, 0) + 1
        if resource_type == "Patient":
            result.patients.add(resource_id)
        elif patient_id is not None:
            result.patient_references.add(patient_id)

    def _explain(self, resource: dict, resolve: Resolver) -> str:
        for element in _PATIENT_ELEMENTS:
            value = resource.get(element)
            if value is not None:
                try:
                    resolve(value, "Patient")
                except Exception as error:
                    return f"{resource['resourceType']}.{element}: {error}"
        for view in self.views.get(resource["resourceType"], ()):
            try:
                view.rows(resource, resolve)
            except Exception:
                return view.explain(resource, resolve)
        return "resource could not be read"

    def delete(self, resource_type: str, key: str, line: int, location: str) -> None:
        self.result.deletes.append((resource_type, key, self.task.seq_base + line, location))

    def close(self) -> TaskResult:
        for table, buffer in self.buffers.items():
            if buffer.close():
                self.result.files[table] = [str(buffer.path)]
        if self.rejects_file is not None:
            self.rejects_file.close()
        return self.result


def _ndjson_lines(task: Task) -> Iterable[tuple[int, bytes]]:
    if task.kind == "ndjson.gz":
        with gzip.open(task.path, "rb") as handle:
            yield from enumerate(handle, start=task.first_line)
        return
    with open(task.path, "rb") as handle:
        handle.seek(task.offset)
        data = handle.read(task.length)
    yield from enumerate(data.split(b"\n"), start=task.first_line)


def _run_ndjson(task: Task, writer: _TaskWriter) -> None:
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    path = task.path
    for line_number, line in _ndjson_lines(task):
        writer.result.lines += 1
        if not line or line.isspace():
            continue
        location = f"{path}:{line_number}"
        if len(line) > MAX_RESOURCE_BYTES:
            writer.reject(location, f"resource is larger than {MAX_RESOURCE_BYTES} bytes", line[:1024])
            continue
        try:
            resource = loads(line)
        except decode_error as error:
            writer.reject(location, f"malformed JSON: {error}", line)
            continue
        writer.accept(resource, line.rstrip(b"\r\n"), line_number, location, resolve_reference)


def _run_json(task: Task, writer: _TaskWriter) -> None:
    path = Path(task.path)
    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        writer.reject(f"{path}", f"JSON file of {size} bytes is over {MAX_BUNDLE_BYTES}; send NDJSON instead", b"")
        return
    data = path.read_bytes()
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        writer.reject(f"{path}:{error.lineno}:{error.colno}", f"malformed JSON: {error.msg}", data[:1_000_000])
        return
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        writer.accept(document, data.decode("utf-8", "replace"), 1, f"{path}", resolve_reference)
        return
    try:
        operations, resolver = read_bundle(document)
    except BundleEntryError as error:
        writer.reject(f"{path}", str(error), b"")
        return
    for operation in operations:
        location = f"{path}: Bundle.entry[{operation.position}]"
        line = operation.position + 1
        if operation.error is not None:
            writer.reject(location, operation.error, b"")
        elif operation.resource is not None:
            raw = orjson.dumps(operation.resource)
            writer.accept(operation.resource, raw, line, location, resolver)
        else:
            writer.delete(operation.delete_type, operation.delete_key, line, location)


def run_task(task: Task) -> TaskResult:
    """Read one task's input into its staging files (runs in a worker process)."""
    writer = _TaskWriter(task)
    try:
        if task.kind == "json":
            _run_json(task, writer)
        else:
            _run_ndjson(task, writer)
    except (OSError, EOFError, zlib.error) as error:
        writer.reject(task.path, f"could not read the file: {error}", b"")
    return writer.close()

