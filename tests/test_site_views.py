"""Site-registered views (datenraum view add/list/remove): their tables next to ours, kept up to date by
every load, built and dropped atomically; bad views refused with the file and the JSON path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from conftest import query
from fhir_resources import bundle, delete, observation, patient

from datenraum.fhir.viewdef.model import load_view
from datenraum.fhir.viewdef.runner import run_views
from datenraum.site.compact import compact
from datenraum.site.ingest import ingest
from datenraum.site.store import Manifest, Store, StoreError
from datenraum.site.views import SiteViewError, add_views, list_views

LAB_VIEW = {
    "resourceType": "ViewDefinition",
    "name": "lab_values",
    "status": "active",
    "resource": "Observation",
    "fhirVersion": ["4.0.1"],
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()", "type": "string"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)", "type": "string"},
                {
                    "name": "loinc",
                    "path": "code.coding.where(system = 'http://loinc.org').code.first()",
                    "type": "string",
                },
                {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
            ]
        }
    ],
}
GIVEN_NAMES = {
    "resourceType": "ViewDefinition",
    "name": "given_names",
    "status": "active",
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "id", "type": "string"}]},
        {
            "forEach": "name.given",
            "column": [{"name": "given", "path": "$this", "type": "string"}],
        },
    ],
}
# name.given yields two values per name of our patients, and the column is not a collection
GIVEN_NAMES_NOT_CONFORMANT = {
    **GIVEN_NAMES,
    "select": [
        {
            "column": [{"name": "id", "path": "id", "type": "string"}],
            "forEach": "name",
            "select": [{"column": [{"name": "given", "path": "given", "type": "string"}]}],
        }
    ],
}


def write_view(folder: Path, view: dict, file_name: str | None = None) -> Path:
    path = folder / (file_name or f"{view['name']}.json")
    path.write_bytes(orjson.dumps(view, option=orjson.OPT_INDENT_2))
    return path


def write_lines(path: Path, resources) -> Path:
    with open(path, "wb") as out:
        for resource in resources:
            out.write(orjson.dumps(resource) + b"\n")
    return path


def expected_rows(store: Store, view: dict) -> list[tuple]:
    """The view over the store's raw resources, by the conformance-validated runner: what the table must hold."""
    with store.snapshot() as snapshot:
        texts = snapshot.connection.execute("SELECT json FROM resource").fetchall()
    table = run_views([load_view(view)], ((orjson.loads(t), None) for (t,) in texts), engine="dict")
    return sorted(table[view["name"]].to_pylist(), key=repr)


def table_rows(store: Store, table: str) -> list[dict]:
    with store.snapshot() as snapshot:
        found = snapshot.connection.sql(f"SELECT * FROM {table}")
        return sorted((dict(zip(found.columns, row, strict=True)) for row in found.fetchall()), key=repr)


def debris(store: Store) -> list[str]:
    """Files of the store's views/ and site/ folders that the current generation does not need."""
    with store.snapshot() as snapshot:
        needed = {str(store.path / f) for f in snapshot.manifest.all_files()}
    found = [str(p) for p in store.staging.iterdir()]
    for root in (store.views, store.site_tables, store.segments):
        if root.exists():
            found += [str(p) for p in root.rglob("*") if p.is_file() and str(p) not in needed]
    return found


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datenraum", *map(str, args)], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def loaded(store, input_dir) -> Store:
    """20 patients (two given names each) and 100 observations."""
    resources = [patient(f"p{i}", name=[{"family": "F", "given": [f"A{i}", f"B{i}"]}]) for i in range(20)]
    resources += [observation(f"o{i}", f"Patient/p{i % 20}", value=float(i)) for i in range(100)]
    ingest(store, [write_lines(input_dir / "first.ndjson", resources)], workers=1)
    return store


# --- add, list, remove ----------------------------------------------------------------------------


