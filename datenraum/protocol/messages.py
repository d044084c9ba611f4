"""What hub and site agents say to each other, as frozen values with a JSON form.

The site only ever connects out to the hub (hospital firewalls allow no inbound traffic), so every
exchange is a site's request: it long-polls for tasks and posts results. Task ids are chosen by the hub
and are the idempotency key: a site posts at most one result per task, and posting the same result again
(after a lost response, a restart) is accepted as a no-op.

Results carry only obfuscated counts (see `datenraum.privacy`); an exact count has no field to travel in.

An `analysis` task (federated analysis, `datenraum.analysis.messages`) carries one versioned analysis
request as its payload, `{"v": 1, "request": {...}}`, and is answered with the site's analysis answer
(`{"v": 1, "ok": ..., "result" | "error": ...}`, aggregates that passed the site's disclosure control) in
`TaskResult.analysis`; nothing in either is evaluated.
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
    ANALYSIS = "analysis"


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
    payload: dict[str, Any]  # feasibility-count: {"query": <structured query>}; analysis: {"v", "request"}
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
    """A site's answer to a task: a count (or an analysis answer), or a failure with a reason the
    researcher may read."""

    task_id: str
    state: TaskState
    count: SiteCount | None = None
    reason: str | None = None
    analysis: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.state == TaskState.ANSWERED and (self.count is None) == (self.analysis is None):
            raise ProtocolError("an answered task needs a count or an analysis answer")
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
        if self.analysis is not None:
            body["analysis"] = self.analysis
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
        analysis = body.get("analysis")
        if analysis is not None and (not isinstance(analysis, dict) or analysis.get("v") != 1):
            raise ProtocolError("result.analysis: expected an analysis answer of protocol version 1")
        return cls(str(body.get("task_id", "")), state, count, reason, analysis)
