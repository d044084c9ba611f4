"""The extraction rules that need no store: CRTDL reading and validation, redaction, consent."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datenraum.extraction.consent import ConsentConfigError, ConsentRules, requested_consent_codes
from datenraum.extraction.crtdl import CrtdlError, crtdl_to_json, parse_crtdl, slugify, validate_strict
from datenraum.extraction.profiles import shipped_profiles
from datenraum.extraction.redact import redact

DIAGNOSE = "https://www.medizininformatik-initiative.de/fhir/core/modul-diagnose/StructureDefinition/Diagnose"
P6 = "2.16.840.1.113883.3.1937.777.24.5.3.6"
P8 = "2.16.840.1.113883.3.1937.777.24.5.3.8"
P46 = "2.16.840.1.113883.3.1937.777.24.5.3.46"
OID = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
EINWILLIGUNG = "https://www.medizininformatik-initiative.de/fhir/modul-consent/StructureDefinition/mii-pr-consent-einwilligung"


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- CRTDL ------------------------------------------------------------------------------------------


def test_invalid_example_yields_all_eleven_violations_with_paths(extraction_data):
    violations = validate_strict(load(extraction_data / "crtdl-spec/invalid/CRTDL_invalid_example.json"))
    found = {(v.path, v.message.split(" ")[0]) for v in violations}
    groups = "$.dataExtraction.attributeGroups"
    assert len(violations) == 11, [str(v) for v in violations]
    expected_paths = [
        f"{groups}[0].id",
        f"{groups}[0].groupReference",
        f"{groups}[0].attributes[0].attributeRef",
        f"{groups}[7].attributes",
        "$.version",
        f"{groups}[2].id",
        f"{groups}[2].name",
        f"{groups}[3].name",
        f"{groups}[4].attributes[0].linkedGroups[0]",
        f"{groups}[5].filter[0].end",
        f"{groups}[6].groupReference",
    ]
    assert sorted(expected_paths) == sorted(path for path, _ in found)
    messages = " ".join(str(v) for v in violations)
    for word in (
        "duplicate group id",
        "duplicate_group_name",
        "'con'",
        "this-id-does-not-exist",
        "not a 'uri'",
    ):
        assert word in messages
    with pytest.raises(CrtdlError) as error:
        parse_crtdl(load(extraction_data / "crtdl-spec/invalid/CRTDL_invalid_example.json"), mode="strict")
    assert len(error.value.violations) == 11


def test_empty_attribute_groups_fail(extraction_data):
    data = load(extraction_data / "crtdl-spec/invalid/CRTDL_invalid_empty_attributeGroups.json")
    assert [str(v) for v in validate_strict(data)] == [
        "$.dataExtraction.attributeGroups: [] should be non-empty"
    ]
    with pytest.raises(CrtdlError, match="attributeGroups"):
        parse_crtdl(data)


def test_examples_pass_strict_and_round_trip(extraction_data):
    for path in sorted((extraction_data / "crtdl-spec/examples").glob("*.json")):
        data = load(path)
        assert validate_strict(data) == [], path.name
        crtdl = parse_crtdl(data, mode="strict")
        assert validate_strict(crtdl_to_json(crtdl)) == []
        assert parse_crtdl(crtdl_to_json(crtdl), mode="strict") == crtdl


def test_torch_case_crtdls_fail_strict_and_pass_legacy(extraction_data):
    paths = sorted((extraction_data / "torch/cases").glob("*/crtdl*.json"))
    assert len(paths) == 11
    for path in paths:
        data = load(path)
        assert any(v.path == "$.version" for v in validate_strict(data)), path
        crtdl = parse_crtdl(data)  # legacy
        assert crtdl.warnings
    kds = validate_strict(load(extraction_data / "torch/cases/kds-basic/crtdl.json"))
    assert sorted(v.path for v in kds) == [
        "$.dataExtraction.attributeGroups[0]",
        "$.dataExtraction.attributeGroups[1]",
        "$.dataExtraction.attributeGroups[1].attributes",
        "$.version",
    ]


def test_slug():
    assert slugify("Meine Hämoglobin Werte von 2020!") == "meine_haemoglobin_werte_von_2020"
    assert slugify("  Crème brûlée ") == "creme_brulee"


def test_malformed_crtdl_names_the_path():
    with pytest.raises(CrtdlError, match=r"^\$: not JSON"):
        parse_crtdl(b"{not json")
    with pytest.raises(CrtdlError, match=r"\$\.dataExtraction"):
        parse_crtdl({"cohortDefinition": {}})


names = st.text(alphabet="abcdefghij XYZäöü-", min_size=1, max_size=20).map(str.strip).filter(bool)


@settings(max_examples=60, deadline=None)
@given(st.lists(names, min_size=1, max_size=5, unique_by=slugify), st.data())
def test_written_v1_validates_strictly(group_names, data):
    if not all(slugify(n) and slugify(n) not in {"con", "aux", "nul", "prn"} for n in group_names):
        return
    groups = []
    for index, name in enumerate(group_names):
        groups.append(
            {
                "id": f"g{index}",
                "name": name,
                "groupReference": DIAGNOSE,
                "attributes": [{"attributeRef": "Condition.code", "mustHave": data.draw(st.booleans())}],
            }
        )
    crtdl = parse_crtdl(
        {
            "version": "x",
            "cohortDefinition": {"inclusionCriteria": []},
            "dataExtraction": {"attributeGroups": groups},
        }
    )
    assert validate_strict(crtdl_to_json(crtdl)) == []


# --- redaction --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["DiagnosisUnknownComplexExtension", "DiagnosisWithUndefinedElement"])
def test_redaction_fixtures(extraction_data, name):
    profile = shipped_profiles().get(DIAGNOSE)
    resource = load(extraction_data / f"torch/redaction/input/{name}.json")
    resource["meta"]["profile"] = [p for p in resource["meta"]["profile"] if p.split("|")[0] == profile.url]
    assert redact(resource, profile) == load(extraction_data / f"torch/redaction/expected/{name}.json")


def test_unknown_attribute_ref():
    profile = shipped_profiles().get(DIAGNOSE)
    with pytest.raises(ValueError, match="no element 'valueQuantity'"):
        profile.compile("Condition.valueQuantity")
    with pytest.raises(ValueError, match="no extension slice"):
        profile.compile("Condition.extension:Unbekannt")
    assert profile.compile("Condition.code.coding:icd10-gm").steps[-1].where == (
        ("system", "http://fhir.de/CodeSystem/bfarm/icd-10-gm"),
    )


# --- consent ----------------------------------------------------------------------------------------


def consent(cid: str, provisions: list[tuple[str, str, str, str]], *, profile: str = EINWILLIGUNG) -> dict:
    return {
        "resourceType": "Consent",
        "id": cid,
        "meta": {"profile": [profile]},
        "status": "active",
        "dateTime": "2020-01-10",
        "provision": {
            "type": "deny",
            "provision": [
                {
                    "type": kind,
                    "period": {"start": s, "end": e},
                    "code": [{"coding": [{"system": OID, "code": code}]}],
                }
                for kind, code, s, e in provisions
            ],
        },
    }


BASE = [("permit", P8, "2020-01-10", "2050-01-09"), ("permit", P6, "2020-01-10", "2025-01-09")]
TODAY = dt.date(2024, 6, 1)


def window(decision):
    return [[s.isoformat(), e.isoformat()] for s, e in decision.window]


def test_no_einwilligung_no_filtering():
    rules = ConsentRules()
    assert rules.check_request(requested_consent_codes({"inclusionCriteria": []})) == []
    decision = rules.evaluate("p", [], [], [], TODAY)
    assert (
        not decision.enforced and decision.check({"resourceType": "Observation"}, "Observation.effective")[0]
    )


def test_request_errors():
    rules = ConsentRules()
    with pytest.raises(ConsentConfigError, match="requires"):
        rules.check_request([("$.x", P8)])
    with pytest.raises(ConsentConfigError, match="not in the consent configuration") as error:
        rules.check_request(
            [("$.c[0]", P8), ("$.c[1]", P6), ("$.c[2]", "2.16.840.1.113883.3.1937.777.24.5.3.49")]
        )
    assert error.value.path == "$.c[2]"


def test_gate_expired_excludes():
    decision = ConsentRules().evaluate("p", [P6, P8], [consent("c", BASE)], [], dt.date(2051, 1, 1))
    assert decision.excluded and "gate" in decision.record["excluded"]


def test_encounter_stretch_and_open_encounter():
    rules = ConsentRules()
    closed = {"resourceType": "Encounter", "id": "e", "period": {"start": "2020-01-01", "end": "2020-01-15"}}
    decision = rules.evaluate("p", [P6, P8], [consent("c", BASE)], [closed], TODAY)
    assert window(decision) == [["2020-01-01", "2025-01-09"]]
    assert decision.record["encounterStretch"][0]["to"] == "2020-01-01"
    ongoing = {"resourceType": "Encounter", "id": "o", "period": {"start": "2020-01-01"}}
    decision = rules.evaluate("p", [P6, P8], [consent("c", BASE)], [ongoing], TODAY)
    assert window(decision) == [["2020-01-10", "2025-01-09"]]
    kept, reason, _ = decision.check(ongoing, "Encounter.period")
    assert not kept and "open period" in reason
    assert (
        not ConsentRules(encounter_shift=False)
        .evaluate("p", [P6, P8], [consent("c", BASE)], [closed], TODAY)
        .record.get("encounterStretch")
    )


def test_retro_modifier_same_consent_only():
    rules = ConsentRules()
    same = rules.evaluate(
        "p", [P6, P8, P46], [consent("c", [*BASE, ("permit", P46, "2020-01-10", "2050-01-09")])], [], TODAY
    )
    assert window(same) == [["1900-01-01", "2025-01-09"]]
    other = rules.evaluate(
        "p",
        [P6, P8, P46],
        [consent("c", BASE), consent("d", [("permit", P46, "2020-01-10", "2050-01-09")])],
        [],
        TODAY,
    )
    assert window(other) == [["2020-01-10", "2025-01-09"]]


def test_deny_in_revocation_subtracts():
    revocation = consent("r", [("deny", P6, "2022-01-01", "2022-12-31")])
    decision = ConsentRules().evaluate("p", [P6, P8], [consent("c", BASE), revocation], [], TODAY)
    assert window(decision) == [["2020-01-10", "2021-12-31"], ["2023-01-01", "2025-01-09"]]


def test_resource_checks_and_explanations():
    decision = ConsentRules().evaluate("p", [P6, P8], [consent("c", BASE)], [], TODAY)
    crossing = {
        "resourceType": "Observation",
        "id": "o1",
        "effectivePeriod": {"start": "2024-12-01", "end": "2025-02-01"},
    }
    month = {"resourceType": "Observation", "id": "o2", "effectiveDateTime": "2021-05"}
    inside = {"resourceType": "Observation", "id": "o3", "effectiveDateTime": "2021-05-03T10:00:00+02:00"}
    assert decision.check(crossing, "Observation.effective")[:2] == (False, "outside the consent window")
    assert decision.check(month, "Observation.effective")[:2] == (False, "no day precision")
    assert decision.check(inside, "Observation.effective")[0]
    assert decision.check({"resourceType": "Medication", "id": "m"}, ConsentRules().field_for("Medication"))[
        0
    ]
    assert not decision.check({"resourceType": "Basic", "id": "b"}, None)[0]
    decision.drop(
        crossing, "Observation.effective", "outside the consent window", crossing["effectivePeriod"]
    )
    assert decision.record["dropped"][0]["resource"] == "Observation/o1"
    assert {p["code"] for p in decision.record["provisions"]} == {P6, P8}


def test_vhf006_consent_alone_excludes(extraction_data):
    sample = load(extraction_data / "torch/consent-samples/VHF006_Consent.json")
    decision = ConsentRules().evaluate("VHF00006", [P6, P8], [sample], [], TODAY)
    assert decision.excluded
    assert "Einwilligung profile" in decision.record["ignoredConsents"][0]["reason"]
