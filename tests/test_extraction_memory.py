"""DuckDB out of memory in an extraction (its sort is capped, `JobOptions.memory_limit`): one line on
the command line, a failed task with its reason at the agent and the HTTP operation, never a stack trace;
the job folder holds only whole files and resumes to the files of an uninterrupted job."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datenraum.site.agent.config import ConfigError, parse_config
from datenraum.site.extraction import JobOptions, run_extraction
from datenraum.site.extraction.http import create_app
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

TODAY = dt.date(2026, 11, 22)
TINY = "1MB"  # less than DuckDB needs for one block of the store's resources
CLI = [sys.executable, "-m", "datenraum"]


@pytest.fixture(scope="module")
def kds_store(tmp_path_factory, mii_kds_testdata) -> Path:
    store = tmp_path_factory.mktemp("kds") / "store"
    ingest(Store(store), [mii_kds_testdata])
    return store


@pytest.fixture
def crtdl(extraction_data) -> Path:
    return extraction_data / "torch/cases/kds-basic/crtdl.json"


def whole_files(folder: Path) -> dict[str, bytes]:
    """The folder's files but job.json; fails on a temporary (half-written) file."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        assert not path.name.startswith("."), f"a temporary file was left: {path}"
        if path.name != "job.json":
            found[str(path.relative_to(folder))] = path.read_bytes()
    return found


def test_out_of_memory_on_the_command_line_is_one_line_and_the_job_resumes(tmp_path, kds_store, crtdl):
    out = tmp_path / "out"
    command = [*CLI, "extract", "--store", str(kds_store), "--out", str(out), "--today", TODAY.isoformat()]
    failed = subprocess.run([*command, "--memory-limit", TINY, str(crtdl)], capture_output=True, text=True)
    assert failed.returncode == 2
    assert failed.stdout == ""
    (line,) = failed.stderr.splitlines()
    assert line.startswith("error: the store's engine (DuckDB) ran out of memory at its limit of 1MB")
    assert "Traceback" not in failed.stderr
    if out.exists():
        assert "manifest.json" not in whole_files(out)
        assert json.loads((out / "job.json").read_text())["status"] != "COMPLETED"
    resumed = subprocess.run([*command, str(crtdl)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "reference"
    run_extraction(kds_store, crtdl.read_bytes(), reference, JobOptions(today=TODAY))
    recorded = json.loads((out / "job.json").read_text())["recorded"]
    expected = json.loads((reference / "job.json").read_text())["recorded"]
    found = {n: b.replace(recorded.encode(), b"R") for n, b in whole_files(out).items()}
    assert found.keys() == whole_files(reference).keys()
    for name, body in whole_files(reference).items():
        if not name.startswith("reports/job-summary"):  # it holds the job's timings
            assert found[name] == body.replace(expected.encode(), b"R"), name


def test_a_memory_limit_that_is_no_size_is_refused_before_any_sql(tmp_path, kds_store, crtdl):
    with pytest.raises(ValueError, match="not a size"):
        JobOptions(memory_limit="1GB'; ATTACH 'x")
    out = tmp_path / "o"
    done = subprocess.run(
        [*CLI, "extract", "--store", str(kds_store), "--out", str(out), "--memory-limit", "lots", str(crtdl)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: --memory-limit: memory limit 'lots'")
    assert "Traceback" not in done.stderr and not out.exists()
    with pytest.raises(ConfigError, match=r"extraction\.memory_limit"):
        parse_config({"extraction": {"memory_limit": 512}})


def test_out_of_memory_at_the_http_operation_fails_the_job_with_its_reason(tmp_path, kds_store, crtdl):
    app = create_app(kds_store, tmp_path / "jobs", run=False, memory_limit=TINY)
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "crtdl", "valueBase64Binary": base64.b64encode(crtdl.read_bytes()).decode()}],
    }
    with TestClient(app) as client:
        job_id = client.post("/fhir/$extract-data", json=body).headers["Content-Location"].rsplit("/", 1)[1]
        app.state.runner.run(job_id)
        status = client.get(f"/fhir/__status/{job_id}")
    assert status.status_code == 500
    (issue,) = status.json()["issue"]
    assert "ran out of memory at its limit of 1MB" in issue["diagnostics"]
    assert "internal error" not in issue["diagnostics"]
