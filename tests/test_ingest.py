"""Loading FHIR input into a site store: what ends up in which table, and what the load report says."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import query
from fhir_resources import (
    LOINC,
    PATIENT_ID_SYSTEM,
    bundle,
    condition,
    delete,
    observation,
    organization,
    patient,
    post,
    put,
)
from store_contents import table_contents

from datenraum.fhir.viewdef.compile_json import standard_views
from datenraum.site.ingest import ingest
from datenraum.site.ingest.allocation import WORKER_ENVIRONMENT, worker_environment
from datenraum.site.store import SORT_KEYS, Store


def load(store: Store, *paths: Path, **options) -> object:
    options.setdefault("workers", 1)
    return ingest(store, list(paths), **options)


def bundle_resources(*files: Path) -> dict[tuple[str, str], dict]:
    """The resources a set of transaction Bundles leave behind, read straight from the JSON."""
    resources: dict[tuple[str, str], dict] = {}
    for file in files:
        for entry in orjson.loads(file.read_bytes())["entry"]:
            resource = entry["resource"]
            resources[(resource["resourceType"], resource["id"])] = resource
    return resources


def table_ids(store: Store, table: str) -> set[str]:
    return {row[0] for row in query(store, f"SELECT DISTINCT id FROM {table}")}


def items(node: object, path: str) -> list:
    """The values of a dotted path (no functions), lists flattened: the test's own tiny FHIRPath."""
    found = [node]
    for name in path.split("."):
        step = []
        for value in found:
            child = value.get(name) if isinstance(value, dict) else None
            step.extend(child if isinstance(child, list) else [] if child is None else [child])
        found = step
    return found


# --- the reference data ---------------------------------------------------------------------------

# Tables whose rows exist only where a repeating element has items (a plain forEach at the top).
ONLY_WITH_ITEMS = {
    "observation_component": "component",
    "patient_identifier": "identifier",
    "specimen_processing": "processing",
}
# Tables with one row per item of a coding list, or one row of nulls where there is none (forEachOrNull).
ONE_ROW_PER_CODING = {
    "condition": "code.coding",
    "observation": "code.coding",
    "procedure": "code.coding",
    "encounter": "type.coding",
    "specimen": "type.coding",
    "diagnostic_report": "code.coding",
    "medication": "code.coding",
    "substance": "code.coding",
}


def test_every_resource_of_the_mii_kds_test_bundles_loads_without_a_reject(store, mii_kds_testdata):
    files = sorted(mii_kds_testdata.glob("*.json"))
    expected = bundle_resources(*files)
    entries = sum(len(orjson.loads(f.read_bytes())["entry"]) for f in files)

    report = load(store, mii_kds_testdata)

    assert report.total("rejected") == 0, report.rejects[:5]
    assert report.resources_read == entries
    assert report.total("added") == len(expected)
    assert report.total("replaced") == entries - len(expected)  # resources that recur across Bundles
    by_type = collections.Counter(resource_type for resource_type, _id in expected)
    assert report.added == dict(by_type)
    stored = query(store, "SELECT resource_type, id FROM resource")
    assert sorted(stored) == sorted(expected)


def test_each_flattened_table_holds_every_resource_of_its_type_once(store, mii_kds_testdata):
    expected = bundle_resources(*mii_kds_testdata.glob("*.json"))
    load(store, mii_kds_testdata)

    checked = set()
    for table, view in standard_views().items():
        resources = [r for (t, _i), r in expected.items() if t == view.resource]
        if table in ONLY_WITH_ITEMS:
            resources = [r for r in resources if items(r, ONLY_WITH_ITEMS[table])]
        assert table_ids(store, table) == {r["id"] for r in resources}, table
        checked.add(table)
    assert {"patient", "condition", "observation", "observation_component"} <= checked
    assert len(table_ids(store, "patient")) == 31


def test_a_coding_list_gives_one_row_per_coding_or_one_row_without(store, mii_kds_testdata):
    expected = bundle_resources(*mii_kds_testdata.glob("*.json"))
    load(store, mii_kds_testdata)

    for table, path in ONE_ROW_PER_CODING.items():
        resource_type = standard_views()[table].resource
        rows = sum(max(1, len(items(r, path))) for (t, _i), r in expected.items() if t == resource_type)
        assert query(store, f"SELECT count(*) FROM {table}")[0][0] == rows, table


