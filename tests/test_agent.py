"""The site agent against a fake hub (httpx.MockTransport): journal, backoff, config, limits, failures.

The end-to-end behaviour with a real hub and real processes is in tests/federation/.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import fhir_resources
import httpx
import orjson
import pytest

from datenraum.devtools.demo import DEMO_QUERY
from datenraum.hub.config import HubConfig
from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.protocol.messages import API_PREFIX, TaskResult, TaskState
from datenraum.query.model import query_to_json
from datenraum.site.agent.config import AgentConfig, ConfigError, load_config, parse_config
from datenraum.site.agent.loop import Agent, Backoff, TimeLimit
from datenraum.site.agent.state import Journal, StateError, load_or_create_secret, state_lock
from datenraum.site.feasibility import iter_patient_ids
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

CREDENTIAL = "site-credential-1"
EXACT = 4817  # an exact count no log line may contain
NOW = dt.datetime(2025, 3, 4, 12, 0, tzinfo=dt.UTC)
FAST = AgentConfig(wait=1, backoff_initial=0.001, backoff_cap=0.004)


def task(task_id: str, *, query: Any = None, type_: str = "feasibility-count") -> dict[str, Any]:
    return {
        "id": task_id,
        "type": type_,
        "payload": {"query": query_to_json(DEMO_QUERY) if query is None else query},
        "deadline": (NOW + dt.timedelta(seconds=30)).isoformat(),
    }


class FakeHub:
    """Answers the site API like the hub would; `outage` requests fail to connect first."""

    def __init__(self, tasks: list[dict[str, Any]] = (), outage: int = 0) -> None:
        self.pending = list(tasks)
        self.outage = outage
        self.credential = CREDENTIAL
        self.posted: list[dict[str, Any]] = []
        self.lose_post_responses = 0
        self.refuse_posts = 0
        self.polls = 0
        self.metadata_tasks: list[dict[str, Any]] = []
        self.on_poll: Callable[[], None] = lambda: None
        self.on_post: Callable[[], None] = lambda: None
        # Like the hub's long-poll, a poll without tasks to hand out waits while a task handed out has not
        # been answered yet (an agent that answers tasks side by side polls meanwhile), or `wait` passes.
        self._changed = threading.Condition()
        self._handed: set[str] = set()
        self._answered: set[str] = set()

    def _idle(self) -> bool:
        return bool(self.pending) or not (self._handed - self._answered)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.outage:
            self.outage -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if request.headers["Authorization"] != f"Bearer {self.credential}":
            return httpx.Response(401, json={"error": "unknown credential"})
        path = request.url.path.removeprefix(API_PREFIX)
        if path == "/heartbeat":
            return httpx.Response(200, json={})
        if path == "/metadata-tasks":
            tasks, self.metadata_tasks = self.metadata_tasks, []
            return httpx.Response(200, json={"tasks": tasks})
        if path == "/tasks":
            with self._changed:
                self._changed.wait_for(self._idle, timeout=float(request.url.params["wait"]))
            self.polls += 1
            self.on_poll()
            tasks, self.pending = self.pending, []
            self._handed.update(t["id"] for t in tasks if isinstance(t.get("id"), str))
            return httpx.Response(200, json={"tasks": tasks})
        if path.endswith("/result"):
            with self._changed:
                self._answered.add(path.split("/")[-2])
                self._changed.notify_all()
            if self.refuse_posts:
                self.refuse_posts -= 1
                raise httpx.ConnectError("connection refused", request=request)
            self.posted.append(orjson.loads(request.content))
            self.on_post()
            if self.lose_post_responses:
                self.lose_post_responses -= 1
                raise httpx.ReadTimeout("response lost", request=request)
            return httpx.Response(200, json={"state": self.posted[-1]["state"]})
        return httpx.Response(404, json={"error": "no such path"})


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Path]:
    store = tmp_path / "store"
    store.mkdir()  # an empty store: generation 0, enough for a counter that does not read it
    (tmp_path / "agent").mkdir()
    credential = tmp_path / "credential"
    credential.write_text(CREDENTIAL + "\n")
    return {"store": store, "state": tmp_path / "agent", "credential": credential}


class Counter:
    """A cohort of `exact` patients, whatever the query."""

    def __init__(self, exact: int = EXACT) -> None:
        self.exact = exact
        self.calls = 0

    def __call__(self, snapshot: Any, query: Any) -> list[str]:
        self.calls += 1
        return [f"p{i:06d}" for i in range(self.exact)]


@pytest.fixture
def make_agent(site: dict[str, Path]) -> Iterator[Callable[..., Agent]]:
    """Agents of the test's site against a fake hub; their clients and journals are closed afterwards."""
    made: list[Agent] = []

    def make(
        hub: FakeHub,
        *,
        config: AgentConfig = FAST,
        counter: Counter | Callable[..., Iterable[str]] | None = None,
        clock: Callable[[], dt.datetime] = lambda: NOW,
    ) -> Agent:
        made.append(
            Agent(
                store=site["store"],
                hub_url="http://hub.test",
                credential_file=site["credential"],
                config=config,
                journal=Journal(site["state"] / "journal.ndjson", clock()),
                secret=b"s" * 32,
                cohort=counter or Counter(),
                clock=clock,
                transport=httpx.MockTransport(hub),
            )
        )
        return made[-1]

    yield make
    for agent in made:
        agent.close()
        agent.journal.close()


