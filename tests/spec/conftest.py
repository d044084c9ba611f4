"""One spec suite, every engine: each spec test states data, a query and the expected patients, and the
`spec_test` fixture runs it on each engine in turn.

The engines are the reference evaluator (`datenraum.query.engines.reference`, over the raw FHIR dicts) and the
SQL engine (`datenraum.site.feasibility`, over a site store the data is ingested into). A test that
passes on one engine and fails on the other is a disagreement about the contract
(`docs/feasibility-semantics.md`); the test names the behaviour, so the contract says who is wrong.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
import pytest

from datenraum.query.engines import reference
from datenraum.query.model import QueryError, StructuredQuery

# Every spec test runs "today" on this day unless it says otherwise, so that ages and consent periods
# are exact.
TODAY = dt.date(2024, 6, 15)


class ReferenceEngine:
    name = "reference"

    def patient_ids(self, resources: list[dict], query: StructuredQuery, today: dt.date) -> set[str]:
        return reference.patient_ids(resources, query, today=today)


class SqlEngine:
    """Ingests the resources as NDJSON into a fresh store, then asks the site's feasibility module."""

    name = "sql"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.runs = 0

    def patient_ids(self, resources: list[dict], query: StructuredQuery, today: dt.date) -> set[str]:
        from datenraum.site import feasibility
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
        with store.snapshot() as snapshot:
            return set(feasibility.patient_ids(snapshot, query, today=today))


def _of_unknown_patients(resources: list[dict]) -> int:
    """How many resources name a patient (`Patient/<id>`) that is not among the resources."""
    patients = {r["id"] for r in resources if r["resourceType"] == "Patient"}
    named = [r.get("subject") or r.get("patient") for r in resources if r["resourceType"] != "Patient"]
    return sum(1 for ref in named if ref and ref["reference"].removeprefix("Patient/") not in patients)


def _sql_engine_missing() -> bool:
    return importlib.util.find_spec("datenraum.site.feasibility") is None


@pytest.fixture(params=["reference", "sql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> ReferenceEngine | SqlEngine:
    if request.param == "reference":
        return ReferenceEngine()
    if _sql_engine_missing():
        pytest.skip("the SQL engine (datenraum/site/feasibility.py) does not exist yet")
    return SqlEngine(tmp_path)


SpecTest = Callable[..., None]


def flatten(resources: Iterable) -> list[dict]:
    flat: list[dict] = []
    for item in resources:
        flat.extend(item if isinstance(item, list | tuple) else [item])
    return flat


@pytest.fixture
def spec_test(engine: ReferenceEngine | SqlEngine) -> SpecTest:
    """`spec_test(resources, query, expected_ids, today=TODAY)`: the engine must find exactly those.

    `resources` may group a patient's resources in a list of their own, for readability.
    """

    def run(resources: Iterable, query: StructuredQuery, expected: Iterable[str], *, today=TODAY) -> None:
        found = engine.patient_ids(flatten(resources), query, today)
        assert found == set(expected), (
            f"{engine.name} engine: found {sorted(found)}, expected {sorted(expected)}"
        )

    return run


@pytest.fixture
def rejects(engine: ReferenceEngine | SqlEngine) -> Callable[..., QueryError]:
    """`rejects(query, resources=())`: the engine must raise QueryError; returns it for the path check."""

    def run(query: StructuredQuery, resources: Iterable = ()) -> QueryError:
        with pytest.raises(QueryError) as raised:
            engine.patient_ids(flatten(resources), query, TODAY)
        return raised.value

    return run