def test_the_stored_json_is_the_resource_as_given(store, mii_kds_testdata):
    expected = bundle_resources(*mii_kds_testdata.glob("*.json"))
    load(store, mii_kds_testdata)

    for resource_type, resource_id, text in query(store, "SELECT resource_type, id, json FROM resource"):
        assert orjson.loads(text) == expected[(resource_type, resource_id)]


@pytest.mark.parametrize("name", ["testData.json", "Bundle-mii-exa-test-data-bundle.json"])
def test_the_sq2cql_test_bundles_load_without_a_reject(store, sq2cql_testdata, name):
    file = sq2cql_testdata / name
    expected = bundle_resources(file)

    report = load(store, file)

    assert report.total("rejected") == 0, report.rejects[:5]
    assert sorted(query(store, "SELECT resource_type, id FROM resource")) == sorted(expected)
    patients = {i for (t, i) in expected if t == "Patient"}
    assert table_ids(store, "patient") == patients


# --- input formats --------------------------------------------------------------------------------


def some_patients_and_observations() -> list[dict]:
    return [
        patient("p1"),
        patient("p2"),
        observation("o1", "Patient/p1"),
        observation("o2", "Patient/p2", 2.5),
        condition("c1", "Patient/p1"),
    ]


def test_ndjson_plain_and_gzipped_load_the_same(tmp_path, write_ndjson):
    resources = some_patients_and_observations()
    plain, gzipped = Store(tmp_path / "plain"), Store(tmp_path / "gzipped")
    load(plain, write_ndjson("a.ndjson", resources))
    load(gzipped, write_ndjson("b.ndjson.gz", resources))

    plain_contents, gzipped_contents = table_contents(plain), table_contents(gzipped)
    for table in plain_contents:  # the raw table names its source file, which differs
        if table != "resource":
            assert plain_contents[table] == gzipped_contents[table], table
    assert query(gzipped, "SELECT count(*) FROM resource")[0][0] == 5


def test_a_folder_is_searched_for_ndjson_gzip_and_bundle_files(store, write_ndjson, write_json, input_dir):
    write_ndjson("site/patients.ndjson", [patient("p1")])
    write_ndjson("site/deeper/obs.ndjson.gz", [observation("o1", "Patient/p1")])
    write_json("site/deeper/more.json", bundle([put(patient("p2"))], "collection"))
    (input_dir / "site" / "README.md").write_text("not FHIR, not read")

    report = load(store, input_dir / "site")

    assert report.total("rejected") == 0
    assert report.added == {"Patient": 2, "Observation": 1}


def test_a_single_resource_in_a_json_file_loads(store, write_json):
    report = load(store, write_json("p.json", patient("p1")))
    assert report.added == {"Patient": 1}


def test_transaction_bundles_honour_put_post_and_delete(store, write_json):
    load(
        store,
        write_json(
            "first.json",
            bundle([put(patient("p1")), put(organization("org1")), put(observation("o1", "Patient/p1"))]),
        ),
    )
    report = load(
        store,
        write_json(
            "second.json",
            bundle(
                [
                    post(
                        {
                            "resourceType": "Observation",
                            "status": "final",
                            "subject": {"reference": "Patient/p1"},
                            "code": {"coding": [{"code": "x"}]},
                        },
                        full_url="urn:uuid:0b5bd3a8-4c43-4a4e-9e25-5a5d3bb41d9b",
                    ),
                    put(observation("o1", "Patient/p1", value=9.0)),
                    delete("Organization/org1"),
                ]
            ),
        ),
    )

    assert report.added == {"Observation": 1}
    assert report.replaced == {"Observation": 1}
    assert report.deleted == {"Organization": 1}
    ids = sorted(query(store, "SELECT id, value_quantity FROM observation"))
    assert ids == [("0b5bd3a8-4c43-4a4e-9e25-5a5d3bb41d9b", None), ("o1", 9.0)]
    assert query(store, "SELECT count(*) FROM resource WHERE resource_type = 'Organization'") == [(0,)]


def test_a_post_without_fullurl_gets_the_same_id_every_time(store, write_json):
    entry = post({"resourceType": "Organization", "name": "Klinikum"})
    load(store, write_json("a.json", bundle([entry])))
    report = load(store, write_json("b.json", bundle([entry])))
    assert report.replaced == {"Organization": 1}
    assert query(store, "SELECT count(*) FROM resource") == [(1,)]


