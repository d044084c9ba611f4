"""The HL7 SQL-on-FHIR v2 conformance suite, run on both view compilers, and our own views checked by it.

Every case of the official suite (`sql-on-fhir-v2/tests/*.json` in the shared data, read here, never
copied) runs on the dict compiler and on the shaped compiler (which hands back to the dict compiler
what the strict reader would: runner.py), in strict mode, the specification's column semantics. Rows
compare as the suite says: order-insensitive, `expectColumns` as the column names in order,
`expectError` as the view refused with a ViewDefinitionError (when loaded or when run). Cases tagged
`shareable` must pass; the others (`experimental`) are reported, as expected failures where they fail.
The session writes the suite's own report shape (`test_report/` of that repository) to
test-artifacts/sof-conformance-report.json, with what each engine did in every result.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

import pytest
from shared_data import SHARED_DATA

from datenraum.fhir.primitives import CONVERTERS
from datenraum.fhir.viewdef.model import (
    ViewDefinitionError,
    load_view,
    shareable_problems,
    standard_view_definitions,
)
from datenraum.fhir.viewdef.runner import DictRunner, ShapedRunner

SUITE = SHARED_DATA / "sql-on-fhir-v2" / "tests"
REPORT = Path(__file__).resolve().parent.parent / "test-artifacts" / "sof-conformance-report.json"
ENGINES = {"dict": DictRunner, "shaped": ShapedRunner}


def _cases() -> list[Any]:
    if not SUITE.is_dir():
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason=f"{SUITE} is not available"))]
    params = []
    for path in sorted(SUITE.glob("*.json")):
        suite = json.loads(path.read_text())
        for index, case in enumerate(suite["tests"]):
            params.append(pytest.param(path.name, index, case, id=f"{path.stem}[{index}] {case['title']}"))
    return params


_results: dict[str, dict[int, dict]] = collections.defaultdict(dict)


@pytest.fixture(scope="module", autouse=True)
def report() -> Any:
    yield
    if not _results:
        return
    shaped = {"ran shaped": 0, "handed back": 0, "view refused by the shaped compiler": 0}
    out: dict[str, dict] = {}
    for file_name in sorted(_results):
        tests = []
        for index in sorted(_results[file_name]):
            tests.append(_results[file_name][index])
            how = tests[-1]["result"]["shaped"].get("path")
            if how:
                shaped[how] += 1
        out[file_name] = {"tests": tests}
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(out, indent=2, default=str) + "\n")
    counts = collections.Counter()
    for tests in out.values():
        for test in tests["tests"]:
            for engine in ENGINES:
                outcome = "passed" if test["result"][engine]["passed"] else "failed"
                counts[(engine, ",".join(test["tags"]) or "untagged", outcome)] += 1
    summary = {" ".join(key): value for key, value in sorted(counts.items())}
    (REPORT.parent / "sof-conformance-summary.json").write_text(
        json.dumps({"counts": summary, "shaped path": shaped}, indent=2) + "\n"
    )


def _rows(engine: str, case: dict, resources: list[dict]) -> tuple[list[str], list[tuple], dict]:
    """The column names and rows of the case's view on one engine, and how it ran there."""
    view = load_view(case["view"], "view", default_name="conformance")
    runner = ENGINES[engine](view, strict=True)
    rows = runner.all_rows(resources)
    how: dict = {}
    if engine == "shaped":
        if runner.refused:
            how = {"path": "view refused by the shaped compiler", "why": runner.refused}
        elif runner.handed_back:
            how = {"path": "handed back", "resources handed back": runner.handed_back}
        else:
            how = {"path": "ran shaped"}
    return runner.names, rows, how


def _normal(value: Any, column_type: str) -> Any:
    """An expected value in the representation the compilers give (dates as date/datetime)."""
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(_normal(item, column_type) for item in value)
    return CONVERTERS[column_type](value)


def _key(row: tuple) -> str:
    return json.dumps([list(v) if isinstance(v, (list, tuple)) else v for v in row], default=str)