def run_until(agent: Agent, hub: FakeHub, done: Callable[[], bool], limit: int = 200) -> None:
    """Run the agent's loop in a thread until `done()` holds at a poll (or `limit` polls, a test failure)."""
    stop = threading.Event()

    def check() -> None:
        if done() or hub.polls >= limit:
            stop.set()

    hub.on_poll = check
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the agent did not stop"
    assert hub.polls < limit, "the condition never held"


# -- journal


def test_a_task_offered_again_gets_the_recorded_result_without_running_again(make_agent):
    counter = Counter()
    agent = make_agent(FakeHub(), counter=counter)
    first = agent.answer(task("t1"))
    again = agent.answer(task("t1"))
    assert again == first
    assert first.state == TaskState.ANSWERED
    assert counter.calls == 1


def test_a_result_whose_response_was_lost_is_posted_again_not_recomputed(make_agent):
    hub = FakeHub([task("t1")])
    hub.lose_post_responses = 1
    counter = Counter()
    agent = make_agent(hub, counter=counter)
    run_until(agent, hub, lambda: len(hub.posted) == 2)
    assert hub.posted[0] == hub.posted[1]
    assert counter.calls == 1


def test_tasks_of_one_poll_are_all_answered_when_the_hub_goes_away_after_the_first(make_agent):
    hub = FakeHub([task("t1"), task("t2")])
    hub.refuse_posts = 1
    counter = Counter()
    run_until(make_agent(hub, counter=counter), hub, lambda: len(hub.posted) == 2)
    assert sorted(p["task_id"] for p in hub.posted) == ["t1", "t2"]
    assert counter.calls == 2


def test_after_a_crash_between_recording_and_posting_the_restarted_agent_posts_the_recorded_result(
    make_agent,
):
    counter = Counter()
    crashed = make_agent(FakeHub(), counter=counter)
    result = crashed.answer(task("t1"))  # recorded, never posted: the process died here
    crashed.journal.close()

    hub = FakeHub()
    restarted = make_agent(hub, counter=counter)
    run_until(restarted, hub, lambda: bool(hub.posted))
    assert hub.posted == [result.to_json()]
    assert counter.calls == 1


def test_a_task_offered_again_after_a_restart_gets_the_recorded_result_without_running_again(make_agent):
    counter = Counter()
    before = make_agent(FakeHub(), counter=counter)
    first = before.answer(task("t1"))
    before.journal.close()

    after = make_agent(FakeHub(), counter=counter)
    assert after.answer(task("t1")) == first
    assert counter.calls == 1


