"""The demo's prospective study: a small two-arm multicentre study with two forms, as the hub publishes it.

"HERZ-AKTIV" (a made-up trial of a cardiac rehabilitation programme): arms `programm` and `standard`,
randomised in blocks stratified by site and sex; visits baseline (day 0) and follow-up (day 90). The forms
are FHIR R4 Questionnaires with the features the EDC must honour:

- `aufnahme` (baseline): an item shown only for women (enableWhen), pack-years only for smokers, BMI
  calculated from height and weight (calculatedExpression, read-only), and height, weight and BMI
  extracted to Observations (observationExtract, LOINC codes);
- `vitalwerte` (repeating at both visits): heart rate and systolic blood pressure with ranges.

Every expression follows the forms' convention (`datenraum.studies.fhirpath`): the answer of linkId X is
`%resource.repeat(item).where(linkId='X').answer.value`.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "ARMS",
    "BASELINE",
    "FACTORS",
    "FORMS",
    "STUDY",
    "VITALS",
    "answer_of",
    "definition_json",
]

SDC = "http://hl7.org/fhir/uv/sdc/StructureDefinition/"
LOINC = "http://loinc.org"
BASE = "https://datenraum.example/fhir/Questionnaire/"


def answer_of(link_id: str) -> str:
    return f"%resource.repeat(item).where(linkId='{link_id}').answer.value"


def _extract() -> dict[str, Any]:
    return {"url": SDC + "sdc-questionnaire-observationExtract", "valueBoolean": True}


def _unit(code: str) -> dict[str, Any]:
    return {
        "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-unit",
        "valueCoding": {"system": "http://unitsofmeasure.org", "code": code, "display": code},
    }


def _bounds(low: float | int, high: float | int, kind: str) -> list[dict[str, Any]]:
    return [
        {"url": "http://hl7.org/fhir/StructureDefinition/minValue", f"value{kind}": low},
        {"url": "http://hl7.org/fhir/StructureDefinition/maxValue", f"value{kind}": high},
    ]


BMI = (
    f"iif(({answer_of('groesse')}).exists() and ({answer_of('gewicht')}).exists(), "
    f"(({answer_of('gewicht')}) / (({answer_of('groesse')}) / 100).power(2)).round(1), {{}})"
)

BASELINE: dict[str, Any] = {
    "resourceType": "Questionnaire",
    "url": BASE + "herz-aktiv-aufnahme",
    "version": "1",
    "name": "HerzAktivAufnahme",
    "title": "Aufnahme",
    "status": "active",
    "item": [
        {
            "linkId": "geschlecht",
            "text": "Geschlecht",
            "type": "choice",
            "required": True,
            "extension": [
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl",
                    "valueCodeableConcept": {
                        "coding": [
                            {
                                "system": "http://hl7.org/fhir/questionnaire-item-control",
                                "code": "radio-button",
                            }
                        ]
                    },
                }
            ],
            "answerOption": [
                {
                    "valueCoding": {
                        "system": "http://hl7.org/fhir/administrative-gender",
                        "code": "female",
                        "display": "weiblich",
                    }
                },
                {
                    "valueCoding": {
                        "system": "http://hl7.org/fhir/administrative-gender",
                        "code": "male",
                        "display": "männlich",
                    }
                },
            ],
        },
        {
            "linkId": "schwanger",
            "text": "Schwangerschaft",
            "type": "boolean",
            "enableWhen": [
                {
                    "question": "geschlecht",
                    "operator": "=",
                    "answerCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"},
                }
            ],
        },
        {
            "linkId": "groesse",
            "text": "Körpergröße (cm)",
            "type": "decimal",
            "required": True,
            "code": [{"system": LOINC, "code": "8302-2", "display": "Body height"}],
            "extension": [_extract(), _unit("cm"), *_bounds(100, 230, "Decimal")],
        },
        {
            "linkId": "gewicht",
            "text": "Körpergewicht (kg)",
            "type": "decimal",
            "required": True,
            "code": [{"system": LOINC, "code": "29463-7", "display": "Body weight"}],
            "extension": [_extract(), _unit("kg"), *_bounds(30, 250, "Decimal")],
        },
        {
            "linkId": "bmi",
            "text": "BMI (kg/m²)",
            "type": "decimal",
            "readOnly": True,
            "code": [{"system": LOINC, "code": "39156-5", "display": "Body mass index"}],
            "extension": [
                _extract(),
                {
                    "url": SDC + "sdc-questionnaire-calculatedExpression",
                    "valueExpression": {"language": "text/fhirpath", "expression": BMI},
                },
            ],
        },
        {"linkId": "raucher", "text": "Raucht", "type": "boolean"},
        {
            "linkId": "packungsjahre",
            "text": "Packungsjahre",
            "type": "integer",
            "enableWhen": [{"question": "raucher", "operator": "=", "answerBoolean": True}],
            "extension": _bounds(0, 150, "Integer"),
        },
    ],
}

VITALS: dict[str, Any] = {
    "resourceType": "Questionnaire",
    "url": BASE + "herz-aktiv-vitalwerte",
    "version": "1",
    "name": "HerzAktivVitalwerte",
    "title": "Vitalwerte",
    "status": "active",
    "item": [
        {
            "linkId": "herzfrequenz",
            "text": "Herzfrequenz (/min)",
            "type": "integer",
            "required": True,
            "code": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}],
            "extension": [_extract(), *_bounds(20, 250, "Integer")],
        },
        {
            "linkId": "systolisch",
            "text": "Blutdruck systolisch (mmHg)",
            "type": "integer",
            "extension": _bounds(50, 260, "Integer"),
        },
    ],
}

FORMS: tuple[dict[str, Any], ...] = (BASELINE, VITALS)
FACTORS: tuple[dict[str, Any], ...] = ({"name": "geschlecht", "levels": ["female", "male"]},)


def _visits() -> list[dict[str, Any]]:
    return [
        {
            "code": "baseline",
            "name": "Aufnahme",
            "day_offset": 0,
            "window_before": 0,
            "window_after": 7,
            "forms": [
                {"url": BASELINE["url"], "repeating": False},
                {"url": VITALS["url"], "repeating": True},
            ],
        },
        {
            "code": "followup",
            "name": "Nachuntersuchung",
            "day_offset": 90,
            "window_before": 14,
            "window_after": 14,
            "forms": [{"url": VITALS["url"], "repeating": True}],
        },
    ]


ARMS: tuple[dict[str, Any], ...] = (
    {"code": "programm", "name": "Rehabilitationsprogramm", "visits": _visits()},
    {"code": "standard", "name": "Standardversorgung", "visits": _visits()},
)

STUDY: dict[str, Any] = {
    "study_id": "herz-aktiv",
    "title": "HERZ-AKTIV: strukturierte Rehabilitation nach Myokardinfarkt",
    "acronym": "HERZ-AKTIV",
    "registry_id": "DRKS00099999",
    "ethics_vote": "Ethikkommission Demo 2026-101-f",
}


def definition_json(site: str, roster: list[dict[str, str]], version: int = 1) -> dict[str, Any]:
    """The study as the hub sends it to `site` (`datenraum.protocol.studies.StudyDefinition` JSON)."""
    return {
        **STUDY,
        "definition_version": version,
        "site": site,
        "recruitment_status": "recruiting",
        "eligibility": None,
        "arms": copy.deepcopy(list(ARMS)),
        "forms": [
            {"url": f["url"], "version": f["version"], "questionnaire": copy.deepcopy(f)} for f in FORMS
        ],
        "randomised": True,
        "factors": copy.deepcopy(list(FACTORS)),
        "roster": roster,
    }
