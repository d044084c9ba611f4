"""Done when (issue "Feasibility engine"): every example structured query of the national tooling runs
and gives the count that the data confirms, or is rejected with a clear reason.

The examples are those of sq2cql (the portal's translator; its test data in `/work/shared/data`) and
of the CCDL repository (copied into `tests/fixtures/ccdl`). Expected counts were checked by hand on the
raw FHIR of the test data (the comments say why); for the MII core data set, the tests compute the
expectation from the Bundle JSON themselves, so that nothing here repeats the SQL engine's reasoning.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from datenraum.cli import main
from datenraum.query.model import QueryError, StructuredQuery, parse_query
from datenraum.site import feasibility
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

TODAY = dt.date(2024, 6, 15)
FIXTURES = Path(__file__).parent / "fixtures" / "ccdl"
ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
LOINC = "http://loinc.org"
PROVISION = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"


def load(store_path: Path, *inputs: Path) -> Store:
    store = Store(store_path)
    report = ingest(store, list(inputs), workers=1)
    assert not report.total("rejected"), report.rejects[:3]
    return store


def run(store: Store, query: StructuredQuery, today: dt.date = TODAY) -> list[str]:
    with store.snapshot() as snapshot:
        ids = feasibility.patient_ids(snapshot, query, today=today)
        assert feasibility.count(snapshot, query, today=today) == len(ids)
    return ids


def read(path: Path) -> StructuredQuery:
    return parse_query(path.read_bytes())


@pytest.fixture(scope="module")
def sq2cql_store(tmp_path_factory, sq2cql_testdata) -> Store:
    """sq2cql's acceptance-test data: 835 patients, one resource per example query."""
    return load(tmp_path_factory.mktemp("sq2cql") / "store", sq2cql_testdata / "testData.json")


@pytest.fixture(scope="module")
def bundle_store(tmp_path_factory, sq2cql_testdata) -> Store:
    """The MII test-data Bundle of sq2cql's newer tests: four patients of the core data set."""
    return load(
        tmp_path_factory.mktemp("bundle") / "store", sq2cql_testdata / "Bundle-mii-exa-test-data-bundle.json"
    )


@pytest.fixture(scope="module")
def kds_store(tmp_path_factory, mii_kds_testdata) -> Store:
    return load(tmp_path_factory.mktemp("kds") / "store", mii_kds_testdata)


# --- sq2cql: the queries that return one patient ------------------------------------------------------

# Each query of `returningOnePatient/` and the resource of `testData.json` that makes its one patient
# (read off the raw JSON). These queries were written for sq2cql's `testData.json`, not for the MII
# Bundle next to it, which has none of their codes.
RETURNING_ONE_PATIENT = {
    "Diagnose.json": "7ca6f273-82f1-4fd5-9b0d-e9e4f957fe42",  # Condition I08.0
    "Diagnose-TimeRestriction.json": "1fdd7fb7-dd44-4fd0-accb-487eb91e3e4c",  # S14.11 recorded 2023-02-15
    "Todesursache.json": "1fdd7fb7-dd44-4fd0-accb-487eb91e3e4c",  # the same S14.11
    "MedicationAdministration.json": "b2283a75-bf39-4bcb-b941-2853e473f4dc",  # Medication P01CA, by reference
    "MedicationRequest.json": "b2283a75-bf39-4bcb-b941-2853e473f4dc",
    "MedicationStatement.json": "b2283a75-bf39-4bcb-b941-2853e473f4dc",
    "ObservationLab.json": "9d451608-6087-4f74-8d02-c1da422225d9",  # LOINC 800-3
    "ObservationLab-TimeRestriction.json": "9d451608-6087-4f74-8d02-c1da422225d9",  # effective 2004-07-24
    "Procedure.json": "ec88b9ac-fe8c-4317-bbad-3fa29f6568ab",  # OPS 5-403.05
    "Specimen.json": "aec65589-3305-47d6-a437-9630460a828b",  # SNOMED 396997002
}


def test_every_returning_one_patient_query_is_listed(sq2cql_testdata):
    on_disk = {p.name for p in (sq2cql_testdata / "returningOnePatient").glob("*.json")}
    assert on_disk == {*RETURNING_ONE_PATIENT, "Consent.json"}


@pytest.mark.parametrize("name", sorted(RETURNING_ONE_PATIENT))
def test_a_returning_one_patient_query_selects_exactly_its_patient(name, sq2cql_store, sq2cql_testdata):
    query = read(sq2cql_testdata / "returningOnePatient" / name)
    assert run(sq2cql_store, query) == [RETURNING_ONE_PATIENT[name]]


