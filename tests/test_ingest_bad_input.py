"""Bad input: each problem is rejected with where (file and line or Bundle entry) and why, the rest loads."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import query
from fhir_resources import bundle, delete, observation, patient, post, put

from datenraum.site.ingest import IngestError, LoadReport, ingest, worker
from datenraum.site.store import Store


def load(store: Store, *paths: Path, **options) -> LoadReport:
    options.setdefault("workers", 1)
    return ingest(store, list(paths), **options)


def reasons(report: LoadReport) -> dict[str, str]:
    return {reject.location: reject.reason for reject in report.rejects}


def stored_ids(store: Store) -> set[str]:
    return {row[0] for row in query(store, "SELECT id FROM resource")}


def rejects_file(report: LoadReport) -> list[dict]:
    return [orjson.loads(line) for line in Path(report.rejects_file).read_bytes().splitlines()]


# --- malformed JSON -------------------------------------------------------------------------------


def test_a_malformed_ndjson_line_is_rejected_and_the_other_lines_load(store, write_ndjson):
    file = write_ndjson("a.ndjson", [patient("p1"), '{"resourceType": "Patient", "id": "p2",', patient("p3")])
    report = load(store, file)

    assert list(reasons(report)) == [f"{file}:2"]
    assert reasons(report)[f"{file}:2"].startswith("malformed JSON")
    assert stored_ids(store) == {"p1", "p3"}
    assert report.rejected == {"(unknown)": 1}


def test_a_malformed_bundle_file_is_rejected_as_a_whole_with_line_and_column(store, write_json, write_ndjson):
    broken = write_json(
        "broken.json", '{\n  "resourceType": "Bundle",\n  "entry": [\n    {"resource": }\n  ]\n}\n'
    )
    good = write_ndjson("good.ndjson", [patient("p1")])
    report = load(store, broken, good)

    assert list(reasons(report)) == [f"{broken}:4:18"]
    assert "malformed JSON" in reasons(report)[f"{broken}:4:18"]
    assert stored_ids(store) == {"p1"}


def test_rejected_resources_are_kept_in_the_rejects_file_with_location_and_reason(store, write_ndjson):
    file = write_ndjson("a.ndjson", [patient("p1"), "{nope", {"resourceType": "Patient"}])
    report = load(store, file)

    assert Path(report.rejects_file).parent == store.rejects
    kept = rejects_file(report)
    assert [(r["location"], r["resource"]) for r in kept] == [
        (f"{file}:2", "{nope"),
        (f"{file}:3", '{"resourceType":"Patient"}'),
    ]
    assert all(r["reason"] for r in kept)


# --- resources that are not valid -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        ({"id": "x", "gender": "male"}, "resource has no resourceType"),
        ({"resourceType": "Patient", "gender": "male"}, "resource has no id"),
        (
            {"resourceType": "Patient", "id": "no spaces allowed"},
            "id 'no spaces allowed' is not a valid FHIR id",
        ),
        ({"resourceType": "Patient", "id": "x" * 65}, "is not a valid FHIR id"),
        ({"resourceType": "Patient", "id": 17}, "id 17 is not a valid FHIR id"),
        ({"resourceType": "Patientin", "id": "x"}, "unknown resource type 'Patientin'"),
        (["resourceType", "Patient"], "a resource must be a JSON object"),
        (
            {"resourceType": "Bundle", "id": "b", "type": "collection"},
            "a Bundle inside NDJSON is not supported",
        ),
    ],
)
def test_a_resource_that_is_not_valid_fhir_is_rejected_with_the_reason(store, write_ndjson, resource, reason):
    file = write_ndjson("a.ndjson", [patient("ok"), resource])
    report = load(store, file)
    assert reason in reasons(report)[f"{file}:2"]
    assert stored_ids(store) == {"ok"}


@pytest.mark.parametrize(
    ("resource", "message"),
    [
        (patient("p2", birthDate=1980), "Patient.birthDate: expected a FHIR date"),
        (patient("p2", birthDate="1980-02-30"), "Patient.birthDate: expected a FHIR date"),
        (
            {**observation("o1", "Patient/p1"), "subject": "Patient/p1"},
            "Observation.subject: expected a Reference object",
        ),
        (
            {**observation("o1", "Patient/p1"), "subject": {"reference": 7}},
            "Observation.subject: expected Reference.reference",
        ),
        (
            {**observation("o1", "Patient/p1"), "code": {"coding": "x"}},
            "Observation.code.coding: expected an object",
        ),
        (
            observation("o1", "Patient/p1", valueQuantity={"value": "12.5"}),
            "Observation.valueQuantity.value: expected a number, got string '12.5'",
        ),
        (
            observation("o1", "Patient/p1", effectiveDateTime="yesterday"),
            "Observation.effectiveDateTime: expected a FHIR dateTime",
        ),
        (observation("o1", "Patient/p1", status=5), "Observation.status: expected a string, got number"),
    ],
)
def test_an_element_of_the_wrong_type_is_rejected_naming_its_path(store, write_ndjson, resource, message):
    file = write_ndjson("a.ndjson", [patient("p1"), resource])
    report = load(store, file)

    assert reasons(report)[f"{file}:2"].startswith(message), reasons(report)
    assert stored_ids(store) == {"p1"}
    assert query(store, "SELECT count(*) FROM observation") == [(0,)]  # no half-flattened rows either


def test_a_resource_of_a_patient_that_exists_nowhere_is_rejected(store, write_ndjson):
    load(store, write_ndjson("first.ndjson", [patient("p1")]))
    file = write_ndjson(
        "second.ndjson", [observation("o1", "Patient/p1"), observation("o2", "Patient/ghost")]
    )
    report = load(store, file)

    assert reasons(report) == {
        f"{file}:2": "references Patient/ghost, which is neither in the store nor in this load"
    }
    assert report.rejected == {"Observation": 1}
    assert stored_ids(store) == {"p1", "o1"}
    assert rejects_file(report)[0]["resource"] == orjson.dumps(observation("o2", "Patient/ghost")).decode()


def test_a_resource_of_a_patient_known_only_by_an_unknown_identifier_is_rejected(store, write_json):
    file = write_json(
        "b.json", bundle([put(patient("p1")), put(observation("o1", "Patient?identifier=urn:mrn|0000"))])
    )
    report = load(store, file)
    assert "urn:mrn|0000" in reasons(report)[f"{file}: Bundle.entry[1]"]
    assert stored_ids(store) == {"p1"}


def test_a_resource_of_a_patient_deleted_in_the_same_load_is_rejected(store, write_ndjson, write_json):
    load(store, write_ndjson("a.ndjson", [patient("p1")]))
    file = write_json("b.json", bundle([delete("Patient/p1"), put(observation("o1", "Patient/p1"))]))
    report = load(store, file)
    assert "Patient/p1" in reasons(report)[f"{file}: Bundle.entry[1]"]
    assert stored_ids(store) == set()


def test_an_urn_reference_to_no_entry_of_the_bundle_is_rejected(store, write_json):
    file = write_json(
        "b.json", bundle([post(patient("p1"), full_url="urn:uuid:1"), post(observation("o1", "urn:uuid:2"))])
    )
    report = load(store, file)
    assert reasons(report)[f"{file}: Bundle.entry[1]"] == (
        "Observation.subject: reference 'urn:uuid:2' names no entry of this Bundle"
    )


def test_duplicate_ids_in_one_load_keep_the_last_and_count_as_replaced(store, write_ndjson):
    file = write_ndjson(
        "a.ndjson",
        [patient("p1", gender="male"), patient("p1", gender="other"), patient("p1", gender="female")],
    )
    report = load(store, file)
    assert (report.added, report.replaced, report.total("rejected")) == ({"Patient": 1}, {"Patient": 2}, 0)
    assert query(store, "SELECT gender FROM patient") == [("female",)]


# --- Bundles --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"request": {"method": "PUT", "url": "Patient/p2"}}, "entry has no resource with a resourceType"),
        ("just text", "entry is not an object"),
        ({"request": {"method": "DELETE"}}, "DELETE without request.url"),
        ({"request": {"method": "PATCH", "url": "Patient/p1"}}, "request.method 'PATCH' is not supported"),
        (
            {"resource": patient("p2"), "request": {"method": "PUT", "url": "Patient/p3"}},
            "request.url names another id than resource.id",
        ),
        ({"request": {"method": "DELETE", "url": "Observation?code=1234"}}, "conditional DELETE"),
        (
            {"request": {"method": "DELETE", "url": "Patient?identifier=urn:x|404"}},
            "DELETE names no known patient",
        ),
        ({"resource": patient("p2"), "request": "PUT Patient/p2"}, "request"),
    ],
)
def test_a_bundle_entry_that_cannot_be_carried_out_is_rejected_by_position(store, write_json, entry, reason):
    file = write_json("b.json", bundle([put(patient("p1")), entry]))
    report = load(store, file)
    if reason == "request":  # a request that is no object: the entry is read as a plain PUT
        assert report.total("rejected") == 0
        return
    assert reason in reasons(report)[f"{file}: Bundle.entry[1]"]
    assert "p1" in stored_ids(store)


def test_a_bundle_with_entry_not_an_array_is_rejected(store, write_json):
    file = write_json("b.json", {"resourceType": "Bundle", "type": "transaction", "entry": {"resource": {}}})
    report = load(store, file)
    assert reasons(report) == {str(file): "Bundle.entry must be an array"}


# --- huge, empty and missing input ----------------------------------------------------------------


def test_a_line_over_the_size_limit_is_rejected_without_being_read(store, write_ndjson):
    huge = observation("o1", "Patient/p1", note=[{"text": "x" * 5000}])
    file = write_ndjson("a.ndjson", [patient("p1"), huge, observation("o2", "Patient/p1")])
    report = load(store, file, max_resource_bytes=4096)
    assert reasons(report) == {f"{file}:2": "line is longer than the limit of 4096 bytes"}
    assert stored_ids(store) == {"p1", "o2"}


def test_a_line_over_the_size_limit_in_a_gzip_file_is_rejected_too(store, write_ndjson):
    huge = observation("o1", "Patient/p1", note=[{"text": "x" * 5000}])
    file = write_ndjson("a.ndjson.gz", [patient("p1"), huge, observation("o2", "Patient/p1")])
    report = load(store, file, max_resource_bytes=4096)
    assert reasons(report) == {f"{file}:2": "line is longer than the limit of 4096 bytes"}
    assert stored_ids(store) == {"p1", "o2"}


def test_a_gzip_stream_skips_an_over_long_line_without_holding_it_and_counts_lines_on(
    store, write_ndjson, monkeypatch
):
    monkeypatch.setattr(worker, "BLOCK_BYTES", 1024)  # the long line spans several blocks, and is dropped
    huge = observation("o1", "Patient/p1", note=[{"text": "x" * 20_000}])
    file = write_ndjson("a.ndjson.gz", [patient("p1"), huge, observation("o2", "Patient/p1"), "{broken"])
    report = load(store, file, max_resource_bytes=4096)
    assert reasons(report) == {
        f"{file}:2": "line is longer than the limit of 4096 bytes",
        f"{file}:4": "malformed JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
    }
    assert stored_ids(store) == {"p1", "o2"}


def test_errors_in_a_file_read_in_many_chunks_name_the_right_lines(store, write_ndjson):
    lines: list = [patient(f"p{i}") for i in range(50)]
    lines += [observation(f"o{i}", f"Patient/p{i % 50}") for i in range(4000)]
    bad = {
        120: "{broken",
        1999: observation("bad1", "Patient/p1", valueQuantity={"value": "x"}),
        2000: "",
        3001: observation("bad2", "Patient/nobody"),
        4049: {"resourceType": "Nope", "id": "n"},
    }
    for index in sorted(bad):
        lines.insert(index, bad[index])  # line number = index + 1
    file = write_ndjson("big.ndjson", lines)
    assert file.stat().st_size > 10 * 50_000

    report = load(store, file, workers=2, chunk_bytes=50_000)

    assert sorted(reasons(report)) == sorted(f"{file}:{i + 1}" for i in (120, 1999, 3001, 4049))
    assert "valueQuantity.value" in reasons(report)[f"{file}:2000"]
    assert "Patient/nobody" in reasons(report)[f"{file}:3002"]
    assert "'Nope'" in reasons(report)[f"{file}:4050"]
    assert report.total("added") == 4050
    source_lines = dict(query(store, "SELECT id, source_line FROM resource"))
    for number, line in enumerate(file.read_bytes().split(b"\n"), start=1):
        if line.startswith(b'{"resourceType":"Observation","id":"o'):
            assert source_lines[orjson.loads(line)["id"]] == number


def test_blank_lines_and_empty_ndjson_files_are_no_error(store, write_ndjson, input_dir):
    file = write_ndjson("a.ndjson", ["", patient("p1"), "   ", "\r", patient("p2"), ""])
    (input_dir / "empty.ndjson").write_bytes(b"")
    report = load(store, file, input_dir / "empty.ndjson")
    assert report.total("rejected") == 0
    assert stored_ids(store) == {"p1", "p2"}
    assert query(store, "SELECT source_line FROM resource ORDER BY 1") == [(2,), (5,)]


def test_an_empty_json_file_is_rejected(store, input_dir):
    (input_dir / "empty.json").write_bytes(b"\n")
    report = load(store, input_dir / "empty.json")
    assert "empty" in reasons(report)[str(input_dir / "empty.json")]


def test_windows_line_ends_and_a_byte_order_mark_are_read(store, input_dir):
    file = input_dir / "a.ndjson"
    file.write_bytes(
        b"\xef\xbb\xbf" + orjson.dumps(patient("p1")) + b"\r\n" + orjson.dumps(patient("p2")) + b"\r\n"
    )
    report = load(store, file)
    assert report.total("rejected") == 0
    assert stored_ids(store) == {"p1", "p2"}


def test_a_corrupt_gzip_file_is_rejected_after_what_could_be_read(store, input_dir):
    data = gzip.compress(b"".join(orjson.dumps(patient(f"p{i}")) + b"\n" for i in range(2000)))
    file = input_dir / "a.ndjson.gz"
    file.write_bytes(data[: len(data) // 2])
    report = load(store, file)
    assert reasons(report)[str(file)].startswith("could not read the file")


def test_a_path_that_does_not_exist_fails_the_load_before_anything_is_read(store, write_ndjson, tmp_path):
    with pytest.raises(IngestError, match="no such file or folder"):
        load(store, write_ndjson("a.ndjson", [patient("p1")]), tmp_path / "missing")
    assert not (store.path / "CURRENT").exists()


# --- the command line -----------------------------------------------------------------------------


def run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datenraum", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_the_cli_names_a_missing_path_and_exits_2_without_a_traceback(store, tmp_path):
    result = run_cli("ingest", "--store", store.path, tmp_path / "missing.ndjson")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.ndjson'}: no such file or folder"
    assert "Traceback" not in result.stdout + result.stderr


def test_the_cli_refuses_a_store_that_is_a_file_and_exits_2(tmp_path, write_ndjson):
    not_a_folder = tmp_path / "store"
    not_a_folder.write_text("")
    result = run_cli("ingest", "--store", not_a_folder, write_ndjson("a.ndjson", [patient("p1")]))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_the_cli_lists_every_kind_of_bad_input_and_exits_1_without_a_traceback(
    store, input_dir, write_ndjson, write_json
):
    write_ndjson(
        "bad.ndjson",
        [
            patient("p1"),
            "{",
            {"id": "x"},
            {"resourceType": "Patient"},
            patient("p2", birthDate=1980),
            observation("o1", "Patient/ghost"),
            "x" * 5000,
            {"resourceType": "Nope", "id": "n"},
        ],
    )
    write_json("broken.json", "{]")
    write_json("empty.json", "")
    write_json("entries.json", bundle([{"request": {"method": "DELETE"}}, "x", put(patient("p3"))]))
    (input_dir / "corrupt.ndjson.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")

    result = run_cli("ingest", "--store", store.path, input_dir)

    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    rejected = [line for line in result.stderr.splitlines() if line.startswith("rejected: ")]
    assert len(rejected) == 12, result.stderr
    assert f"rejected: {input_dir / 'bad.ndjson'}:2: malformed JSON" in result.stderr
    assert "rejected resources are in" in result.stderr
    assert stored_ids(store) == {"p1", "p3"}