@pytest.mark.parametrize("bundle_type", ["batch", "collection"])
def test_batch_and_collection_bundles_load(store, write_json, bundle_type):
    entries = [put(patient("p1")), put(observation("o1", "Patient/p1"))]
    if bundle_type == "collection":
        entries = [
            {"fullUrl": f"https://fhir.example.org/{e['request']['url']}", "resource": e["resource"]}
            for e in entries
        ]
    report = load(store, write_json("b.json", bundle(entries, bundle_type)))
    assert report.added == {"Patient": 1, "Observation": 1}
    assert report.total("rejected") == 0


# --- references -----------------------------------------------------------------------------------


def patient_of(store: Store, observation_id: str) -> tuple[str | None, str | None]:
    """The patient id of an observation as the raw table and the observation table have it."""
    raw = query(store, f"SELECT patient_id FROM resource WHERE id = '{observation_id}'")
    flat = query(store, f"SELECT patient_id FROM observation WHERE id = '{observation_id}'")
    return raw[0][0], flat[0][0]


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/p1",
        "https://fhir.example-klinikum.de/fhir/Patient/p1",
        "https://fhir.example-klinikum.de/fhir/Patient/p1/_history/3",
    ],
)
def test_literal_references_resolve_to_the_patient_id(store, write_ndjson, reference):
    load(store, write_ndjson("a.ndjson", [patient("p1"), observation("o1", reference)]))
    assert patient_of(store, "o1") == ("p1", "p1")


def test_urn_uuid_references_resolve_to_the_bundle_entry_and_are_rewritten(store, write_json):
    urn = "urn:uuid:7e2b3f4c-9d1a-4b8e-8f3c-2a1d5e6f7a8b"
    load(
        store,
        write_json(
            "b.json",
            bundle(
                [
                    post(observation("o1", urn), full_url="urn:uuid:11111111-2222-4333-8444-555555555555"),
                    post(patient("p1"), full_url=urn),
                ]
            ),
        ),
    )
    assert patient_of(store, "o1") == ("p1", "p1")
    stored = orjson.loads(query(store, "SELECT json FROM resource WHERE id = 'o1'")[0][0])
    assert stored["subject"] == {"reference": "Patient/p1"}


def test_a_conditional_reference_resolves_to_a_patient_of_the_same_bundle(store, write_json):
    load(
        store,
        write_json(
            "b.json",
            bundle(
                [
                    put(observation("o1", f"Patient?identifier={PATIENT_ID_SYSTEM}|4711")),
                    put(patient("p1", mrn="4711")),
                ]
            ),
        ),
    )
    assert patient_of(store, "o1") == ("p1", "p1")


def test_a_conditional_reference_resolves_to_a_patient_already_in_the_store(store, write_ndjson):
    load(store, write_ndjson("patients.ndjson", [patient("p0", mrn="0815"), patient("p1", mrn="4711")]))
    report = load(
        store, write_ndjson("obs.ndjson", [observation("o1", f"Patient?identifier={PATIENT_ID_SYSTEM}|4711")])
    )
    assert report.total("rejected") == 0
    assert patient_of(store, "o1") == ("p1", "p1")


def test_a_conditional_reference_resolves_to_a_patient_in_another_file_of_the_load(
    store, write_ndjson, write_json
):
    obs = write_json(
        "obs.json", bundle([put(observation("o1", f"Patient?identifier={PATIENT_ID_SYSTEM}|4711"))])
    )
    patients = write_ndjson("patients.ndjson", [patient("p1", mrn="4711"), patient("p2", mrn="4712")])
    report = load(store, obs, patients)
    assert report.total("rejected") == 0
    assert patient_of(store, "o1") == ("p1", "p1")


def test_a_conditional_reference_prefers_the_patient_of_this_load_to_a_stored_one(store, write_ndjson):
    # The stored patient comes later in its load than the new one in this load: load order does not decide.
    load(
        store,
        write_ndjson("old.ndjson", [patient(f"x{i}") for i in range(50)] + [patient("old", mrn="4711")]),
    )
    load(
        store,
        write_ndjson(
            "new.ndjson",
            [patient("new", mrn="4711"), observation("o1", f"Patient?identifier={PATIENT_ID_SYSTEM}|4711")],
        ),
    )
    assert patient_of(store, "o1") == ("new", "new")


