"""Dashboard indicators at the site: the cube exact against the truth, the registry's checks, the CLI.

The truth is evaluated from the generated FHIR resources by an independent implementation
(`indicators_truth.py`), for synthetic sites with epidemic waves (ICU transfers, ventilation, ECMO,
deaths, U07.1 against U07.2 and reliability A, tests without an encounter), and for a handful of
hand-written patients whose numbers are spelled out below.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from indicators_truth import Truth, read_resources

from datenraum.cli import main
from datenraum.indicators.cube import parse_cube
from datenraum.indicators.registry import DefinitionError, default_registry, parse_disease, parse_indicator
from datenraum.site.indicators import compute_cube, open_snapshot_engine
from datenraum.site.ingest import ingest
from datenraum.synth import generate

AS_OF = dt.date(2024, 11, 30)


@pytest.fixture(scope="module")
def wave_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("waves")
    generate(root / "fhir", 2500, seed=11, site_profile=3, workers=1, waves=True)
    ingest(root / "store", [root / "fhir"], workers=1)
    return root / "fhir", root / "store"


def _series(cube: dict) -> dict[tuple[str, str], list[list]]:
    return {(s["disease"], s["indicator"]): s["rows"] for s in cube["series"]}


def test_every_indicator_is_exact_against_the_truth(wave_site: tuple[Path, Path]) -> None:
    fhir, store = wave_site
    registry = default_registry()
    with open_snapshot_engine(store) as engine:
        cube = parse_cube(compute_cube(engine, registry, AS_OF))
    truth = Truth(read_resources([fhir]), registry, AS_OF)
    got = _series(cube)
    for disease in registry.diseases.values():
        for indicator in registry.indicators.values():
            expected = truth.series(disease, indicator)
            assert got[disease.id, indicator.id] == expected, (disease.id, indicator.id)
    # The waves produce something worth drawing: every level of care, deaths, all three diseases.
    levels = {row[1] for row in got["covid19", "inpatients_on_day"]}
    assert levels == {None, "ward", "icu", "ventilation", "ecmo"}
    assert sum(r[-1] for r in got["covid19", "in_hospital_deaths"] if r[2] is None) > 5
    for disease in ("influenza", "rsv"):
        assert got[disease, "new_inpatient_cases"]


def test_an_earlier_as_of_cuts_the_series_and_keeps_open_stays_open(wave_site: tuple[Path, Path]) -> None:
    fhir, store = wave_site
    registry = default_registry().select(["covid19"])
    as_of = dt.date(2021, 1, 3)
    with open_snapshot_engine(store) as engine:
        cube = compute_cube(engine, registry, as_of)
        again = compute_cube(engine, registry, as_of)
    assert cube["series"] == again["series"]  # idempotent: the same data give the same cube
    truth = Truth(read_resources([fhir]), registry, as_of)
    for entry in cube["series"]:
        indicator = registry.indicators[entry["indicator"]]
        assert entry["rows"] == truth.series(registry.diseases["covid19"], indicator), indicator.id
        assert all(row[0] <= "2021-W53" for row in entry["rows"])


def _resource_lines(resources: list[dict]) -> str:
    return "\n".join(json.dumps(r) for r in resources) + "\n"


def _patient(ident: str, gender: str = "female", birth: str = "1950-05-05", **extra) -> dict:
    return {"resourceType": "Patient", "id": ident, "gender": gender, "birthDate": birth, **extra}


def _stay(
    ident: str, patient: str, start: str, end: str | None, part_of: str | None = None, dept="0100"
) -> dict:
    level = "abteilungskontakt" if part_of else "einrichtungskontakt"
    resource = {
        "resourceType": "Encounter",
        "id": ident,
        "status": "finished" if end else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "type": [{"coding": [{"system": "http://fhir.de/CodeSystem/Kontaktebene", "code": level}]}],
        "serviceType": {
            "coding": [{"system": "http://fhir.de/CodeSystem/dkgev/Fachabteilungsschluessel", "code": dept}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if part_of:
        resource["partOf"] = {"reference": f"Encounter/{part_of}"}
    return resource


def _diagnosis(ident: str, patient: str, encounter: str, code: str, certainty: str, day: str) -> dict:
    return {
        "resourceType": "Condition",
        "id": ident,
        "code": {
            "coding": [
                {
                    "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                    "code": code,
                    "extension": [
                        {
                            "url": "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit",
                            "valueCoding": {"code": certainty},
                        }
                    ],
                }
            ]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": f"Encounter/{encounter}"},
        "recordedDate": day,
    }


def _pcr(ident: str, patient: str, encounter: str | None, when: str, positive: bool = True) -> dict:
    resource = {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "94500-6"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueCodeableConcept": {
            "coding": [{"system": "http://snomed.info/sct", "code": "260373001" if positive else "260415000"}]
        },
    }
    if encounter:
        resource["encounter"] = {"reference": f"Encounter/{encounter}"}
    return resource


def _ventilation(ident: str, patient: str, encounter: str, start: str, end: str) -> dict:
    return {
        "resourceType": "Procedure",
        "id": ident,
        "status": "completed",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "40617009"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "encounter": {"reference": f"Encounter/{encounter}"},
        "performedPeriod": {"start": start, "end": end},
    }


HAND_WRITTEN = [
    # A: U07.1 (G), admitted 23:30 UTC = 00:30 in Berlin on the 11th; ICU 12th-14th, ventilated on the 13th.
    _patient("a", address=[{"postalCode": "80331"}]),
    _stay("a1", "a", "2021-01-10T23:30:00Z", "2021-01-16T10:00:00+01:00"),
    _stay("a1u", "a", "2021-01-12T08:00:00+01:00", "2021-01-14T18:00:00+01:00", part_of="a1", dept="3600"),
    _diagnosis("a1c", "a", "a1", "U07.1", "G", "2021-01-11"),
    _ventilation("a1v", "a", "a1u", "2021-01-13T09:00:00+01:00", "2021-01-13T20:00:00+01:00"),
    # B: U07.1 with reliability A (excluded): not a case.
    _patient("b"),
    _stay("b1", "b", "2021-01-11T10:00:00+01:00", "2021-01-13T10:00:00+01:00"),
    _diagnosis("b1c", "b", "b1", "U07.1", "A", "2021-01-11"),
    # C: only suspected (U07.2): not a case.
    _patient("c", gender="male"),
    _stay("c1", "c", "2021-01-11T10:00:00+01:00", "2021-01-12T10:00:00+01:00"),
    _diagnosis("c1c", "c", "c1", "U07.2", "V", "2021-01-11"),
    # D: a positive test without an encounter two days before a stay: not case-linked, not a case, no test.
    _patient("d", gender="male"),
    _pcr("d0", "d", None, "2021-01-09T10:00:00+01:00"),
    _stay("d1", "d", "2021-01-11T10:00:00+01:00", "2021-01-12T10:00:00+01:00"),
    # E: a positive test of the stay, died on the 13th in hospital; aged 85 on admission.
    _patient("e", gender="male", birth="1935-06-01", deceasedDateTime="2021-01-13T05:00:00+01:00"),
    _stay("e1", "e", "2021-01-11T11:00:00+01:00", "2021-01-13T05:00:00+01:00"),
    _pcr("e1o", "e", "e1", "2021-01-11T11:30:00+01:00"),
    _pcr("c1o", "c", "c1", "2021-01-11T11:30:00+01:00", positive=False),
]


def test_hand_written_patients(tmp_path: Path) -> None:
    (tmp_path / "in.ndjson").write_text(_resource_lines(HAND_WRITTEN))
    ingest(tmp_path / "store", [tmp_path / "in.ndjson"], workers=1)
    registry = default_registry().select(["covid19"])
    with open_snapshot_engine(tmp_path / "store") as engine:
        got = _series(compute_cube(engine, registry, dt.date(2021, 1, 20)))
    total = {k: [(r[0], r[-1]) for r in rows if all(v is None for v in r[1:-1])] for k, rows in got.items()}
    assert total["covid19", "new_inpatient_cases"] == [("2021-01-11", 2)]
    levels = [(r[0], r[1], r[-1]) for r in got["covid19", "inpatients_on_day"] if r[1] and not any(r[2:-1])]
    assert levels == [
        ("2021-01-11", "ward", 2),
        ("2021-01-12", "icu", 1),
        ("2021-01-12", "ward", 1),
        ("2021-01-13", "ventilation", 1),
        ("2021-01-13", "ward", 1),
        ("2021-01-14", "icu", 1),
        ("2021-01-15", "ward", 1),
        ("2021-01-16", "ward", 1),
    ]
    assert total["covid19", "icu_admissions"] == [("2021-01-12", 1)]
    assert total["covid19", "ventilated_on_day"] == [("2021-01-13", 1)]
    assert total["covid19", "in_hospital_deaths"] == [("2021-01-13", 1)]
    assert total["covid19", "tests"] == [("2021-01-11", 2)]
    assert total["covid19", "positive_tests"] == [("2021-01-11", 1)]
    assert total["covid19", "severe_cases"] == [("2021-01-11", 1)]
    by_state = {r[4]: r[-1] for r in got["covid19", "new_inpatient_cases"] if r[4]}
    assert by_state == {"BY": 1, "unknown": 1}
    by_age = {r[3]: r[-1] for r in got["covid19", "new_inpatient_cases"] if r[3]}
    assert by_age == {"60-79": 1, "80+": 1}
    los = {r[5]: r[-1] for r in got["covid19", "length_of_stay"]}
    assert los == {"2-3": 1, "4-7": 1}


def test_cli_prints_the_cube(wave_site: tuple[Path, Path]) -> None:
    _fhir, store = wave_site
    result = CliRunner().invoke(
        main, ["indicators", "--store", str(store), "--disease", "rsv", "--as-of", "2024-11-30", "--json"]
    )
    assert result.exit_code == 0, result.output
    cube = parse_cube(json.loads(result.output))
    assert cube["data_as_of"] == "2024-11-30"
    assert {s["disease"] for s in cube["series"]} == {"rsv"}
    assert cube["definitions_version"] == default_registry().select(["rsv"]).version
    bad = CliRunner().invoke(main, ["indicators", "--store", str(store), "--disease", "plague"])
    assert bad.exit_code != 0 and "unknown disease 'plague'" in bad.output


def test_definitions_are_checked() -> None:
    registry = default_registry()
    assert set(registry.diseases) == {"covid19", "influenza", "rsv"}
    assert [i.code for i in registry.indicators.values()][:3] == ["I1", "I2", "I3"]
    with pytest.raises(DefinitionError, match="marker: needs at least one"):
        parse_disease({"id": "x1", "start": "2025-01-01", "marker": {}})
    with pytest.raises(DefinitionError, match="not a valid code"):
        parse_disease({"id": "x1", "start": "2025-01-01", "marker": {"icd10gm": ["DROP TABLE"]}})
    with pytest.raises(DefinitionError, match="kind"):
        parse_indicator({"id": "xx", "kind": "sql", "bucket": "day"})
    with pytest.raises(DefinitionError, match="level is only for occupancy"):
        parse_indicator({"id": "xx", "kind": "new_cases", "bucket": "day", "strata": [["level"]]})
    roundtrip = type(registry).from_json(registry.to_json())
    assert roundtrip.version == registry.version
