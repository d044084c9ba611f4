"""TORCH's HTTP operation (`datenraum extract serve`) and jobs that survive kill -9: the exchange in
process, then real subprocesses killed with SIGKILL after their first batch and started again, whose
files must equal an uninterrupted run's."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from datenraum.site.extraction import JobOptions, run_extraction
from datenraum.site.extraction.http import create_app
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

CLI = [sys.executable, "-m", "datenraum"]


@pytest.fixture(scope="module")
def kds_store(tmp_path_factory, mii_kds_testdata) -> Path:
    store = tmp_path_factory.mktemp("kds") / "store"
    ingest(Store(store), [mii_kds_testdata])
    return store


@pytest.fixture(scope="module")
def patients(kds_store) -> list[str]:
    with Store(kds_store).snapshot() as snapshot:
        rows = snapshot.connection.execute(
            "SELECT id FROM resource WHERE resource_type = 'Patient' ORDER BY id"
        ).fetchall()
    return [r[0] for r in rows]


def parameters(crtdl: bytes, patients: list[str] = ()) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "crtdl", "valueBase64Binary": base64.b64encode(crtdl).decode()},
            *({"name": "patient", "valueString": p} for p in patients),
        ],
    }


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a job folder but job.json (its status) and temporary files."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "job.json" and not p.name.startswith(".")
    }


def uninterrupted(store: Path, crtdl: bytes, job_folder: Path, out: Path, **options) -> dict[str, bytes]:
    """The files of the same job run without interruption: seeded with the job's job.json (its
    recorded start, which Provenance.recorded carries), run in one go."""
    out.mkdir()
    job = json.loads((job_folder / "job.json").read_text())
    job["status"] = "RUNNING_PROCESS_BATCH"
    (out / "job.json").write_text(json.dumps(job))
    run_extraction(store, crtdl, out, JobOptions(today=dt.date.fromisoformat(job["today"]), **options))
    return files(out)


# -- the exchange, in process


def test_kick_off_poll_and_download(tmp_path, kds_store, extraction_data):
    crtdl = (extraction_data / "torch/cases/kds-basic/crtdl.json").read_bytes()
    app = create_app(kds_store, tmp_path / "jobs", base_url="http://site.test", run=False)
    with TestClient(app) as client:
        kicked = client.post("/fhir/$extract-data", json=parameters(crtdl))
        assert kicked.status_code == 202, kicked.text
        location = kicked.headers["Content-Location"]
        assert location.startswith("http://site.test/fhir/__status/")
        path = location.removeprefix("http://site.test")
        pending = client.get(path)
        assert pending.status_code == 202 and pending.headers["X-Progress"]
        app.state.runner.run(path.rsplit("/", 1)[1])
        done = client.get(path)
        assert done.status_code == 200
        manifest = done.json()
        assert manifest["requiresAccessToken"] is False
        assert manifest["output"] and all(o["type"] == "NDJSON Bundle" for o in manifest["output"])
        for item in manifest["output"]:
            body = client.get(item["url"].removeprefix("http://site.test"))
            assert body.status_code == 200
            for line in body.text.splitlines():
                assert json.loads(line)["resourceType"] == "Bundle"
        summary = next(e for e in manifest["extension"] if e["url"] == "torch-job-diagnostics-summary")
        report = client.get(summary["valueUrl"].removeprefix("http://site.test")).json()
        assert report["Num-Cohort-Patients"] == report["Num-Final-Patients"] + sum(
            report["Patient-Exclusions"].values()
        )
        job_id = path.rsplit("/", 1)[1]
        assert client.get(f"/fhir/__output/{job_id}/../request.json").status_code == 404


def test_bad_requests_get_an_operation_outcome_with_the_json_path(tmp_path, kds_store, extraction_data):
    crtdl = json.loads((extraction_data / "torch/cases/kds-basic/crtdl.json").read_text())
    crtdl["dataExtraction"]["attributeGroups"][0]["attributes"][0]["attributeRef"] = "Condition.nope"
    app = create_app(kds_store, tmp_path / "jobs", run=False)
    with TestClient(app) as client:
        answer = client.post("/fhir/$extract-data", json=parameters(json.dumps(crtdl).encode()))
        assert answer.status_code == 400
        (issue,) = answer.json()["issue"]
        assert answer.json()["resourceType"] == "OperationOutcome"
        assert issue["expression"] == ["$.dataExtraction.attributeGroups[0].attributes[0].attributeRef"]
        bad = {"resourceType": "Parameters", "parameter": [{"name": "crtdl", "valueBase64Binary": "%%"}]}
        answer = client.post("/fhir/$extract-data", json=bad)
        assert answer.status_code == 400
        assert answer.json()["issue"][0]["expression"] == ["$.parameter[0].valueBase64Binary"]
        answer = client.post("/fhir/$extract-data", json={"resourceType": "Patient"})
        assert answer.json()["issue"][0]["expression"] == ["$.resourceType"]
        assert client.get("/fhir/__status/not-a-uuid").status_code == 400
        assert client.get("/fhir/__status/00000000-0000-4000-8000-000000000000").status_code == 404
    assert not list((tmp_path / "jobs").iterdir())  # nothing was accepted


# -- kill -9 and resume, real processes


def _wait_for(proc: subprocess.Popen, condition, what: str, seconds: float = 120) -> None:
    """Poll `condition` (no sleeping: each round waits on the process itself)."""
    deadline = dt.datetime.now() + dt.timedelta(seconds=seconds)
    while not condition():
        try:
            proc.wait(timeout=0.02)
            raise AssertionError(f"the process ended before {what}: {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
        assert dt.datetime.now() < deadline, f"timed out waiting for {what}"


def _first_batch(folder: Path):
    return lambda: (folder / "batches").is_dir() and any((folder / "batches").glob("*.json"))


def test_a_killed_cli_job_resumes_to_identical_files(tmp_path, kds_store, patients, extraction_data):
    crtdl_file = extraction_data / "torch/cases/kds-basic/crtdl.json"
    (tmp_path / "patients.txt").write_text("\n".join(patients) + "\n")
    out = tmp_path / "out"
    command = [
        *CLI,
        "extract",
        "--store",
        str(kds_store),
        str(crtdl_file),
        "--out",
        str(out),
        "--patients",
        str(tmp_path / "patients.txt"),
        "--today",
        "2026-11-22",
        "--batch-size",
        "1",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(proc, _first_batch(out), "the first batch")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    written = len(list((out / "batches").glob("*.json")))
    assert 1 <= written < len(patients), "the job was not killed mid-way"
    assert json.loads((out / "job.json").read_text())["status"] != "COMPLETED"
    subprocess.run(command, check=True, capture_output=True)
    assert json.loads((out / "job.json").read_text())["status"] == "COMPLETED"
    expected = uninterrupted(
        kds_store, crtdl_file.read_bytes(), out, tmp_path / "again", patients=patients, batch_size=1
    )
    assert files(out) == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_service(store: Path, jobs: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            *CLI,
            "extract",
            "serve",
            "--store",
            str(store),
            "--port",
            str(port),
            "--jobs",
            str(jobs),
            "--batch-size",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:  # blocks until uvicorn says it listens
        if "Uvicorn running on" in line:
            return proc
    raise AssertionError(f"the service did not start: {proc.wait()}")


def test_a_killed_service_resumes_its_job(tmp_path, kds_store, patients, extraction_data):
    crtdl = (extraction_data / "torch/cases/kds-basic/crtdl.json").read_bytes()
    jobs, port = tmp_path / "jobs", _free_port()
    proc = _start_service(kds_store, jobs, port)
    try:
        kicked = httpx.post(
            f"http://127.0.0.1:{port}/fhir/$extract-data", json=parameters(crtdl, patients), timeout=30
        )
        assert kicked.status_code == 202, kicked.text
        status = kicked.headers["Content-Location"]
        job_id = status.rsplit("/", 1)[1]
        _wait_for(proc, _first_batch(jobs / job_id / "output"), "the first batch")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    output = jobs / job_id / "output"
    assert json.loads((output / "job.json").read_text())["status"] != "COMPLETED"
    proc = _start_service(kds_store, jobs, port)
    try:
        client = httpx.Client(timeout=30)
        _wait_for(proc, lambda: client.get(status).status_code != 202, "the resumed job")
        answer = client.get(status)
        assert answer.status_code == 200, answer.text
        for item in answer.json()["output"]:
            assert client.get(item["url"]).status_code == 200
        client.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    expected = uninterrupted(kds_store, crtdl, output, tmp_path / "again", patients=patients, batch_size=1)
    assert files(output) == expected
