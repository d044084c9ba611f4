"""The strict reader: NDJSON lines decoded by msgspec into their shape and flattened column by column.

This is the fast path of the ingest. msgspec decodes each line into structs of exactly the shape the
views read (fhir/viewdef/shapes.py), skipping everything else, and refuses any line whose elements are not of
the JSON type FHIR gives them. The views, compiled for that shape (fhir/viewdef/compile_shaped.py), append plain
tuples, which go to Arrow a column at a time every BATCH_RESOURCES resources; the raw JSON column is cut
from the block as it was read, without a copy per line. What the strict reader cannot vouch for goes
back to the caller, line by line, for the row-by-row reader (rows.py), which is the reference: it
rejects with a reason, or reads what FHIR JSON allows but the strict shape does not (a single object
where an array belongs, references to resolve). A line is read by exactly one of the two, so counts and
rows add up; both check ids and batch rows by the same rules (rules.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pyarrow as pa

from datenraum.fhir.viewdef.compile_json import standard_views
from datenraum.fhir.viewdef.compile_shaped import RowsFunction, compile_for_shape, compile_patient
from datenraum.fhir.viewdef.shapes import ResourceShape, resource_shapes, shape_for
from datenraum.site.ingest.rules import BATCH_RESOURCES, STORED_TYPES, is_valid_id
from datenraum.site.store import RAW_SCHEMA, RAW_TABLE, table_schemas

__all__ = ["StrictReader"]

_NEWLINE, _RETURN, _OPEN_BRACE = 10, 13, 123
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError)


class _Probe(msgspec.Struct):
    resourceType: str | None = None


_probe = msgspec.json.Decoder(_Probe)


@dataclass
class _Table:
    """A table's rows of the current block, as tuples with `_seq` last."""

    name: str
    schema: pa.Schema
    rows: list[tuple] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.append = self.rows.append

    def drop_rows_of(self, seq: int) -> None:
        """Take back the rows of the resource `seq`: the last rows, as rows are whole when appended."""
        rows = self.rows
        while rows and rows[-1][-1] == seq:
            rows.pop()

    def take(self) -> pa.RecordBatch:
        columns = zip(*self.rows, strict=True)
        arrays = [_array(column, f.type) for column, f in zip(columns, self.schema, strict=True)]
        self.rows.clear()
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


@functools.cache
def _compiled(resource_type: str) -> tuple[ResourceShape, list[tuple[str, RowsFunction]], Callable]:
    """A type's shape, its views compiled for it (by table) and its patient function: once a process,
    since every task of a load reads with a reader of its own."""
    views = [view for view in standard_views().values() if view.resource == resource_type]
    shape = resource_shapes().get(resource_type) or shape_for(resource_type, [])
    return shape, [(view.name, compile_for_shape(view, shape)) for view in views], compile_patient(shape)


def _array(values: tuple, arrow_type: pa.DataType) -> pa.Array:
    """Dates and times come as the integers Arrow stores them as (compile_shaped.py)."""
    if pa.types.is_timestamp(arrow_type):
        return pa.array(values, pa.int64()).view(arrow_type)
    if pa.types.is_date32(arrow_type):
        return pa.array(values, pa.int32()).view(arrow_type)
    return pa.array(values, arrow_type)


@dataclass
class _TypeReader:
    """What the strict reader knows of one resource type: its shape and its views, compiled for it."""

    shape: ResourceShape
    views: list[tuple[RowsFunction, _Table]]
    patient: Callable[[object], str | None]
    # Of the current block: the raw table's columns but the constant and the cut-out ones, and line indices.
    ids: list[str] = field(default_factory=list)
    patients: list[str | None] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)


