"""Specification of the synthetic data generator (``datenraum.synth``)."""

from __future__ import annotations

import gc
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import pytest

from datenraum.synth import SITE_PROFILES, GenerationSummary, generate

Resource = dict[str, Any]
FHIR_ID = re.compile(r"^[A-Za-z0-9\-\.]{1,64}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"


class Output:
    """A generated directory, parsed."""

    def __init__(self, summary: GenerationSummary) -> None:
        self.summary = summary
        self.by_type: dict[str, list[Resource]] = defaultdict(list)
        # Tens of thousands of new dicts would trigger full garbage collections over and over.
        collecting = gc.isenabled()
        gc.disable()
        try:
            for path in summary.files:
                for line in path.read_bytes().splitlines():
                    resource = orjson.loads(line)
                    self.by_type[resource["resourceType"]].append(resource)
        finally:
            if collecting:
                gc.enable()
        self.patients = {p["id"]: p for p in self.by_type["Patient"]}
        self.diagnoses: dict[str, set[str]] = defaultdict(set)
        for condition in self.by_type["Condition"]:
            self.diagnoses[patient_id(condition)].update(c["code"] for c in condition["code"]["coding"])

    def resources(self) -> Iterator[Resource]:
        for resources in self.by_type.values():
            yield from resources

    def share_with(self, *prefixes: str) -> float:
        having = sum(1 for codes in self.diagnoses.values() if any(c.startswith(prefixes) for c in codes))
        return having / len(self.patients)

    def values(self, loinc: str) -> list[tuple[str, float]]:
        return [
            (patient_id(o), o["valueQuantity"]["value"])
            for o in self.by_type["Observation"]
            if o["code"]["coding"][0]["code"] == loinc
        ]


def patient_id(resource: Resource) -> str:
    reference = resource.get("subject") or resource["patient"]
    return reference["reference"].removeprefix("Patient/")


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if "reference" in node:
            yield node["reference"]
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Output:
    """2,000 patients of the default profile: enough for prevalences, fast enough for every run."""
    return Output(generate(tmp_path_factory.mktemp("site"), 2000, seed=11, workers=1))


def file_contents(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


# --- determinism and layout ------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(tmp_path: Path) -> None:
    one = generate(tmp_path / "one", 900, seed=5, workers=1, shard_size=300)
    two = generate(tmp_path / "two", 900, seed=5, workers=2, shard_size=300)
    assert len([f for f in one.files if f.name.startswith("Patient.")]) == 3
    assert file_contents(tmp_path / "one") == file_contents(tmp_path / "two")
    assert one.resources == two.resources


def test_a_generation_with_waves_changes_nothing_a_later_one_writes(tmp_path: Path) -> None:
    before = generate(tmp_path / "before", 300, seed=5, workers=1)
    generate(tmp_path / "waves", 300, seed=5, workers=1, waves=True)
    after = generate(tmp_path / "after", 300, seed=5, workers=1)
    assert [f.name for f in before.files] == [f.name for f in after.files]
    assert file_contents(tmp_path / "before") == file_contents(tmp_path / "after")


def test_shard_size_changes_only_how_the_same_lines_are_split(tmp_path: Path) -> None:
    generate(tmp_path / "small", 600, seed=5, workers=1, shard_size=250)
    generate(tmp_path / "large", 600, seed=5, workers=1, shard_size=600)

    def joined(directory: Path) -> dict[str, bytes]:
        parts: dict[str, bytes] = defaultdict(bytes)
        for name, content in file_contents(directory).items():
            parts[name.split(".")[0]] += content
        return dict(parts)

    assert joined(tmp_path / "small") == joined(tmp_path / "large")


def test_files_are_named_by_resource_type_and_shard(site: Output) -> None:
    names = {path.name for path in site.summary.files}
    assert "Medication.ndjson" in names
    assert {"Patient.0000.ndjson", "Observation.0000.ndjson", "Consent.0000.ndjson"} <= names
    for path in site.summary.files:
        resource_type = path.name.split(".")[0]
        assert all(resource["resourceType"] == resource_type for resource in site.by_type[resource_type])


def test_summary_counts_what_was_written(site: Output) -> None:
    summary = site.summary
    assert summary.patients == 2000 == len(site.patients)
    assert summary.resources == {t: len(rs) for t, rs in site.by_type.items()}
    assert summary.bytes_written == sum(path.stat().st_size for path in summary.files)
    assert summary.seconds > 0
    # About 20 to 40 resources per patient on average.
    assert 20 <= (sum(summary.resources.values()) - summary.resources["Medication"]) / summary.patients <= 40


def test_rerun_into_the_same_directory_replaces_earlier_shards_only(tmp_path: Path) -> None:
    generate(tmp_path, 400, seed=1, workers=1, shard_size=100)
    (tmp_path / "notes.txt").write_text("kept")
    summary = generate(tmp_path, 100, seed=1, workers=1, shard_size=100)
    assert sorted(path.name for path in tmp_path.glob("*.ndjson")) == sorted(
        path.name for path in summary.files
    )
    assert (tmp_path / "notes.txt").read_text() == "kept"


def test_different_seeds_give_different_patients_with_non_colliding_ids(tmp_path: Path) -> None:
    a = Output(generate(tmp_path / "a", 200, seed=1, workers=1))
    b = Output(generate(tmp_path / "b", 200, seed=2, workers=1))
    assert [p["birthDate"] for p in a.patients.values()] != [p["birthDate"] for p in b.patients.values()]
    for resource_type in ("Patient", "Encounter", "Observation", "Condition"):
        ids_a = {r["id"] for r in a.by_type[resource_type]}
        assert ids_a.isdisjoint(r["id"] for r in b.by_type[resource_type])


def test_medication_catalogue_is_written_once_and_is_the_same_at_every_site(tmp_path: Path) -> None:
    generate(tmp_path / "a", 50, seed=1, workers=1)
    generate(tmp_path / "b", 50, seed=2, site_profile=1, workers=1)
    catalogue = (tmp_path / "a" / "Medication.ndjson").read_bytes()
    assert catalogue == (tmp_path / "b" / "Medication.ndjson").read_bytes()
    assert not list((tmp_path / "a").glob("Medication.0*.ndjson"))
    medications = [orjson.loads(line) for line in catalogue.splitlines()]
    assert len({m["id"] for m in medications}) == len(medications)
    for medication in medications:
        systems = {c["system"]: c["code"] for c in medication["code"]["coding"]}
        assert medication["id"] == "med-" + systems["http://fhir.de/CodeSystem/bfarm/atc"]
        pzn = systems["http://fhir.de/CodeSystem/ifa/pzn"]
        assert sum(int(d) * w for w, d in enumerate(pzn[:7], 1)) % 11 == int(pzn[7]), "PZN check digit"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"patients": -1}, "patients"),
        ({"seed": -3}, "seed"),
        ({"site_profile": len(SITE_PROFILES)}, "site_profile"),
        ({"workers": 0}, "workers"),
    ],
)
def test_invalid_arguments_are_rejected(tmp_path: Path, arguments: dict[str, int], message: str) -> None:
    call: dict[str, Any] = {"patients": 10, "seed": 1, **arguments}
    with pytest.raises(ValueError, match=message):
        generate(tmp_path, call.pop("patients"), call.pop("seed"), **call)