def test_a_registered_view_is_a_table_next_to_ours_and_removing_it_drops_it(loaded, tmp_path):
    store = loaded
    generation = store.current_generation()
    path = write_view(tmp_path, LAB_VIEW)

    added = run_cli("view", "add", "--store", store.path, path)
    assert added.returncode == 0, added.stderr
    assert "site_lab_values: added" in added.stdout and "100 rows" in added.stdout
    assert store.current_generation() == generation + 1  # a generation of its own
    assert table_rows(store, "site_lab_values") == expected_rows(store, LAB_VIEW)
    assert query(store, "SELECT count(*) FROM site_lab_values WHERE loinc = '718-7'") == [(100,)]
    assert query(store, "SELECT count(*) FROM observation") == [(100,)]  # ours as they were

    listed = run_cli("view", "list", "--store", store.path, "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = orjson.loads(listed.stdout)
    assert (entry["table"], entry["resource"], entry["rows"]) == ("site_lab_values", "Observation", 100)
    assert len(entry["hash"]) == 64
    # views/ holds the canonical JSON under its hash; the manifest lists it with the table's parts
    [view_file] = store.views.iterdir()
    assert view_file.name == f"lab_values.{entry['hash'][:16]}.json"
    assert view_file.read_bytes() == orjson.dumps(LAB_VIEW, option=orjson.OPT_SORT_KEYS)

    again = run_cli("view", "add", "--store", store.path, path)
    assert "unchanged" in again.stdout and store.current_generation() == generation + 1

    removed = run_cli("view", "remove", "--store", store.path, "lab_values")
    assert removed.returncode == 0, removed.stderr
    assert store.current_generation() == generation + 2
    assert list_views(store) == []
    with store.snapshot() as snapshot:
        assert "site_lab_values" not in snapshot.tables()
    assert debris(store) == []
    assert not any(store.views.iterdir()) and not any(store.site_tables.rglob("*.parquet"))

    unknown = run_cli("view", "remove", "--store", store.path, "lab_values")
    assert unknown.returncode == 2 and "no site view named 'lab_values'" in unknown.stderr


def test_a_view_registered_at_an_empty_store_fills_with_the_first_load(store, input_dir, tmp_path):
    add_views(store, [write_view(tmp_path, LAB_VIEW)])
    assert table_rows(store, "site_lab_values") == []
    ingest(store, [write_lines(input_dir / "a.ndjson", [patient("p1"), observation("o1", "Patient/p1")])])
    assert [row["id"] for row in table_rows(store, "site_lab_values")] == ["o1"]


# --- loads keep the tables up to date ------------------------------------------------------------


def test_a_load_after_registering_extends_the_site_table_in_its_own_generation(loaded, input_dir, tmp_path):
    store = loaded
    add_views(store, [write_view(tmp_path, LAB_VIEW), write_view(tmp_path, GIVEN_NAMES)])
    with store.snapshot() as snapshot:
        before = {v.name: dict(v.parts) for v in snapshot.manifest.site_views}

    # new observations, replaced ones, and a deleted patient with its observations
    changes = [observation(f"n{i}", f"Patient/p{i % 20}", value=500.0 + i) for i in range(30)]
    changes += [observation(f"o{i}", f"Patient/p{i % 20}", value=-1.0) for i in range(0, 100, 10)]
    changes += [patient("p99", name=[{"given": ["Z"]}])]
    (input_dir / "deletes.json").write_bytes(orjson.dumps(bundle([delete("Patient/p3")])))
    generation = store.current_generation()
    report = ingest(store, [write_lines(input_dir / "changes.ndjson", changes), input_dir / "deletes.json"])
    assert report.generation == generation + 1  # the site tables came with the load, not after it

    assert table_rows(store, "site_lab_values") == expected_rows(store, LAB_VIEW)
    assert table_rows(store, "site_given_names") == expected_rows(store, GIVEN_NAMES)
    assert query(store, "SELECT count(*) FROM site_lab_values") == [(100 + 30 - 5 - 2,)]
    assert query(store, "SELECT count(*) FROM site_lab_values WHERE value = -1") == [(10,)]
    assert query(store, "SELECT count(*) FROM site_given_names WHERE id = 'p3'") == [(0,)]
    with store.snapshot() as snapshot:
        after = {v.name: dict(v.parts) for v in snapshot.manifest.site_views}
        raw_files = set(snapshot.manifest.files("resource"))
    for name in before:
        assert set(after[name]) == raw_files  # a part for every raw file
        kept = {raw: part for raw, part in before[name].items() if raw in raw_files}
        assert kept.items() <= after[name].items()  # the raw files the load left alone kept their parts
    assert debris(store) == []


def test_a_changed_view_rebuilds_its_table_and_needs_replace(loaded, tmp_path):
    store = loaded
    add_views(store, [write_view(tmp_path, LAB_VIEW)])
    [old] = list_views(store)
    changed = {**LAB_VIEW, "select": [{"column": [*LAB_VIEW["select"][0]["column"][:2]]}]}
    changed["select"][0]["column"].append(
        {"name": "unit", "path": "value.ofType(Quantity).unit", "type": "string"}
    )
    path = write_view(tmp_path, changed, "lab_values_v2.json")

    refused = run_cli("view", "add", "--store", store.path, path)
    assert refused.returncode == 2
    assert "lab_values_v2.json: name: a site view 'lab_values' is already registered" in refused.stderr
    assert "--replace" in refused.stderr

    [outcome] = add_views(store, [path], replace=True)
    assert outcome.outcome == "replaced" and outcome.hash != old.hash
    assert table_rows(store, "site_lab_values") == expected_rows(store, changed)
    assert {row["unit"] for row in table_rows(store, "site_lab_values")} == {"g/dL"}
    assert [f.name for f in store.views.iterdir()] == [f"lab_values.{outcome.hash[:16]}.json"]
    assert [f.name for f in store.site_tables.iterdir()] == [f"lab_values.{outcome.hash[:16]}"]
    assert debris(store) == []


def test_a_writer_that_forgets_the_site_views_cannot_publish(loaded, tmp_path):
    store = loaded
    add_views(store, [write_view(tmp_path, LAB_VIEW)])
    with store.snapshot() as snapshot:
        previous = snapshot.manifest
    forgetful = Manifest(previous.generation + 1, previous.segments, previous.last_load)
    with store.writer_lock(), pytest.raises(StoreError, match=r"would drop the site views \['lab_values'\]"):
        store.publish(forgetful)
    assert query(store, "SELECT count(*) FROM site_lab_values") == [(100,)]


def test_compaction_rebuilds_the_site_tables_from_the_merged_raw_table(loaded, input_dir, tmp_path):
    store = loaded
    add_views(store, [write_view(tmp_path, LAB_VIEW)])
    ingest(store, [write_lines(input_dir / "more.ndjson", [observation("x1", "Patient/p1", value=7.0)])])
    compact(store)
    assert table_rows(store, "site_lab_values") == expected_rows(store, LAB_VIEW)
    assert query(store, "SELECT count(*) FROM site_lab_values") == [(101,)]
    assert debris(store) == []


# --- killed half-way ------------------------------------------------------------------------------

# Runs a command in a subprocess that writes a marker file right after the first part of a site table
# is written, then waits to be killed: the kill comes in the middle of the build, every time.
KILLED_DURING_BUILD = """
import signal, sys
from pathlib import Path
import pyarrow.parquet as pq
from datenraum.cli import main

class WriteThenWait(pq.ParquetWriter):
    def write_table(self, table, **options):
        super().write_table(table, **options)
        if "/site/" in str(self.where):
            Path(sys.argv[1]).write_text("building")
            signal.pause()

pq.ParquetWriter = WriteThenWait
main(sys.argv[2:])
"""


def kill_during_build(marker: Path, *args: str | Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_DURING_BUILD, str(marker), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    while not marker.exists():  # poll: waiting on the process returns as soon as it ends, if it does
        try:
            process.wait(timeout=0.02)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"the command ended before building a site table: {process.stderr.read()}")
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def test_a_view_add_killed_during_the_build_leaves_the_old_generation_and_the_next_add_completes(
    loaded, tmp_path
):
    store = loaded
    generation = store.current_generation()
    path = write_view(tmp_path, LAB_VIEW)
    kill_during_build(tmp_path / "marker", "view", "add", "--store", store.path, path)

    assert list(store.site_tables.rglob("*.parquet"))  # it did die half-way
    assert store.current_generation() == generation
    with store.snapshot() as snapshot:
        assert "site_lab_values" not in snapshot.tables()  # never seen half-built
    assert query(store, "SELECT count(*) FROM observation") == [(100,)]

    again = run_cli("view", "add", "--store", store.path, path)
    assert again.returncode == 0, again.stderr
    assert table_rows(store, "site_lab_values") == expected_rows(store, LAB_VIEW)
    assert debris(store) == []


def test_a_load_killed_while_it_extends_a_site_table_leaves_the_old_state(loaded, input_dir, tmp_path):
    store = loaded
    add_views(store, [write_view(tmp_path, LAB_VIEW)])
    generation = store.current_generation()
    before = table_rows(store, "site_lab_values")
    more = write_lines(input_dir / "more.ndjson", [observation(f"m{i}", "Patient/p1") for i in range(10)])
    kill_during_build(tmp_path / "marker", "ingest", "--store", store.path, more)

    assert store.current_generation() == generation
    assert table_rows(store, "site_lab_values") == before
    assert query(store, "SELECT count(*) FROM observation") == [(100,)]

    again = run_cli("ingest", "--store", store.path, more)
    assert again.returncode == 0, again.stderr
    assert query(store, "SELECT count(*) FROM site_lab_values") == [(110,)]
    assert table_rows(store, "site_lab_values") == expected_rows(store, LAB_VIEW)
    assert debris(store) == []


# --- bad views ------------------------------------------------------------------------------------


def refused(store: Store, *paths: Path) -> str:
    """The error of `datenraum view add` for these files, after checking that nothing changed."""
    generation = store.current_generation()
    done = run_cli("view", "add", "--store", store.path, *paths)
    assert done.returncode == 2, done.stdout
    assert store.current_generation() == generation
    assert debris(store) == []
    return done.stderr


def test_malformed_json_is_refused_naming_the_file(loaded, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"resourceType": "ViewDefinition", "name": ')
    assert f"error: {path}: malformed JSON" in refused(loaded, path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"resourceType": "Library"}, "resourceType: must be 'ViewDefinition', not 'Library'"),
        ({"status": None}, "status: must be one of draft, active, retired, unknown"),
        ({"resource": "Observatoin"}, "resource: 'Observatoin' is not a FHIR R4 resource type"),
        ({"name": "Lab-Values"}, "name: 'Lab-Values' is not a table name"),
        (
            {"name": "patient"},
            "name: 'patient' is one of Datenraum's own tables; a site view cannot shadow it",
        ),
        (
            {"select": [{"column": [{"name": "id", "path": "id"}]}]},
            "select[0].column[0].type: missing (a table column needs a type)",
        ),
        (
            {"select": [{"column": [{"name": "id", "path": "id.(", "type": "string"}]}]},
            "select[0].column[0]:",
        ),
        (
            {"select": [{"column": [{"name": "x", "path": "%nowhere", "type": "string"}]}]},
            "select[0].column[0]: constant %nowhere is not defined",
        ),
    ],
    ids=["resourceType", "status", "resource", "name", "shadows patient", "untyped", "syntax", "constant"],
)
def test_a_view_that_is_not_a_valid_viewdefinition_is_refused_with_its_json_path(
    loaded, tmp_path, change, message
):
    path = write_view(tmp_path, {**LAB_VIEW, **change}, "bad.json")
    assert f"{path}: {message}" in refused(loaded, path)


