"""The sites' packages on the hub's disk: received chunk by chunk, kept only when complete.

An upload in progress is `partial/<task id>.part`; the database records how many of its bytes were
acknowledged (written and synced), and every chunk is written at that offset after cutting off whatever
an interrupted write left behind it, so a resumed upload continues exactly there. When the site says it
is complete, the whole file's SHA-256 and size are checked against what the site sealed, and only then
is it renamed to `packages/<task id>.dpkg`: a package is there whole or not at all. The hub cannot open
a package (it is sealed for the project's key); it only keeps and hands out the bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BLOCK", "PackageStore"]

BLOCK = 1 << 20
_TASK_ID = re.compile(r"[0-9a-f-]{36}")


@dataclass(frozen=True)
class PackageStore:
    folder: Path

    def _path(self, kind: str, task_id: str) -> Path:
        if not _TASK_ID.fullmatch(task_id):  # ids come from the hub's own rows; this keeps paths inside
            raise ValueError(f"not a task id: {task_id!r}")
        suffix = ".part" if kind == "partial" else ".dpkg"
        return self.folder / kind / f"{task_id}{suffix}"

    def write_chunk(self, task_id: str, offset: int, data: bytes) -> int:
        """Write `data` at `offset` (the acknowledged size), synced; returns the new acknowledged size."""
        path = self._path("partial", task_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "r+b" if path.exists() else "w+b") as handle:
            handle.truncate(offset)
            handle.seek(offset)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return offset + len(data)

    def finish(self, task_id: str, size: int, sha256: str) -> str | None:
        """Keep the upload as the package if its first `size` bytes have this SHA-256; else remove it
        (the site starts again) and say why."""
        partial = self._path("partial", task_id)
        if not partial.exists():
            return "nothing was received"
        digest = hashlib.sha256()
        with open(partial, "r+b") as handle:
            handle.truncate(size)
            while block := handle.read(BLOCK):
                digest.update(block)
        if digest.hexdigest() != sha256:
            partial.unlink()
            return f"the {size} bytes received have SHA-256 {digest.hexdigest()}, the site sealed {sha256}"
        final = self._path("packages", task_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
        descriptor = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return None

    def discard(self, task_id: str) -> None:
        self._path("partial", task_id).unlink(missing_ok=True)

    def read(self, task_id: str) -> Iterator[bytes]:
        with open(self._path("packages", task_id), "rb") as handle:
            while block := handle.read(BLOCK):
                yield block

    def size(self, task_id: str) -> int:
        return self._path("packages", task_id).stat().st_size