def test_an_identifier_without_system_matches_the_value_in_any_system(store, write_ndjson):
    report = load(
        store,
        write_ndjson(
            "a.ndjson",
            [
                patient("p1", mrn="4711"),
                observation("o1", "Patient?identifier=4711"),
            ],
        ),
    )
    assert report.total("rejected") == 0
    assert patient_of(store, "o1") == ("p1", "p1")


def stored_json(store: Store, resource_id: str) -> dict:
    return orjson.loads(query(store, f"SELECT json FROM resource WHERE id = '{resource_id}'")[0][0])


def test_a_conditional_reference_from_ndjson_is_stored_as_the_resolved_reference(store, write_ndjson):
    load(store, write_ndjson("patients.ndjson", [patient("p1", mrn="4711")]))
    conditional = f"Patient?identifier={PATIENT_ID_SYSTEM}|4711"
    load(store, write_ndjson("obs.ndjson", [observation("o1", conditional), observation("o2", "Patient/p1")]))
    assert stored_json(store, "o1")["subject"] == {"reference": "Patient/p1"}
    assert stored_json(store, "o2")["subject"] == {"reference": "Patient/p1"}


def test_a_conditional_reference_to_a_patient_of_another_file_is_stored_resolved(
    store, write_ndjson, write_json
):
    conditional = f"Patient?identifier={PATIENT_ID_SYSTEM}|4711"
    obs = write_json("obs.json", bundle([put(observation("o1", conditional, note=[{"text": "Patient?x"}]))]))
    report = load(store, obs, write_ndjson("patients.ndjson", [patient("p1", mrn="4711")]))
    assert report.total("rejected") == 0
    resource = stored_json(store, "o1")
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["note"] == [{"text": "Patient?x"}]  # only references change


def test_a_logical_reference_by_identifier_resolves_like_a_conditional_one(store, write_ndjson):
    subject = {"type": "Patient", "identifier": {"system": PATIENT_ID_SYSTEM, "value": "4711"}}
    load(store, write_ndjson("a.ndjson", [patient("p1", mrn="4711"), observation("o1", subject)]))
    assert patient_of(store, "o1") == ("p1", "p1")


def conditional_update(mrn: str, full_url: str | None = None, **elements) -> dict:
    """A transaction entry that PUTs a patient (without id) at Patient?identifier=<system>|<mrn>."""
    resource = patient("unused", mrn=mrn, **elements)
    del resource["id"]
    entry = {
        "resource": resource,
        "request": {"method": "PUT", "url": f"Patient?identifier={PATIENT_ID_SYSTEM}|{mrn}"},
    }
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def test_a_conditional_update_of_a_patient_updates_the_one_patient_it_matches(
    store, write_ndjson, write_json
):
    load(store, write_ndjson("p.ndjson", [patient("p0", mrn="0815"), patient("p1", mrn="4711")]))
    urn = "urn:uuid:5d1e0a3b-2c4f-4e6a-8b7c-9d0e1f2a3b4c"
    report = load(
        store,
        write_json(
            "update.json",
            bundle([conditional_update("4711", urn, gender="male"), put(observation("o1", urn))]),
        ),
    )
    assert (report.added, report.replaced, report.total("rejected")) == (
        {"Observation": 1},
        {"Patient": 1},
        0,
    )
    assert sorted(query(store, "SELECT id, gender FROM patient")) == [("p0", "female"), ("p1", "male")]
    assert query(store, "SELECT DISTINCT id FROM patient_identifier WHERE value = '4711'") == [("p1",)]
    assert patient_of(store, "o1") == ("p1", "p1")
    assert stored_json(store, "p1")["id"] == "p1"
    assert stored_json(store, "o1")["subject"] == {"reference": "Patient/p1"}


def test_a_conditional_update_that_matches_no_patient_creates_one_and_then_updates_it(store, write_json):
    update = write_json("update.json", bundle([conditional_update("4711")]))
    assert load(store, update).added == {"Patient": 1}
    assert load(store, update).replaced == {"Patient": 1}
    assert query(store, "SELECT count(*) FROM patient") == [(1,)]