def test_a_view_the_conformance_validated_runner_refuses_on_the_stored_data_is_refused(loaded, tmp_path):
    path = write_view(tmp_path, GIVEN_NAMES_NOT_CONFORMANT, "given.json")
    error = refused(loaded, path)
    assert f"{path}: select[0].select[0].column[0]:" in error
    assert "column given: more than one value (it is not a collection), for Patient/p" in error
    assert "nothing was registered" in error

    write_view(tmp_path, GIVEN_NAMES, "given.json")  # forEach name.given: one row per given name
    add_views(loaded, [path])
    assert query(loaded, "SELECT count(*) FROM site_given_names") == [(40,)]


def test_two_views_of_one_name_are_refused(loaded, tmp_path):
    first = write_view(tmp_path, LAB_VIEW, "one.json")
    second = write_view(tmp_path, {**LAB_VIEW, "status": "draft"}, "two.json")
    error = refused(loaded, first, second)
    assert f"{second}: name: 'lab_values' is also the name of {first}; two views cannot share a name" in error
    with pytest.raises(SiteViewError, match="two views cannot share a name"):
        add_views(loaded, [first, second])


def test_a_later_load_is_not_refused_for_a_site_view_and_says_what_it_read_leniently(
    loaded, input_dir, tmp_path
):
    store = loaded
    single = {
        **GIVEN_NAMES,
        "select": [
            {
                "column": [
                    {"name": "id", "path": "id", "type": "string"},
                    {"name": "family", "path": "name.family", "type": "string"},
                ]
            }
        ],
    }
    add_views(store, [write_view(tmp_path, single)])
    two_names = patient("q1", name=[{"family": "One"}, {"family": "Two"}])
    report = ingest(store, [write_lines(input_dir / "q.ndjson", [two_names])])
    assert report.total("rejected") == 0
    [note] = report.site_view_notes
    assert "select[0].column[1]" in note and "Patient/q1" in note and "first values were taken" in note
    assert query(store, "SELECT family FROM site_given_names WHERE id = 'q1'") == [("One",)]