def _check(engine: str, case: dict, resources: list[dict]) -> tuple[bool, str, dict]:
    """Whether the case passes on the engine, why not, and how it ran."""
    try:
        names, rows, how = _rows(engine, case, resources)
    except ViewDefinitionError as error:
        if case.get("expectError"):
            return True, "", {"refused": str(error)}
        return False, f"refused: {error}", {}
    if case.get("expectError"):
        return False, "the view was not refused", how
    if "expectColumns" in case and names != case["expectColumns"]:
        return False, f"columns {names}, expected {case['expectColumns']}", how
    view = load_view(case["view"], "view", default_name="conformance")
    types = {column.name: column.type for column in view.columns}
    actual = sorted(_key(tuple(tuple(v) if isinstance(v, list) else v for v in row)) for row in rows)
    expected = sorted(
        _key(tuple(_normal(row.get(name), types[name]) for name in names)) for row in case.get("expect", [])
    )
    if actual != expected:
        return False, f"rows {actual}, expected {expected}", how
    return True, "", how


@pytest.mark.parametrize(("file_name", "index", "case"), _cases())
def test_conformance_case(file_name: str, index: int, case: dict) -> None:
    resources = json.loads((SUITE / file_name).read_text())["resources"]
    result: dict[str, Any] = {}
    for engine in ENGINES:
        passed, reason, how = _check(engine, case, resources)
        result[engine] = {"passed": passed, **({"reason": reason} if reason else {}), **how}
    passed = all(result[engine]["passed"] for engine in ENGINES)
    tags = case.get("tags", [])
    _results[file_name][index] = {
        "name": case["title"],
        "tags": tags,
        "result": {"passed": passed, **result},
    }
    if not passed:
        reasons = "; ".join(f"{e}: {result[e].get('reason')}" for e in ENGINES if not result[e]["passed"])
        if "shareable" not in tags:
            pytest.xfail(f"optional ({', '.join(tags)}): {reasons}")
        pytest.fail(reasons)


# --- our own views, by the same runner ---------------------------------------------------------------


def test_our_views_are_shareable_viewdefinitions():
    import importlib.resources

    for entry in importlib.resources.files("datenraum.fhir.views").iterdir():
        if entry.name.endswith(".json"):
            raw = json.loads(entry.read_bytes())
            assert shareable_problems(raw) == [], entry.name


def test_our_views_yield_at_most_one_value_per_column_on_the_test_data(mii_kds_testdata: Path):
    """Strict mode refuses a column with more than one value: on the MII KDS test data, none does, and
    the strict rows are the rows the ingest makes (first value per column)."""
    from datenraum.fhir.viewdef.compile_json import CompiledView

    resources = list(_bundle_resources(mii_kds_testdata))
    assert len(resources) > 100
    for view in standard_view_definitions():
        strict, lenient = DictRunner(view, strict=True), CompiledView(view)
        from datenraum.fhir.references import resolve_reference

        for resource in resources:
            if resource.get("resourceType") == view.resource:
                assert strict.rows(resource) == lenient.rows(resource, resolve_reference), (
                    view.name,
                    resource["id"],
                )


def _bundle_resources(folder: Path) -> Any:
    for path in sorted(folder.rglob("*.json")):
        document = json.loads(path.read_text())
        if document.get("resourceType") == "Bundle":
            for entry in document.get("entry", []):
                if isinstance(entry.get("resource"), dict):
                    yield entry["resource"]
        elif "resourceType" in document:
            yield document


# --- datenraum view run ---------------------------------------------------------------------------------


def test_view_run_flattens_the_suites_resources_and_the_mii_kds_bundles(
    tmp_path: Path, mii_kds_testdata: Path
):
    from click.testing import CliRunner

    from datenraum.cli import main

    suite = json.loads((SUITE / "foreach.json").read_text())
    (tmp_path / "in.ndjson").write_text("".join(json.dumps(r) + "\n" for r in suite["resources"]))
    (tmp_path / "v.json").write_text(json.dumps(suite["tests"][0]["view"]))
    result = CliRunner().invoke(
        main, ["view", "run", "--view", str(tmp_path / "v.json"), str(tmp_path / "in.ndjson")]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(map(json.dumps, rows)) == sorted(map(json.dumps, suite["tests"][0]["expect"]))

    import importlib.resources

    views = importlib.resources.files("datenraum.fhir.views")
    args = ["view", "run", "--format", "csv", "--out", str(tmp_path / "out")]
    for name in ("patient.json", "condition.json", "observation.json"):
        args += ["--view", str(views / name)]
    result = CliRunner().invoke(main, [*args, str(mii_kds_testdata)])
    assert result.exit_code == 0, result.output
    patients = (tmp_path / "out" / "patient.csv").read_text().splitlines()
    assert patients[0].startswith('"id","patient_id","gender"') and len(patients) > 10
    assert len((tmp_path / "out" / "condition.csv").read_text().splitlines()) > 10