def test_a_conditional_update_that_matches_several_patients_is_rejected(store, write_ndjson, write_json):
    load(store, write_ndjson("p.ndjson", [patient("p1", mrn="4711"), patient("p2", mrn="4711")]))
    update = write_json("update.json", bundle([conditional_update("4711", gender="male")]))
    report = load(store, update)
    assert report.rejected == {"Patient": 1}
    assert report.rejects[0].location == f"{update}: Bundle.entry[0]"
    assert "matches 2 patients (p1, p2)" in report.rejects[0].reason
    assert sorted(query(store, "SELECT id, gender FROM patient")) == [("p1", "female"), ("p2", "female")]


def test_what_names_a_refused_conditional_update_is_rejected_and_the_rest_finds_the_stored_patients(
    store, write_ndjson, write_json
):
    load(store, write_ndjson("p.ndjson", [patient("p1", mrn="4711"), patient("p2", mrn="4711")]))
    urn = "urn:uuid:5d1e0a3b-2c4f-4e6a-8b7c-9d0e1f2a3b4c"
    update = write_json("update.json", bundle([conditional_update("4711", urn), put(observation("o1", urn))]))
    # Outside the Bundle, the identifier names the stored patients, not the refused one.
    by_identifier = write_ndjson(
        "o.ndjson", [observation("o2", f"Patient?identifier={PATIENT_ID_SYSTEM}|4711")]
    )
    report = load(store, update, by_identifier)
    assert report.rejected == {"Patient": 1, "Observation": 1}
    assert report.added == {"Observation": 1}
    assert patient_of(store, "o2")[0] in {"p1", "p2"}


# --- replacing and deleting -----------------------------------------------------------------------


def test_a_later_version_of_a_resource_replaces_the_earlier_one(store, write_ndjson):
    load(store, write_ndjson("v1.ndjson", [patient("p1"), observation("o1", "Patient/p1", value=1.0)]))
    report = load(store, write_ndjson("v2.ndjson", [observation("o1", "Patient/p1", value=2.0)]))

    assert report.replaced == {"Observation": 1}
    assert report.added == {}
    assert query(store, "SELECT id, value_quantity FROM observation") == [("o1", 2.0)]
    assert query(store, "SELECT count(*) FROM resource WHERE id = 'o1'") == [(1,)]


def test_each_table_of_a_load_is_written_in_the_order_of_its_sort_keys(store, write_ndjson):
    systems = [LOINC, "http://snomed.info/sct", None]
    resources = [patient(f"p{i}") for i in range(30)]
    for i in range(300):
        resource = observation(f"o{i}", f"Patient/p{(i * 7) % 30}", code=f"{(i * 13) % 11}-{i % 3}")
        resource["code"]["coding"][0]["system"] = systems[i % 3]
        resources.append(resource)
    load(store, write_ndjson("first.ndjson", resources))
    # A second load replaces some observations: the stored file is rewritten, the new one filtered.
    load(store, write_ndjson("second.ndjson", resources[100:120] + resources[100:110]))
    with store.snapshot() as snapshot:
        for table, keys in SORT_KEYS.items():
            for file in snapshot.files(table):
                rows = snapshot.connection.execute(f"SELECT {', '.join(keys)} FROM '{file}'").fetchall()
                # DuckDB puts NULLs last.
                assert rows == sorted(rows, key=lambda row: [(v is None, v) for v in row]), (table, file)


def test_loading_the_same_input_twice_leaves_the_same_tables(store, mii_kds_testdata):
    first = load(store, mii_kds_testdata)
    before = table_contents(store)
    second = load(store, mii_kds_testdata)

    assert table_contents(store) == before
    assert second.total("added") == 0
    assert second.total("replaced") == first.resources_read
    assert second.total("rejected") == 0


def test_the_later_of_two_versions_in_one_load_wins_and_counts_as_replaced(store, write_ndjson):
    report = load(
        store,
        write_ndjson(
            "a.ndjson",
            [
                patient("p1"),
                observation("o1", "Patient/p1", value=1.0),
                observation("o1", "Patient/p1", value=3.0),
            ],
        ),
    )
    assert report.added == {"Patient": 1, "Observation": 1}
    assert report.replaced == {"Observation": 1}
    assert query(store, "SELECT value_quantity FROM observation") == [(3.0,)]


