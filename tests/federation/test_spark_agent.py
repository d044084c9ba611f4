"""A site agent with `[engine] name = "spark"`, end to end: a real hub on PostgreSQL, real HTTP, the agent a
real `datenraum site serve` process whose counts run on Spark local mode (issue 14).

Beside it, on the same store, an agent on DuckDB with the same site secret: the noise of a count is keyed
on the secret and on the cohort's sorted patient ids, so the two sites' obfuscated answers are equal
exactly when both engines selected the same patients. (The agent starts its own Spark, as a site does: it
is a process of its own and cannot share the test run's session.)
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from datenraum.devtools.demo import DEMO_QUERY
from datenraum.devtools.ports import free_port
from datenraum.query.model import ConceptFilter, Criterion, StructuredQuery, TermCode, query_to_json
from datenraum.site.agent.state import SECRET_BYTES

from .conftest import AGENT_CONFIG

WOMEN = StructuredQuery(
    inclusion=(
        (
            Criterion(
                TermCode("fdpg.mii.cds", "Patient", "Patient"),
                (TermCode("http://snomed.info/sct", "263495000"),),
                ConceptFilter((TermCode("http://hl7.org/fhir/administrative-gender", "female"),)),
            ),
        ),
    )
)
# Spark's first query in a fresh JVM takes seconds, a minute on a busy machine: the hub waits for it.
DEADLINE_SECONDS = 300


def _config(folder: Path, name: str, engine: str, time_limit: float = DEADLINE_SECONDS - 10) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        AGENT_CONFIG
        + f"[tasks]\ntime_limit = {time_limit}\n"
        + f'[engine]\nname = "{engine}"\nspark_master = "local[1]"\n'
    )
    return path


def _state_with_secret(folder: Path, secret: bytes) -> Path:
    folder.mkdir(mode=0o700, parents=True)
    path = folder / "site-secret"
    path.write_bytes(secret)
    os.chmod(path, 0o600)
    return folder


@pytest.mark.slow
def test_an_agent_on_spark_answers_as_the_agent_on_duckdb_does(start_federation, postgres_server, tmp_path):
    fed = start_federation(postgres_server.new_database(), task_deadline_seconds=str(DEADLINE_SECONDS))
    secret = secrets.token_bytes(SECRET_BYTES)
    spark_tmp = tmp_path / "spark-tmp"
    spark_tmp.mkdir()
    # A third site on Spark whose operator allows a task 10 ms: Spark's jobs are cancelled, the task fails.
    agents = {"on-duckdb": ("duckdb", None), "on-spark": ("spark", None), "on-spark-hurried": ("spark", 0.01)}
    for name, (engine, time_limit) in agents.items():
        fed.processes.start_agent(
            name,
            fed.store,
            fed.add_site(name),
            state=_state_with_secret(tmp_path / "state" / name, secret),
            config=_config(tmp_path, name, engine, time_limit or DEADLINE_SECONDS - 10),
            env={"TMPDIR": str(spark_tmp)},
        )
    fed.researcher.wait_for_sites(list(agents), timeout=120)

    for query in (DEMO_QUERY, WOMEN):
        response = fed.researcher.submit(query_to_json(query), sites=list(agents))
        assert response.status_code == 201, response.text
        result = fed.researcher.result(response.json()["id"], timeout=2 * DEADLINE_SECONDS)
        answers = {site["site"]: site for site in result["sites"]}
        assert {name: a["state"] for name, a in answers.items()} == {
            "on-duckdb": "answered",
            "on-spark": "answered",
            "on-spark-hurried": "failed",
        }, fed.agent_log("on-spark")
        assert answers["on-spark"]["count"] == answers["on-duckdb"]["count"]
        assert answers["on-spark-hurried"]["reason"] == "time limit of 0.01 s exceeded"
    assert answers["on-spark"]["count"]["obfuscated"] > 0  # the women of the site: far above the threshold
    assert fed.agent_running("on-spark-hurried")

    # The count ran on Spark: the agent's process started a Spark driver (its log is Spark's own).
    spark_pid = fed.processes.agents["on-spark"].process.pid
    assert (spark_tmp / f"datenraum-spark-{spark_pid}.log").exists()
    duckdb_pid = fed.processes.agents["on-duckdb"].process.pid
    assert not (spark_tmp / f"datenraum-spark-{duckdb_pid}.log").exists()


def test_an_agent_whose_spark_master_is_unreachable_stops_with_one_error_naming_the_setting(
    start_federation, tmp_path
):
    fed = start_federation()
    config = tmp_path / "agent.toml"
    master = f"spark://127.0.0.1:{free_port()}"
    config.write_text(AGENT_CONFIG + f'[engine]\nname = "spark"\nspark_master = "{master}"\n')
    agent = fed.processes.start_agent("no-master", fed.store, fed.add_site("no-master"), config=config)

    assert agent.process.wait(timeout=60) == 2
    log = agent.log.read_text()
    assert f"error: engine.spark_master = {master!r}: no Spark master answers" in log
    assert "Traceback" not in log
    assert "site agent started" not in log  # it stopped before connecting to the hub


def test_an_unknown_engine_in_the_agent_config_stops_it_naming_file_and_key(start_federation, tmp_path):
    fed = start_federation()
    config = tmp_path / "agent.toml"
    config.write_text(AGENT_CONFIG + '[engine]\nname = "flink"\n')
    agent = fed.processes.start_agent("flink", fed.store, fed.add_site("flink"), config=config)

    assert agent.process.wait(timeout=60) == 2
    log = agent.log.read_text()
    assert f"error: {config}: engine.name: expected one of 'duckdb', 'spark', got 'flink'" in log
    assert "Traceback" not in log
