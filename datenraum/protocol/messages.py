"""What hub and site agents say to each other, as frozen values with a JSON form.

The site only ever connects out to the hub (hospital firewalls allow no inbound traffic), so every
exchange is a site's request: it long-polls for tasks and posts results. Task ids are chosen by the hub
and are the idempotency key: a site posts at most one result per task, and posting the same result again
(after a lost response, a restart) is accepted as a no-op.

Results carry only obfuscated counts (see `datenraum.privacy`); an exact count has no field to travel in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "API_PREFIX",
    "ProtocolError",
    "SiteCount",
    "Task",
    "TaskResult",
    "TaskState",
    "TaskType",
]

API_PREFIX = "/api/site/v1"


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text says which field and why."""


class TaskType(StrEnum):
    FEASIBILITY_COUNT = "feasibility-count"
    # payload: {"crtdl": <CRTDL JSON>, "project": <approved project id>}; the site extracts into its own
    # output folder and answers with the job summary's counts only (`TaskResult.summary`)
    EXTRACTION = "extraction"


class TaskState(StrEnum):
    PENDING = "pending"  # created, not yet fetched by the site
    RUNNING = "running"  # fetched by the site, no result yet
    ANSWERED = "answered"
    FAILED = "failed"  # the site reported why it could not answer
    TIMED_OUT = "timed-out"  # no result before the deadline


@dataclass(frozen=True)
class SiteCount:
    """A site's count as it may leave the site: obfuscated, or only "below threshold"."""

    obfuscated: int | None
    below_threshold: bool = False

    def __post_init__(self) -> None:
        if self.below_threshold != (self.obfuscated is None):
            raise ProtocolError("a count is either obfuscated or below threshold")

    def to_json(self) -> dict[str, Any]:
        if self.below_threshold:
            return {"below_threshold": True}
        return {"obfuscated": self.obfuscated}

    @classmethod
    def from_json(cls, body: Any) -> SiteCount:
        if not isinstance(body, dict):
            raise ProtocolError("count: expected an object")
        if body.get("below_threshold") is True:
            return cls(None, True)
        value = body.get("obfuscated")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProtocolError("count.obfuscated: expected a non-negative integer")
        return cls(value)


@dataclass(frozen=True)
class Task:
    id: str
    type: TaskType
    payload: dict[str, Any]  # for feasibility-count: {"query": <structured query JSON>}
    deadline: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "payload": self.payload,
            "deadline": self.deadline.isoformat(),
        }

    @classmethod
    def from_json(cls, body: Any) -> Task:
        try:
            return cls(
                id=str(body["id"]),
                type=TaskType(body["type"]),
                payload=dict(body["payload"]),
                deadline=dt.datetime.fromisoformat(body["deadline"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(f"task: {error}") from None


@dataclass(frozen=True)
class TaskResult:
    """A site's answer to a task: a count, or a failure with a reason the researcher may read."""

    task_id: str
    state: TaskState
    count: SiteCount | None = None
    reason: str | None = None
    # an extraction's job summary: counts only (names -> a count, or -> names -> a count), no patient data
    summary: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.state == TaskState.ANSWERED and self.count is None and self.summary is None:
            raise ProtocolError("an answered task needs a count or an extraction summary")
        if self.summary is not None:
            _check_summary(self.summary, "summary", 0)
        if self.state == TaskState.FAILED and not self.reason:
            raise ProtocolError("a failed task needs a reason")
        if self.state not in (TaskState.ANSWERED, TaskState.FAILED):
            raise ProtocolError(f"a site cannot report state {self.state.value!r}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"task_id": self.task_id, "state": self.state.value}
        if self.count is not None:
            body["count"] = self.count.to_json()
        if self.reason is not None:
            body["reason"] = self.reason
        if self.summary is not None:
            body["summary"] = self.summary
        return body

    @classmethod
    def from_json(cls, body: Any) -> TaskResult:
        if not isinstance(body, dict):
            raise ProtocolError("result: expected an object")
        try:
            state = TaskState(body.get("state"))
        except ValueError:
            raise ProtocolError("result.state: expected 'answered' or 'failed'") from None
        count = SiteCount.from_json(body["count"]) if body.get("count") is not None else None
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise ProtocolError("result.reason: expected a string of at most 2000 characters")
        summary = body.get("summary")
        if summary is not None:
            _check_summary(summary, "result.summary", 0)
        return cls(str(body.get("task_id", "")), state, count, reason, summary)


MAX_SUMMARY_KEYS = 500


def _check_summary(value: Any, path: str, depth: int) -> None:
    """A summary holds counts and names only: an object of at most MAX_SUMMARY_KEYS short names, each
    to a non-negative integer or (two levels deep at most) to such an object; a job id string at the
    top. Nothing else can travel in it."""
    if not isinstance(value, dict) or len(value) > MAX_SUMMARY_KEYS:
        raise ProtocolError(f"{path}: expected an object of at most {MAX_SUMMARY_KEYS} counts")
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 100:
            raise ProtocolError(f"{path}: keys are names of 1 to 100 characters")
        if depth == 0 and key == "Job-ID":
            if not isinstance(item, str) or len(item) > 64:
                raise ProtocolError(f"{path}.Job-ID: expected a job id")
        elif isinstance(item, dict) and depth < 2:
            _check_summary(item, f"{path}.{key}", depth + 1)
        elif isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ProtocolError(f"{path}.{key}: expected a non-negative integer")
