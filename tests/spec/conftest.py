"""One spec suite, every engine: each spec test states data, a query and the expected patients, and the
`spec_test` fixture runs it on each engine in turn.

An engine is anything with the `Engine` interface (`datenraum.query.engines.base`), bound to its data
when it is built: the reference evaluator (`ReferenceEngine`, over the raw FHIR dicts); the store
engine (`datenraum.site.feasibility.StoreEngine`, DuckDB over a site store the data is ingested into);
the same store on Spark local mode (`datenraum.site.engines.spark.SparkEngine`, the Spark dialect); and
its tables copied into the tests' PostgreSQL, one schema per case (the PostgreSQL dialect). A test
that passes on one engine and fails on the other is a disagreement about the contract
(`docs/feasibility-semantics.md`); the test names the behaviour, so the contract says who is wrong.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest

from datenraum.query.engines.base import Engine
from datenraum.query.engines.reference import ReferenceEngine
from datenraum.query.model import QueryError, StructuredQuery

# Every spec test runs "today" on this day unless it says otherwise, so that ages and consent periods
# are exact.
TODAY = dt.date(2024, 6, 15)

#: Builds an engine over a spec dataset (a flat list of FHIR resources).
EngineFactory = Callable[[list[dict]], Engine]


class _StoreEngines:
    """Ingests each dataset as NDJSON into a fresh store and opens a `StoreEngine` on its snapshot; the
    snapshots stay open until the test ends."""

    def __init__(self, folder: Path, snapshots: ExitStack, on: Callable[[Any], Engine] | None = None) -> None:
        self.folder = folder
        self.snapshots = snapshots
        self.runs = 0
        self.on = on  # the engine over the snapshot (default: StoreEngine, DuckDB)

    def __call__(self, resources: list[dict]) -> Engine:
        from datenraum.site.feasibility import StoreEngine
        from datenraum.site.ingest import ingest
        from datenraum.site.store import Store

        self.runs += 1
        folder = self.folder / f"run{self.runs}"
        folder.mkdir()
        data = folder / "data.ndjson"
        data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
        store = Store(folder / "store")
        report = ingest(store, [data], workers=1)
        # The only rejects a spec dataset may have are resources of patients that are not in it; any
        # other reject means the builders wrote something the store does not take, and the engines
        # would not see the same data.
        assert report.total("rejected") == _of_unknown_patients(resources), report.rejects
        snapshot = self.snapshots.enter_context(store.snapshot())
        return StoreEngine(snapshot) if self.on is None else self.on(snapshot)


def _of_unknown_patients(resources: list[dict]) -> int:
    """How many resources name a patient (`Patient/<id>`) that is not among the resources."""
    patients = {r["id"] for r in resources if r["resourceType"] == "Patient"}
    named = [r.get("subject") or r.get("patient") for r in resources if r["resourceType"] != "Patient"]
    return sum(1 for ref in named if ref and ref["reference"].removeprefix("Patient/") not in patients)


def _on_spark(spark: Any, snapshots: ExitStack) -> Callable[[Any], Engine]:
    from datenraum.site.engines.base import feasibility_engine
    from datenraum.site.engines.spark import SparkEngine

    def on(snapshot: Any) -> Engine:
        engine = SparkEngine(snapshot, spark)
        snapshots.callback(engine.close)
        return feasibility_engine(engine)

    return on


def _on_postgres(connection: Any, snapshots: ExitStack) -> Callable[[Any], Engine]:
    from datenraum.site.engines.base import feasibility_engine
    from datenraum.site.engines.postgres import PostgresEngine, load_snapshot

    def on(snapshot: Any) -> Engine:
        schema = f"case_{next(_schemas)}"
        load_snapshot(snapshot, connection, schema)
        snapshots.callback(_drop_schema, connection, schema)
        return feasibility_engine(PostgresEngine(connection, schema))

    return on


_schemas = itertools.count(1)


def _drop_schema(connection: Any, schema: str) -> None:
    connection.rollback()
    connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    connection.commit()


ENGINES = ["reference", "store", "spark", "postgres"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineFactory]:
    """A factory of the engine under test: `engine(resources)` is an `Engine` over those resources."""
    if request.param == "reference":
        yield ReferenceEngine
        return
    with ExitStack() as snapshots:
        on = None
        if request.param == "spark":
            on = _on_spark(request.getfixturevalue("spark"), snapshots)
        elif request.param == "postgres":
            on = _on_postgres(request.getfixturevalue("postgres_spec_database"), snapshots)
        yield _StoreEngines(tmp_path, snapshots, on)


SpecTest = Callable[..., None]


def flatten(resources: Iterable) -> list[dict]:
    flat: list[dict] = []
    for item in resources:
        flat.extend(item if isinstance(item, list | tuple) else [item])
    return flat


@pytest.fixture
def spec_test(request: pytest.FixtureRequest, engine: EngineFactory) -> SpecTest:
    """`spec_test(resources, query, expected_ids, today=TODAY)`: the engine must find exactly those.

    `resources` may group a patient's resources in a list of their own, for readability.
    """
    name = request.node.callspec.params["engine"]

    def run(resources: Iterable, query: StructuredQuery, expected: Iterable[str], *, today=TODAY) -> None:
        bound = engine(flatten(resources))
        found = bound.patient_ids(query, today=today)
        assert set(found) == set(expected), (
            f"{name} engine: found {sorted(found)}, expected {sorted(expected)}"
        )
        # The interface itself: ids come sorted and once each, and the count is theirs.
        assert found == sorted(set(found)), f"{name} engine: ids not sorted and distinct: {found}"
        assert bound.count(query, today=today) == len(found), f"{name} engine: count is not len(ids)"

    return run


@pytest.fixture
def rejects(engine: EngineFactory) -> Callable[..., QueryError]:
    """`rejects(query, resources=())`: the engine must raise QueryError; returns it for the path check."""

    def run(query: StructuredQuery, resources: Iterable = ()) -> QueryError:
        with pytest.raises(QueryError) as raised:
            engine(flatten(resources)).patient_ids(query, today=TODAY)
        return raised.value

    return run