# --- FHIR validity ---------------------------------------------------------------------------------


def test_every_line_is_one_compact_json_resource_with_type_and_id(site: Output) -> None:
    for path in site.summary.files:
        content = path.read_bytes()
        assert content.endswith(b"\n")
        for line in content.splitlines():
            resource = orjson.loads(line)
            assert orjson.dumps(resource) == line
            assert isinstance(resource["resourceType"], str)
            assert isinstance(resource["id"], str)


def test_ids_are_unique_per_resource_type_and_valid_fhir_ids(site: Output) -> None:
    for resource_type, resources in site.by_type.items():
        ids = [r["id"] for r in resources]
        assert len(ids) == len(set(ids)), resource_type
        assert all(FHIR_ID.match(i) for i in ids), resource_type


def test_every_reference_resolves_to_a_resource_in_the_output(site: Output) -> None:
    known = {f"{r['resourceType']}/{r['id']}" for r in site.resources()}
    for resource in site.resources():
        for reference in references(resource):
            assert reference in known, (resource["id"], reference)


def test_every_patient_reference_points_to_a_generated_patient(site: Output) -> None:
    for resource in site.resources():
        if resource["resourceType"] not in ("Patient", "Medication"):
            assert patient_id(resource) in site.patients


def test_elements_have_their_fhir_r4_types(site: Output) -> None:
    for patient in site.patients.values():
        assert DATE.match(patient["birthDate"])
        assert patient["gender"] in ("male", "female", "other", "unknown")
        if patient["gender"] == "other":  # the German base profile demands the official category
            assert (
                patient["_gender"]["extension"][0]["url"]
                == "http://fhir.de/StructureDefinition/gender-amtlich-de"
            )
        if "deceasedDateTime" in patient:
            assert DATE_TIME.match(patient["deceasedDateTime"])
    for observation in site.by_type["Observation"]:
        assert DATE_TIME.match(observation["effectiveDateTime"])
        assert observation["status"] == "final"
        assert {c["code"] for c in observation["category"][0]["coding"]} == {"26436-6", "laboratory"}
        if "valueQuantity" in observation:
            quantity = observation["valueQuantity"]
            assert isinstance(quantity["value"], int | float) and not isinstance(quantity["value"], bool)
            assert quantity["system"] == "http://unitsofmeasure.org"
        else:
            assert observation["valueCodeableConcept"]["coding"][0]["system"] == "http://snomed.info/sct"
    for condition in site.by_type["Condition"]:
        coding = condition["code"]["coding"]
        assert isinstance(coding, list) and coding[0]["system"] == ICD10GM
        assert coding[0]["version"] == condition["recordedDate"][:4]
        assert DATE.match(condition["recordedDate"])
    for encounter in site.by_type["Encounter"]:
        assert encounter["class"]["code"] in ("IMP", "AMB")
        assert DATE_TIME.match(encounter["period"]["start"]) and DATE_TIME.match(encounter["period"]["end"])


