"""The site agent's `sample-search` task (issue 21): the counts leave the site only as the disclosure rules
release them, a bad search fails with its reason, and a site answers it only when it says so."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from shared_data import shared_data_folder

from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.protocol.messages import ProtocolError, SiteCount, TaskResult, TaskState, TaskType
from datenraum.protocol.samples import SampleResult
from datenraum.site.agent.config import AgentConfig
from datenraum.site.agent.loop import Agent
from datenraum.site.agent.state import Journal
from datenraum.site.feasibility import iter_patient_ids
from datenraum.site.ingest import ingest

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
ANSWERING = AgentConfig(
    allowed_tasks=frozenset({TaskType.FEASIBILITY_COUNT, TaskType.SAMPLE_SEARCH}),
    policy=ObfuscationPolicy(threshold=5, noise=2, rounding=5),
)
CHARITE = "mii-exa-test-data-organization-biobank-charite"


def no_hub(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"error": "these tests answer tasks directly"})


@pytest.fixture(scope="module")
def biobank_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("agent-samples") / "store"
    ingest(
        folder, [shared_data_folder("mii-kds-testdata") / "Bundle-mii-exa-test-data-bundle-biobank-1.json"]
    )
    return folder


@pytest.fixture
def make_agent(biobank_store: Path, tmp_path: Path) -> Iterator[Any]:
    made: list[Agent] = []
    credential = tmp_path / "credential"
    credential.write_text("site-credential\n")

    def make(config: AgentConfig = ANSWERING) -> Agent:
        agent = Agent(
            store=biobank_store,
            hub_url="http://hub.test",
            credential_file=credential,
            config=config,
            journal=Journal(tmp_path / f"journal-{len(made)}.ndjson", NOW),
            secret=b"s" * 32,
            cohort=iter_patient_ids,
            clock=lambda: NOW,
            transport=httpx.MockTransport(no_hub),
        )
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()
        agent.journal.close()


def sample_task(task_id: str, samples: Any = None, query: Any = None) -> dict[str, Any]:
    return {
        "id": task_id,
        "type": "sample-search",
        "payload": {"query": query, "samples": samples},
        "deadline": (NOW + dt.timedelta(seconds=30)).isoformat(),
    }


def test_a_sample_search_is_answered_with_released_counts_only(make_agent) -> None:
    agent = make_agent()
    result = agent.answer(sample_task("s1", {"categories": ["blood"]}))
    assert result.state == TaskState.ANSWERED
    released = SampleResult.from_json(orjson.loads(orjson.dumps(result.to_json()))["samples"])
    cells = {(c.biobank, c.category): c for c in released.cells}
    # Charité's 9 whole-blood specimens of 9 patients: released, rounded to 5 with noise; the 2 tubes of
    # patient-4 without a biobank (1 patient) are withheld whole.
    charite = cells[(CHARITE, "whole-blood")]
    assert charite.specimens.obfuscated % 5 == 0 and charite.patients.obfuscated % 5 == 0
    assert cells[(None, "whole-blood")].specimens == SiteCount(None, below_threshold=True)
    assert agent.answer(sample_task("s1", {"categories": ["blood"]})) == result  # journaled


def test_a_bad_sample_search_fails_with_its_json_path_and_does_not_run(make_agent) -> None:
    agent = make_agent()
    result = agent.answer(sample_task("s2", {"temperatures": ["-80"]}))
    assert result.state == TaskState.FAILED
    assert result.reason == (
        "sample search not supported: samples.temperatures[0]: '-80' is not a known storage temperature class"
    )
    assert agent.journal.runs_on(NOW.date()) == 0


def test_a_site_answers_sample_searches_only_when_it_says_so(make_agent) -> None:
    agent = make_agent(replace(ANSWERING, allowed_tasks=frozenset({TaskType.FEASIBILITY_COUNT})))
    result = agent.answer(sample_task("s3"))
    assert (result.state, result.reason) == (
        TaskState.FAILED,
        "this site does not answer sample-search tasks",
    )


def test_a_result_with_malformed_sample_counts_is_refused() -> None:
    body = {
        "task_id": "s4",
        "state": "answered",
        "samples": {"patients": {"obfuscated": -3}, "biobanks": [], "cells": []},
    }
    with pytest.raises(ProtocolError, match=r"samples\.patients"):
        TaskResult.from_json(body)
    with pytest.raises(ProtocolError, match="and only one of them"):
        TaskResult(
            "s5",
            TaskState.ANSWERED,
            count=SiteCount(10),
            samples={"patients": {"obfuscated": 10}, "biobanks": [], "cells": []},
        )