class StrictReader:
    """Reads blocks of NDJSON, handing each table's rows to `sink` as Arrow record batches."""

    def __init__(self, sink: Callable[[str, pa.RecordBatch], None]) -> None:
        self.sink = sink
        self.types: dict[str, _TypeReader | None] = {}
        self.accepted: dict[str, int] = {}

    def _reader(self, resource_type: str | None) -> _TypeReader | None:
        """The reader of a type; None for what the row-by-row reader must reject (unknown types, Bundles)."""
        if resource_type in self.types:
            return self.types[resource_type]
        reader = None
        if resource_type in STORED_TYPES:
            shape, functions, patient = _compiled(resource_type)
            tables = [(rows, _Table(name, table_schemas()[name])) for name, rows in functions]
            reader = _TypeReader(shape, tables, patient)
        self.types[resource_type] = reader
        return reader

    def read(
        self, data: bytes, first_line: int, path: str, seq_base: int, limit: int
    ) -> Iterator[tuple[int, bytes | None]]:
        """Read the lines of `data` (whole lines, numbered from `first_line`) that this reader can; yield
        (line number, line) of the others, None for a line over `limit` bytes."""
        starts, ends = _line_bounds(data)
        lengths = ends - starts
        view = np.frombuffer(data, np.uint8)

        def line_at(index: int) -> bytes:
            return data[int(starts[index]) : int(ends[index])]

        nonempty = lengths > 0
        first = np.zeros(len(starts), np.uint8)
        first[nonempty] = view[starts[nonempty]]
        last = np.zeros(len(starts), np.uint8)
        last[nonempty] = view[ends[nonempty] - 1]
        # Lines ending in a second carriage return are left to the row-by-row reader, which strips them all.
        candidate = nonempty & (first == _OPEN_BRACE) & (last != _RETURN) & (lengths <= limit)
        for index in np.flatnonzero(nonempty & ~candidate).tolist():
            yield first_line + index, (line_at(index) if lengths[index] <= limit else None)
        # Every line with the line end after it as the next item: one Arrow array over the block as it is.
        offsets = np.empty(2 * len(starts) + 1, np.int64)
        offsets[0 : 2 * len(starts) : 2], offsets[1 : 2 * len(starts) : 2] = starts, ends
        offsets[-1] = len(data)
        if len(data) < 2**31:
            lines = pa.StringArray.from_buffers(
                2 * len(starts), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)
            )
        else:
            lines = pa.LargeStringArray.from_buffers(
                2 * len(starts), pa.py_buffer(offsets), pa.py_buffer(data)
            )
        candidates = np.flatnonzero(candidate).tolist()
        try:
            lines.validate(full=True)  # UTF-8, which msgspec does not check in the elements it skips
        except pa.ArrowInvalid:
            valid = []
            for index in candidates:
                try:
                    line_at(index).decode()
                    valid.append(index)
                except UnicodeDecodeError:
                    yield first_line + index, line_at(index)
            candidates = valid

        def flush(reader: _TypeReader) -> None:
            self._flush_type(reader, lines, path, first_line, seq_base)

        for index in self._read_lines(data, starts, ends, candidates, first_line, seq_base, flush):
            yield first_line + index, line_at(index)
        self._flush(lines, path, first_line, seq_base)

    def _read_lines(
        self,
        data: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        candidates: list[int],
        first_line: int,
        seq_base: int,
        flush: Callable[[_TypeReader], None],
    ) -> list[int]:
        """Decode and flatten the candidate lines; the indices of those left to the row-by-row reader."""
        left: list[int] = []
        buffer = memoryview(data)
        reader: _TypeReader | None = None
        expected = decode = None
        seq_of_index = seq_base + first_line
        bounds = zip(candidates, starts[candidates].tolist(), ends[candidates].tolist(), strict=True)
        for index, start, end in bounds:
            line = buffer[start:end]
            decoded = None
            if decode is not None:
                try:
                    decoded = decode(line)
                except _DECODE_ERRORS:
                    decoded = None
            if decoded is None or decoded.f0 != expected:
                # Another type than the line before, or not valid as that: check it against its own type.
                try:
                    found = self._reader(_probe.decode(line).resourceType)
                    if found is None:
                        left.append(index)
                        continue
                    decoded = found.shape.decoder.decode(line)
                except _DECODE_ERRORS:
                    left.append(index)
                    continue
                reader, expected, decode = found, found.shape.resource_type, found.shape.decoder.decode
                views, patient_of = reader.views, reader.patient
                add_id, add_patient, add_index = (
                    reader.ids.append,
                    reader.patients.append,
                    reader.indices.append,
                )
            resource_id = decoded.f1
            if not is_valid_id(resource_id):
                left.append(index)
                continue
            seq = seq_of_index + index
            try:
                patient = patient_of(decoded)
                for rows, table in views:
                    rows(decoded, table.append, seq)
            except Exception:  # whatever it is, the row-by-row reader will say it, or read it
                for _, table in views:
                    table.drop_rows_of(seq)
                left.append(index)
                continue
            add_id(resource_id)
            add_patient(patient)
            add_index(index)
            if len(reader.indices) >= BATCH_RESOURCES:
                flush(reader)
        return left

    def _flush(self, lines: pa.Array, path: str, first_line: int, seq_base: int) -> None:
        """Hand the block's rows to the sink, type by type."""
        for reader in self.types.values():
            if reader is not None and reader.indices:
                self._flush_type(reader, lines, path, first_line, seq_base)

    def _flush_type(
        self, reader: _TypeReader, lines: pa.Array, path: str, first_line: int, seq_base: int
    ) -> None:
        resource_type = reader.shape.resource_type
        count = len(reader.indices)
        indices = np.asarray(reader.indices, np.int64)
        numbers = indices + first_line
        raw = pa.RecordBatch.from_arrays(
            [
                pa.repeat(pa.scalar(resource_type, pa.string()), count),
                pa.array(reader.ids, pa.string()),
                pa.array(reader.patients, pa.string()),
                pa.repeat(pa.scalar(path, pa.string()), count),
                pa.array(numbers),
                pa.array(numbers + seq_base),
                lines.take(pa.array(2 * indices)),
            ],
            schema=RAW_SCHEMA,
        )
        self.sink(RAW_TABLE, raw)
        for _rows, table in reader.views:
            if table.rows:
                self.sink(table.name, table.take())
        self.accepted[resource_type] = self.accepted.get(resource_type, 0) + count
        reader.ids.clear()
        reader.patients.clear()
        reader.indices.clear()


def _line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (without the line end, and without a carriage return before it) of every line."""
    view = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(view == _NEWLINE)
    starts = np.empty(len(newlines) + 1, np.int64)
    starts[0] = 0
    starts[1:] = newlines + 1
    ends = np.append(newlines, len(data)).astype(np.int64)
    if starts[-1] == len(data):  # nothing after the last line end
        starts, ends = starts[:-1], ends[:-1]
    has_return = (ends > starts) & (view[np.maximum(ends - 1, 0)] == _RETURN)
    return starts, ends - has_return