def test_a_time_restriction_that_misses_the_resource_finds_nobody(sq2cql_store, sq2cql_testdata):
    body = json.loads((sq2cql_testdata / "returningOnePatient" / "Diagnose-TimeRestriction.json").read_text())
    body["inclusionCriteria"][0][0]["timeRestriction"] = {
        "afterDate": "2023-02-16",
        "beforeDate": "2023-02-28",
    }
    assert run(sq2cql_store, parse_query(body)) == []


def test_the_combined_consent_query_finds_nobody_because_the_only_consent_is_entered_in_error(
    sq2cql_store, sq2cql_testdata
):
    # sq2cql's CQL counts any Consent that names the codes; the contract (section 4) counts only
    # active consents whose provision period contains today, and this one is neither.
    assert run(sq2cql_store, read(sq2cql_testdata / "returningOnePatient" / "Consent.json")) == []
    assert run(sq2cql_store, read(sq2cql_testdata / "consent.json")) == []


def test_the_combined_consent_query_selects_the_patient_once_that_consent_is_active(
    tmp_path, sq2cql_testdata
):
    entries = json.loads((sq2cql_testdata / "testData.json").read_text())["entry"]
    consent = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Consent")
    patient_id = consent["patient"]["reference"].removeprefix("Patient/")
    patient = next(e["resource"] for e in entries if e["resource"].get("id") == patient_id)
    data = tmp_path / "consent.ndjson"
    data.write_bytes(orjson.dumps(patient) + b"\n" + orjson.dumps({**consent, "status": "active"}) + b"\n")
    store = load(tmp_path / "store", data)
    combined = read(sq2cql_testdata / "returningOnePatient" / "Consent.json")  # yes-yes-no-no: .8 and .46
    # The provisions .8 and .46 of that consent permit from 2016-01-15 to 2016-06-23.
    assert run(store, combined, today=dt.date(2016, 3, 1)) == [patient_id]
    assert run(store, combined, today=dt.date(2016, 7, 1)) == []
    assert run(store, read(sq2cql_testdata / "consent.json"), today=dt.date(2016, 3, 1)) == [patient_id]


# --- sq2cql: every other example, on both data sets ---------------------------------------------------

# file: (patients in testData.json, patients in the MII Bundle), checked on the raw JSON
SQ2CQL_EXAMPLES = {
    # LOINC 51969-4 in 2022: testData's report is issued 2022-04-12; the Bundle's two have no time
    "DiagnosticReport/DiagnosticReportSQ.json": (1, 0),
    # Encounter class IMP: Bundle patients 1 and 3; type einrichtungskontakt for both, abteilungskontakt for
    # none; patient 1's stay 2024-02-14..22 overlaps January to mid-February 2024, patient 3's (2022) not
    "EncounterInpatient.json": (0, 2),
    "EncounterInpatientAbteilung.json": (0, 0),
    "EncounterInpatientEinrichtung.json": (0, 2),
    "EncounterInpatientEinrichtungTimeRestriction.json": (0, 1),
    # ATC B01AB01 (heparin) appears nowhere; the Bundle's ASS is B01AC06, only in a MedicationStatement
    "MedicationAdministrationSQ.json": (0, 0),
    "MedicationAdministrationSQDoubleCriteria.json": (0, 0),
    "MedicationAdministrationSQTimeRestriction.json": (0, 0),
    "MedicationAdministrationSQTwoCriteria.json": (0, 0),
    "MedicationRequestSQ.json": (0, 0),
    "MedicationRequestSQTimeRestriction.json": (0, 0),
    "MedicationStatementSQ.json": (0, 0),
    "MedicationStatementSQTimeRestriction.json": (0, 0),
    # Consent provision .6 (MDAT erheben): Bundle patients 1-3 permit it until 2052 or later
    "NoSearchPathSQ.json": (0, 3),
    # Procedure category 387713003 and SNOMED code 726427004: Bundle patient 1's operation
    "NonPrimarySearchPathSQ.json": (0, 1),
    "PrimaryPathSQ.json": (0, 1),
    # Specimen 119364003 with a diagnosis: no such specimen anywhere. The exclusion variant then keeps
    # every female patient: 159 in testData (as sq2cql's own acceptance test expects), patient 3 in the Bundle
    "SpecimenSQ.json": (0, 0),
    "SpecimenSQAndBodySite.json": (0, 0),
    "SpecimenSQExclusion.json": (159, 1),
    "SpecimenSQTwoInclusion.json": (0, 0),
    "SpecimenSQTwoReferenceCriteria.json": (0, 0),
    "cli/structured-query.json": (0, 0),  # C71.1: nobody
    # Consent provision .8: testData's one consent is entered-in-error; Bundle patients 1-3 permit it
    "consent.json": (0, 3),
    # sq2cql's acceptance test expects 0 for these three: no patient meets all ten / the OPS criteria
    "example-all-crits-time.json": (0, 0),
    "large-query-worst-case-with-time-constraints.json": (0, 0),
    "test-large-query-more-crit-time-rest-1.json": (0, 0),
}


