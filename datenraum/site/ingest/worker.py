"""Reading pieces of input (NDJSON byte ranges, gzip files, JSON files) into staging Parquet.

This is the hot path of the ingest: it runs in worker processes, one task at a time, and does the
parsing, validation and flattening. It never decides what is replaced, deleted or dangling; it only
records what it read (keys, load order, patient references) for the commit to decide with the whole
load in view.

A task is a few pieces read into one set of staging files: many small Bundles make one task, so that
a folder of them does not become hundreds of tiny Parquet files.
"""

from __future__ import annotations

import gc
import gzip
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from datenraum.fhir.bundle import BundleEntryError, read_bundle
from datenraum.fhir.primitives import ID_CHARACTERS, MAX_ID_LENGTH
from datenraum.fhir.references import CONDITIONAL_PREFIX, resolve_reference
from datenraum.fhir.resource_types import R4_RESOURCE_TYPES
from datenraum.fhir.viewdef import CompiledView, Resolver, standard_views
from datenraum.site.ingest.strict import StrictReader
from datenraum.site.store import RAW_TABLE, table_schemas

__all__ = [
    "MAX_BUNDLE_BYTES",
    "MAX_REPORTED_REJECTS",
    "MAX_RESOURCE_BYTES",
    "Piece",
    "Reject",
    "Task",
    "TaskResult",
    "run_task",
]

MAX_RESOURCE_BYTES = 64 * 1024 * 1024
MAX_BUNDLE_BYTES = 1024 * 1024 * 1024
ROWS_PER_ROW_GROUP = 100_000
ROWS_PER_BATCH = 8192
# How much of a gzip stream is decompressed at a time, for the strict reader to read as one block.
BLOCK_BYTES = 16 * 1024 * 1024
# Rejects beyond this many are counted and written to the rejects file, but not kept in the report.
MAX_REPORTED_REJECTS = 1000
_BOM = b"\xef\xbb\xbf"  # editors on Windows start UTF-8 files with it; JSON parsers refuse it
# The resource types stored, each mapped to one canonical str object; Bundles are read as files only.
_RESOURCE_TYPES = {name: name for name in R4_RESOURCE_TYPES if name != "Bundle"}
# Where resources of the patient compartment name their patient.
_PATIENT_ELEMENTS = ("subject", "patient")
# Unique per row, so dictionary pages and min/max statistics would only cost time.
_PLAIN_COLUMNS = frozenset({"json"})
# Unique or nearly so: a dictionary would be as big as the values, and costs time until Parquet gives up on it.
_UNDICTIONARIED_COLUMNS = _PLAIN_COLUMNS | {"id"}


@dataclass(frozen=True)
class Piece:
    """A file, or a byte range of an NDJSON file that starts at line `first_line`."""

    index: int  # unique within the load; the high bits of the load order `_seq` of what it holds
    path: str
    kind: str  # "ndjson", "ndjson.gz" or "json"
    offset: int = 0
    length: int = -1
    first_line: int = 1

    @property
    def seq_base(self) -> int:
        return self.index << 32

    def location(self, line: int) -> str:
        """Where line `line` is, in the words of a reject: file:line, or the Bundle entry (line - 1)."""
        if self.kind != "json":
            return f"{self.path}:{line}"
        return f"{self.path}: Bundle.entry[{line - 1}]" if line else self.path


@dataclass(frozen=True)
class Task:
    index: int
    pieces: tuple[Piece, ...]
    staging: str
    max_resource_bytes: int = MAX_RESOURCE_BYTES
    strict_reader: bool = True  # False: every NDJSON line by the row-by-row reader, to compare or diagnose


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
    # Patients named only by identifier (placeholders): the commit looks them up with the whole load in view.
    conditional_references: set[str] = field(default_factory=set)
    deletes: list[tuple[str, str, int, str]] = field(default_factory=list)  # type, key, seq, location
    # Conditional updates of patients: provisional id, identifier placeholder, seq, location.
    conditional_updates: list[tuple[str, str, int, str]] = field(default_factory=list)
    files: dict[str, list[str]] = field(default_factory=dict)


