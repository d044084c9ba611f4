"""A read task in a worker process: its pieces read into staging Parquet, and what it read recorded.

This is the hot path of the ingest: it runs in worker processes, one task at a time, and does the
parsing, validation and flattening. It never decides what is replaced, deleted or dangling; it only
records what it read (keys, load order, patient references) for the commit to decide with the whole
load in view.

NDJSON is read in blocks of whole lines: the strict reader (strict.py) takes what it can, the
row-by-row reader (rows.py) the rest; JSON files go to the row-by-row reader whole. Both write into the
task's `Staging`: one buffer per table, the rejects file, and the `ReadResult`.
"""

from __future__ import annotations

import gc
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from datenraum.site.ingest.plan import Piece, ReadResult, ReadTask
from datenraum.site.ingest.report import MAX_REPORTED_REJECTS, Reject, reject_line
from datenraum.site.ingest.rows import RowReader, read_json
from datenraum.site.ingest.rules import BOM, ROWS_PER_ROW_GROUP
from datenraum.site.ingest.strict import StrictReader
from datenraum.site.store import RAW_TABLE, table_schemas

__all__ = ["BLOCK_BYTES", "Staging", "TableBuffer", "run_task"]

# How much of a gzip stream is decompressed at a time, for the strict reader to read as one block.
BLOCK_BYTES = 16 * 1024 * 1024
# Unique per row, so dictionary pages and min/max statistics would only cost time.
_PLAIN_COLUMNS = frozenset({"json"})
# Unique or nearly so: a dictionary would be as big as the values, and costs time until Parquet gives up on it.
_UNDICTIONARIED_COLUMNS = _PLAIN_COLUMNS | {"id"}


class TableBuffer:
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


class Staging:
    """One task's staging files and record of what it read: a buffer per table, the rejects file, and
    the `ReadResult`. `piece` is the piece being read."""

    def __init__(self, task: ReadTask) -> None:
        self.task = task
        self.result = ReadResult(task.index)
        self.piece = task.pieces[0]
        self.seq_base = self.piece.seq_base
        staging = Path(task.staging)
        self.buffers = {
            table: TableBuffer(staging / f"{table}.t{task.index:06d}.parquet", schema)
            for table, schema in table_schemas().items()
        }
        self.raw = self.buffers[RAW_TABLE]
        self.rejects_file: BinaryIO | None = None

    def extend(self, table: str, batch: pa.RecordBatch) -> None:
        """Rows of `table` that arrive as Arrow already (from the strict reader)."""
        self.buffers[table].extend(batch)

    def reject(self, location: str, reason: str, raw: bytes, resource_type: str = "(unknown)") -> None:
        result = self.result
        result.rejected[resource_type] = result.rejected.get(resource_type, 0) + 1
        if len(result.rejects) < MAX_REPORTED_REJECTS:
            result.rejects.append(Reject(location, reason))
        if self.rejects_file is None:
            path = Path(self.task.staging) / f"rejects.t{self.task.index:06d}.ndjson"
            self.rejects_file = open(path, "wb")  # noqa: SIM115 - open for the whole task, closed in close()
        self.rejects_file.write(reject_line(location, reason, raw.decode("utf-8", "replace")))

    def delete(self, resource_type: str, key: str, line: int) -> None:
        self.result.deletes.append((resource_type, key, self.seq_base + line, self.piece.location(line)))

    def conditional_update(self, provisional_id: str, placeholder: str, line: int) -> None:
        seq, location = self.seq_base + line, self.piece.location(line)
        self.result.conditional_updates.append((provisional_id, placeholder, seq, location))

    def close(self, accepted_elsewhere: dict[str, int]) -> ReadResult:
        """Write out what is buffered; `accepted_elsewhere`: what the strict reader accepted, by type."""
        for resource_type, count in accepted_elsewhere.items():
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
    yield piece.first_line, data.removeprefix(BOM) if piece.offset == 0 else data


def _stream_blocks(handle: BinaryIO, first_line: int, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Blocks of whole lines of a stream, never holding more than about `limit` bytes of one line."""
    number, pending, skipping = first_line, b"", False
    while block := handle.read(BLOCK_BYTES):
        if number == first_line and not pending and not skipping:
            block = block.removeprefix(BOM)
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


def _read_ndjson(piece: Piece, staging: Staging, rows: RowReader, strict: StrictReader | None) -> None:
    limit = staging.task.max_resource_bytes
    for first_line, block in _ndjson_blocks(piece, limit):
        if block is None:
            staging.reject(piece.location(first_line), f"line is longer than the limit of {limit} bytes", b"")
            continue
        # The strict reader takes what it can; the rest, line by line, is for the row-by-row reader.
        if strict is not None:
            lines = strict.read(block, first_line, piece.path, piece.seq_base, limit)
        else:
            lines = _lines(block, first_line, limit)
        rows.read_lines(piece, lines, limit)


def run_task(task: ReadTask) -> ReadResult:
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


def _run_task(task: ReadTask) -> ReadResult:
    staging = Staging(task)
    rows = RowReader(staging)
    strict = StrictReader(staging.extend) if task.strict_reader else None
    for piece in task.pieces:
        staging.piece, staging.seq_base = piece, piece.seq_base
        try:
            if piece.kind == "json":
                read_json(piece, staging, rows)
            else:
                _read_ndjson(piece, staging, rows, strict)
        except (OSError, EOFError, zlib.error) as error:
            staging.reject(piece.path, f"could not read the file: {error}", b"")
    return staging.close(strict.accepted if strict else {})
