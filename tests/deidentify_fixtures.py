"""A hand-made extraction job folder full of identifying data (names, addresses, identifiers, exact
birth dates, free text naming the patient), for the de-identification tests and the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

MII = "https://www.medizininformatik-initiative.de/fhir/core"
PROFILES = {
    "Patient": f"{MII}/modul-person/StructureDefinition/Patient",
    "Encounter": f"{MII}/modul-fall/StructureDefinition/KontaktGesundheitseinrichtung",
    "Condition": f"{MII}/modul-diagnose/StructureDefinition/Diagnose",
    "MedicationRequest": f"{MII}/modul-medikation/StructureDefinition/MedicationRequest",
    "Medication": f"{MII}/modul-medikation/StructureDefinition/Medication",
    "Observation": f"{MII}/modul-labor/StructureDefinition/ObservationLab",
}
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FDPG = "https://www.medizininformatik-initiative.de/fhir/fdpg/NamingSystem"
FAMILIES = ["Musterfrau", "Schneidewind", "Oberhauser", "Kleinschmidt", "Wagenknecht"]
GIVEN = ["Annegret", "Bertram", "Cordula", "Dietlinde", "Eckehard"]
STREETS = ["Hauptstraße 5", "Am Bahndamm 17a", "Lindenallee 3", "Ringweg 99", "Kirchgasse 2"]


def _meta(kind: str) -> dict[str, Any]:
    return {"profile": [PROFILES[kind]], "source": "#site-fhir-7f3a", "lastUpdated": "2024-01-02T03:04:05Z"}


def patient_bundle(n: int, *, encounters: int = 1, observations: int = 2) -> dict[str, Any]:
    pid = f"pat-{n:06d}-site"
    family, given, street = FAMILIES[n % 5], GIVEN[n % 5], STREETS[n % 5]
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "meta": _meta("Patient"),
            "text": {"status": "generated", "div": f"<div>{given} {family}</div>"},
            "identifier": [
                {
                    "use": "usual",
                    "type": {"coding": [{"system": V2, "code": "MR"}]},
                    "system": "https://uk-site.example/sid/patient-id",
                    "value": f"PID-{n:08d}",
                },
                {
                    "use": "official",
                    "type": {
                        "coding": [
                            {"system": "http://fhir.de/CodeSystem/identifier-type-de-basis", "code": "KVZ10"}
                        ]
                    },
                    "system": "http://fhir.de/sid/gkv/kvid-10",
                    "value": f"K{n:09d}",
                },
            ],
            "name": [{"use": "official", "family": family, "given": [given]}],
            "telecom": [{"system": "phone", "value": f"+49 341 {n:07d}"}],
            "address": [
                {"type": "both", "line": [street], "city": "Leipzig", "postalCode": "04103", "country": "DE"}
            ],
            "gender": "female" if n % 2 else "male",
            "birthDate": f"19{50 + n % 40}-07-{1 + n % 28:02d}",
            "managingOrganization": {"reference": "Organization/org-uk-site", "display": "Uniklinikum Site"},
        }
    ]
    for e in range(encounters):
        eid = f"enc-{n:06d}-{e}"
        resources.append(
            {
                "resourceType": "Encounter",
                "id": eid,
                "meta": _meta("Encounter"),
                "identifier": [
                    {
                        "type": {"coding": [{"system": V2, "code": "VN"}]},
                        "system": "https://uk-site.example/sid/encounter-id",
                        "value": f"FALL-{n:07d}-{e}",
                    }
                ],
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "subject": {"reference": f"Patient/{pid}", "display": f"{given} {family}"},
                "period": {"start": "2021-03-04T10:11:12+01:00", "end": "2021-03-09"},
                "serviceProvider": {"reference": "Organization/org-uk-site"},
            }
        )
        resources.append(
            {
                "resourceType": "Condition",
                "id": f"cond-{n:06d}-{e}",
                "meta": _meta("Condition"),
                "code": {"coding": [{"system": "http://fhl7.org/fhir/sid/icd-10-gm", "code": "C16.9"}]},
                "subject": {"reference": f"Patient/{pid}"},
                "encounter": {"reference": f"Encounter/{eid}"},
                "recordedDate": "2021-03-05",
                "note": [{"text": f"Frau {family} wohnt {street}, Patientennummer PID-{n:08d}"}],
            }
        )
        resources.append(
            {
                "resourceType": "MedicationRequest",
                "id": f"medreq-{n:06d}-{e}",
                "meta": _meta("MedicationRequest"),
                "status": "active",
                "intent": "order",
                "subject": {"reference": f"Patient/{pid}"},
                "medicationReference": {"reference": f"Medication/med-{n % 2}"},
                "authoredOn": "2021-03-06",
            }
        )
        for o in range(observations):
            resources.append(
                {
                    "resourceType": "Observation",
                    "id": f"obs-{n:06d}-{e}-{o}",
                    "meta": _meta("Observation"),
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                    "subject": {"reference": f"Patient/{pid}"},
                    "encounter": {"reference": f"Encounter/{eid}"},
                    "effectiveDateTime": "2021-03-05T08:00:00Z",
                    "valueQuantity": {
                        "value": 12.5 + o,
                        "unit": "g/dL",
                        "system": "http://unitsofmeasure.org",
                        "code": "g/dL",
                    },
                }
            )
    resources.append(
        {
            "resourceType": "Provenance",
            "id": f"torch-prov-{n:06d}",
            "target": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources],
            "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"who": {"identifier": {"system": f"{FDPG}/program", "value": "torch"}}}],
            "entity": [
                {
                    "role": "source",
                    "what": {"identifier": {"system": f"{FDPG}/attribute_group", "value": "all"}},
                },
                {
                    "role": "source",
                    "what": {"identifier": {"system": f"{FDPG}/extraction_id", "value": "job-1"}},
                },
            ],
        }
    )
    return _bundle(f"bundle-{pid}", resources)


def _bundle(bundle_id: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{r['resourceType']}/{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def core_bundle() -> dict[str, Any]:
    medications = [
        {
            "resourceType": "Medication",
            "id": f"med-{i}",
            "meta": _meta("Medication"),
            "code": {"coding": [{"system": "http://fhir.de/CodeSystem/bfarm/atc", "code": code}]},
        }
        for i, code in enumerate(("L01BC02", "N02BB02"))
    ]
    organization = {
        "resourceType": "Organization",
        "id": "org-uk-site",
        "identifier": [{"system": "http://fhir.de/sid/arge-ik/iknr", "value": "260123456"}],
        "name": "Uniklinikum Site",
    }
    return _bundle("bundle-core", [*medications, organization])


def write_job(folder: Path, patients: int = 5, *, batch: int = 1000, **sizes: int) -> Path:
    """A completed job folder of `patients` patients in batches of `batch`."""
    folder.mkdir(parents=True, exist_ok=True)
    job = {
        "id": "job-1",
        "status": "COMPLETED",
        "today": "2026-01-01",
        "crtdl": {},
        "cohort": [f"pat-{n:06d}-site" for n in range(patients)],
    }
    (folder / "job.json").write_bytes(orjson.dumps(job))
    (folder / "core.ndjson").write_bytes(orjson.dumps(core_bundle()) + b"\n")
    for start in range(0, patients, batch):
        with open(folder / f"batch-{start // batch:04d}.ndjson", "wb") as handle:
            for n in range(start, min(patients, start + batch)):
                handle.write(orjson.dumps(patient_bundle(n, **sizes)) + b"\n")
    (folder / "reports").mkdir(exist_ok=True)
    (folder / "reports/job-summary.json").write_bytes(orjson.dumps({"Num-Final-Patients": patients}))
    return folder
