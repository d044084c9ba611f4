"""The site agent: answers the hub's tasks from the site store, connecting only outward.

A hospital firewall lets nothing in, so the agent long-polls the hub for tasks (`GET tasks?wait=…`), runs
each one on the store and posts the result. How it stays correct when things break:

- **The hub is away** (down, restarting, network): the agent waits with exponential backoff and jitter
  (`hub.backoff_initial` doubling up to `hub.backoff_cap`) and tries again, forever. It logs one line
  when the connection state changes (connected, unreachable, credential rejected, hub error), not one per
  retry. A rejected credential (401) is re-read from its file before each retry, so an operator who
  writes the rotated credential there needs no restart.
- **A task is never run twice**: its result is written to the journal (`state.Journal`) before it
  is posted. A task offered again (its lease ran out at the hub because the answer was lost) gets the
  recorded result; results not yet taken by the hub are posted again after a restart.
- **A task that cannot be answered** (malformed or unsupported query, store error, task type not allowed
  here, daily limit reached) gets a `failed` result with a reason the researcher can read; the agent
  goes on with the next task.
- **A task takes too long**: after `tasks.time_limit` seconds its DuckDB query is interrupted
  (`TimeLimit`) and the task fails with "time limit of N s exceeded"; it counts against the daily limit.
- **One slow task does not hold up the others**: up to `tasks.concurrency` tasks run side by side, each
  on its own DuckDB cursor of the current snapshot (a connection must not be shared by threads); the
  loop polls for more while a worker is free. Each worker journals its result, then posts it; results a
  worker could not post are posted by the loop once the hub is back. A task is never run twice at once.
- **The catalogue's figures** (`site-metadata` tasks, `datenraum.site.metadata`): every
  `METADATA_EVERY` seconds the agent asks the hub whether it wants them (the hub decides when: daily, and
  after a new load); they are computed on the current snapshot and leave rounded, never below threshold.
  They are not journaled (the same snapshot gives the same figures) and do not count as queries.
- **Analysis tasks** (`analysis`, only where `tasks.allowed` names it) are answered by the site's
  `SiteExecutor` over the project's cohort in the store, with the site's own disclosure rules
  (`[analysis]`); they run under the same time limit but are neither journaled nor counted against
  `daily_limit` (the executor keeps its own budget per project, and every release, in
  `releases.sqlite` in the state folder, `datenraum.site.analysis.releases`): a lost one is not run again, the
  hub names the site instead. The agent's `instance` (random per start) goes with its heartbeat and its
  analysis answers, so the hub notices a restart during an analysis.
- **Sample searches** (`sample-search`, only where `tasks.allowed` names it) are answered with the
  site's sample counts per biobank, category and storage temperature (`datenraum.site.samples`), released
  by `datenraum.privacy.samples`; journaled and counted like feasibility queries.
- **Counts leave only obfuscated** (`datenraum.privacy.counts`), with noise keyed by the site secret and
  the cohort (the sorted ids of the patients the query selects), so every way of writing a question about
  the same patients gets the same answer. Exact counts and patient ids are never logged or sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import duckdb
import httpx

from datenraum.privacy.counts import cohort_key, obfuscate
from datenraum.protocol.messages import (
    API_PREFIX,
    ProtocolError,
    Task,
    TaskResult,
    TaskState,
    TaskType,
)
from datenraum.query.model import QueryError, StructuredQuery, parse_query
from datenraum.site import feasibility
from datenraum.site import linkage as site_linkage
from datenraum.site.agent.config import AgentConfig
from datenraum.site.agent.extraction import run_extraction_task
from datenraum.site.agent.linkage import NOT_CONFIGURED, CohortLinker
from datenraum.site.agent.state import Journal, load_or_create_secret, state_lock
from datenraum.site.metadata import site_metadata
from datenraum.site.store import Snapshot, Store, StoreError

__all__ = ["Agent", "Backoff", "Cohort", "LatestSnapshot", "TimeLimit", "read_credential", "serve"]

log = logging.getLogger("datenraum.site.agent")  # the name operators configure, as before the package

# The sorted ids of the patients a query selects (`feasibility.iter_patient_ids`); the agent counts them.
Cohort = Callable[[Snapshot, StructuredQuery], Iterable[str]]
HEARTBEAT_EVERY = 60.0  # seconds; the hub shows operators when each site was last seen
METADATA_EVERY = 300.0  # seconds between asking the hub whether it wants the catalogue's figures
DELIVERY_EVERY = 5.0  # seconds between asking the hub which released packages to upload


def _agent_version() -> str:
    try:
        return version("datenraum")
    except PackageNotFoundError:
        return "unknown"


def read_credential(path: Path) -> str:
    """The site credential from its file (issued by `datenraum hub add-site`); ValueError if unusable."""
    try:
        credential = path.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ValueError(f"cannot read the credential file {path}: {error.strerror}") from None
    if not credential:
        raise ValueError(f"the credential file {path} is empty")
    return credential


class Backoff:
    """Pauses between attempts to reach the hub: `initial`, doubling per failure, at most `cap`.

    Each pause is drawn from [d/2, d] ("equal jitter"), so that the sites that lost the hub together do not
    all knock again in the same instant when it comes back, while the pause still grows.
    """

    def __init__(self, initial: float, cap: float, rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.cap = cap
        self._rng = rng
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * 2**self._failures)
        self._failures += 1
        return ceiling / 2 + self._rng() * ceiling / 2

    def reset(self) -> None:
        self._failures = 0


class LatestSnapshot:
    """The store's current snapshot, kept open from one task to the next until a load publishes a new
    generation; each task gets a cursor of it (`task_view`).

    Opening a snapshot binds a DuckDB view to every Parquet file of the store, which on a store of 20,000
    patients costs about as much as the count itself. Holding it open keeps that generation's files from
    being collected; it is released once a load published a newer one and no task uses it any more (or
    when the agent stops), so at most one superseded generation stays on disk meanwhile.
    """

    def __init__(self, store: Store, threads: int = 0) -> None:
        self._store = store
        self._threads = threads  # 0: DuckDB's default, one per core
        self._lock = threading.Lock()
        self._current: _OpenSnapshot | None = None
        self._retired: list[_OpenSnapshot] = []

    def _latest(self) -> _OpenSnapshot:
        """The current generation's snapshot, opened if need be (call with the lock held)."""
        if self._current is None or self._current.snapshot.generation != self._store.current_generation():
            self._retire()
            with contextlib.ExitStack() as stack:
                snapshot = stack.enter_context(self._store.snapshot())
                if self._threads:
                    snapshot.connection.execute(f"SET threads = {self._threads}")
                snapshot.connection  # noqa: B018 (binds the views now, not in the first task)
                self._current = _OpenSnapshot(snapshot, stack.pop_all())
        return self._current

    def _retire(self) -> None:
        if self._current is not None:
            if self._current.users:
                self._retired.append(self._current)  # closed by the last task that uses it
            else:
                self._current.resources.close()
        self._current = None

    def get(self) -> Snapshot:
        """The current snapshot (for this thread only; tasks use `task_view`)."""
        with self._lock:
            return self._latest().snapshot

    @contextlib.contextmanager
    def task_view(self) -> Iterator[Snapshot]:
        """The current generation on a cursor of its own, for one task in one thread."""
        with self._lock:
            opened = self._latest()
            view = opened.snapshot.cursor()
            opened.users += 1
        try:
            yield view
        finally:
            view.close()
            with self._lock:
                opened.users -= 1
                if opened in self._retired and not opened.users:
                    self._retired.remove(opened)
                    opened.resources.close()

    def invalidate(self) -> None:
        """Open the store afresh for the next task (after an error that may have come from this snapshot)."""
        with self._lock:
            self._retire()

    def close(self) -> None:
        with self._lock:
            self._retire()
            for opened in self._retired:
                opened.resources.close()
            self._retired.clear()