# --- datenraum view run --store -------------------------------------------------------------------


def test_view_run_reads_the_stores_raw_resources(loaded, tmp_path):
    store = loaded
    path = write_view(tmp_path, LAB_VIEW)
    done = run_cli("view", "run", "--view", path, "--store", store.path)
    assert done.returncode == 0, done.stderr
    rows = sorted((orjson.loads(line) for line in done.stdout.splitlines()), key=repr)
    assert len(rows) == 100
    assert rows == sorted((orjson.loads(orjson.dumps(r)) for r in expected_rows(store, LAB_VIEW)), key=repr)
    out = tmp_path / "out.csv"
    written = run_cli("view", "run", "--view", path, "--store", store.path, "--format", "csv", "--out", out)
    assert written.returncode == 0, written.stderr
    assert out.read_text().splitlines()[0] == '"id","patient","loinc","value"'
    assert len(out.read_text().splitlines()) == 101


def test_count_and_our_tables_are_unaffected_by_site_views(loaded, tmp_path):
    store = loaded
    with store.snapshot() as snapshot:
        ours = snapshot.row_counts()
    add_views(store, [write_view(tmp_path, LAB_VIEW)])
    with store.snapshot() as snapshot:
        counts = snapshot.row_counts()
    assert {table: counts[table] for table in ours} == ours
    assert counts["site_lab_values"] == 100
    query_file = tmp_path / "query.json"
    query_file.write_text(
        textwrap.dedent("""
        {"version": "http://to_be_decided.com/draft-1/schema#",
         "inclusionCriteria": [[{"termCodes": [{"code": "718-7", "system": "http://loinc.org", "display": "Hb"}]}]]}
        """)
    )
    counted = run_cli("count", "--store", store.path, query_file)
    assert counted.returncode == 0, counted.stderr