class _TableBuffer:
    """Rows of one table: converted to Arrow in small batches, written out as Parquet row groups.

    Small batches matter for speed: the values of freshly parsed resources are scattered over the heap,
    and Arrow copies them markedly faster while they are still in the CPU cache.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        # JSON text stays bytes as read (orjson has checked it is UTF-8): Arrow turns bytes into strings
        # ten times faster by way of binary than directly.
        self.row_type = pa.struct(
            [f.with_type(pa.binary()) if f.name in _PLAIN_COLUMNS else f for f in schema]
        )
        self.rows: list[tuple] = []
        self.batches: list[pa.RecordBatch] = []
        self.pending = 0  # rows in `batches`
        self.writer: pq.ParquetWriter | None = None

    def convert(self) -> None:
        """Turn the buffered rows into an Arrow batch, and write a row group once enough are together."""
        if self.rows:
            # Arrow reads the row tuples as structs in one pass, faster than transposing them in Python.
            rows = pa.array(self.rows, type=self.row_type)
            arrays = [
                c if c.type == f.type else c.cast(f.type)
                for c, f in zip(rows.flatten(), self.schema, strict=True)
            ]
            self.batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
            self.pending += len(self.rows)
            self.rows = []
        if self.pending >= ROWS_PER_ROW_GROUP:
            self.write()

    def extend(self, batch: pa.RecordBatch) -> None:
        """Add rows that arrive as Arrow already (from the strict reader)."""
        self.convert()
        self.batches.append(batch)
        self.pending += batch.num_rows
        if self.pending >= ROWS_PER_ROW_GROUP:
            self.write()

    def write(self) -> None:
        if not self.batches:
            return
        if self.writer is None:
            names = self.schema.names
            self.writer = pq.ParquetWriter(
                self.path,
                self.schema,
                # Raw JSON is moved into the store as written; the flattened tables are read once, by
                # the commit, which costs less uncompressed.
                compression="zstd" if "json" in names else "none",
                use_dictionary=[name for name in names if name not in _UNDICTIONARIED_COLUMNS],
                write_statistics=[name for name in names if name not in _PLAIN_COLUMNS],
            )
        self.writer.write_table(pa.Table.from_batches(self.batches), row_group_size=ROWS_PER_ROW_GROUP)
        self.batches, self.pending = [], 0

    def close(self) -> bool:
        self.convert()
        self.write()
        if self.writer is not None:
            self.writer.close()
            return True
        return False


class _TaskWriter:
    """Validates and flattens resources of one task into per-table buffers."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.result = TaskResult(task.index)
        self.piece = task.pieces[0]
        self.seq_base = self.piece.seq_base
        staging = Path(task.staging)
        self.buffers = {
            table: _TableBuffer(staging / f"{table}.t{task.index:06d}.parquet", schema)
            for table, schema in table_schemas().items()
        }
        self.raw = self.buffers[RAW_TABLE]
        self.views: dict[str, list[tuple[CompiledView, _TableBuffer]]] = {}
        for view in standard_views().values():
            self.views.setdefault(view.resource, []).append((view, self.buffers[view.name]))
        self.rejects_file: BinaryIO | None = None
        self.strict = (
            StrictReader(lambda table, batch: self.buffers[table].extend(batch))
            if task.strict_reader
            else None
        )

    def reject(self, location: str, reason: str, raw: bytes, resource_type: str = "(unknown)") -> None:
        result = self.result
        result.rejected[resource_type] = result.rejected.get(resource_type, 0) + 1
        if len(result.rejects) < MAX_REPORTED_REJECTS:
            result.rejects.append(Reject(location, reason))
        if self.rejects_file is None:
            path = Path(self.task.staging) / f"rejects.t{self.task.index:06d}.ndjson"
            self.rejects_file = open(path, "wb")  # noqa: SIM115 - open for the whole task, closed in close()
        text = raw.decode("utf-8", "replace")
        self.rejects_file.write(
            orjson.dumps({"location": location, "reason": reason, "resource": text}) + b"\n"
        )

    def accept(self, resource: Any, raw: bytes, line: int, resolve: Resolver) -> None:
        """Validate and flatten one parsed resource; `raw` is its JSON text as stored."""
        if type(resource) is not dict:
            self.reject(self.piece.location(line), "a resource must be a JSON object", raw)
            return
        given_type = resource.get("resourceType")
        # The canonical str object: the type column then holds one object many times, which Arrow reads fastest.
        resource_type = _RESOURCE_TYPES.get(given_type) if type(given_type) is str else None
        resource_id = resource.get("id")
        if (
            resource_type is None
            or type(resource_id) is not str
            or resource_id.strip(ID_CHARACTERS)
            or not 0 < len(resource_id) <= MAX_ID_LENGTH
        ):
            self._reject_invalid(resource, raw, line)
            return
        seq = self.seq_base + line
        try:
            if resource_type == "Patient":
                patient_id = resource_id
            else:
                reference = resource.get("subject")  # the _PATIENT_ELEMENTS, spelt out on this hot path
                if reference is None:
                    reference = resource.get("patient")
                text = reference.get("reference") if type(reference) is dict else None
                # A relative `Patient/id` means the same to every resolver: read it here, leave the rest to it.
                if not (
                    type(text) is str
                    and text.startswith("Patient/")
                    and (patient_id := text[8:])
                    and "/" not in patient_id
                    and "?" not in patient_id
                ):
                    patient_id = None if reference is None else resolve(reference, "Patient")
            flattened = [
                (buffer, view.rows(resource, resolve, (seq,)))
                for view, buffer in self.views.get(resource_type, ())
            ]
        except Exception:
            self.reject(self.piece.location(line), self._explain(resource, resolve), raw, resource_type)
            return
        for buffer, rows in flattened:
            buffer.rows += rows
            if len(buffer.rows) >= ROWS_PER_BATCH:
                buffer.convert()
        raw_rows = self.raw.rows
        raw_rows.append((resource_type, resource_id, patient_id, self.piece.path, line, seq, raw))
        if len(raw_rows) >= ROWS_PER_BATCH:
            self.raw.convert()
        accepted = self.result.accepted
        accepted[resource_type] = accepted.get(resource_type, 0) + 1
        if patient_id is not None and patient_id.startswith(CONDITIONAL_PREFIX):
            self.result.conditional_references.add(patient_id)

    def _reject_invalid(self, resource: Any, raw: bytes, line: int) -> None:
        """Reject a resource whose type or id is missing or not valid, saying which."""
        resource_type = resource.get("resourceType")
        resource_id = resource.get("id")
        if type(resource_type) is not str:
            reason, resource_type = "resource has no resourceType", "(unknown)"
        elif resource_type == "Bundle":
            reason = "a Bundle inside NDJSON is not supported; give Bundles as .json files"
        elif resource_type not in _RESOURCE_TYPES:
            reason = f"unknown resource type {resource_type!r} (not a FHIR R4 resource)"
        elif resource_id is None:
            reason = "resource has no id"
        else:
            reason = (
                f"id {resource_id!r:.80} is not a valid FHIR id (1 to {MAX_ID_LENGTH} of A-Z a-z 0-9 - .)"
            )
        self.reject(self.piece.location(line), reason, raw, resource_type)

    def _explain(self, resource: dict, resolve: Resolver) -> str:
        for element in _PATIENT_ELEMENTS:
            value = resource.get(element)
            if value is not None:
                try:
                    resolve(value, "Patient")
                except Exception as error:
                    return f"{resource['resourceType']}.{element}: {error}"
        for view, _buffer in self.views.get(resource["resourceType"], ()):
            try:
                view.rows(resource, resolve)
            except Exception:
                return view.explain(resource, resolve)
        return "resource could not be read"

    def delete(self, resource_type: str, key: str, line: int) -> None:
        self.result.deletes.append((resource_type, key, self.seq_base + line, self.piece.location(line)))

    def conditional_update(self, provisional_id: str, placeholder: str, line: int) -> None:
        seq, location = self.seq_base + line, self.piece.location(line)
        self.result.conditional_updates.append((provisional_id, placeholder, seq, location))

    def close(self) -> TaskResult:
        for resource_type, count in (self.strict.accepted if self.strict else {}).items():
            self.result.accepted[resource_type] = self.result.accepted.get(resource_type, 0) + count
        for table, buffer in self.buffers.items():
            if buffer.close():
                self.result.files[table] = [str(buffer.path)]
        if self.rejects_file is not None:
            self.rejects_file.close()
        return self.result