class _OpenSnapshot:
    def __init__(self, snapshot: Snapshot, resources: contextlib.ExitStack) -> None:
        self.snapshot = snapshot
        self.resources = resources
        self.users = 0  # tasks running on a cursor of it


class TimeLimit:
    """Interrupts the DuckDB work on `cursor` once `seconds` have passed (`exceeded` then says so), or at
    once when `expire` is called.

    An interrupt reaches only a query that is running: one that arrives while nothing runs (the query is
    still being compiled) is lost, and the query that starts next runs to its end. So once the time is
    up, the cursor is interrupted again every RETRY seconds until the task's block is left.
    """

    RETRY = 0.05

    def __init__(self, cursor: duckdb.DuckDBPyConnection, seconds: float) -> None:
        self.seconds = seconds
        self.exceeded = False
        self._cursor = cursor
        self._done = threading.Event()
        self._timer = threading.Timer(seconds, self._keep_interrupting, kwargs={"exceeded": True})
        self._timer.daemon = True

    def __enter__(self) -> TimeLimit:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._timer.cancel()

    def expire(self, *, exceeded: bool = True) -> None:
        """Stop the task's query now (`exceeded`: because its time is up, else because the agent stops)."""
        threading.Thread(target=self._keep_interrupting, kwargs={"exceeded": exceeded}, daemon=True).start()

    def _keep_interrupting(self, *, exceeded: bool) -> None:
        self.exceeded = self.exceeded or exceeded
        while not self._done.is_set():
            try:
                self._cursor.interrupt()
            except duckdb.Error:  # closed meanwhile: the task is over
                return
            self._done.wait(self.RETRY)


