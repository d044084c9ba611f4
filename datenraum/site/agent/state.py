"""What the site agent keeps on disk between runs: its lock, the site secret, and the task journal.

The state folder (by default `<store>/agent/`, mode 0700) holds:

    lock           flocked while an agent runs, so two agents never share one journal
    site-secret    32 random bytes made at first start (mode 0600); keys the count noise, never leaves
    journal.ndjson one line per answered task, written and fsynced *before* the result is posted, and a
                   line (not fsynced) per result the hub has taken
    releases.sqlite every analysis result released, per project and analyst (differencing, budget;
                   `datenraum.site.analysis.releases`)

Why the journal: the hub may never hear an answer (the response to the post is lost, the agent is killed
between computing and posting, the hub re-offers a task whose lease ran out). Re-posting the recorded
result instead of computing it again keeps a task to exactly one answer, and the hub treats the replay as a
no-op. A line cut short by a crash mid-write is skipped when the journal is read: its task was never posted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import orjson

from datenraum.protocol.messages import ProtocolError, TaskResult

__all__ = ["Journal", "JournalEntry", "StateError", "load_or_create_secret", "state_lock"]

log = logging.getLogger(__name__)

SECRET_BYTES = 32
# Long enough for the daily limit and for any task the hub may still re-offer (deadlines are seconds to
# minutes); older lines are dropped when the agent starts.
RETENTION = dt.timedelta(days=7)
# A long-running agent also forgets, this often, the posted entries older than the retention: the file
# keeps them until the next start (which rewrites it), memory need not.
PRUNE_EVERY = dt.timedelta(hours=1)


class StateError(RuntimeError):
    """The state folder cannot be used (locked by another agent, an unsafe or damaged secret)."""


@contextlib.contextmanager
def state_lock(folder: Path) -> Iterator[None]:
    """Hold the state folder for this process; a second agent on the same folder fails at once."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(folder / "lock", "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(f"{folder}: another site agent is running with this state folder") from None
        yield


def load_or_create_secret(folder: Path) -> bytes:
    """The site secret, made on first use; refused if others could read it (it would let them denoise)."""
    path = folder / "site-secret"
    if not path.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = folder / f"site-secret.{os.getpid()}.tmp"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made one first: use theirs
            os.link(draft, path)
        draft.unlink()
        log.info("created a new site secret in %s", path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise StateError(f"{path}: readable by others (mode {mode:o}); run chmod 600 on it")
    secret = path.read_bytes()
    if len(secret) != SECRET_BYTES:
        raise StateError(f"{path}: expected {SECRET_BYTES} bytes, found {len(secret)}")
    return secret


@dataclass(frozen=True)
class JournalEntry:
    result: TaskResult
    recorded: dt.datetime
    ran: bool  # the task ran on the store, so it counts against the daily limit
    posted: bool = False


class Journal:
    """Answered tasks by id, durable before their results are posted. Safe to use from several threads
    (the agent's workers record and post side by side): each method holds the journal's lock."""

    def __init__(self, path: Path, now: dt.datetime) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, JournalEntry] = {}
        self._read(now - RETENTION)
        self._next_pruning = now + PRUNE_EVERY
        self._rewrite()
        self._handle: IO[bytes] = open(path, "ab")  # noqa: SIM115 (open for the agent's lifetime, see close)

    def _read(self, oldest: dt.datetime) -> None:
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_bytes().splitlines(), 1):
            try:
                body = orjson.loads(line)
                if "posted" in body:
                    if body["posted"] in self._entries:
                        self._entries[body["posted"]] = replace(self._entries[body["posted"]], posted=True)
                    continue
                recorded = dt.datetime.fromisoformat(body["recorded"])
                if recorded >= oldest:
                    result = TaskResult.from_json(body["result"])
                    self._entries[result.task_id] = JournalEntry(result, recorded, bool(body["ran"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, ProtocolError):
                log.warning(
                    "%s:%d: skipping an unreadable journal line (cut short by a crash?)", self.path, number
                )

    def _rewrite(self) -> None:
        """Keep only the entries still needed, replacing the file atomically."""
        draft = self.path.with_suffix(".tmp")
        with open(draft, "wb") as handle:
            for entry in self._entries.values():
                handle.write(self._line(entry))
                if entry.posted:
                    handle.write(
                        orjson.dumps({"posted": entry.result.task_id}, option=orjson.OPT_APPEND_NEWLINE)
                    )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(draft, self.path)

    @staticmethod
    def _line(entry: JournalEntry) -> bytes:
        body = {"recorded": entry.recorded.isoformat(), "ran": entry.ran, "result": entry.result.to_json()}
        return orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE)

    def _append(self, line: bytes, *, durable: bool = True) -> None:
        self._handle.write(line)
        self._handle.flush()
        if durable:
            os.fsync(self._handle.fileno())

    def get(self, task_id: str) -> TaskResult | None:
        with self._lock:
            entry = self._entries.get(task_id)
        return entry.result if entry else None

    def record(self, result: TaskResult, *, ran: bool, now: dt.datetime) -> None:
        """Make the result durable; call before posting it."""
        entry = JournalEntry(result, now, ran)
        with self._lock:
            self._append(self._line(entry))
            self._entries[result.task_id] = entry
            if now >= self._next_pruning:
                oldest = now - RETENTION
                self._entries = {
                    task_id: kept
                    for task_id, kept in self._entries.items()
                    if kept.recorded >= oldest or not kept.posted
                }
                self._next_pruning = now + PRUNE_EVERY

    def mark_posted(self, task_id: str) -> None:
        """The hub has the result (or has definitely refused it): no need to post it after a restart."""
        with self._lock:
            entry = self._entries[task_id]
            if not entry.posted:
                # Not worth waiting for the disk (an fsync costs as much as a count): should the machine
                # lose this line, the result is posted once more after a restart, which the hub takes as a
                # replay.
                line = orjson.dumps({"posted": task_id}, option=orjson.OPT_APPEND_NEWLINE)
                self._append(line, durable=False)
                self._entries[task_id] = replace(entry, posted=True)

    def unposted(self) -> list[TaskResult]:
        with self._lock:
            return [entry.result for entry in self._entries.values() if not entry.posted]

    def runs_on(self, day: dt.date) -> int:
        """How many tasks ran on the store on `day` (local time of this machine)."""
        with self._lock:
            entries = list(self._entries.values())
        return sum(1 for e in entries if e.ran and e.recorded.astimezone().date() == day)

    def close(self) -> None:
        with self._lock:
            self._handle.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
