"""The strict reader (the ingest's fast path) stores exactly what the row-by-row reader stores.

The row-by-row reader is the reference: every test here loads the same NDJSON twice, once as the ingest
does (strict reader first, the rest row by row) and once row by row only, and requires the same tables,
counts and rejects. The data: all of the MII KDS test data, synthetic data of both site profiles, and
resources mutated at random into every shape a site could send (hypothesis).
"""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_contents import table_contents

from datenraum.fhir.viewdef.compile_json import CompiledView
from datenraum.fhir.viewdef.model import ViewDefinitionError, load_view
from datenraum.fhir.viewdef.shapes import resource_shapes, shape_for, walk
from datenraum.site.ingest import ingest, rules, worker
from datenraum.site.ingest.strict import StrictReader
from datenraum.site.store import Store
from datenraum.synth import generate


def load_both(tmp_path: Path, *paths: Path) -> tuple[dict, dict]:
    """Load `paths` into two fresh stores, with and without the strict reader; (tables, report) of each."""
    results = []
    for strict in (True, False):
        store = Store(tmp_path / f"store-{'strict' if strict else 'rows'}")
        report = ingest(store, list(paths), workers=1, strict_reader=strict)
        rejects = []
        if report.rejects_file:
            rejects = sorted(Path(report.rejects_file).read_bytes().splitlines())
        summary = report.to_dict()
        for key in ("load_id", "seconds", "rejects_file"):
            summary.pop(key)
        summary["rejects"] = sorted(summary["rejects"], key=repr)
        results.append((table_contents(store), summary, rejects))
    return results[0], results[1]


def strict_share(paths: list[Path]) -> float:
    """Which share of the lines the strict reader reads itself (so that a test of it is not vacuous)."""
    reader = StrictReader(lambda table, batch: None)
    lines = left = 0
    for path in paths:
        data = path.read_bytes()
        lines += data.count(b"\n")
        left += sum(1 for _ in reader.read(data, 1, str(path), 1 << 32, rules.MAX_RESOURCE_BYTES))
    return 1 - left / lines


def mii_as_ndjson(mii_kds_testdata: Path, target: Path) -> list[Path]:
    """Every resource of the MII test Bundles, one NDJSON file per Bundle (types mixed, as they come)."""
    files = []
    for bundle_file in sorted(mii_kds_testdata.glob("*.json")):
        entries = orjson.loads(bundle_file.read_bytes()).get("entry", [])
        lines = [orjson.dumps(entry["resource"]) for entry in entries if "resource" in entry]
        path = target / (bundle_file.stem + ".ndjson")
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(path)
    return files


def test_the_mii_test_data_is_stored_the_same_by_both_readers(tmp_path, mii_kds_testdata):
    files = mii_as_ndjson(mii_kds_testdata, tmp_path)
    (tables, report, rejects), expected = load_both(tmp_path, *files)
    assert (tables, report, rejects) == expected
    assert report["rejected"] == {}
    assert strict_share(files) > 0.9


@pytest.mark.parametrize("site_profile", [0, 1])
def test_synthetic_data_is_stored_the_same_by_both_readers(tmp_path, site_profile):
    generate(tmp_path / "in", 150, seed=7 + site_profile, site_profile=site_profile, workers=1)
    files = sorted((tmp_path / "in").glob("*.ndjson"))
    strict, rows = load_both(tmp_path, *files)
    assert strict == rows
    assert strict_share(files) == 1.0


def test_gzip_input_is_read_in_blocks_with_line_numbers_across_them(tmp_path, monkeypatch):
    monkeypatch.setattr(worker, "BLOCK_BYTES", 1000)  # many blocks, lines cut across their edges
    generate(tmp_path / "in", 30, seed=3, workers=1)
    plain = sorted((tmp_path / "in").glob("*.ndjson"))
    lines = b"".join(path.read_bytes() for path in plain).splitlines()
    lines[40] = b"{not json"
    packed = tmp_path / "all.ndjson.gz"
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n"))
    (tables, report, rejects), expected = load_both(tmp_path, packed)
    assert (tables, report, rejects) == expected
    assert [r["location"] for r in report["rejects"]] == [f"{packed}:41"]


# --- resources in every shape a site could send --------------------------------------------------------

DATES = st.sampled_from(
    [
        "2020",
        "2020-07",
        "2020-13",
        "2020-02-30",
        "2020-07-01T24:00:00Z",
        "2020-07-01T10:00:00+15:00",
        "2020-07-01T10:00:00-14:30",
        "2020-07-01T10:00:00.1234567Z",
        "2020-07-01T10:00:00.5+02:00",
        "2020-07-01T10:00",
        "2020-07-01T10:00:60Z",
        "2020-07-01 10:00:00",
        "0000-01-01",
    ]
)
REFERENCES = st.sampled_from(
    [
        "Patient/",
        "Patient/a/b",
        "Patient/a?b",
        "urn:uuid:0ab",
        "Patient?identifier=sys|1",
        "https://fhir.example.org/Patient/p1",
        "Group/1",
        "Patient/p1/_history/2",
        "Encounter/e1",
    ]
)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.just([]),
    st.just({}),
    DATES,
    REFERENCES,
    st.just("not an id!"),
)