class _Stopping(Exception):
    """The agent stops while the task runs: it gets no result here, and the hub offers it again."""


class _HubUnavailable(Exception):
    """The hub cannot be talked to right now. `state` names the kind of trouble: the log shows `message`
    when the state changes, not on every retry in the same state (the details may differ per retry)."""

    def __init__(self, state: str, message: str, level: int = logging.WARNING) -> None:
        super().__init__(message)
        self.state = state
        self.message = message
        self.level = level


class Agent:
    def __init__(
        self,
        *,
        store: Path,
        hub_url: str,
        credential_file: Path,
        config: AgentConfig,
        journal: Journal,
        secret: bytes,
        cohort: Cohort,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        transport: httpx.BaseTransport | None = None,
        linker: CohortLinker | None = None,
    ) -> None:
        self.store = Store(store)
        self._snapshot = LatestSnapshot(self.store, config.threads)
        self.config = config
        self.journal = journal
        self._secret = secret
        self._cohort = cohort
        self._linker = linker
        self._clock = clock
        self._credential_file = credential_file
        self._client = httpx.Client(
            base_url=hub_url.rstrip("/"),
            headers={"User-Agent": f"datenraum-site-agent/{_agent_version()}"},
            timeout=httpx.Timeout(10.0, read=config.wait + 15.0),
            transport=transport,
        )
        self._credential = read_credential(credential_file)
        self._state: str | None = None
        self._state_lock = threading.Lock()
        self._last_heartbeat = float("-inf")
        self._last_metadata_check = float("-inf")
        self._last_delivery_check = float("-inf")
        self._uploader: threading.Thread | None = None  # sending released packages, see `_uploads_if_due`
        # Tasks side by side: the loop hands task bodies to the workers through `_queue`; `_in_flight`
        # holds the ids of those handed over and not finished (queued, running or being posted).
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._workers: list[threading.Thread] = []
        self._in_flight: set[str] = set()
        self._changed = threading.Condition()
        self._stopping = False
        self._limits: set[TimeLimit] = set()  # of the tasks running now
        # Tasks admitted to run on the store and not yet journaled, for the daily limit.
        self._admission = threading.Lock()
        self._admitted = 0
        self.instance = uuid.uuid4().hex
        self._executor: Any = None  # the analysis executor, made at the first analysis task
        self._executor_lock = threading.Lock()

    # -- the loop
    def run(self, stop: threading.Event) -> None:
        """Serve tasks until `stop` is set (checked between long-polls and during pauses)."""
        backoff = Backoff(self.config.backoff_initial, self.config.backoff_cap)
        with contextlib.suppress(StoreError):  # open the store now, so the first task is as quick as the rest
            self._snapshot.get()
        if TaskType.ANALYSIS in self.config.allowed_tasks:
            self._analysis_executor()  # imports numpy, scipy and the executor now, not in the first round
        self._start_workers()
        try:
            while not stop.is_set():
                try:
                    self._post_unposted()
                    self._heartbeat_if_due()
                    self._metadata_if_due()
                    self._uploads_if_due(stop)
                    if not self._wait_for_a_free_worker(stop):
                        break
                    tasks = self._poll()
                    backoff.reset()
                    self._dispatch(tasks)
                except _HubUnavailable as unavailable:
                    self._set_state(unavailable.state, unavailable.message, unavailable.level)
                    stop.wait(backoff.next_delay())
        finally:
            self._stop_workers()
            if self._uploader is not None:  # it stops between two chunks: the hub keeps the offset
                self._uploader.join(self.JOIN_WAIT)

    def close(self) -> None:
        self._stop_workers()
        self._client.close()
        self._snapshot.close()
        if self._executor is not None:
            self._executor.releases.close()

    def _set_state(self, state: str, message: str, level: int) -> None:
        with self._state_lock:
            if state != self._state:
                log.log(level, "%s", message)
                self._state = state

    # -- the workers
    STOP_WAIT = 0.2  # seconds; how soon a loop waiting for a free worker notices that it should stop
    JOIN_WAIT = 5.0  # seconds the agent waits at its end for the workers to leave their tasks

    def _start_workers(self) -> None:
        self._stopping = False
        # Daemon threads: a task stuck outside DuckDB (which an interrupt cannot reach) must not keep the
        # process from ending; its task has no journal line yet and is offered again after the restart.
        self._workers = [
            threading.Thread(target=self._work, name=f"datenraum-task-{i}", daemon=True)
            for i in range(self.config.concurrency)
        ]
        for worker in self._workers:
            worker.start()

    def _stop_workers(self) -> None:
        """Drop the tasks not started (the hub offers them again), stop the running ones (they get no
        result, see `_Stopping`), and wait a little for the workers to leave."""
        if not self._workers:
            return
        with self._changed:
            self._stopping = True
            for limit in self._limits:
                limit.expire(exceeded=False)
        for _worker in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + self.JOIN_WAIT
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        self._workers = []
        with self._changed:
            self._in_flight.clear()

    def _wait_for_a_free_worker(self, stop: threading.Event) -> bool:
        """Poll only for tasks a worker can start now; False if `stop` was set meanwhile."""
        with self._changed:
            while len(self._in_flight) >= self.config.concurrency:
                if stop.is_set():
                    return False
                self._changed.wait(self.STOP_WAIT)
        return not stop.is_set()

    def _dispatch(self, tasks: list[Any]) -> None:
        for body in tasks:
            task_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(task_id, str) or not task_id:
                self.answer(body)  # malformed: answered at once, without the store
                continue
            with self._changed:
                if task_id in self._in_flight:
                    log.info("task %s: offered again while it runs; its result follows", task_id)
                    continue
                self._in_flight.add(task_id)
            self._queue.put(body)

    def _work(self) -> None:
        while (body := self._queue.get()) is not None:
            task_id = body["id"]
            try:
                if self._stopping:
                    continue  # not started: the hub offers it again
                result = self.answer(body)
                if result is not None:
                    try:
                        self._post(result)
                    except _HubUnavailable as unavailable:  # the loop posts it once the hub is back
                        self._set_state(unavailable.state, unavailable.message, unavailable.level)
            except _Stopping:
                log.info("task %s: stopped with the agent; the hub will offer it again", task_id)
            except Exception:
                log.exception("task %s: unexpected error", task_id)  # a worker must not die of a task
            finally:
                with self._changed:
                    self._in_flight.discard(task_id)
                    self._changed.notify_all()

    # -- talking to the hub
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {self._credential}"}
        try:
            response = self._client.request(method, API_PREFIX + path, headers=headers, **kwargs)
        except httpx.TransportError as error:
            raise _HubUnavailable(
                "unreachable", f"hub unreachable ({type(error).__name__}: {error}); retrying with backoff"
            ) from None
        if response.status_code == 401:
            raise self._credential_rejected()
        if response.status_code >= 500 or response.status_code == 429:
            raise _HubUnavailable("hub error", f"hub error {response.status_code}; retrying with backoff")
        self._set_state("connected", "connected to the hub", logging.INFO)
        return response

    def _credential_rejected(self) -> _HubUnavailable:
        """Re-read the credential file (the operator may have put a rotated credential there)."""
        try:
            self._credential = read_credential(self._credential_file)
        except ValueError as error:
            return _HubUnavailable("credential unreadable", str(error), logging.ERROR)
        return _HubUnavailable(
            "credential rejected",
            f"the hub rejected this site's credential (401, from {self._credential_file}): it is wrong, "
            "rotated or revoked; ask the hub operator. Retrying with backoff",
            logging.ERROR,
        )

    def _heartbeat_if_due(self) -> None:
        if time.monotonic() - self._last_heartbeat < HEARTBEAT_EVERY:
            return
        body = {
            "version": _agent_version(),
            "generation": self.store.current_generation(),
            "instance": self.instance,
        }
        response = self._request("POST", "/heartbeat", json=body)
        if response.status_code != 200:
            log.warning("heartbeat refused (%d): %s", response.status_code, response.text[:200])
        self._last_heartbeat = time.monotonic()

    def _metadata_if_due(self) -> None:
        """Answer the hub's site-metadata tasks, if it has any (asked every METADATA_EVERY seconds)."""
        if TaskType.SITE_METADATA not in self.config.allowed_tasks:
            return
        if time.monotonic() - self._last_metadata_check < METADATA_EVERY:
            return
        self._last_metadata_check = time.monotonic()
        response = self._request("GET", "/metadata-tasks")
        if response.status_code != 200:
            log.warning("metadata task poll refused (%d): %s", response.status_code, response.text[:200])
            return
        try:
            bodies = response.json()["tasks"]
        except (ValueError, KeyError, TypeError):
            bodies = None
        if not isinstance(bodies, list):
            log.warning("the hub sent a malformed metadata task list")
            return
        for body in bodies:
            try:
                task = Task.from_json(body)
            except ProtocolError as error:
                log.warning("ignoring a malformed metadata task: %s", error)
                continue
            result = self.describe(task)
            posted = self._request("POST", f"/metadata-tasks/{task.id}/result", json=result.to_json())
            if posted.status_code != 200:
                log.warning(
                    "metadata task %s: refused (%d): %s", task.id, posted.status_code, posted.text[:200]
                )

    def _uploads_if_due(self, stop: threading.Event) -> None:
        """Upload the packages the site's custodian released at the hub (see `agent.delivery`), on a
        thread of their own: a package of gigabytes takes minutes to send, and meanwhile the loop goes
        on polling and answering tasks. One upload thread at a time; the next look waits until it ended."""
        if TaskType.EXTRACTION not in self.config.allowed_tasks or self.config.extraction_output is None:
            return
        if self._uploader is not None and self._uploader.is_alive():
            return
        if time.monotonic() - self._last_delivery_check < DELIVERY_EVERY:
            return
        self._last_delivery_check = time.monotonic()
        self._uploader = threading.Thread(
            target=self._upload_released, args=(stop,), name="datenraum-upload", daemon=True
        )
        self._uploader.start()

    def _upload_released(self, stop: threading.Event) -> None:
        from datenraum.site.agent.delivery import upload_released
        from datenraum.site.agent.extraction import job_folder

        try:
            upload_released(
                self._request, lambda project, task_id: job_folder(self.config, project, task_id), stop.is_set
            )
        except _HubUnavailable as unavailable:  # the next look continues at the acknowledged offset
            self._set_state(unavailable.state, unavailable.message, unavailable.level)
        except Exception:
            log.exception("uploading released packages failed; trying again at the next look")
        finally:
            self._last_delivery_check = time.monotonic()

    def describe(self, task: Task) -> TaskResult:
        """The result of a site-metadata task: this store's catalogue figures, under the disclosure rules."""
        if task.type != TaskType.SITE_METADATA:
            return self._failed(task, f"not a {TaskType.SITE_METADATA.value} task")
        try:
            with self._snapshot.task_view() as snapshot:
                metadata = site_metadata(snapshot, self.config.policy, self._clock().astimezone().date())
        except Exception as error:
            self._snapshot.invalidate()
            if not isinstance(error, StoreError):
                log.exception("metadata task %s: unexpected error", task.id)
            return self._failed(task, "the site could not describe its store (see the site's log)")
        log.info("metadata task %s: answered for generation %d", task.id, metadata.generation)
        return TaskResult(task.id, TaskState.ANSWERED, metadata=metadata)

    def _poll(self) -> list[Any]:
        response = self._request("GET", "/tasks", params={"wait": self.config.wait})
        if response.status_code != 200:
            raise _HubUnavailable(
                "poll refused",
                f"the hub refused the task poll ({response.status_code}): {response.text[:200]}",
            )
        try:
            tasks = response.json()["tasks"]
        except (ValueError, KeyError, TypeError):
            tasks = None
        if not isinstance(tasks, list):
            raise _HubUnavailable("malformed tasks", "the hub sent a malformed task list")
        return tasks

    def _post(self, result: TaskResult) -> None:
        response = self._request("POST", f"/tasks/{result.task_id}/result", json=result.to_json())
        if response.status_code != 200:
            # 409 (deadline passed, already answered), 404 (not this site's task), 422: posting the same
            # result again cannot change the answer, so it is settled as far as this site is concerned.
            log.warning(
                "task %s: the hub refused the result (%d): %s",
                result.task_id,
                response.status_code,
                response.text[:200],
            )
        if result.analysis is None and self.journal.get(result.task_id) is not None:
            self.journal.mark_posted(result.task_id)

    def _post_unposted(self) -> None:
        """Post the journaled results no worker is posting (the hub was away when they were ready)."""
        with self._changed:
            busy = set(self._in_flight)
        for result in self.journal.unposted():
            if result.task_id not in busy:
                self._post(result)

    # -- answering tasks
    def answer(self, body: Any) -> TaskResult | None:
        """The result for one task as the hub sent it: the journal's if it was answered before, else a new
        one, recorded before it is returned. None for a body without a task id (nothing to answer to)."""
        try:
            task = Task.from_json(body)
        except ProtocolError as error:
            task_id = body.get("id") if isinstance(body, dict) else None
            if not isinstance(task_id, str) or not task_id:
                log.error("ignoring a malformed task without an id: %s", error)
                return None
            return self._record(
                TaskResult(task_id, TaskState.FAILED, reason=f"malformed task: {error}"), ran=False
            )
        recorded = self.journal.get(task.id)
        if recorded is not None:
            log.info("task %s: offered again, re-posting the recorded result", task.id)
            return recorded
        return self._execute(task)

    def _fail(self, task: Task, reason: str, *, ran: bool) -> TaskResult:
        return self._record(self._failed(task, reason), ran=ran)

    @staticmethod
    def _failed(task: Task, reason: str) -> TaskResult:
        log.warning("task %s: failed: %s", task.id, reason)
        return TaskResult(task.id, TaskState.FAILED, reason=reason)

    def _record(self, result: TaskResult, *, ran: bool) -> TaskResult:
        self.journal.record(result, ran=ran, now=self._clock())
        return result

    def _execute(self, task: Task) -> TaskResult:
        if task.type not in self.config.allowed_tasks:
            if task.type == TaskType.ANALYSIS:  # not journaled (see the module's docstring)
                return self._failed(task, "this site does not answer analysis tasks")
            return self._fail(task, f"this site does not answer {task.type.value} tasks", ran=False)
        if task.type == TaskType.INDICATORS:
            # The dashboard's daily job is not a researcher's query: it does not count against the limit.
            result, ran = self._indicators(task)
            return self._record(result, ran=ran)
        if task.type == TaskType.ANALYSIS:
            return self._analyse(task)
        today = self._clock().astimezone().date()
        with self._admission:  # tasks side by side: the ones admitted and not journaled count too
            if self.journal.runs_on(today) + self._admitted >= self.config.daily_limit:
                return self._fail(
                    task,
                    f"this site's daily limit of {self.config.daily_limit} queries is reached; "
                    "try again tomorrow",
                    ran=False,
                )
            self._admitted += 1
        result, ran = None, False
        try:
            if task.type == TaskType.SITE_METADATA:  # offered on the task list by a hub of the future
                result, ran = self.describe(task), True
            elif task.type == TaskType.EXTRACTION:
                result, ran = self._extract(task)
            elif task.type == TaskType.SAMPLE_SEARCH:
                result, ran = self._samples(task)
            else:
                result, ran = self._count(task)
        finally:
            with self._admission:
                if result is not None:
                    self._record(result, ran=ran)
                self._admitted -= 1
        return result

    def _indicators(self, task: Task) -> tuple[TaskResult, bool]:
        """The dashboard's cube for the task's definitions: aggregates only (see `datenraum.site.indicators`)."""
        started = time.perf_counter()
        try:
            with self._snapshot.task_view() as snapshot:
                cube = _indicator_cube(snapshot, task.payload)
        except ValueError as error:  # DefinitionError is one
            return self._failed(task, f"definitions not usable: {error}"), False
        except StoreError as error:
            self._snapshot.invalidate()
            return self._failed(task, f"the site store is unavailable: {error}"), True
        except Exception:
            log.exception("task %s: unexpected error", task.id)
            return self._failed(task, "the site could not compute the indicators (see the site's log)"), True
        log.info("task %s: indicators computed in %.2f s", task.id, time.perf_counter() - started)
        return TaskResult(task.id, TaskState.ANSWERED, cube=cube), True

    def _analysis_executor(self) -> Any:
        with self._executor_lock:
            if self._executor is None:
                from datenraum.site.analysis.executor import SiteExecutor
                from datenraum.site.analysis.releases import ReleaseLog
                from datenraum.site.analysis.variables import StoreTables
                from datenraum.site.analysis.workspace import Workspace

                self._tables = StoreTables(data_end=self.config.data_end)
                # Beside the journal in the state folder: what was released must survive a restart.
                self._executor = SiteExecutor(
                    {},
                    self.config.analysis,
                    releases=ReleaseLog(self.journal.path.parent / "releases.sqlite"),
                    workspace=Workspace(self.config.workspace_ttl),
                )
            return self._executor

    def _store_table(self, snapshot: Snapshot, request: Any) -> Any:
        from datenraum.analysis.variables import VariableError, parse_definitions
        from datenraum.site.analysis.tables import TableError

        if request.data.cohort is None:
            raise TableError("this site analyses its store: expected {cohort, variables}, not a table")
        try:
            cohort = parse_query(request.data.cohort)
            definitions = parse_definitions(request.data.variables)
        except (QueryError, VariableError) as error:
            raise TableError(f"cohort or variables not supported: {error}") from None
        return self._tables.get(snapshot, request.data.cohort, cohort, definitions)

    @contextlib.contextmanager
    def _time_limited(self) -> Iterator[tuple[Snapshot, TimeLimit]]:
        """A task's snapshot under the site's time limit, registered so that stopping the agent interrupts
        the task's query; raises _Stopping when the agent stops before the task begins."""
        with (
            self._snapshot.task_view() as snapshot,
            TimeLimit(snapshot.connection, self.config.time_limit) as limit,
        ):
            with self._changed:
                if self._stopping:
                    raise _Stopping
                self._limits.add(limit)
            try:
                yield snapshot, limit
            finally:
                with self._changed:
                    self._limits.discard(limit)

    def _analyse(self, task: Task) -> TaskResult:
        """The site executor's answer to an analysis task (not journaled, see the module docstring)."""
        body = task.payload.get("request") if task.payload.get("v") == 1 else None
        if not isinstance(body, dict):
            return self._failed(task, "malformed analysis task: expected the payload {v: 1, request}")
        executor = self._analysis_executor()
        started = time.perf_counter()
        limit: TimeLimit | None = None
        try:
            with self._time_limited() as (snapshot, limit):
                answer = executor.handle(body, resolve=lambda request: self._store_table(snapshot, request))
        except _Stopping:
            raise
        except StoreError as error:
            self._snapshot.invalidate()
            return self._failed(task, f"the site store is unavailable: {error}")
        if limit is not None and limit.exceeded:
            return self._failed(task, f"time limit of {limit.seconds:g} s exceeded")
        if self._stopping:
            raise _Stopping
        log.info(
            "task %s: analysis %s %s in %.2f s",
            task.id,
            body.get("op"),
            "answered" if answer.get("ok") else f"refused ({answer.get('error', {}).get('code')})",
            time.perf_counter() - started,
        )
        return TaskResult(task.id, TaskState.ANSWERED, analysis={**answer, "instance": self.instance})

    def _extract(self, task: Task) -> tuple[TaskResult, bool]:
        """An extraction task (`datenraum.site.agent.extraction`): it runs on the store."""
        result = run_extraction_task(
            task, store=self.store.path, config=self.config, stopping=lambda: self._stopping
        )
        if result is None:
            raise _Stopping
        return result, True

    def _count(self, task: Task) -> tuple[TaskResult, bool]:
        """The task's result (not journaled yet) and whether it ran on the store."""
        try:
            query = parse_query(task.payload.get("query"))
        except QueryError as error:
            return self._failed(task, f"query not supported: {error}"), False
        linkage = task.payload.get("linkage")
        refusal = None
        if linkage is not None:
            refusal = NOT_CONFIGURED if self._linker is None else self._linker.refusal(linkage)
        identities: list[tuple[str, dict[str, str]]] | None = None
        started = time.perf_counter()
        limit: TimeLimit | None = None
        try:
            with self._time_limited() as (snapshot, limit):
                if linkage is None or refusal is not None:
                    # One pass over the cohort's ids gives both its exact size and its noise key.
                    exact, key = cohort_key(self._secret, self._cohort(snapshot, query))
                else:
                    ids = list(self._cohort(snapshot, query))
                    exact, key = cohort_key(self._secret, ids)
                    identities = list(site_linkage.identities(snapshot, ids))
        except _Stopping:
            raise
        except Exception as error:
            # TimeoutError: an engine that keeps the time limit itself (Spark) gave up on the query.
            if isinstance(error, TimeoutError) or (limit is not None and limit.exceeded):
                return self._failed(task, f"time limit of {self.config.time_limit:g} s exceeded"), True
            if self._stopping:
                raise _Stopping from None
            if isinstance(error, QueryError):
                return self._failed(task, f"query not supported: {error}"), True
            self._snapshot.invalidate()
            if isinstance(error, StoreError):
                return self._failed(task, f"the site store is unavailable: {error}"), True
            # One task must not stop the agent; the details stay in the site's log, not the researcher's view.
            log.exception("task %s: unexpected error", task.id)
            return self._failed(
                task, "the site could not run the query (internal error, see the site's log)"
            ), True
        site_count = obfuscate(exact, self.config.policy, key)
        status = refusal
        if identities is not None:
            assert self._linker is not None  # identities are read only for a linker's delivery
            status = self._linker.deliver(linkage["count_id"], identities)
        if status is not None:
            log.info("task %s: linkage %s", task.id, status)
        shown = "below threshold" if site_count.below_threshold else f"{site_count.obfuscated} (obfuscated)"
        log.info("task %s: answered %s in %.2f s", task.id, shown, time.perf_counter() - started)
        return TaskResult(task.id, TaskState.ANSWERED, count=site_count, linkage=status), True

    def _samples(self, task: Task) -> tuple[TaskResult, bool]:
        """A sample search's counts, released by `datenraum.privacy.samples` (the result is not journaled
        yet) and whether it ran on the store."""
        from datenraum.privacy.samples import SamplePolicy
        from datenraum.query.biobank.search import parse_sample_filter
        from datenraum.site.samples import sample_counts

        try:
            body = task.payload.get("query")
            query = None if body is None else parse_query(body)
            sample_filter = parse_sample_filter(task.payload.get("samples"))
        except QueryError as error:
            return self._failed(task, f"sample search not supported: {error}"), False
        started = time.perf_counter()
        limit: TimeLimit | None = None
        try:
            with self._time_limited() as (snapshot, limit):
                counts = sample_counts(snapshot, query, sample_filter)
        except _Stopping:
            raise
        except Exception as error:
            if limit is not None and limit.exceeded:
                return self._failed(task, f"time limit of {limit.seconds:g} s exceeded"), True
            if self._stopping:
                raise _Stopping from None
            if isinstance(error, QueryError):
                return self._failed(task, f"sample search not supported: {error}"), True
            self._snapshot.invalidate()
            if isinstance(error, StoreError):
                return self._failed(task, f"the site store is unavailable: {error}"), True
            log.exception("task %s: unexpected error", task.id)
            return self._failed(
                task, "the site could not count its samples (internal error, see the site's log)"
            ), True
        released = counts.release(self._secret, SamplePolicy(self.config.policy))
        log.info(
            "task %s: sample counts in %d cells in %.2f s",
            task.id,
            len(released.cells),
            time.perf_counter() - started,
        )
        return TaskResult(task.id, TaskState.ANSWERED, samples=released.to_json()), True


