"""Small builders for FHIR R4 test resources, so that tests spell out only what matters to them."""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
PATIENT_ID_SYSTEM = "https://www.example-klinikum.de/fhir/sid/patienten-id"


def patient(resource_id: str, mrn: str | None = None, **elements: Any) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": resource_id,
        "gender": "female",
        "birthDate": "1970-05-01",
    }
    if mrn is not None:
        resource["identifier"] = [{"system": PATIENT_ID_SYSTEM, "value": mrn}]
    resource.update(elements)
    return resource


def observation(
    resource_id: str, subject: str | dict, value: float = 1.0, code: str = "718-7", **elements: Any
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": subject if isinstance(subject, dict) else {"reference": subject},
        "effectiveDateTime": "2024-01-02T03:04:05+01:00",
        "valueQuantity": {
            "value": value,
            "unit": "g/dL",
            "system": "http://unitsofmeasure.org",
            "code": "g/dL",
        },
    }
    resource.update(elements)
    return resource


def condition(resource_id: str, subject: str | dict, code: str = "E11.9", **elements: Any) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": resource_id,
        "code": {"coding": [{"system": ICD10GM, "code": code}]},
        "subject": subject if isinstance(subject, dict) else {"reference": subject},
        "recordedDate": "2023-07-01",
    }
    resource.update(elements)
    return resource


def organization(resource_id: str, name: str = "Klinikum") -> dict:
    return {"resourceType": "Organization", "id": resource_id, "name": name}


def put(resource: dict, full_url: str | None = None) -> dict:
    """A transaction entry that PUTs `resource` at Type/id."""
    entry = {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def post(resource: dict, full_url: str | None = None) -> dict:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url is not None:
        entry["fullUrl"] = full_url
    return entry


def delete(url: str) -> dict:
    return {"request": {"method": "DELETE", "url": url}}


def bundle(entries: list[dict], bundle_type: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