def test_results_the_hub_took_are_not_posted_again_after_a_restart(make_agent):
    hub = FakeHub([task("t1")])
    run_until(make_agent(hub), hub, lambda: bool(hub.posted))
    hub2 = FakeHub()
    run_until(make_agent(hub2), hub2, lambda: hub2.polls >= 2)
    assert hub2.posted == []


def test_a_journal_line_cut_short_by_a_crash_is_skipped(site):
    with Journal(site["state"] / "journal.ndjson", NOW) as journal:
        journal.record(TaskResult("t1", TaskState.FAILED, reason="x"), ran=True, now=NOW)
    with open(site["state"] / "journal.ndjson", "ab") as handle:
        handle.write(b'{"recorded": "2025-03-04T12:00:00+00:00", "ran": tr')
    with Journal(site["state"] / "journal.ndjson", NOW) as reopened:
        assert reopened.unposted() == [TaskResult("t1", TaskState.FAILED, reason="x")]


def test_journal_entries_older_than_the_retention_are_dropped_at_start(site):
    with Journal(site["state"] / "journal.ndjson", NOW) as journal:
        journal.record(
            TaskResult("old", TaskState.FAILED, reason="x"), ran=True, now=NOW - dt.timedelta(days=30)
        )
        journal.record(TaskResult("new", TaskState.FAILED, reason="x"), ran=True, now=NOW)
    with Journal(site["state"] / "journal.ndjson", NOW) as reopened:
        assert reopened.get("old") is None
        assert reopened.get("new") is not None


def test_a_long_running_agent_forgets_posted_entries_older_than_the_retention(site):
    with Journal(site["state"] / "journal.ndjson", NOW) as journal:
        journal.record(TaskResult("posted", TaskState.FAILED, reason="x"), ran=True, now=NOW)
        journal.mark_posted("posted")
        journal.record(TaskResult("unposted", TaskState.FAILED, reason="x"), ran=True, now=NOW)
        journal.record(
            TaskResult("new", TaskState.FAILED, reason="x"), ran=True, now=NOW + dt.timedelta(days=8)
        )
        assert journal.get("posted") is None
        assert journal.get("unposted") is not None  # still to be posted
        assert journal.get("new") is not None


# -- backoff and connection states