def _nodes(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _nodes(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _nodes(value, (*path, index))


@st.composite
def mutated(draw, templates: list[dict]) -> dict:
    """A template resource with a few elements changed: to an odd value, into or out of an array, gone."""
    resource = copy.deepcopy(draw(st.sampled_from(templates)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [path for path, _ in _nodes(resource) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = resource
        for key in path[:-1]:
            parent = parent[key]
        key, value = path[-1], parent[path[-1]]
        change = draw(st.sampled_from(["odd", "wrap", "unwrap", "drop", "date", "reference"]))
        references = [node for _, node in _nodes(resource) if isinstance(node, dict) and "reference" in node]
        dates = [(p, n) for p, n in _nodes(resource) if isinstance(n, str) and n[:2] in ("19", "20") and p]
        if change == "reference" and references:
            target = draw(st.sampled_from(references))
            if draw(st.booleans()):
                target["reference"] = draw(REFERENCES)
            else:
                del target["reference"]
                target["identifier"] = {"system": "https://synth.example/pid", "value": "x"}
        elif change == "date" and dates:
            path = draw(st.sampled_from([p for p, _ in dates]))
            parent = resource
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = draw(DATES)
        elif change == "odd":
            parent[key] = draw(ODD_VALUES)
        elif change == "wrap":
            parent[key] = [value]
        elif change == "unwrap" and isinstance(value, list) and value:
            parent[key] = value[0]
        elif isinstance(parent, dict):
            del parent[key]
    return resource


@pytest.fixture(scope="module")
def templates(tmp_path_factory, mii_kds_testdata) -> list[dict]:
    """A few resources of every type the views flatten, from the synthetic and the MII data."""
    folder = tmp_path_factory.mktemp("templates")
    generate(folder, 12, seed=11, workers=1)
    resources = [
        orjson.loads(line)
        for path in sorted(folder.glob("*.ndjson"))
        for line in path.read_bytes().splitlines()
    ]
    for path in mii_as_ndjson(mii_kds_testdata, folder):
        resources += [orjson.loads(line) for line in path.read_bytes().splitlines()]
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    return [resource for group in by_type.values() for resource in group[:6]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_odd_resources_are_stored_or_rejected_the_same_by_both_readers(tmp_path_factory, templates, data):
    patients = [r for r in templates if r["resourceType"] == "Patient"]
    resources = data.draw(st.lists(mutated(templates), min_size=1, max_size=12))
    # The standard library's encoder, because orjson refuses integers beyond 64 bits, which sites may send.
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in patients + resources]
    ending = data.draw(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\r\r\n"]))
    text = ending.join(lines) + data.draw(st.sampled_from([b"", ending]))
    if data.draw(st.booleans()):
        text += b'\n{"resourceType": "Observation", "id": "bad-utf8", "note": "\xff"}'
    folder = tmp_path_factory.mktemp("odd")
    path = folder / "input.ndjson"
    path.write_bytes(text)
    strict, rows = load_both(folder, path)
    assert strict == rows


# --- shapes -------------------------------------------------------------------------------------------


def test_every_element_the_views_read_has_its_fhir_type_and_cardinality():
    shapes = resource_shapes()
    observation = dict(walk(shapes["Observation"].root))
    assert observation["category"].repeats and observation["category.coding"].repeats
    assert not observation["code"].repeats and observation["code.coding"].repeats
    assert not dict(walk(shapes["Procedure"].root))["category"].repeats  # 0..1 in Procedure, 0..* elsewhere
    assert observation["valueQuantity.value"].type == "decimal"


def test_a_view_reading_an_element_without_a_type_is_refused_with_its_name():
    view = load_view(
        {
            "name": "odd",
            "resource": "Observation",
            "select": [{"column": [{"name": "note", "path": "note.text", "type": "string"}]}],
        }
    )
    with pytest.raises(ViewDefinitionError, match=r"Observation\.note is not in elements\.json"):
        shape_for("Observation", [CompiledView(view)])


def test_a_resource_refused_half_way_through_its_rows_leaves_none_of_them(tmp_path):
    generate(tmp_path / "in", 5, seed=5, workers=1)
    consents = [
        orjson.loads(line) for line in next((tmp_path / "in").glob("Consent*")).read_bytes().splitlines()
    ]
    refused = copy.deepcopy(next(c for c in consents if len(c["provision"]["provision"]) > 2))
    refused["provision"]["provision"][2]["period"]["start"] = "2020-13-45"  # rows of two provisions made
    refused["id"] = "refused"
    patients = next((tmp_path / "in").glob("Patient*")).read_bytes()
    path = tmp_path / "input.ndjson"
    path.write_bytes(patients + b"\n".join(orjson.dumps(c) for c in [refused, *consents]) + b"\n")
    strict, rows = load_both(tmp_path, path)
    assert strict == rows
    assert strict[1]["rejected"] == {"Consent": 1}
    assert "refused" not in {row[0] for row in strict[0]["consent"]}
