"""The agent's part of a data delivery: the extraction de-identified, gated and sealed at the site,
with counts only going back; no key file, no delivery."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from test_agent import CREDENTIAL, FAST, NOW, Counter, FakeHub, task

from datenraum.deidentify.keys import new_secret
from datenraum.deidentify.package import new_recipient_key, open_package
from datenraum.protocol.messages import TaskState, TaskType
from datenraum.site.agent.delivery import package_path
from datenraum.site.agent.extraction import job_folder
from datenraum.site.agent.loop import Agent
from datenraum.site.agent.state import Journal
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

CASE = "torch/cases/diag-enc-diag"
PATIENT = "torch-test-diag-enc-diag-pat-1"
PROJECT = "datenraum-proposal-7"


@pytest.fixture
def site(tmp_path: Path, extraction_data: Path) -> dict:
    ingest(Store(tmp_path / "store"), [extraction_data / CASE / "input-bundle.json"])
    (tmp_path / "credential").write_text(CREDENTIAL + "\n")
    (tmp_path / "site.key").write_text(new_secret() + "\n")
    return {"root": tmp_path, "crtdl": json.loads((extraction_data / CASE / "crtdl.json").read_text())}


def agent_for(site: dict, hub: FakeHub | None = None, **config: object) -> Agent:
    settings = replace(
        FAST, **{"allowed_tasks": frozenset({TaskType.EXTRACTION}), **config},
        extraction_output=site["root"] / "extractions",
    )  # fmt: skip
    return Agent(
        store=site["root"] / "store",
        hub_url="http://hub.test",
        credential_file=site["root"] / "credential",
        config=settings,
        journal=Journal(site["root"] / "journal.ndjson", NOW),
        secret=b"s" * 32,
        cohort=Counter(),
        clock=lambda: NOW,
        transport=httpx.MockTransport(hub or FakeHub()),
    )


def delivery_task(task_id: str, crtdl: object, recipient: bytes) -> dict:
    payload = {"crtdl": crtdl, "project": PROJECT, "profile": "fdpg", "recipient_key": recipient.decode()}
    return {"id": task_id, "type": "extraction", "payload": payload, "deadline": "2030-01-01T00:00:00+00:00"}


def test_a_delivery_task_is_sealed_for_the_projects_key_and_only_counts_go_back(site: dict) -> None:
    private, public = new_recipient_key()
    agent = agent_for(site, extraction_key_file=site["root"] / "site.key")
    task_id = "2b7c1a4e-0000-4000-8000-000000000001"
    try:
        result = agent.answer(delivery_task(task_id, site["crtdl"], public))
    finally:
        agent.close()
        agent.journal.close()
    assert result.state is TaskState.ANSWERED, result.reason
    summary = result.summary
    assert summary["Leak-Gate-Findings"] == 0
    assert summary["Deidentified-Resources"]["Patient"] == 1
    assert PATIENT not in json.dumps(summary)
    sealed = package_path(job_folder(agent.config, PROJECT, task_id))
    assert summary["Package-Bytes"] == sealed.stat().st_size
    opened = site["root"] / "opened"
    open_package(sealed, private, opened)
    delivered = "".join(p.read_text() for p in opened.glob("*.ndjson"))
    assert "Patient" in delivered and PATIENT not in delivered


def test_without_a_key_file_a_delivery_task_fails_and_nothing_is_sealed(site: dict) -> None:
    _private, public = new_recipient_key()
    agent = agent_for(site)
    task_id = "2b7c1a4e-0000-4000-8000-000000000002"
    try:
        result = agent.answer(delivery_task(task_id, site["crtdl"], public))
    finally:
        agent.close()
        agent.journal.close()
    assert result.state is TaskState.FAILED
    assert "extraction.key_file" in result.reason
    assert not package_path(job_folder(agent.config, PROJECT, task_id)).exists()


def test_a_profile_the_site_does_not_ship_is_refused_not_read_as_a_path(site: dict) -> None:
    _private, public = new_recipient_key()
    agent = agent_for(site, extraction_key_file=site["root"] / "site.key")
    task = delivery_task("2b7c1a4e-0000-4000-8000-000000000003", site["crtdl"], public)
    task["payload"]["profile"] = "/etc/passwd"
    try:
        result = agent.answer(task)
    finally:
        agent.close()
        agent.journal.close()
    assert result.state is TaskState.FAILED and "payload.profile" in result.reason


class UploadingHub(FakeHub):
    """A hub with one released package of `TASK_ID`; it takes the package's first chunk only once a
    feasibility task it offered meanwhile has been answered, or gives up waiting after a while."""

    def __init__(self, tasks: list[dict]) -> None:
        super().__init__(tasks)
        self.answered = threading.Event()
        self.on_post = self.answered.set
        self.answered_before_the_chunk: bool | None = None
        self.completed = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/site/v1")
        if path == "/deliveries":
            return httpx.Response(200, json={"uploads": [{"task_id": "t-sealed", "project": PROJECT}]})
        if path == "/deliveries/t-sealed/upload" and request.method == "GET":
            return httpx.Response(200, json={"received": 0})
        if path == "/deliveries/t-sealed/upload":
            if self.answered_before_the_chunk is None:
                self.answered_before_the_chunk = self.answered.wait(10)
            return httpx.Response(
                200, json={"received": int(request.url.params["offset"]) + len(request.content)}
            )
        if path == "/deliveries/t-sealed/complete":
            self.completed.set()
            return httpx.Response(200, json={"state": "uploaded"})
        return super().__call__(request)


def test_the_agent_answers_tasks_while_it_uploads_a_released_package(site: dict) -> None:
    hub = UploadingHub([task("f-1")])
    agent = agent_for(site, hub, allowed_tasks=frozenset({TaskType.EXTRACTION, TaskType.FEASIBILITY_COUNT}))
    sealed = package_path(job_folder(agent.config, PROJECT, "t-sealed"))
    sealed.parent.mkdir(parents=True)
    sealed.write_bytes(b"\x00" * 100_000)
    stop = threading.Event()
    loop = threading.Thread(target=agent.run, args=(stop,))
    loop.start()
    try:
        assert hub.completed.wait(20), "the package was not delivered"
    finally:
        stop.set()
        loop.join(10)
        agent.close()
    assert hub.answered_before_the_chunk is True
    assert [p["task_id"] for p in hub.posted] == ["f-1"]
