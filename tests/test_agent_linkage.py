"""The agent's part in distinct-person counts (issue 23): it delivers CLKs only to the linkage unit of its
own configuration, whatever the hub's task names, and a linkage that cannot happen never costs the count.
The delivery itself, over real HTTP to a real unit, is tests/federation/test_distinct_count.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from linkage_data import ADULTS, identity_store

from datenraum.devtools.ports import free_port
from datenraum.linkage import synthetic
from datenraum.protocol.messages import LINKAGE_DELIVERED, ProtocolError, SiteCount, TaskResult, TaskState
from datenraum.site.agent.config import AgentConfig, ConfigError, LinkageSettings, parse_config
from datenraum.site.agent.linkage import NOT_CONFIGURED, CohortLinker
from datenraum.site.agent.loop import Agent
from datenraum.site.agent.state import Journal
from datenraum.site.feasibility import iter_patient_ids

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def _task(unit_url: str) -> dict:
    return {
        "id": "t-linkage",
        "type": "feasibility-count",
        "payload": {
            "query": ADULTS,
            "linkage": {"unit_url": unit_url, "project": "p1", "count_id": "c" * 36},
        },
        "deadline": (NOW + dt.timedelta(seconds=30)).isoformat(),
    }


def _refuse_every_request(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the agent sent {request.method} {request.url}")


@pytest.fixture
def settings(tmp_path: Path) -> LinkageSettings:
    (tmp_path / "secret").write_bytes(b"a shared linkage secret of the sites")
    (tmp_path / "token").write_text("unit token of site-a")
    return LinkageSettings(
        f"http://127.0.0.1:{free_port()}", "p1", "site-a", tmp_path / "token", tmp_path / "secret"
    )


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator:
    people, _ = synthetic.sites(60, 1, seed=5)
    store = identity_store(tmp_path / "site", {f"p{n:03d}": r for n, r in enumerate(people[0])})
    (tmp_path / "credential").write_text("site-credential\n")
    made: list[Agent] = []

    def make(linker: CohortLinker | None) -> Agent:
        state = tmp_path / f"state-{len(made)}"
        state.mkdir()
        made.append(
            Agent(
                store=store,
                hub_url="http://hub.test",
                credential_file=tmp_path / "credential",
                config=AgentConfig(),
                journal=Journal(state / "journal.ndjson", NOW),
                secret=b"s" * 32,
                cohort=iter_patient_ids,
                clock=lambda: NOW,
                transport=httpx.MockTransport(_refuse_every_request),  # answer() posts nothing to the hub
                linker=linker,
            )
        )
        return made[-1]

    yield make
    for agent in made:
        agent.close()
        agent.journal.close()


def test_a_task_naming_another_linkage_unit_sends_nothing_there_and_still_answers_the_count(
    make_agent, settings
) -> None:
    """A hub (or whoever controls it) that names its own address as the unit would collect the site's
    CLKs for frequency attacks: the agent delivers only to the unit it was configured with."""
    linker = CohortLinker(settings, b"s" * 32, transport=httpx.MockTransport(_refuse_every_request))
    result = make_agent(linker).answer(_task("http://hub.test/collect"))
    linker.close()
    assert result.state == TaskState.ANSWERED and result.count is not None
    assert result.linkage.startswith(
        "not delivered: the task names the linkage unit 'http://hub.test/collect'"
    )


def test_a_site_without_linkage_answers_the_count_with_a_status_saying_so(make_agent) -> None:
    result = make_agent(None).answer(_task("http://unit.test"))
    assert result.state == TaskState.ANSWERED and result.count is not None
    assert result.linkage == NOT_CONFIGURED


def test_an_unreachable_linkage_unit_costs_the_linkage_not_the_count(make_agent, settings) -> None:
    linker = CohortLinker(settings, b"s" * 32)
    result = make_agent(linker).answer(_task(settings.unit_url))
    linker.close()
    assert result.state == TaskState.ANSWERED and result.count is not None
    assert result.linkage.startswith(f"not delivered: linkage unit {settings.unit_url}")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"unit_url": "http://u", "project": "p", "site": "a", "token_file": "t"},
            r"^linkage\.secret_file: required",
        ),
        (
            {"unit_url": "ftp://u", "project": "p", "site": "a", "token_file": "t", "secret_file": "s"},
            r"^linkage\.unit_url: expected an http\(s\) URL",
        ),
        (
            {"unit_url": "http://u", "project": "p", "site": "a", "token_fil": "t"},
            r"^linkage\.token_fil: unknown key",
        ),
    ],
)
def test_a_bad_linkage_section_is_refused_naming_the_key(section, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"linkage": section})


def test_a_linkage_secret_file_that_is_missing_or_short_is_refused_at_start(settings, tmp_path) -> None:
    (tmp_path / "secret").write_bytes(b"short")
    with pytest.raises(ConfigError, match=r"^linkage\.secret_file: .*at least 16 bytes"):
        CohortLinker(settings, b"s" * 32)
    (tmp_path / "secret").unlink()
    with pytest.raises(ConfigError, match=r"^linkage\.secret_file: .*No such file"):
        CohortLinker(settings, b"s" * 32)


@pytest.mark.parametrize("status", [7, "", "x" * 2001, ["delivered"]])
def test_a_linkage_status_that_is_no_short_text_is_refused_naming_the_field(status) -> None:
    body = {"task_id": "t", "state": "answered", "count": {"obfuscated": 40}, "linkage": status}
    with pytest.raises(ProtocolError, match=r"^result\.linkage: expected a string of 1 to 2000 characters"):
        TaskResult.from_json(body)


def test_a_linkage_status_travels_with_the_answer() -> None:
    result = TaskResult("t", TaskState.ANSWERED, count=SiteCount(40), linkage=LINKAGE_DELIVERED)
    assert TaskResult.from_json(result.to_json()) == result