def test_a_later_file_of_a_load_wins_over_an_earlier_one(store, write_ndjson):
    first = write_ndjson("1.ndjson", [patient("p1", gender="male")])
    second = write_ndjson("2.ndjson", [patient("p1", gender="female")])
    load(store, first, second)
    assert query(store, "SELECT gender FROM patient") == [("female",)]


def test_a_delete_removes_the_resource_from_every_table(store, write_ndjson, write_json):
    load(
        store,
        write_ndjson(
            "a.ndjson", [patient("p1"), observation("o1", "Patient/p1"), observation("o2", "Patient/p1")]
        ),
    )
    report = load(store, write_json("d.json", bundle([delete("Observation/o1")])))

    assert report.deleted == {"Observation": 1}
    assert table_ids(store, "observation") == {"o2"}
    assert {row[0] for row in query(store, "SELECT id FROM resource")} == {"p1", "o2"}


def test_deleting_a_patient_deletes_the_patients_resources(store, write_ndjson, write_json):
    load(
        store,
        write_ndjson(
            "a.ndjson",
            [
                patient("p1", mrn="1"),
                patient("p2"),
                observation("o1", "Patient/p1"),
                condition("c1", "Patient/p1"),
                observation("o2", "Patient/p2"),
                organization("org1"),
            ],
        ),
    )
    report = load(store, write_json("d.json", bundle([delete("Patient/p1")])))

    assert report.deleted == {"Patient": 1, "Observation": 1, "Condition": 1}
    assert {row[0] for row in query(store, "SELECT id FROM resource")} == {"p2", "o2", "org1"}
    for table in ("patient", "patient_identifier", "observation", "condition"):
        assert "p1" not in {row[0] for row in query(store, f"SELECT patient_id FROM {table}")}, table


def test_a_conditional_delete_finds_the_patient_by_identifier(store, write_ndjson, write_json):
    load(store, write_ndjson("a.ndjson", [patient("p1", mrn="4711"), observation("o1", "Patient/p1")]))
    report = load(
        store, write_json("d.json", bundle([delete(f"Patient?identifier={PATIENT_ID_SYSTEM}|4711")]))
    )
    assert report.deleted == {"Patient": 1, "Observation": 1}
    assert query(store, "SELECT count(*) FROM resource") == [(0,)]


def test_a_resource_deleted_and_put_again_in_one_load_is_there_afterwards(store, write_ndjson, write_json):
    load(store, write_ndjson("a.ndjson", [patient("p1"), observation("o1", "Patient/p1", value=1.0)]))
    report = load(
        store,
        write_json(
            "b.json",
            bundle(
                [
                    delete("Observation/o1"),
                    put(observation("o1", "Patient/p1", value=5.0)),
                ]
            ),
        ),
    )
    assert report.deleted == {"Observation": 1}
    assert report.added == {"Observation": 1}
    assert query(store, "SELECT value_quantity FROM observation") == [(5.0,)]


def test_a_resource_put_and_then_deleted_in_one_load_is_gone(store, write_json):
    report = load(
        store,
        write_json(
            "b.json",
            bundle(
                [
                    put(patient("p1")),
                    put(observation("o1", "Patient/p1")),
                    delete("Observation/o1"),
                ]
            ),
        ),
    )
    assert report.added == {"Patient": 1, "Observation": 1}
    assert report.deleted == {"Observation": 1}
    assert table_ids(store, "observation") == set()


def test_a_delete_of_something_never_stored_changes_nothing(store, write_ndjson, write_json):
    load(store, write_ndjson("a.ndjson", [patient("p1")]))
    report = load(store, write_json("d.json", bundle([delete("Observation/nothing")])))
    assert report.deleted == {}
    assert report.total("rejected") == 0
    assert query(store, "SELECT count(*) FROM resource") == [(1,)]


def test_every_resource_read_is_added_replaced_or_rejected(store, write_ndjson, write_json):
    load(store, write_ndjson("a.ndjson", [patient("p1"), observation("o1", "Patient/p1")]))
    report = load(
        store,
        write_ndjson(
            "b.ndjson",
            [
                patient("p2"),
                observation("o1", "Patient/p1", value=3.0),
                observation("o2", "Patient/nobody"),
                observation("o3", "Patient/p2"),
                observation("o3", "Patient/p2"),
                "{broken",
            ],
        ),
    )
    assert report.resources_read == 6
    assert (
        report.total("added") + report.total("replaced") + report.total("rejected") == report.resources_read
    )
    assert (report.total("added"), report.total("replaced"), report.total("rejected")) == (2, 2, 2)