def test_timestamps_carry_the_berlin_utc_offset_of_their_moment(site: Output) -> None:
    try:
        berlin = ZoneInfo("Europe/Berlin")
    except ZoneInfoNotFoundError:
        pytest.skip("no time zone database")
    moments = [o["effectiveDateTime"] for o in site.by_type["Observation"]]
    moments += [e["period"][edge] for e in site.by_type["Encounter"] for edge in ("start", "end")]
    offsets: set[str] = set()
    for text in moments:
        if "T02:" in text:
            continue  # the hour that does not exist, or exists twice, once a year
        moment = instant(text)
        assert moment.astimezone(berlin).utcoffset() == moment.utcoffset(), text
        offsets.add(text[-6:])
    assert offsets == {"+01:00", "+02:00"}


def test_events_lie_within_their_encounter_and_life(site: Output) -> None:
    encounters = {e["id"]: e for e in site.by_type["Encounter"]}
    for encounter in encounters.values():
        patient = site.patients[patient_id(encounter)]
        start, end = instant(encounter["period"]["start"]), instant(encounter["period"]["end"])
        assert start <= end
        assert patient["birthDate"] <= encounter["period"]["start"][:10]
        if "deceasedDateTime" in patient:
            assert end <= instant(patient["deceasedDateTime"])
    for kind, context, when in (
        ("Observation", "encounter", "effectiveDateTime"),
        ("Procedure", "encounter", "performedDateTime"),
        ("MedicationAdministration", "context", "effectiveDateTime"),
    ):
        for resource in site.by_type[kind]:
            encounter = encounters[resource[context]["reference"].removeprefix("Encounter/")]
            period = resource.get(when.replace("DateTime", "Period"), {})
            moments = [resource[when]] if when in resource else [period["start"], period["end"]]
            for moment in moments:
                assert (
                    instant(encounter["period"]["start"])
                    <= instant(moment)
                    <= instant(encounter["period"]["end"])
                )


