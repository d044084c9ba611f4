"""Study data into the site store, so that a participant's study data and routine data join at the site.

What is written (one ingest load per change, `datenraum.site.ingest`, so readers see it whole or not):

- at enrolment a `ResearchSubject` (MII module Studie): `identifier` the study pseudonym (type ANON,
  `subjectIdentificationCode`), `study` the study, `individual` the site Patient, `consent` the Consent the
  enrolment checked, `period.start` the enrolment date, `assignedArm` the allocated arm;
- for a completed form a `QuestionnaireResponse`: `questionnaire` the form's `url|version`, `subject` the
  site Patient *and* the pseudonym (`subject.identifier`), `identifier` naming the form instance; and an
  `Observation` per answered item the form marks with SDC's `observationExtract` (code from the item,
  value from the answer, `derivedFrom` the response).

Ids are derived from the form instance, so saving a form again replaces its resources instead of adding
copies. The link pseudonym <-> site patient is in these resources and in the EDC's own database only; it
never leaves the site (exports go through the delivery path, which de-identifies).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from datenraum.site.ingest import ingest
from datenraum.site.store import Store

__all__ = [
    "OBSERVATION_EXTRACT",
    "PSEUDONYM_TYPE",
    "StoreWriteError",
    "StudySubject",
    "observations_for",
    "patient_exists",
    "research_subject",
    "resource_id",
    "write_resources",
]

OBSERVATION_EXTRACT = "http://hl7.org/fhir/uv/sdc/StructureDefinition/sdc-questionnaire-observationExtract"
UNIT = "http://hl7.org/fhir/StructureDefinition/questionnaire-unit"
PSEUDONYM_TYPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ANON"}],
}
_SUBJECT_PROFILE = "https://www.medizininformatik-initiative.de/fhir/ext/modul-studie/StructureDefinition/mii-pr-studie-researchsubject"


class StoreWriteError(RuntimeError):
    """The site store did not take the resources; the text names what it rejected and why."""


@dataclass(frozen=True)
class StudySubject:
    """A participant as the store knows them: the study, the pseudonym's domain and value, the site patient."""

    study_id: str
    pseudonym_system: str
    pseudonym: str
    patient_id: str

    def identifier(self) -> dict[str, Any]:
        return {"type": PSEUDONYM_TYPE, "system": self.pseudonym_system, "value": self.pseudonym}

    def reference(self) -> dict[str, Any]:
        return {"reference": f"Patient/{self.patient_id}", "identifier": self.identifier()}


def resource_id(*parts: str) -> str:
    """A FHIR id (at most 64 characters) that is the same for the same parts, and differs otherwise."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def research_subject(
    subject: StudySubject, arm: str, enrolled: str, consent_id: str | None, study_url: str
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ResearchSubject",
        "id": resource_id("ResearchSubject", subject.study_id, subject.pseudonym),
        "meta": {"profile": [_SUBJECT_PROFILE]},
        "identifier": [subject.identifier()],
        "status": "on-study",
        "period": {"start": enrolled},
        "study": {"reference": study_url, "display": subject.study_id},
        "individual": {"reference": f"Patient/{subject.patient_id}"},
        "assignedArm": arm,
    }
    if consent_id is not None:
        resource["consent"] = {"reference": f"Consent/{consent_id}"}
    return resource


def _items(items: Any) -> Iterator[Mapping[str, Any]]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping):
            yield item
            yield from _items(item.get("item"))
            for answer in item.get("answer", []) if isinstance(item.get("answer"), list) else []:
                if isinstance(answer, Mapping):
                    yield from _items(answer.get("item"))


@dataclass(frozen=True)
class _Extracted:
    codes: list[dict[str, Any]]
    unit: dict[str, Any] | None  # the item's questionnaire-unit coding (UCUM), for a number's Quantity


def _extracted(questionnaire: Mapping[str, Any]) -> dict[str, _Extracted]:
    """linkId -> codes and unit, for the items marked observationExtract = true."""
    marked = {}
    for item in _items(questionnaire.get("item")):
        extensions = [e for e in item.get("extension", []) if isinstance(e, Mapping)]
        if any(e.get("url") == OBSERVATION_EXTRACT and e.get("valueBoolean") is True for e in extensions):
            unit = next((e.get("valueCoding") for e in extensions if e.get("url") == UNIT), None)
            codes = [c for c in item.get("code", []) if isinstance(c, dict)]
            marked[str(item.get("linkId"))] = _Extracted(codes, unit if isinstance(unit, dict) else None)
    return marked


def _observation_value(answer: Mapping[str, Any], unit: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Observation.value[x] of an answer (R4 has no valueDecimal: a decimal is a Quantity)."""
    for key, value in answer.items():
        if key == "valueCoding":
            return {"valueCodeableConcept": {"coding": [value]}}
        if key == "valueDecimal" or (key == "valueInteger" and unit is not None):
            quantity: dict[str, Any] = {"value": value}
            if unit is not None:
                quantity |= {
                    "unit": unit.get("display") or unit.get("code"),
                    "system": unit.get("system"),
                    "code": unit.get("code"),
                }
            return {"valueQuantity": quantity}
        if key in (
            "valueInteger",
            "valueQuantity",
            "valueString",
            "valueBoolean",
            "valueDateTime",
            "valueTime",
        ):
            return {key: value}
        if key == "valueDate":
            return {"valueDateTime": value}
    return None


def observations_for(
    questionnaire: Mapping[str, Any], response: Mapping[str, Any], subject: StudySubject
) -> list[dict[str, Any]]:
    """The Observations of a completed response's observationExtract items (one per answer)."""
    marked = _extracted(questionnaire)
    observations = []
    for item in _items(response.get("item")):
        link_id = str(item.get("linkId"))
        if link_id not in marked or not marked[link_id].codes:
            continue
        for number, answer in enumerate(item.get("answer", [])):
            value = _observation_value(answer, marked[link_id].unit) if isinstance(answer, Mapping) else None
            if value is None:
                continue
            observation = {
                "resourceType": "Observation",
                "id": resource_id("Observation", str(response["id"]), link_id, str(number)),
                "status": "final",
                "code": {"coding": marked[link_id].codes},
                "subject": {"reference": f"Patient/{subject.patient_id}"},
                "derivedFrom": [{"reference": f"QuestionnaireResponse/{response['id']}"}],
                **value,
            }
            if "authored" in response:
                observation["effectiveDateTime"] = response["authored"]
            observations.append(observation)
    return observations


def patient_exists(store: Store, patient_id: str) -> bool:
    with store.snapshot() as snapshot:
        if "patient" not in snapshot.tables():
            return False
        row = snapshot.connection.execute(
            "SELECT count(*) FROM patient WHERE id = ?", [patient_id]
        ).fetchone()
        return bool(row and row[0])


def write_resources(store: Store, resources: list[dict[str, Any]], wait_seconds: float = 60) -> None:
    """One load of `resources` (PUT: the same ids replace); StoreWriteError naming each reject."""
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in resources
        ],
    }
    with tempfile.TemporaryDirectory(prefix="edc-") as folder:
        path = Path(folder) / "study-data.json"
        path.write_bytes(orjson.dumps(bundle))
        report = ingest(store, [path], workers=1, wait_seconds=wait_seconds)
    if report.rejects:
        reasons = "; ".join(f"{reject.location}: {reject.reason}" for reject in report.rejects)
        raise StoreWriteError(f"the site store rejected study data: {reasons}")
