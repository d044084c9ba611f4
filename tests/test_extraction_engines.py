"""Extraction reads the store through the site's engine interface: the same job on DuckDB and on Spark
writes the same files, and the job's resources are read in portions (`sql_batches`), never whole.

The Spark tests share the run's one Spark session (`spark` in tests/conftest.py)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from datenraum.site.engines import open_engine
from datenraum.site.engines.postgres import PostgresEngine, load_snapshot
from datenraum.site.extraction import JobOptions, run_extraction
from datenraum.site.extraction import output as output_module
from datenraum.site.extraction.http import create_app
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

TODAY = dt.date(2026, 11, 22)
# Fields that say when the job ran or how long its cohort query took: the only ones that may differ.
TIMING_KEYS = ("recorded", "cohortQueryMs", "Cohort-Query-Duration-Ms")


@pytest.fixture(scope="module")
def kds_store(tmp_path_factory, mii_kds_testdata) -> Path:
    path = tmp_path_factory.mktemp("kds") / "store"
    ingest(Store(path), [mii_kds_testdata])
    return path


def folder_contents(folder: Path) -> dict[str, object]:
    """Every file of a job folder by its relative path: Parquet as its rows, JSON without the timing
    fields, everything else as text with the job's start time replaced."""
    recorded = json.loads((folder / "job.json").read_text())["recorded"]
    found: dict[str, object] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if path.suffix == ".parquet":
            found[name] = pq.read_table(path).to_pylist()
        elif path.name in ("job.json", "job-summary.json"):
            body = json.loads(path.read_text())
            found[name] = {k: v for k, v in body.items() if k not in TIMING_KEYS}
        else:
            found[name] = path.read_text().replace(recorded, "RECORDED")
    return found


def run(store: Path, crtdl: Path, out: Path, **options) -> dict:
    return run_extraction(store, crtdl.read_bytes(), out, JobOptions(today=TODAY, **options))


def test_kds_basic_on_spark_writes_the_files_of_duckdb(
    tmp_path, kds_store, extraction_data, spark, spark_settings
):
    crtdl = extraction_data / "torch/cases/kds-basic/crtdl.json"
    run(kds_store, crtdl, tmp_path / "duckdb")
    run(kds_store, crtdl, tmp_path / "spark", engine=spark_settings)
    found, expected = folder_contents(tmp_path / "spark"), folder_contents(tmp_path / "duckdb")
    assert sorted(found) == sorted(expected)
    assert found == expected
    assert len(expected["tables/111bea.parquet"]) > 0


def test_references_and_core_resources_on_spark_are_those_of_duckdb(
    tmp_path, extraction_data, spark, spark_settings
):
    case = extraction_data / "torch/cases/reference-resolve-bundle-1"
    store = tmp_path / "store"
    ingest(Store(store), [case / "input-bundle.json"])
    crtdl = case / "crtdl-with-medication-filter.json"
    run(store, crtdl, tmp_path / "duckdb")
    run(store, crtdl, tmp_path / "spark", engine=spark_settings)
    expected = folder_contents(tmp_path / "duckdb")
    assert "core.ndjson" in expected
    assert folder_contents(tmp_path / "spark") == expected


