"""Fixtures shared by the test modules: where the reference data lives, fresh stores, and input writers.

Keep fixtures here generic (no knowledge of one module's expectations) so that every part of the
project can build on them; a test module's own helpers belong in that module.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from shared_data import shared_data_folder

from datenraum.devtools.postgres import LocalPostgres, PostgresUnavailable
from datenraum.site.store import Store


@pytest.fixture(scope="session")
def mii_kds_testdata() -> Path:
    """The MII core data set test Bundles (22 transaction Bundles, one folder)."""
    return shared_data_folder("mii-kds-testdata")


@pytest.fixture(scope="session")
def sq2cql_testdata() -> Path:
    """The sq2cql test resources (structured queries and the Bundles they run against)."""
    return shared_data_folder("sq2cql-testdata")


@pytest.fixture(scope="session")
def analysis_testdata() -> Path:
    """DataSHIELD's test data (CNSIM 1-3, SURVIVAL expand-with-missing 1-3; GPL-3: read at test time,
    never copied into the repository) with DataSHIELD's expected results (`reference_results.json`)."""
    return shared_data_folder("analysis")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    """A throwaway PostgreSQL cluster for the tests of the hub (which runs on PostgreSQL in production),
    started once per test session."""
    try:
        with LocalPostgres(durable=False) as server:
            yield server
    except PostgresUnavailable as error:
        pytest.fail(str(error))


# The one Spark session of a test run (local mode on two cores), tuned for tiny data: one shuffle
# partition, every join a broadcast, no adaptive re-planning (each costs more than the data takes).
SPARK_TEST_CONF = {
    "spark.sql.shuffle.partitions": "1",
    "spark.default.parallelism": "2",
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.autoBroadcastJoinThreshold": "100MB",
    "spark.driver.memory": "1g",
}


@pytest.fixture(scope="session")
def spark_settings():
    """The engine setting of the tests that run on Spark (`local[2]`)."""
    from datenraum.site.engines import EngineSettings

    return EngineSettings("spark", "local[2]", SPARK_TEST_CONF)


@pytest.fixture(scope="session")
def spark(spark_settings):
    """The test run's one Spark session, started on first use, stopped at the end."""
    from datenraum.site.engines.spark import spark_session, stop_spark_session

    yield spark_session(spark_settings)
    stop_spark_session()


@pytest.fixture(scope="session")
def postgres_spec_database(postgres_server: LocalPostgres):
    """A psycopg connection to one database of the test cluster, for engines that load tables into it
    (one schema per use)."""
    import psycopg

    url = postgres_server.new_database().replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as connection:
        yield connection


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty site store in a fresh folder."""
    return Store(tmp_path / "store")


@pytest.fixture
def input_dir(tmp_path: Path) -> Path:
    """A fresh folder for input files that a test writes."""
    folder = tmp_path / "input"
    folder.mkdir()
    return folder


Line = dict[str, Any] | str | bytes


def _encode(line: Line) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, str):
        return line.encode()
    return orjson.dumps(line)


@pytest.fixture
def write_ndjson(input_dir: Path) -> Callable[..., Path]:
    """Write NDJSON: each item is a resource (dict) or a raw line (str/bytes), one per line.

    `name` ending in `.gz` writes gzip; the file lands in `input_dir` unless `name` is a path.
    """

    def write(name: str | Path, lines: Iterable[Line]) -> Path:
        path = Path(name) if Path(name).is_absolute() else input_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(_encode(line) + b"\n" for line in lines)
        path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
        return path

    return write


@pytest.fixture
def write_json(input_dir: Path) -> Callable[[str | Path, Any], Path]:
    """Write one JSON document (a Bundle, a resource, or raw text given as str/bytes), pretty-printed."""

    def write(name: str | Path, document: Any) -> Path:
        path = Path(name) if Path(name).is_absolute() else input_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(document, str | bytes):
            path.write_bytes(_encode(document))
        else:
            path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        return path

    return write


def query(store: Store, sql: str) -> list[tuple]:
    """Rows of `sql` run against one snapshot of `store` (its tables are views of the same names)."""
    with store.snapshot() as snapshot:
        return snapshot.connection.execute(sql).fetchall()


@pytest.fixture
def sql(store: Store) -> Callable[[str], list[tuple]]:
    """Run SQL against a fresh snapshot of the test's `store`."""
    return lambda text: query(store, text)


@pytest.fixture(scope="session")
def extraction_data() -> Path:
    """The extraction fixtures: CRTDL schemas and examples, TORCH's cases, consent samples, redaction."""
    return shared_data_folder("extraction")