def _ndjson_blocks(piece: Piece, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(first line number, whole lines) of the piece, in blocks of about BLOCK_BYTES; None for a line
    over the size limit, which a gzip stream skips rather than hold."""
    if piece.kind == "ndjson.gz":
        with gzip.open(piece.path, "rb") as handle:
            yield from _stream_blocks(handle, piece.first_line, limit)
        return
    with open(piece.path, "rb") as handle:
        handle.seek(piece.offset)
        data = handle.read(piece.length)
    yield piece.first_line, data.removeprefix(_BOM) if piece.offset == 0 else data


def _stream_blocks(handle: BinaryIO, first_line: int, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Blocks of whole lines of a stream, never holding more than about `limit` bytes of one line."""
    number, pending, skipping = first_line, b"", False
    while block := handle.read(BLOCK_BYTES):
        if number == first_line and not pending and not skipping:
            block = block.removeprefix(_BOM)
        if skipping:  # the rest of an over-long line
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping, number = block[end + 1 :], False, number + 1
        data = pending + block
        cut = data.rfind(b"\n") + 1
        if cut:
            yield number, data[:cut]
            number += data.count(b"\n", 0, cut)
        pending = data[cut:]
        if len(pending) > limit + 1:
            yield number, None
            pending, skipping = b"", True
    if pending and not skipping:
        yield number, pending


def _lines(block: bytes, first_line: int, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, line) of a block; None for a line over the size limit."""
    for number, line in enumerate(block.split(b"\n"), first_line):
        yield number, (line if len(line) <= limit else None)


def _run_ndjson(piece: Piece, writer: _TaskWriter) -> None:
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    limit = writer.task.max_resource_bytes
    for first_line, block in _ndjson_blocks(piece, limit):
        if block is None:
            writer.reject(piece.location(first_line), f"line is longer than the limit of {limit} bytes", b"")
            continue
        # The strict reader takes what it can; the rest, line by line, is for the row-by-row reader here.
        if writer.strict is not None:
            lines = writer.strict.read(block, first_line, piece.path, piece.seq_base, limit)
        else:
            lines = _lines(block, first_line, limit)
        for line_number, line in lines:
            if line is None:
                writer.reject(
                    piece.location(line_number), f"line is longer than the limit of {limit} bytes", b""
                )
                continue
            if not line or line.isspace():
                continue
            try:
                resource = loads(line)
            except decode_error as error:
                writer.reject(piece.location(line_number), f"malformed JSON: {error}", line)
                continue
            writer.accept(resource, line.rstrip(b"\r\n"), line_number, resolve_reference)


def _run_json(piece: Piece, writer: _TaskWriter) -> None:
    path = Path(piece.path)
    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        writer.reject(
            piece.path, f"JSON file of {size} bytes is over {MAX_BUNDLE_BYTES}; send NDJSON instead", b""
        )
        return
    data = path.read_bytes().removeprefix(_BOM)
    if not data.strip():
        writer.reject(piece.path, "the file is empty (a .json file must hold a Bundle or a resource)", b"")
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        writer.reject(
            f"{piece.path}:{error.lineno}:{error.colno}", f"malformed JSON: {error.msg}", data[:1_000_000]
        )
        return
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        writer.accept(document, orjson.dumps(document), 0, resolve_reference)  # line 0: the whole file
        return
    try:
        operations, resolver = read_bundle(document)
    except BundleEntryError as error:
        writer.reject(piece.path, str(error), b"")
        return
    except RecursionError:
        writer.reject(piece.path, "the Bundle is nested too deeply to be read", b"")
        return
    for operation in operations:
        line = operation.position + 1
        if operation.error is not None:
            writer.reject(piece.location(line), operation.error, orjson.dumps(operation.entry))
        elif operation.resource is not None:
            writer.accept(operation.resource, orjson.dumps(operation.resource), line, resolver)
            if operation.condition is not None:
                writer.conditional_update(operation.resource["id"], operation.condition, line)
        else:
            writer.delete(operation.delete_type, operation.delete_key, line)


def run_task(task: Task) -> TaskResult:
    """Read one task's pieces into its staging files (runs in a worker process)."""
    # Reading makes millions of tuples and dicts and no cycles: the cyclic garbage collector, which would
    # run every few hundred of them, is paused meanwhile (it cost about a tenth of the time).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _run_task(task)
    finally:
        if collecting:
            gc.enable()


def _run_task(task: Task) -> TaskResult:
    writer = _TaskWriter(task)
    for piece in task.pieces:
        writer.piece, writer.seq_base = piece, piece.seq_base
        try:
            if piece.kind == "json":
                _run_json(piece, writer)
            else:
                _run_ndjson(piece, writer)
        except (OSError, EOFError, zlib.error) as error:
            writer.reject(piece.path, f"could not read the file: {error}", b"")
    return writer.close()