def _example_queries(folder: Path) -> Iterator[str]:
    for path in sorted(folder.rglob("*.json")):
        body = json.loads(path.read_bytes())
        if (
            isinstance(body, dict)
            and "inclusionCriteria" in body
            and path.parent.name != "returningOnePatient"
        ):
            yield str(path.relative_to(folder))


def test_every_sq2cql_example_query_is_listed(sq2cql_testdata):
    assert set(_example_queries(sq2cql_testdata)) == set(SQ2CQL_EXAMPLES)


@pytest.mark.parametrize("name", sorted(SQ2CQL_EXAMPLES))
def test_an_sq2cql_example_gives_the_hand_checked_count(name, sq2cql_store, bundle_store, sq2cql_testdata):
    query = read(sq2cql_testdata / name)
    assert (len(run(sq2cql_store, query)), len(run(bundle_store, query))) == SQ2CQL_EXAMPLES[name]


# --- the MII core data set: expectations from the Bundle JSON ----------------------------------------


def _resources(folder: Path) -> list[dict]:
    return [
        e["resource"]
        for path in sorted(folder.glob("*.json"))
        for e in json.loads(path.read_bytes())["entry"]
    ]


def _patient(resource: dict) -> str:
    return (resource.get("subject") or resource["patient"])["reference"].removeprefix("Patient/")


def _codings(concept: dict | None) -> list[dict]:
    return (concept or {}).get("coding", [])


def criterion(context: str, system: str, code: str, **extra) -> dict:
    return {
        "context": {"system": "fdpg.mii.cds", "code": context},
        "termCodes": [{"system": system, "code": code}],
        **extra,
    }


def test_a_diagnosis_hierarchy_counts_the_patients_with_a_subcategory(kds_store, mii_kds_testdata):
    expected = {
        _patient(r)
        for r in _resources(mii_kds_testdata)
        if r["resourceType"] == "Condition"
        and any(c.get("system") == ICD and c["code"].startswith("C34") for c in _codings(r["code"]))
    }
    assert len(expected) == 4  # C34.1 at four patients
    assert (
        set(run(kds_store, parse_query({"inclusionCriteria": [[criterion("Diagnose", ICD, "C34")]]})))
        == expected
    )


def test_an_atc_group_counts_administrations_of_any_medication_in_it(kds_store, mii_kds_testdata):
    resources = _resources(mii_kds_testdata)
    atc = {
        r["id"]: [c["code"] for c in _codings(r.get("code")) if c.get("system") == ATC]
        for r in resources
        if r["resourceType"] == "Medication"
    }
    expected = set()
    for r in resources:
        if r["resourceType"] != "MedicationAdministration":
            continue
        codes = [c["code"] for c in _codings(r.get("medicationCodeableConcept")) if c.get("system") == ATC]
        codes += atc.get(
            r.get("medicationReference", {}).get("reference", "").removeprefix("Medication/"), []
        )
        if any(code.startswith("J01") for code in codes):
            expected.add(_patient(r))
    assert len(expected) >= 2
    query = parse_query({"inclusionCriteria": [[criterion("Medikamentenverabreichung", ATC, "J01")]]})
    assert set(run(kds_store, query)) == expected


def test_a_lab_value_filter_counts_the_patients_with_a_value_above_it(kds_store, mii_kds_testdata):
    hemoglobin = [
        r
        for r in _resources(mii_kds_testdata)
        if r["resourceType"] == "Observation"
        and any(c.get("system") == LOINC and c["code"] == "718-7" for c in _codings(r["code"]))
    ]
    assert {r["valueQuantity"]["code"] for r in hemoglobin} == {"g/dL"}
    # 130 g/L is 13 g/dL: the filter's unit differs from the stored one on purpose.
    expected = {_patient(r) for r in hemoglobin if r["valueQuantity"]["value"] > 13}
    assert 0 < len(expected) < len({_patient(r) for r in hemoglobin})
    over = {"type": "quantity-comparator", "comparator": "gt", "value": 130, "unit": {"code": "g/L"}}
    query = parse_query(
        {"inclusionCriteria": [[criterion("Laboruntersuchung", LOINC, "718-7", valueFilter=over)]]}
    )
    assert set(run(kds_store, query)) == expected


