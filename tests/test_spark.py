"""Apache Spark as the site's engine (issue 14): the same store, the same answers, and clear faults.

Feasibility on Spark runs the whole spec suite (tests/spec, engine "spark") and the engine properties
(tests/test_engine_properties.py); this module holds what is Spark's own: an ingest whose read tasks run
as Spark tasks writes the same store as the DuckDB path (MII KDS test data; synthetic data with bad
lines), a failing task names where it read, a Spark that cannot start is one error naming the setting,
and `datenraum count/ingest --engine spark` on the command line. Every test here shares the run's one
Spark session (`spark` in tests/conftest.py), except the command-line ones, which start their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from store_contents import table_contents

from datenraum.devtools.ports import free_port
from datenraum.query.model import Criterion, StructuredQuery, query_to_json
from datenraum.site.engines import EngineSettings, EngineUnavailable, feasibility_engine, open_engine
from datenraum.site.engines.spark import spark_cohort, spark_session
from datenraum.site.engines.spark_ingest import read_on_spark
from datenraum.site.ingest import IngestError, ingest
from datenraum.site.ingest.plan import Piece, ReadTask
from datenraum.site.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from bench_query import CANCER, FEMALE, GENDER, QUERIES, TYPICAL, _context

# On the MII KDS test data (31 patients): women, patients with a cancer diagnosis, women without one.
WOMEN = StructuredQuery(inclusion=((Criterion(_context("Patient"), (GENDER,), FEMALE),),))
KDS_QUERIES = {
    "women": WOMEN,
    "cancer": StructuredQuery(inclusion=((CANCER,),)),
    "women without cancer": StructuredQuery(inclusion=WOMEN.inclusion, exclusion=((CANCER,),)),
}


def _query_file(folder: Path) -> Path:
    path = folder / "query.json"
    path.write_bytes(orjson.dumps(query_to_json(TYPICAL), default=str))
    return path


def _rejects(store: Store) -> list[dict]:
    """Every reject record of the store, without the load id that names its file."""
    records = [orjson.loads(line) for f in sorted(store.rejects.glob("*.ndjson")) for line in f.open("rb")]
    return sorted(records, key=repr)


def _report(report) -> dict:
    body = report.to_dict()
    for key in ("load_id", "seconds", "rejects_file"):
        body.pop(key)
    return body


def _assert_same_store(tmp_path: Path, inputs: list[Path], spark_settings, **options) -> None:
    duck, spark = Store(tmp_path / "duckdb"), Store(tmp_path / "spark")
    expected = ingest(duck, inputs, workers=1, **options)
    found = ingest(spark, inputs, engine=spark_settings, **options)
    assert _report(found) == _report(expected)
    assert table_contents(spark) == table_contents(duck)
    assert _rejects(spark) == _rejects(duck)
    assert bool(found.rejects_file) == bool(expected.rejects_file)


def test_a_spark_ingest_of_the_mii_kds_test_data_writes_the_same_store(
    tmp_path, mii_kds_testdata, spark, spark_settings
):
    _assert_same_store(tmp_path, [mii_kds_testdata], spark_settings)


def test_a_spark_ingest_of_synthetic_data_with_bad_lines_writes_the_same_store(
    tmp_path, spark, spark_settings
):
    from datenraum.synth import generate

    data = tmp_path / "data"
    generate(data, 40, 14, workers=1)
    patient = {"resourceType": "Patient", "id": "p-bad", "birthDate": "1970-13-45"}
    (data / "bad.ndjson").write_bytes(
        b'{"resourceType": "Patient", "id": "ok-1"}\n{not json\n' + orjson.dumps(patient) + b"\n"
    )
    # Small pieces, so that the big files are cut into several tasks, read side by side.
    _assert_same_store(tmp_path, [data], spark_settings, chunk_bytes=64 * 1024)


def test_a_failing_spark_task_names_the_file_and_line_it_read(tmp_path, spark, spark_settings):
    data = tmp_path / "in.ndjson"
    data.write_bytes(b'{"resourceType": "Patient", "id": "p1"}\n')
    # A staging folder that does not exist: the task fails when it writes, not on the input.
    task = ReadTask(0, (Piece(0, str(data), "ndjson", 0, data.stat().st_size, 1),), str(tmp_path / "gone"))
    with pytest.raises(IngestError, match=rf"reading {data}:1: FileNotFoundError.*nothing was loaded"):
        read_on_spark([task], spark_settings)


def test_counts_and_ids_on_spark_are_those_of_duckdb(tmp_path, spark, spark_settings):
    from datenraum.synth import generate

    generate(tmp_path / "data", 60, 3, workers=1)
    store = Store(tmp_path / "store")
    ingest(store, [tmp_path / "data"], workers=1)
    with (
        store.snapshot() as snapshot,
        open_engine(snapshot) as duck,
        open_engine(snapshot, spark_settings) as on_spark,
    ):
        assert on_spark.dialect == "spark" and "condition" in on_spark.tables()
        for query in QUERIES.values():
            assert feasibility_engine(on_spark).patient_ids(query) == feasibility_engine(duck).patient_ids(
                query
            )
            assert feasibility_engine(on_spark).count(query) == feasibility_engine(duck).count(query)
        # The interface for later capabilities: any SQL over the store's tables, as Arrow.
        sql = "SELECT gender, count(*) AS n FROM patient GROUP BY gender ORDER BY gender"
        assert on_spark.sql(sql).to_pylist() == duck.sql(sql).to_pylist()


def test_the_agents_cohort_on_spark_cancels_a_query_past_its_time_limit(tmp_path, spark, spark_settings):
    from datenraum.synth import generate

    generate(tmp_path / "data", 30, 5, workers=1)
    store = Store(tmp_path / "store")
    ingest(store, [tmp_path / "data"], workers=1)
    with store.snapshot() as snapshot, open_engine(snapshot) as duck:
        expected = feasibility_engine(duck).patient_ids(WOMEN)
        assert list(spark_cohort(spark_settings, time_limit=600)(snapshot, WOMEN)) == expected
        # No Spark query plans, runs and collects in 10 ms: its jobs are cancelled, whenever they start.
        with pytest.raises(TimeoutError, match=r"cancelled after 0.01 s \(tasks.time_limit\)"):
            spark_cohort(spark_settings, time_limit=0.01)(snapshot, WOMEN)
        # The session goes on: the next task (and its job group) is not affected.
        assert list(spark_cohort(spark_settings)(snapshot, WOMEN)) == expected


@pytest.mark.parametrize(
    ("master", "message"),
    [
        ("spark//nohost", r"engine.spark_master = 'spark//nohost': not a Spark master URL"),
        (
            "spark://127.0.0.1:{port}",
            r"engine.spark_master = 'spark://127.0.0.1:\d+': no Spark master answers",
        ),
    ],
)
def test_a_wrong_master_url_is_one_error_naming_the_setting(master, message):
    settings = EngineSettings("spark", master.format(port=free_port()))
    with pytest.raises(EngineUnavailable, match=message):
        spark_session(settings)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datenraum", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def test_without_java_the_command_says_so_in_one_line_without_a_stack_trace(tmp_path):
    store = Store(tmp_path / "store")
    store.initialise()
    query = _query_file(tmp_path)
    result = _cli(
        "count",
        "--store",
        str(store.path),
        "--engine",
        "spark",
        str(query),
        env={"JAVA_HOME": "/nonexistent"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "engine.name = 'spark'" in lines[0] and "Java" in lines[0], result.stderr
    assert "at org." not in result.stderr and "Traceback" not in result.stderr


def _report_json(stdout: str) -> dict:
    body = orjson.loads(stdout)
    for key in ("load_id", "seconds", "rejects_file"):
        body.pop(key)
    return body


@pytest.mark.slow
def test_ingest_and_count_on_spark_from_the_command_line_give_what_duckdb_gives(
    tmp_path, mii_kds_testdata, spark, spark_settings
):
    """`datenraum ingest/count --engine spark` start their own Spark (local[1]) and print what DuckDB
    does, and nothing else: the same load report, the same store, the same count. (Each command starts a
    JVM, so the other queries are compared on the test run's session.)"""
    stores = {engine: tmp_path / engine for engine in ("duckdb", "spark")}
    options = {"duckdb": (), "spark": ("--engine", "spark", "--spark-master", "local[1]")}
    query = tmp_path / "query.json"
    query.write_bytes(orjson.dumps(query_to_json(KDS_QUERIES["women without cancer"]), default=str))
    reports, counts = {}, {}
    for engine, store in stores.items():
        loaded = _cli("ingest", "--store", str(store), *options[engine], "--json", str(mii_kds_testdata))
        assert (loaded.returncode, loaded.stderr) == (0, ""), loaded.stderr
        reports[engine] = _report_json(loaded.stdout)
        counted = _cli("count", "--store", str(store), *options[engine], str(query))
        assert (counted.returncode, counted.stderr) == (0, ""), counted.stderr
        counts[engine] = orjson.loads(counted.stdout)["count"]
    assert reports["spark"] == reports["duckdb"]
    assert reports["spark"]["resources_read"] > 0
    assert table_contents(Store(stores["spark"])) == table_contents(Store(stores["duckdb"]))
    assert counts["spark"] == counts["duckdb"]

    with Store(stores["spark"]).snapshot() as snapshot, open_engine(snapshot, spark_settings) as engine:
        found = {name: feasibility_engine(engine).count(q) for name, q in KDS_QUERIES.items()}
    assert found["women without cancer"] == counts["duckdb"]
    assert found["women"] == 15 and 0 < found["women without cancer"] < 15 and found["cancer"] > 0


def _one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "at org." not in result.stderr


def test_an_unknown_engine_on_the_command_line_is_refused_naming_the_option(tmp_path):
    for command in ("ingest", "count"):
        result = _cli(command, "--store", str(tmp_path / "store"), "--engine", "flink", str(tmp_path))
        assert result.returncode == 2, result.stderr
        assert "Invalid value for '--engine': 'flink' is not one of 'duckdb', 'spark'" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize(
    ("master", "expected"),
    [
        ("spark://127.0.0.1:{port}", "no Spark master answers at 127.0.0.1:"),
        ("spark://no-such-host.invalid:7077", "no Spark master answers at no-such-host.invalid:7077"),
        ("mesos://127.0.0.1:5050", "not a Spark master URL"),
    ],
)
def test_an_unreachable_or_wrong_master_url_on_the_command_line_is_one_line_and_loads_nothing(
    tmp_path, master, expected
):
    master = master.format(port=free_port())
    store = Store(tmp_path / "store")
    data = tmp_path / "in.ndjson"
    data.write_bytes(b'{"resourceType": "Patient", "id": "p1"}\n')
    spark = ("--engine", "spark", "--spark-master", master)

    loaded = _cli("ingest", "--store", str(store.path), *spark, str(data))
    _one_line_error(loaded, f"engine.spark_master = {master!r}", expected)
    with store.snapshot() as snapshot:
        assert snapshot.row_counts().get("patient", 0) == 0
    assert not any(store.staging.iterdir())

    counted = _cli("count", "--store", str(store.path), *spark, str(_query_file(tmp_path)))
    _one_line_error(counted, f"engine.spark_master = {master!r}", expected)
    assert counted.stdout == ""