def test_several_workers_load_exactly_what_one_worker_loads(tmp_path, write_ndjson):
    resources = [patient(f"p{i}") for i in range(300)]
    resources += [observation(f"o{i}", f"Patient/p{i % 300}", value=float(i)) for i in range(3000)]
    resources += [observation("o7", "Patient/p1", value=-1.0)]  # a later version, in a later chunk
    file = write_ndjson("big.ndjson", resources)
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")

    report_one = load(one, file, workers=1)
    report_two = load(two, file, workers=2, chunk_bytes=50_000)

    assert report_two.to_dict() | {"load_id": "", "seconds": 0} == report_one.to_dict() | {
        "load_id": "",
        "seconds": 0,
    }
    assert table_contents(one) == table_contents(two)
    assert query(two, "SELECT value_quantity FROM observation WHERE id = 'o7'") == [(-1.0,)]


def test_a_load_in_many_staging_files_leaves_what_a_load_in_one_leaves(tmp_path, write_ndjson):
    """Raw staging files are kept or rewritten one by one: those with a dangling or conditional reference,
    a superseded version, or (in a later load) a replaced resource are rewritten, the others kept."""
    resources = [patient(f"p{i}", mrn=str(i)) for i in range(300)]
    resources += [observation(f"o{i}", f"Patient/p{i % 300}", value=float(i)) for i in range(3000)]
    resources[1000] = observation("o700", "Patient/nobody")  # dangling
    resources[2000] = observation("o1700", f"Patient?identifier={PATIENT_ID_SYSTEM}|42")
    resources += [observation("o7", "Patient/p1", value=-1.0)]  # a later version, in a later file
    first = write_ndjson("first.ndjson", resources)
    second = write_ndjson("second.ndjson", [observation("o2500", "Patient/p2", value=-2.0)])
    one, many = Store(tmp_path / "one"), Store(tmp_path / "many")
    for path in (first, second):
        report_one = load(one, path)
        report_many = load(many, path, chunk_bytes=50_000)
        same = {"load_id": "", "seconds": 0, "rejects_file": ""}
        assert report_many.to_dict() | same == report_one.to_dict() | same
        assert table_contents(many) == table_contents(one)
    with many.snapshot() as snapshot:
        first_segment = snapshot.manifest.segments[0].files["resource"]
        assert (
            len(first_segment) > 4 and sum(".t0" in name for name in first_segment) >= len(first_segment) - 2
        )
    assert patient_of(many, "o1700") == ("p42", "p42")
    assert stored_json(many, "o1700")["subject"]["reference"] == "Patient/p42"
    assert query(many, "SELECT value_quantity FROM observation WHERE id IN ('o7', 'o2500')") in (
        [(-1.0,), (-2.0,)],
        [(-2.0,), (-1.0,)],
    )


# --- the command line -----------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datenraum", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_the_cli_loads_reports_and_exits_0(store, mii_kds_testdata):
    result = run_cli("ingest", "--store", store.path, mii_kds_testdata)
    assert result.returncode == 0, result.stderr
    assert "Patient" in result.stdout and "total" in result.stdout

    stats = run_cli("stats", "--store", store.path)
    assert stats.returncode == 0
    assert any(line.split() == ["patient", "31"] for line in stats.stdout.splitlines())


def test_the_cli_reports_as_json_on_request(store, write_ndjson):
    result = run_cli("ingest", "--json", "--store", store.path, write_ndjson("a.ndjson", [patient("p1")]))
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout)["added"] == {"Patient": 1}


def test_worker_processes_get_the_allocator_settings_and_the_environment_is_restored(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "5")  # a site's own setting wins
    with worker_environment():
        assert os.environ["GLIBC_TUNABLES"] == WORKER_ENVIRONMENT["GLIBC_TUNABLES"]
        assert os.environ["MIMALLOC_PURGE_DELAY"] == "5"
    assert "GLIBC_TUNABLES" not in os.environ and os.environ["MIMALLOC_PURGE_DELAY"] == "5"
