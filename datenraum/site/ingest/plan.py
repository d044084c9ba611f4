"""Planning a load: which files, cut into which pieces, grouped into which read tasks.

A task is a few pieces read into one set of staging files: many small Bundles make one task, so that
a folder of them does not become hundreds of tiny Parquet files. A big NDJSON file is cut at line ends
into pieces of about `chunk_bytes`, which workers read side by side.

`ReadTask` and `ReadResult` are what a worker gets and gives back (worker.py); the commit reads the
results (commit.py). Not to be confused with the hub's `Task`/`TaskResult` (protocol/messages.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from datenraum.site.ingest.report import IngestError, Reject
from datenraum.site.ingest.rules import MAX_RESOURCE_BYTES

__all__ = ["CHUNK_BYTES", "Piece", "ReadResult", "ReadTask", "discover", "kind_of", "location", "plan"]

CHUNK_BYTES = 32 * 1024 * 1024
_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".json")
# FHIR NDJSON shrinks about this much under gzip; used to size tasks.
_GZIP_RATIO = 8


def kind_of(path: Path) -> str:
    """How an input file is read: "ndjson", "ndjson.gz" or "json"."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return "ndjson.gz"
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "json"


def location(path: str, kind: str, line: int) -> str:
    """Where line `line` of an input file of `kind` is, in the words of a reject: file:line, or the Bundle
    entry (line - 1) of a JSON file (line 0: the file as a whole)."""
    if kind != "json":
        return f"{path}:{line}"
    return f"{path}: Bundle.entry[{line - 1}]" if line else path


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
        return location(self.path, self.kind, line)


@dataclass(frozen=True)
class ReadTask:
    index: int
    pieces: tuple[Piece, ...]
    staging: str
    max_resource_bytes: int = MAX_RESOURCE_BYTES
    strict_reader: bool = True  # False: every NDJSON line by the row-by-row reader, to compare or diagnose


@dataclass
class ReadResult:
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


def discover(paths: Sequence[Path]) -> list[Path]:
    """The input files named by `paths` (files, or folders searched recursively), in a stable order."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
            if not found:
                raise IngestError(f"{path}: folder holds no .ndjson, .ndjson.gz or .json files")
        elif path.is_file():
            found = [path]
        else:
            raise IngestError(f"{path}: no such file or folder")
        for file in found:
            if file.resolve() not in seen:  # a file named twice is read once
                seen.add(file.resolve())
                files.append(file)
    for file in files:
        if not os.access(file, os.R_OK):
            raise IngestError(f"{file}: not readable")
    return files


def plan(
    files: Sequence[Path],
    staging: Path,
    chunk_bytes: int = CHUNK_BYTES,
    max_resource_bytes: int = MAX_RESOURCE_BYTES,
    strict_reader: bool = True,
) -> Iterator[ReadTask]:
    """Tasks of about chunk_bytes each, in input order: big NDJSON files cut at line ends, small files grouped."""
    pieces: list[Piece] = []
    pending = 0
    index = 0
    for piece, size in _pieces(files, chunk_bytes):
        pieces.append(piece)
        pending += size
        if pending >= chunk_bytes:
            index += 1
            yield ReadTask(index, tuple(pieces), str(staging), max_resource_bytes, strict_reader)
            pieces, pending = [], 0
    if pieces:
        yield ReadTask(index + 1, tuple(pieces), str(staging), max_resource_bytes, strict_reader)


def _pieces(files: Sequence[Path], chunk_bytes: int) -> Iterator[tuple[Piece, int]]:
    """The pieces of the input in order, each with about how many bytes of JSON it holds."""
    index = 0
    for path in files:
        kind = kind_of(path)
        size = path.stat().st_size
        if kind != "ndjson":
            index += 1
            yield Piece(index, str(path), kind), size * (_GZIP_RATIO if kind == "ndjson.gz" else 1)
            continue
        offset, line = 0, 1
        with open(path, "rb") as handle:
            while offset < size:
                handle.seek(offset)
                block = handle.read(chunk_bytes)
                length, lines = len(block), block.count(b"\n")
                if offset + length < size and not block.endswith(b"\n"):
                    rest = _rest_of_line(handle)
                    length, lines = length + rest, lines + 1
                index += 1
                yield Piece(index, str(path), kind, offset, length, line), length
                line += lines
                offset += length


def _rest_of_line(handle) -> int:
    """How many bytes up to and including the next line end, read in pieces: a line may be huge."""
    length = 0
    while piece := handle.read(1 << 20):
        end = piece.find(b"\n")
        if end >= 0:
            return length + end + 1
        length += len(piece)
    return length