def _indicator_cube(snapshot: Snapshot, payload: dict[str, Any]) -> dict[str, Any]:
    """The cube an indicators task asks for (raises DefinitionError or ValueError for a bad payload)."""
    from datenraum.indicators.registry import Registry
    from datenraum.site.indicators import SnapshotEngine, compute_cube

    registry = Registry.from_json(payload.get("definitions"))
    as_of = dt.date.fromisoformat(str(payload.get("as_of")))
    return compute_cube(SnapshotEngine(snapshot), registry, as_of)


def serve(
    *,
    store: Path,
    hub_url: str,
    credential_file: Path,
    config: AgentConfig,
    state_dir: Path,
    stop: threading.Event,
    cohort: Cohort = feasibility.iter_patient_ids,
) -> None:
    """Run the agent of one site until `stop` is set (or KeyboardInterrupt, which is how signals arrive).

    `cohort` selects a task's patients; another one is for development tools only
    (datenraum/devtools/slow_agent.py makes a site slow for the federation's fault tests)."""
    if not store.is_dir():
        raise StoreError(f"{store} is not a site store (no such folder)")
    read_credential(credential_file)  # before anything is created: a typo should leave no trace
    with state_lock(state_dir), Journal(state_dir / "journal.ndjson", dt.datetime.now(dt.UTC)) as journal:
        secret = load_or_create_secret(state_dir)
        linker = None if config.linkage is None else CohortLinker(config.linkage, secret)
        agent = Agent(
            store=store,
            hub_url=hub_url,
            credential_file=credential_file,
            config=config,
            journal=journal,
            secret=secret,
            cohort=cohort,
            linker=linker,
        )
        log.info("site agent started: store %s, hub %s, state in %s", store, hub_url, state_dir)
        try:
            agent.run(stop)
        finally:
            agent.close()
            if linker is not None:
                linker.close()
