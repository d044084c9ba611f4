"""Analysis rounds over the long-poll channel: one request to a fixed set of sites, their answers back.

`Rounds.ask` (called in a worker thread by the analysis driver) puts one `analysis` task per site in
memory, wakes the sites' long-polls (`GET /api/site/v1/tasks` hands analysis tasks out before it looks
at the database), and waits until every site has posted its answer or the round's deadline has passed;
a site without an answer by then is None (the driver names it). Analysis tasks are not stored: the
driver that waits for them lives in this process, and a hub restart ends it anyway. They are offered
once (no lease to run out): a site that lost one does not get it again, it is named as not answering.

An agent tells the hub who it is: a random instance id, in its heartbeat (sent when it starts) and in
each analysis answer. When a site's instance changes while one of its analysis tasks is open, the agent
was restarted and has lost that task and its workspace: the task fails at once with
`site_restarted` instead of running into the deadline, and `HubSites` fails a call whose site answers
from another instance than in its first round, so a fit never mixes two lives of a site.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datenraum.analysis.messages import VERSION, MessageError, parse_request
from datenraum.protocol.messages import Task, TaskResult, TaskState, TaskType

__all__ = ["HubSites", "Rounds", "site_error"]


def site_error(site: str, code: str, en: str, de: str) -> dict[str, Any]:
    return {
        "v": VERSION,
        "ok": False,
        "error": {
            "code": code,
            "rule": None,
            "threshold": None,
            "site": site,
            "message_en": en,
            "message_de": de,
        },
    }


@dataclass
class _Round:
    remaining: int
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Task:
    id: str
    site_id: int
    site: str
    payload: dict[str, Any]
    deadline: dt.datetime
    round: _Round
    claimed: bool = False
    answer: dict[str, Any] | None = None


class Rounds:
    def __init__(self, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._by_site: dict[int, list[str]] = {}
        self._instances: dict[int, str] = {}
        self._wake: Callable[[Iterable[int]], None] = lambda _ids: None

    def bind(self, wake: Callable[[Iterable[int]], None]) -> None:
        """How to wake the long-polls of sites (thread-safe; set by the application at start)."""
        self._wake = wake

    # -- the driver's side
    def ask(self, request: dict[str, Any], sites: Mapping[str, int], seconds: float) -> dict[str, Any]:
        """Every site's answer (None: none in time); blocks the calling thread for at most `seconds`."""
        deadline = self._clock() + dt.timedelta(seconds=seconds)
        round_ = _Round(len(sites))
        tasks = []
        with self._lock:
            for name, site_id in sites.items():
                task = _Task(
                    str(uuid.uuid4()), site_id, name, {"v": VERSION, "request": request}, deadline, round_
                )
                self._tasks[task.id] = task
                self._by_site.setdefault(site_id, []).append(task.id)
                tasks.append(task)
        self._wake(sites.values())
        if sites:
            round_.done.wait(seconds)
        with self._lock:
            for task in tasks:
                self._tasks.pop(task.id, None)
                queue = self._by_site.get(task.site_id)
                if queue and task.id in queue:
                    queue.remove(task.id)
            return {task.site: task.answer for task in tasks}

    # -- the sites' side (from the event loop)
    def claim(self, site_id: int) -> list[Task]:
        """The site's analysis tasks not handed out yet (each is handed out once)."""
        with self._lock:
            out = []
            for task_id in self._by_site.get(site_id, ()):
                task = self._tasks[task_id]
                if not task.claimed and task.answer is None:
                    task.claimed = True
                    out.append(Task(task.id, TaskType.ANALYSIS, task.payload, task.deadline))
            return out

    def owns(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._tasks

    def record(self, site_id: int, task_id: str, result: TaskResult) -> bool:
        """Take the site's answer; False if the task is not (or no longer) one of this site's."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.site_id != site_id:
                return False
            if task.answer is not None:
                return True  # a replay
            if result.state == TaskState.ANSWERED and result.analysis is not None:
                answer = dict(result.analysis)
                if not answer.get("ok") and isinstance(answer.get("error"), dict):
                    answer["error"] = {**answer["error"], "site": task.site}
            else:
                reason = result.reason or "no reason given"
                answer = site_error(
                    task.site,
                    "site_failed",
                    f"site {task.site} could not answer: {reason}",
                    f"Standort {task.site} konnte nicht antworten: {reason}",
                )
            self._finish(task, answer)
            return True

    def site_seen(self, site_id: int, instance: str | None) -> None:
        """A heartbeat: a new instance of a site fails the tasks its former instance had taken."""
        if not instance:
            return
        with self._lock:
            previous = self._instances.get(site_id)
            self._instances[site_id] = instance
            if previous is None or previous == instance:
                return
            for task_id in self._by_site.get(site_id, ()):
                task = self._tasks[task_id]
                if task.claimed and task.answer is None:
                    self._finish(task, _restarted(task.site))

    def _finish(self, task: _Task, answer: dict[str, Any]) -> None:
        task.answer = answer
        task.round.remaining -= 1
        if task.round.remaining <= 0:
            task.round.done.set()


def _restarted(site: str) -> dict[str, Any]:
    return site_error(
        site,
        "site_restarted",
        f"site {site} was restarted during the analysis (its part of it is lost); run it again",
        f"Standort {site} wurde während der Analyse neu gestartet (sein Teil ist verloren); bitte erneut ausführen",
    )


class HubSites:
    """The `Sites` of one analysis call at the hub: the project's sites, fixed for the whole call."""

    def __init__(self, rounds: Rounds, sites: Mapping[str, int], seconds: float) -> None:
        self._rounds = rounds
        self._sites = dict(sites)
        self._seconds = seconds
        self._instances: dict[str, str] = {}
        self.rounds = 0

    def names(self) -> list[str]:
        return sorted(self._sites)

    def ask(self, request: dict[str, Any], sites: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        parse_request(request)  # what leaves the hub is a valid request (MessageError otherwise)
        unknown = [s for s in sites if s not in self._sites]
        if unknown:
            raise MessageError("sites", f"not sites of this project: {', '.join(unknown)}")
        self.rounds += 1
        answers = self._rounds.ask(request, {s: self._sites[s] for s in sites}, self._seconds)
        out: dict[str, dict[str, Any] | None] = {}
        for site, answer in answers.items():
            if answer is None:
                out[site] = None
                continue
            answer = dict(answer)
            instance = answer.pop("instance", None)
            known = self._instances.setdefault(site, instance) if instance else None
            out[site] = _restarted(site) if known is not None and known != instance else answer
        return out