# --- clinical plausibility -------------------------------------------------------------------------


def test_age_and_sex_distribution_is_that_of_german_hospital_patients(site: Output) -> None:
    genders = Counter(p["gender"] for p in site.patients.values())
    n = len(site.patients)
    assert 0.45 <= genders["female"] / n <= 0.56
    assert 0 < (genders["other"] + genders["unknown"]) / n <= 0.02
    birth_years = [int(p["birthDate"][:4]) for p in site.patients.values()]
    assert 1950 <= statistics.median(birth_years) <= 1975  # median age around 60 in the window
    assert min(birth_years) < 1930 and max(birth_years) > 2010


def test_hypertension_and_diabetes_prevalence_is_plausible(site: Output) -> None:
    assert 0.22 <= site.share_with("I10", "I11") <= 0.38
    assert 0.06 <= site.share_with("E11") <= 0.14


def test_diagnoses_are_real_icd_10_gm_codes_with_versions_from_the_window(site: Output) -> None:
    codings = [c["code"]["coding"][0] for c in site.by_type["Condition"]]
    assert 40 <= len({c["code"] for c in codings}) <= 80
    assert all(re.match(r"^[A-Z]\d{2}(\.\d{1,2})?$", c["code"]) and c["display"] for c in codings)
    assert {c["version"] for c in codings} <= {str(year) for year in range(2015, 2025)}


def test_covid_appears_only_from_2020_and_with_a_positive_pcr(site: Output) -> None:
    covid = [c for c in site.by_type["Condition"] if c["code"]["coding"][0]["code"] == "U07.1"]
    assert covid and all(c["recordedDate"] >= "2020-03-01" for c in covid)
    positive = {
        patient_id(o)
        for o in site.by_type["Observation"]
        if o["code"]["coding"][0]["code"] == "94500-6"
        and o["valueCodeableConcept"]["coding"][0]["code"] == "260373001"
    }
    assert positive == {patient_id(c) for c in covid}


def test_hba1c_is_higher_among_diabetics(site: Output) -> None:
    diabetics = {p for p, codes in site.diagnoses.items() if any(c.startswith(("E10", "E11")) for c in codes)}
    values = site.values("4548-4")
    with_diabetes = [v for p, v in values if p in diabetics]
    without = [v for p, v in values if p not in diabetics]
    assert len(with_diabetes) > 50 and len(without) > 50
    assert statistics.mean(with_diabetes) - statistics.mean(without) > 1.0


def test_kidney_disease_shows_in_creatinine_and_egfr(site: Output) -> None:
    ckd = {p for p, codes in site.diagnoses.items() if any(c.startswith("N18") for c in codes)}
    for loinc, higher_with_ckd in (("2160-0", True), ("62238-1", False)):
        values = site.values(loinc)
        sick = statistics.median(v for p, v in values if p in ckd)
        healthy = statistics.median(v for p, v in values if p not in ckd)
        assert (sick > 1.5 * healthy) if higher_with_ckd else (sick < 0.6 * healthy)


def test_breast_cancer_is_almost_only_found_in_women(site: Output) -> None:
    patients = [p for p, codes in site.diagnoses.items() if any(c.startswith("C50") for c in codes)]
    assert len(patients) >= 5
    women = sum(1 for p in patients if site.patients[p]["gender"] == "female")
    assert women / len(patients) >= 0.9


def test_medication_follows_diagnoses(site: Output) -> None:
    metformin = {
        patient_id(s)
        for s in site.by_type["MedicationStatement"]
        if s["medicationReference"]["reference"] == "Medication/med-A10BA02"
    }
    assert metformin
    assert all(any(c.startswith("E11") for c in site.diagnoses[p]) for p in metformin)


