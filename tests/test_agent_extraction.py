"""The agent's `extraction` task against the fake hub of test_agent: off by default, the job runs into
the site's output folder, and only the state and the summary's counts go back."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from test_agent import CREDENTIAL, FAST, NOW, Counter, FakeHub, run_until

from datenraum.protocol.messages import ProtocolError, TaskResult, TaskState, TaskType
from datenraum.site.agent.config import ConfigError, parse_config
from datenraum.site.agent.loop import Agent
from datenraum.site.agent.state import Journal
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

CASE = "torch/cases/diag-enc-diag"
PATIENT = "torch-test-diag-enc-diag-pat-1"


def extraction_task(task_id: str, crtdl: object, project: str = "P-2026-001") -> dict:
    return {
        "id": task_id,
        "type": "extraction",
        "payload": {"crtdl": crtdl, "project": project},
        "deadline": (NOW + dt.timedelta(hours=1)).isoformat(),
    }


@pytest.fixture
def site(tmp_path, extraction_data):
    store = tmp_path / "store"
    ingest(Store(store), [extraction_data / CASE / "input-bundle.json"])
    (tmp_path / "agent").mkdir()
    (tmp_path / "credential").write_text(CREDENTIAL + "\n")
    crtdl = json.loads((extraction_data / CASE / "crtdl.json").read_text())
    return {"root": tmp_path, "store": store, "crtdl": crtdl}


@pytest.fixture
def make_agent(site):
    made = []

    def make(hub: FakeHub, config=FAST) -> Agent:
        made.append(
            Agent(
                store=site["store"],
                hub_url="http://hub.test",
                credential_file=site["root"] / "credential",
                config=config,
                journal=Journal(site["root"] / "agent" / "journal.ndjson", NOW),
                secret=b"s" * 32,
                cohort=Counter(),
                clock=lambda: NOW,
                transport=httpx.MockTransport(hub),
            )
        )
        return made[-1]

    yield make
    for agent in made:
        agent.close()
        agent.journal.close()


def allowed(site, **extra) -> object:
    return replace(
        FAST,
        allowed_tasks=frozenset({TaskType.FEASIBILITY_COUNT, TaskType.EXTRACTION}),
        extraction_output=site["root"] / "extractions",
        **extra,
    )


def test_extraction_is_off_by_default(site, make_agent):
    assert TaskType.EXTRACTION not in parse_config({}).allowed_tasks
    result = make_agent(FakeHub()).answer(extraction_task("x1", site["crtdl"]))
    assert result.state == TaskState.FAILED
    assert "does not answer extraction tasks" in result.reason
    assert not (site["root"] / "extractions").exists()


def test_allowing_extraction_needs_an_output_folder():
    with pytest.raises(ConfigError, match=r"extraction\.output"):
        parse_config({"tasks": {"allowed": ["extraction"]}})
    config = parse_config(
        {"tasks": {"allowed": ["extraction"]}, "extraction": {"output": "/srv/x", "time_limit": 60}}
    )
    assert config.extraction_output == Path("/srv/x") and config.extraction_time_limit == 60


def test_an_extraction_runs_into_the_site_folder_and_reports_only_counts(site, make_agent):
    hub = FakeHub([extraction_task("x1", site["crtdl"])])
    agent = make_agent(hub, allowed(site))
    run_until(agent, hub, lambda: len(hub.posted) == 1)
    (posted,) = hub.posted
    assert posted["state"] == "answered" and "count" not in posted
    summary = posted["summary"]
    assert summary["Num-Cohort-Patients"] == 1 and summary["Num-Final-Patients"] == 1
    assert set(summary) <= {
        "Job-ID",
        "Num-Cohort-Patients",
        "Num-Final-Patients",
        "Patient-Exclusions",
        "Resource-Exclusions",
        "Resource-Inclusions",
    }
    assert PATIENT not in json.dumps(posted)  # no patient-level data reaches the hub
    folder = site["root"] / "extractions" / "P-2026-001" / "x1"
    assert json.loads((folder / "job.json").read_text())["status"] == "COMPLETED"
    (bundle_file,) = [p for p in folder.glob("*.ndjson") if not p.name.endswith("_consent.ndjson")]
    assert PATIENT in bundle_file.read_text()
    # offered again (the answer was lost): the journal's result, the job is not run again
    again = agent.answer(extraction_task("x1", site["crtdl"]))
    assert again == TaskResult.from_json(posted)


def test_a_bad_crtdl_fails_with_its_json_path_and_writes_nothing(site, make_agent):
    crtdl = json.loads(json.dumps(site["crtdl"]))
    crtdl["dataExtraction"]["attributeGroups"][0]["groupReference"] = "https://example.org/no-such-profile"
    result = make_agent(FakeHub(), allowed(site)).answer(extraction_task("x2", crtdl))
    assert result.state == TaskState.FAILED
    assert "$.dataExtraction.attributeGroups[0].groupReference" in result.reason
    assert not any((site["root"] / "extractions" / "P-2026-001" / "x2").glob("*"))


def test_malformed_extraction_payloads_fail(site, make_agent):
    agent = make_agent(FakeHub(), allowed(site))
    assert "payload.crtdl" in agent.answer(extraction_task("x3", "not a crtdl")).reason
    assert "payload.project" in agent.answer(extraction_task("x4", site["crtdl"], project=" ")).reason


def test_the_time_limit_is_checked_between_batches_and_the_job_resumes(site, make_agent):
    agent = make_agent(FakeHub(), allowed(site, extraction_time_limit=1e-9))
    result = agent.answer(extraction_task("x5", site["crtdl"]))
    assert result.state == TaskState.FAILED and "time limit" in result.reason
    folder = site["root"] / "extractions" / "P-2026-001" / "x5"
    assert list((folder / "batches").glob("*.json"))  # the finished batch is kept
    assert json.loads((folder / "job.json").read_text())["status"] != "COMPLETED"


def test_a_summary_carries_counts_only():
    TaskResult("t", TaskState.ANSWERED, summary={"Num-Final-Patients": 3, "Resource-Inclusions": {"A": 1}})
    for bad in ({"Num-Final-Patients": "p1"}, {"x": {"y": {"z": {"w": 1}}}}, {"Num": -1}, {"Num": True}):
        with pytest.raises(ProtocolError):
            TaskResult("t", TaskState.ANSWERED, summary=bad)
    with pytest.raises(ProtocolError):
        TaskResult.from_json({"task_id": "t", "state": "answered", "summary": {"Patient": ["p1"]}})


def test_out_of_memory_fails_the_task_with_its_reason_and_leaves_only_whole_files(site, make_agent):
    tiny = make_agent(FakeHub(), allowed(site, extraction_memory_limit="1MB"))
    result = tiny.answer(extraction_task("x6", site["crtdl"]))
    assert result.state == TaskState.FAILED
    assert "ran out of memory at its limit of 1MB" in result.reason and "internal error" not in result.reason
    folder = site["root"] / "extractions" / "P-2026-001" / "x6"
    assert not [p for p in folder.rglob("*") if p.name.startswith(".")]
    assert not (folder / "manifest.json").exists()