def test_backoff_doubles_from_the_initial_pause_up_to_the_cap():
    upper = Backoff(0.5, 30, rng=lambda: 1.0)
    assert [upper.next_delay() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    lower = Backoff(0.5, 30, rng=lambda: 0.0)
    assert [lower.next_delay() for _ in range(3)] == [0.25, 0.5, 1]


def test_backoff_starts_over_after_a_success():
    backoff = Backoff(0.5, 30, rng=lambda: 1.0)
    for _ in range(5):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_keeps_each_pause_between_half_and_all_of_its_step():
    backoff = Backoff(1, 8)
    for ceiling in (1, 2, 4, 8, 8):
        assert ceiling / 2 <= backoff.next_delay() <= ceiling


def test_an_outage_is_logged_once_and_the_reconnection_once(make_agent, caplog):
    hub = FakeHub([task("t1")], outage=6)
    with caplog.at_level(logging.INFO, logger="datenraum.site.agent"):
        run_until(make_agent(hub), hub, lambda: bool(hub.posted))
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert sum("connected" in m for m in messages) == 1


def test_a_rejected_credential_is_logged_clearly_once_and_a_rewritten_file_is_picked_up(
    site, make_agent, caplog
):
    hub = FakeHub([task("t1")])
    hub.credential = "rotated"
    rotated = site["credential"].with_name("rotated")
    rotated.write_text("rotated")
    # as an operator would: replace the file at once (a reader must not see it half written)
    rotate = threading.Timer(0.3, os.replace, args=(rotated, site["credential"]))  # many 401s before
    with caplog.at_level(logging.INFO, logger="datenraum.site.agent"):
        rotate.start()
        run_until(make_agent(hub), hub, lambda: bool(hub.posted))
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "rejected this site's credential (401" in errors[0]


# -- answering


def test_a_count_leaves_obfuscated_and_the_exact_count_is_never_logged(make_agent, caplog):
    hub = FakeHub([task("t1")])
    with caplog.at_level(logging.DEBUG):
        run_until(make_agent(hub), hub, lambda: bool(hub.posted))
    count = hub.posted[0]["count"]["obfuscated"]
    assert count % 10 == 0 and abs(count - EXACT) <= 10
    assert str(EXACT) not in caplog.text


def test_a_small_count_leaves_only_as_below_threshold(make_agent):
    result = make_agent(FakeHub(), counter=Counter(3)).answer(task("t1"))
    assert result.count.below_threshold


def test_a_malformed_query_is_answered_as_failed_naming_the_problem(make_agent):
    counter = Counter()
    result = make_agent(FakeHub(), counter=counter).answer(task("t1", query={"inclusionCriteria": []}))
    assert result.state == TaskState.FAILED
    assert result.reason.startswith("query not supported: $.inclusionCriteria")
    assert counter.calls == 0


def test_a_task_type_the_operator_did_not_allow_is_answered_as_failed(make_agent):
    config = AgentConfig(allowed_tasks=frozenset())
    result = make_agent(FakeHub(), config=config).answer(task("t1"))
    assert result.state == TaskState.FAILED
    assert result.reason == "this site does not answer feasibility-count tasks"


def test_a_task_of_an_unknown_type_is_answered_as_failed(make_agent):
    result = make_agent(FakeHub()).answer(task("t1", type_="extract-everything"))
    assert result.state == TaskState.FAILED
    assert "malformed task" in result.reason


def test_a_store_error_is_answered_as_failed(site, make_agent):
    site["store"].rmdir()
    result = make_agent(FakeHub()).answer(task("t1"))
    assert result.state == TaskState.FAILED
    assert result.reason.startswith("the site store is unavailable")


def test_the_daily_limit_refuses_further_tasks_until_the_next_day(make_agent):
    now = [NOW]
    config = AgentConfig(daily_limit=2)
    agent = make_agent(FakeHub(), config=config, clock=lambda: now[0])
    states = [agent.answer(task(f"t{i}")).state for i in range(3)]
    assert states == [TaskState.ANSWERED, TaskState.ANSWERED, TaskState.FAILED]
    assert "daily limit of 2 queries" in agent.journal.get("t2").reason
    now[0] = NOW + dt.timedelta(days=1)
    assert agent.answer(task("t3")).state == TaskState.ANSWERED


def test_the_agent_reports_the_catalogues_figures_rounded(site, make_agent, write_ndjson):
    women = [fhir_resources.patient(f"p{i}", gender="female", birthDate="1960-01-01") for i in range(23)]
    ingest(site["store"], [write_ndjson("women.ndjson", women)])
    hub = FakeHub()
    hub.metadata_tasks = [{**task("m1", type_="site-metadata"), "payload": {}}]
    agent = make_agent(hub, config=AgentConfig(threads=1))
    run_until(agent, hub, lambda: bool(hub.posted))
    (posted,) = hub.posted
    assert posted["task_id"] == "m1" and posted["state"] == "answered"
    assert posted["metadata"]["patients"] == {"obfuscated": 20}  # 23, rounded as feasibility counts are
    assert "count" not in posted and posted["metadata"]["tables"]


def test_refused_tasks_do_not_count_against_the_daily_limit(make_agent):
    agent = make_agent(FakeHub(), config=AgentConfig(daily_limit=1))
    agent.answer(task("bad", query={"inclusionCriteria": []}))
    assert agent.answer(task("good")).state == TaskState.ANSWERED


def test_a_count_after_a_load_sees_the_new_data(site, make_agent, write_ndjson):
    # the real feasibility engine on a real store: the kept-open snapshot must not hide a new load
    everyone = {"inclusionCriteria": [[query_to_json(DEMO_QUERY)["inclusionCriteria"][0][0]]]}
    women = [fhir_resources.patient(f"p{i}", gender="female", birthDate="1960-01-01") for i in range(40)]
    ingest(site["store"], [write_ndjson("first.ndjson", women[:20])])
    agent = make_agent(
        FakeHub(),
        config=AgentConfig(policy=ObfuscationPolicy(noise=0, rounding=1), threads=1),
        counter=iter_patient_ids,
    )
    assert agent.answer(task("t1", query=everyone)).count.obfuscated == 20
    ingest(site["store"], [write_ndjson("second.ndjson", women[20:])])
    assert agent.answer(task("t2", query=everyone)).count.obfuscated == 40


# -- the state folder


def test_the_site_secret_is_made_once_private_and_kept(tmp_path):
    secret = load_or_create_secret(tmp_path / "agent")
    assert len(secret) == 32
    assert os.stat(tmp_path / "agent" / "site-secret").st_mode & 0o777 == 0o600
    assert load_or_create_secret(tmp_path / "agent") == secret


def test_a_site_secret_readable_by_others_is_refused(tmp_path):
    load_or_create_secret(tmp_path)
    os.chmod(tmp_path / "site-secret", 0o644)
    with pytest.raises(StateError, match="readable by others"):
        load_or_create_secret(tmp_path)


def test_two_agents_cannot_share_a_state_folder(tmp_path):
    with state_lock(tmp_path), pytest.raises(StateError, match="another site agent"), state_lock(tmp_path):
        pass


# -- configuration


def test_no_config_file_means_the_documented_defaults():
    config = load_config(None)
    assert config == AgentConfig()
    assert (config.policy.threshold, config.policy.noise, config.policy.rounding) == (10, 5, 10)
    assert (config.daily_limit, config.wait, config.backoff_initial, config.backoff_cap) == (
        1000,
        25,
        0.5,
        30,
    )
    assert config.threads == 0


def test_a_config_file_sets_every_setting(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        "[tasks]\nallowed = []\ndaily_limit = 50\n[obfuscation]\nthreshold = 20\nnoise = 0\nrounding = 5\n"
        "[hub]\nwait = 10\nbackoff_initial = 1\nbackoff_cap = 60\n[store]\nthreads = 1\n"
    )
    config = load_config(path)
    assert config.allowed_tasks == frozenset()
    assert config.daily_limit == 50
    assert (config.policy.threshold, config.policy.noise, config.policy.rounding) == (20, 0, 5)
    assert (config.wait, config.backoff_initial, config.backoff_cap) == (10, 1.0, 60.0)
    assert config.threads == 1


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"obfuscation": {"treshold": 5}}, "obfuscation.treshold: unknown key"),
        ({"privacy": {}}, "privacy: unknown section"),
        ({"obfuscation": {"threshold": "5"}}, "obfuscation.threshold: expected an integer"),
        ({"obfuscation": {"threshold": 0}}, "obfuscation.threshold: expected an integer at least 1"),
        ({"obfuscation": {"noise": -1}}, "obfuscation.noise"),
        ({"tasks": {"daily_limit": 1.5}}, "tasks.daily_limit: expected an integer"),
        ({"tasks": {"allowed": ["feasibility"]}}, "tasks.allowed: unknown task type 'feasibility'"),
        ({"tasks": {"allowed": "feasibility-count"}}, "tasks.allowed: expected a list"),
        ({"hub": {"wait": 61}}, "hub.wait: expected an integer from 1 to 60"),
        ({"hub": {"backoff_cap": 0}}, "hub.backoff_cap: expected a positive number"),
        ({"hub": {"backoff_initial": 5, "backoff_cap": 1}}, "hub.backoff_cap: must not be below"),
        ({"hub": 3}, "hub: expected a table"),
        ({"store": {"threads": -1}}, "store.threads: expected an integer at least 0"),
    ],
)
def test_a_bad_setting_is_an_error_naming_the_key(document, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        parse_config(document)


def test_a_config_error_names_the_file(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text("[hub]\nwait = 0\n")
    with pytest.raises(ConfigError, match=f"^{path}: hub.wait"):
        load_config(path)
    path.write_text("[hub\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


# -- noise keyed on the cohort (issue 12, P-1)


def _diagnosis(code: str) -> dict[str, Any]:
    return {
        "context": {"system": "fdpg.mii.cds", "code": "Diagnose"},
        "termCodes": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": code}],
    }


def test_every_way_of_writing_one_cohort_gets_the_same_answer(site, make_agent, write_ndjson):
    # 60 patients with E11, 20 of them also with C50: E11 and not C50 is 40 patients however it is written
    resources = [fhir_resources.patient(f"p{i}", birthDate="1960-01-01") for i in range(80)]
    resources += [fhir_resources.condition(f"d{i}", f"Patient/p{i}", "E11.9") for i in range(60)]
    resources += [fhir_resources.condition(f"c{i}", f"Patient/p{i}", "C50.1") for i in range(40, 80)]
    ingest(site["store"], [write_ndjson("cohort.ndjson", resources)])
    agent = make_agent(
        FakeHub(),
        config=AgentConfig(policy=ObfuscationPolicy(noise=20, rounding=1), threads=1),
        counter=iter_patient_ids,
    )
    e11, c50, c00 = _diagnosis("E11"), _diagnosis("C50"), _diagnosis("C00-C97")
    variants = [
        {"inclusionCriteria": [[e11]], "exclusionCriteria": [[c50]]},
        {"inclusionCriteria": [[e11, e11]], "exclusionCriteria": [[c50], [c50]]},
        {"inclusionCriteria": [[e11], [e11]], "exclusionCriteria": [[c00]]},  # another query, same patients
        {"inclusionCriteria": [[e11]], "exclusionCriteria": [[c50], [c50, e11]]},
        {"inclusionCriteria": [[e11], [e11, c50]], "exclusionCriteria": [[c00, c50]]},
    ]
    answers = {agent.answer(task(f"t{i}", query=q)).count.obfuscated for i, q in enumerate(variants)}
    assert len(answers) == 1, answers
    (answer,) = answers
    assert 20 <= answer <= 60  # 40 and noise within ±20


# -- a time limit per task, and tasks side by side (issue 12, P-2)

ENDLESS = "SELECT count(*) FROM range(1000000000000000)"  # hours of work for DuckDB, unless interrupted


def _endless(snapshot: Any, query: Any) -> list[str]:
    """A cohort whose query runs on the task's DuckDB cursor until it is interrupted."""
    snapshot.connection.execute(ENDLESS).fetchall()
    return []


def test_a_query_over_the_time_limit_is_interrupted_and_failed_and_the_agent_goes_on(make_agent, caplog):
    calls = []

    def cohort(snapshot: Any, query: Any) -> Iterable[str]:
        calls.append(query)
        return _endless(snapshot, query) if len(calls) == 1 else Counter()(snapshot, query)

    config = AgentConfig(time_limit=0.2, threads=1)
    agent = make_agent(FakeHub(), config=config, counter=cohort)
    with caplog.at_level(logging.INFO, logger="datenraum.site.agent"):
        started = time.monotonic()
        result = agent.answer(task("endless"))
        took = time.monotonic() - started
    assert (result.state, result.reason) == (TaskState.FAILED, "time limit of 0.2 s exceeded")
    assert took < 10  # interrupted, not run out
    assert "internal error" not in caplog.text and "Traceback" not in caplog.text
    assert agent.answer(task("next")).state == TaskState.ANSWERED  # the same snapshot still answers
    assert agent.journal.runs_on(NOW.astimezone().date()) == 2  # the interrupted one cost the site too


def test_a_time_limit_that_expires_before_the_query_starts_still_interrupts_it(site):
    # the time may run out while the query is compiled: an interrupt while nothing runs is lost in DuckDB
    with Store(site["store"]).snapshot() as snapshot, contextlib.closing(snapshot.cursor()) as view:
        with TimeLimit(view.connection, 3600) as limit:
            limit.expire()
            with pytest.raises(duckdb.InterruptException):
                view.connection.execute(ENDLESS).fetchall()
        assert limit.exceeded


def test_a_snapshot_cursor_sees_every_table_also_of_an_empty_store(site):
    with Store(site["store"]).snapshot() as snapshot, contextlib.closing(snapshot.cursor()) as view:
        assert view.connection is not snapshot.connection
        assert view.connection.execute("SELECT count(*) FROM patient").fetchone() == (0,)
        assert view.generation == snapshot.generation


def _slow_query() -> dict[str, Any]:
    return {"inclusionCriteria": [[_diagnosis("C50")]]}


def test_one_slow_task_does_not_hold_up_the_others(make_agent):
    hub = FakeHub([task("slow", query=_slow_query()), task("fast-1"), task("fast-2")])
    release = threading.Event()
    released_by_the_fast_ones = []

    def cohort(snapshot: Any, query: Any) -> Iterable[str]:
        if "C50" in repr(query):
            released_by_the_fast_ones.append(release.wait(timeout=5))
        return Counter()(snapshot, query)

    def on_post() -> None:
        if {"fast-1", "fast-2"} <= {p["task_id"] for p in hub.posted}:
            release.set()

    hub.on_post = on_post
    agent = make_agent(hub, config=replace(FAST, concurrency=2), counter=cohort)
    run_until(agent, hub, lambda: len(hub.posted) == 3)
    assert released_by_the_fast_ones == [True]
    assert [p["task_id"] for p in hub.posted][-1] == "slow"


def test_tasks_side_by_side_never_exceed_the_daily_limit(make_agent):
    hub = FakeHub([task(f"t{i}") for i in range(6)])
    agent = make_agent(hub, config=replace(FAST, concurrency=3, daily_limit=2))
    run_until(agent, hub, lambda: len(hub.posted) == 6)
    states = sorted(p["state"] for p in hub.posted)
    assert states == ["answered"] * 2 + ["failed"] * 4
    assert agent.journal.runs_on(NOW.astimezone().date()) == 2


def test_a_task_offered_twice_at_once_runs_once(make_agent):
    hub = FakeHub([task("t1"), task("t1")])
    counter = Counter()
    agent = make_agent(hub, config=replace(FAST, concurrency=2), counter=counter)
    run_until(agent, hub, lambda: bool(hub.posted) and hub.polls >= 3)
    assert counter.calls == 1
    assert all(p == hub.posted[0] for p in hub.posted)


def test_the_time_limit_and_the_pool_have_defaults_below_the_hub_deadline_and_can_be_set(tmp_path):
    config = load_config(None)
    assert (config.time_limit, config.concurrency) == (20.0, 2)
    assert config.time_limit < HubConfig().task_deadline_seconds
    path = tmp_path / "agent.toml"
    path.write_text("[tasks]\ntime_limit = 5.5\nconcurrency = 4\n")
    assert (load_config(path).time_limit, load_config(path).concurrency) == (5.5, 4)
    with pytest.raises(ConfigError, match=r"tasks\.time_limit: expected a positive number"):
        parse_config({"tasks": {"time_limit": 0}})
    with pytest.raises(ConfigError, match=r"tasks\.concurrency: expected an integer from 1 to 16"):
        parse_config({"tasks": {"concurrency": 0}})