def test_consent_mix_is_mostly_permit_with_some_refusals_and_withdrawals(site: Output) -> None:
    consents: dict[str, list[Resource]] = defaultdict(list)
    for consent in site.by_type["Consent"]:
        consents[patient_id(consent)].append(consent)
    kinds: Counter[str] = Counter()
    for patient in site.patients:
        documents = sorted(consents.get(patient, []), key=lambda c: c["dateTime"])
        if not documents:
            kinds["none"] += 1
            continue
        first = documents[0]["provision"]
        assert first["type"] == "deny"  # MII: deny by default, permits are nested
        nested = {p["type"] for p in first["provision"]}
        assert len(nested) == 1
        if nested == {"deny"}:
            kinds["deny"] += 1
        elif len(documents) == 2:
            withdrawal = documents[1]
            assert {p["type"] for p in withdrawal["provision"]["provision"]} == {"deny"}
            assert instant(withdrawal["dateTime"]) > instant(documents[0]["dateTime"])
            kinds["withdrawn"] += 1
        elif first["period"]["end"] < "2030":  # permit that ended early
            kinds["withdrawn"] += 1
        else:
            kinds["permit"] += 1
    n = len(site.patients)
    assert 0.80 <= kinds["permit"] / n <= 0.90
    assert 0.04 <= kinds["deny"] / n <= 0.10
    assert 0.015 <= kinds["withdrawn"] / n <= 0.05
    assert 0.02 <= kinds["none"] / n <= 0.08


def test_biobank_specimens_exist_only_where_consent_allowed_collection(site: Output) -> None:
    permitted = {
        patient_id(c) for c in site.by_type["Consent"] if c["provision"]["provision"][0]["type"] == "permit"
    }
    donors = {patient_id(s) for s in site.by_type["Specimen"]}
    assert donors <= permitted
    assert 0.12 <= len(donors) / len(site.patients) <= 0.25
    assert {s["status"] for s in site.by_type["Specimen"]} == {"available", "unavailable"}


# --- site profiles ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profiles(tmp_path_factory: pytest.TempPathFactory, site: Output) -> dict[int, Output]:
    outputs = {0: site}
    for profile in range(1, len(SITE_PROFILES)):
        directory = tmp_path_factory.mktemp(f"profile{profile}")
        outputs[profile] = Output(generate(directory, 1000, seed=11, site_profile=profile, workers=1))
    return outputs


def test_oncology_site_sees_more_cancer(profiles: dict[int, Output]) -> None:
    cancers = ("C50", "C34", "C18", "C20", "C61")
    assert profiles[1].share_with(*cancers) > 2 * profiles[0].share_with(*cancers)


def test_geriatric_site_has_older_patients_and_reports_egfr_by_mdrd(profiles: dict[int, Output]) -> None:
    def median_birth_year(output: Output) -> float:
        return statistics.median(int(p["birthDate"][:4]) for p in output.patients.values())

    assert median_birth_year(profiles[2]) < median_birth_year(profiles[0]) - 3
    assert profiles[2].values("33914-3") and not profiles[2].values("62238-1")
    assert not profiles[0].values("33914-3")


def test_sites_report_hba1c_in_percent_or_mmol_per_mol(profiles: dict[int, Output]) -> None:
    assert profiles[0].values("4548-4") and not profiles[0].values("59261-8")
    assert profiles[3].values("59261-8") and not profiles[3].values("4548-4")
    assert profiles[2].values("59261-8") and profiles[2].values("4548-4")
    # The same quantity in the other unit: converted back, IFCC values match the other site's % values.
    ifcc = statistics.mean(v for _, v in profiles[3].values("59261-8"))
    percent = statistics.mean(v for _, v in profiles[0].values("4548-4"))
    assert ifcc / 10.929 + 2.15 == pytest.approx(percent, abs=0.4)