def test_the_tables_and_bundles_do_not_depend_on_the_batch_size(
    tmp_path, kds_store, extraction_data, monkeypatch
):
    """One patient a batch, and tables written two rows at a time, give the rows of one batch: the
    streamed order (shared resources first, then batch by batch) is the order of the whole."""
    crtdl = extraction_data / "torch/cases/perf/crtdl-with-references.json"
    run(kds_store, crtdl, tmp_path / "whole", batch_size=10_000)
    monkeypatch.setattr(output_module, "TABLE_ROW_GROUP", 2)
    run(kds_store, crtdl, tmp_path / "streamed", batch_size=1)

    def tables(folder: Path) -> dict[str, object]:
        return {k: v for k, v in folder_contents(folder).items() if k.startswith("tables/")}

    def bundle_lines(folder: Path) -> list[str]:
        lines = []
        for path in folder.glob("*.ndjson"):
            if not path.name.endswith("_consent.ndjson"):
                lines.extend(path.read_text().splitlines())
        return sorted(lines)

    expected = tables(tmp_path / "whole")
    assert any(len(rows) > 2 for rows in expected.values() if isinstance(rows, list))
    assert tables(tmp_path / "streamed") == expected
    assert len(list((tmp_path / "streamed").glob("*.ndjson"))) > 2
    assert bundle_lines(tmp_path / "streamed") != []
    whole = json.loads((tmp_path / "whole/reports/job-summary.json").read_text())
    streamed = json.loads((tmp_path / "streamed/reports/job-summary.json").read_text())
    for key in ("Num-Cohort-Patients", "Num-Final-Patients", "Patient-Exclusions", "Resource-Inclusions"):
        assert streamed[key] == whole[key]


STATEMENT = "SELECT resource_type, id, patient_id FROM resource ORDER BY resource_type, id"


def portions(engine, rows: int) -> list[list[dict]]:
    return [batch.to_pylist() for batch in engine.sql_batches(STATEMENT, rows)]


def check_portions(engine) -> None:
    whole = engine.sql(STATEMENT).to_pylist()
    found = portions(engine, 100)
    assert len(found) >= len(whole) // 100
    assert all(len(portion) <= 100 for portion in found)
    assert [row for portion in found for row in portion] == whole


def test_duckdb_and_spark_give_a_result_in_portions_in_its_order(kds_store, spark, spark_settings):
    with Store(kds_store).snapshot() as snapshot:
        with open_engine(snapshot) as engine:
            check_portions(engine)
        with open_engine(snapshot, spark_settings) as engine:
            check_portions(engine)


def test_postgres_gives_a_result_in_portions_in_its_order(kds_store, postgres_spec_database):
    with Store(kds_store).snapshot() as snapshot:
        load_snapshot(snapshot, postgres_spec_database, "extraction_portions")
    check_portions(PostgresEngine(postgres_spec_database, "extraction_portions"))


def test_extract_with_a_spark_master_that_is_no_url_is_one_error_naming_the_setting(
    tmp_path, kds_store, extraction_data
):
    crtdl = extraction_data / "torch/cases/kds-basic/crtdl.json"
    out = tmp_path / "out"
    command = [sys.executable, "-m", "datenraum", "extract", "--store", str(kds_store), "--out", str(out)]
    done = subprocess.run(
        [*command, "--engine", "spark", "--spark-master", "localhost", str(crtdl)],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "engine.spark_master = 'localhost'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_the_http_operation_runs_its_jobs_on_the_sites_engine(
    tmp_path, kds_store, extraction_data, spark, spark_settings
):
    crtdl = (extraction_data / "torch/cases/kds-basic/crtdl.json").read_bytes()
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "crtdl", "valueBase64Binary": base64.b64encode(crtdl).decode()}],
    }
    tracker = spark.sparkContext.statusTracker()
    spark_jobs_before = len(tracker.getJobIdsForGroup())
    app = create_app(kds_store, tmp_path / "jobs", run=False, engine=spark_settings)
    with TestClient(app) as client:
        kicked = client.post("/fhir/$extract-data", json=body)
        assert kicked.status_code == 202, kicked.text
        job_id = kicked.headers["Content-Location"].rsplit("/", 1)[1]
        app.state.runner.run(job_id)
        assert client.get(f"/fhir/__status/{job_id}").status_code == 200
    assert len(tracker.getJobIdsForGroup()) > spark_jobs_before  # the job's queries ran on Spark
    today = dt.date.fromisoformat(
        json.loads((tmp_path / "jobs" / job_id / "request.json").read_text())["today"]
    )
    run_extraction(kds_store, crtdl, tmp_path / "duckdb", JobOptions(today=today))
    assert folder_contents(tmp_path / "jobs" / job_id / "output") == folder_contents(tmp_path / "duckdb")