def test_a_consent_provision_counts_the_patients_whose_latest_active_consent_permits_it_today(
    kds_store, mii_kds_testdata
):
    code = "2.16.840.1.113883.3.1937.777.24.5.3.8"
    expected = set()
    for r in _resources(mii_kds_testdata):
        if r["resourceType"] != "Consent" or r["status"] != "active":
            continue
        for provision in r["provision"].get("provision", []):
            coded = any(c["code"] == code for concept in provision.get("code", []) for c in _codings(concept))
            period = provision.get("period", {})
            if (
                coded
                and provision["type"] == "permit"
                and period["start"] <= TODAY.isoformat() <= period["end"]
            ):
                expected.add(_patient(r))
    assert len(expected) == 9  # all ten consents permit .8, but patient 8's ended on 2023-11-15
    query = parse_query({"inclusionCriteria": [[criterion("Einwilligung", PROVISION, code)]]})
    assert set(run(kds_store, query)) == expected


def test_no_core_data_set_consent_permits_the_retrospective_provision_of_a_combined_code(kds_store):
    # yes-yes-no-no needs .8 and .46 (MDAT retrospektiv wissenschaftlich nutzen); no consent names .46.
    query = parse_query(
        {"inclusionCriteria": [[criterion("Einwilligung", "fdpg.consent.combined", "yes-yes-no-no")]]}
    )
    assert run(kds_store, query) == []


# --- the CCDL repository: every example is rejected, each for its reason ------------------------------

CCDL_REJECTIONS = {
    "example-json/sq-all-properties.json": (
        "$.inclusionCriteria[0][0].termCodes[0]",
        "not a supported Patient criterion",  # LOINC LL2191-6 for gender: the portal now uses SNOMED
    ),
    "structured-query/example-json/2021_02_01_QueryExampleWithoutTimeRestriction.json": (
        "$",
        "2021 draft format",
    ),
    "structured-query/example-json/2021_10_18_StructuredQueryV2Example.json": (
        "$.inclusionCriteria[0][0]",
        "'termCode' is the 2021 draft schema",
    ),
    "structured-query/example-json/2023_05_25.json": (
        "$.inclusionCriteria[3][0].attributeFilters[0].criteria[0].context",
        "is required for code system 'icd-o-3'",
    ),
    "ccdl-tests/ccdl-v3/ccdl-example-hemoglobin-last-24h.json": (
        "$.inclusionCriteria[0][0]",
        "criteria group",
    ),
    "ccdl-tests/ccdl-v3/ccdl-example-hemoglobin-24h-after-procedure.json": (
        "$.inclusionCriteria[0][0]",
        "criteria group",
    ),
    "ccdl-tests/ccdl-v3/ccdl-example-any-chained-anchors-draft.json": (
        "$.inclusionCriteria[0][0]",
        "criteria group",
    ),
}


def test_every_ccdl_fixture_is_listed():
    assert {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json")} == set(CCDL_REJECTIONS)


@pytest.mark.parametrize("name", sorted(CCDL_REJECTIONS))
def test_a_ccdl_example_beyond_the_model_is_rejected_with_the_path_and_reason(name, bundle_store):
    path, reason = CCDL_REJECTIONS[name]
    with pytest.raises(QueryError) as rejected:
        run(bundle_store, read(FIXTURES / name))
    assert rejected.value.path == path
    assert reason in rejected.value.problem


# --- the command line ---------------------------------------------------------------------------------


def test_count_prints_the_exact_site_count_as_json(bundle_store, sq2cql_testdata):
    result = CliRunner().invoke(
        main,
        [
            "count",
            "--store",
            str(bundle_store.path),
            "--today",
            "2024-06-15",
            str(sq2cql_testdata / "consent.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.output) == {"count": 3}


def test_count_explains_the_sql_in_the_chosen_dialect_without_a_store(sq2cql_testdata):
    result = CliRunner().invoke(
        main,
        ["count", "--explain", "--dialect", "postgres", str(sq2cql_testdata / "EncounterInpatient.json")],
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("WITH") and "FROM encounter" in result.output


def test_a_rejected_query_file_exits_2_naming_the_file_and_the_path(bundle_store):
    query_file = FIXTURES / "example-json" / "sq-all-properties.json"
    result = CliRunner().invoke(main, ["count", "--store", str(bundle_store.path), str(query_file)])
    assert result.exit_code == 2
    assert f"error: {query_file}: $.inclusionCriteria[0][0].termCodes[0]:" in result.output
    assert "Traceback" not in result.output


def test_malformed_json_exits_2_with_the_position(tmp_path, bundle_store):
    query_file = tmp_path / "query.json"
    query_file.write_text('{"inclusionCriteria": [[')
    result = CliRunner().invoke(main, ["count", "--store", str(bundle_store.path), str(query_file)])
    assert result.exit_code == 2
    assert f"error: {query_file}: $: malformed JSON" in result.output
