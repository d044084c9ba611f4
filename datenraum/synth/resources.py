"""FHIR R4 resources of the MII core data set, built as plain dicts for orjson.

Everything that does not vary between resources (profiles, categories, codings) is built once and shared
by reference: orjson serialises shared sub-objects like any others, and sharing avoids allocating the
same nested dicts millions of times. Nothing here mutates a resource after building it, which is what
makes the sharing safe.
"""

from __future__ import annotations

from typing import Any

from . import codes
from .codes import ATC, EDQM, ICD10GM, LOINC, OPS, PZN, SNOMED, UCUM, Drug, LabTest

Resource = dict[str, Any]

_MII = "https://www.medizininformatik-initiative.de/fhir"
_PATIENT_META = {"profile": [f"{_MII}/core/modul-person/StructureDefinition/Patient"]}
_ENCOUNTER_META = {"profile": [f"{_MII}/core/modul-fall/StructureDefinition/KontaktGesundheitseinrichtung"]}
_CONDITION_META = {"profile": [f"{_MII}/core/modul-diagnose/StructureDefinition/Diagnose"]}
_LAB_META = {"profile": [f"{_MII}/core/modul-labor/StructureDefinition/ObservationLab"]}
_PROCEDURE_META = {"profile": [f"{_MII}/core/modul-prozedur/StructureDefinition/Procedure"]}
_MEDICATION_META = {"profile": [f"{_MII}/core/modul-medikation/StructureDefinition/Medication"]}
_ADMINISTRATION_META = {
    "profile": [f"{_MII}/core/modul-medikation/StructureDefinition/MedicationAdministration"]
}
_STATEMENT_META = {"profile": [f"{_MII}/core/modul-medikation/StructureDefinition/MedicationStatement"]}
_CONSENT_META = {"profile": [f"{_MII}/modul-consent/StructureDefinition/mii-pr-consent-einwilligung"]}
_SPECIMEN_META = {"profile": [f"{_MII}/ext/modul-biobank/StructureDefinition/Specimen"]}

# The German base profile requires "other" to say which official entry it stands for (here "divers").
_GENDER_DIVERS = {
    "extension": [
        {
            "url": "http://fhir.de/StructureDefinition/gender-amtlich-de",
            "valueCoding": {
                "system": "http://fhir.de/CodeSystem/gender-amtlich-de",
                "code": "D",
                "display": "divers",
            },
        }
    ]
}
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_INPATIENT_CLASS = {"system": _ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
_OUTPATIENT_CLASS = {"system": _ACT_CODE, "code": "AMB", "display": "ambulatory"}
_CONTACT_LEVEL = {
    "coding": [{"system": "http://fhir.de/CodeSystem/Kontaktebene", "code": "einrichtungskontakt"}]
}
_INPATIENT_TYPE = [
    _CONTACT_LEVEL,
    {"coding": [{"system": "http://fhir.de/CodeSystem/kontaktart-de", "code": "normalstationaer"}]},
]
_OUTPATIENT_TYPE = [_CONTACT_LEVEL]
_VISIT_NUMBER_TYPE = {"coding": [{"system": _V2_0203, "code": "VN"}]}
_DEPARTMENTS = {
    key: {
        "coding": [
            {
                "system": "http://fhir.de/CodeSystem/dkgev/Fachabteilungsschluessel",
                "code": key,
                "display": name,
            }
        ]
    }
    for key, name in codes.DEPARTMENTS.items()
}


def _status(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ACTIVE = _status(_CLINICAL, "active")
RESOLVED = _status(_CLINICAL, "resolved")
_CONFIRMED = _status("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed")

_LAB_CATEGORY = [
    {
        "coding": [
            {"system": LOINC, "code": "26436-6", "display": "Laboratory studies (set)"},
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
                "display": "Laboratory",
            },
        ]
    }
]
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_HIGH = [{"coding": [{"system": _INTERPRETATION, "code": "H", "display": "High"}]}]
_LOW = [{"coding": [{"system": _INTERPRETATION, "code": "L", "display": "Low"}]}]
_LAB_CODES = {
    key: {"coding": [{"system": LOINC, "code": test.loinc, "display": test.display}]}
    for key, test in codes.LAB_TESTS.items()
}
_PCR_CODE = {
    "coding": [{"system": LOINC, "code": codes.SARS_COV_2_PCR[0], "display": codes.SARS_COV_2_PCR[1]}]
}
_DETECTED = {"coding": [{"system": SNOMED, "code": codes.DETECTED[0], "display": codes.DETECTED[1]}]}
_NOT_DETECTED = {
    "coding": [{"system": SNOMED, "code": codes.NOT_DETECTED[0], "display": codes.NOT_DETECTED[1]}]
}

_PROCEDURE_CATEGORIES = {
    chapter: {"coding": [{"system": SNOMED, "code": code, "display": display}]}
    for chapter, (code, display) in codes.OPS_CATEGORY.items()
}

_ADMIN_CATEGORY = "http://terminology.hl7.org/CodeSystem/medication-admin-category"
_INPATIENT_ADMINISTRATION = {
    "coding": [{"system": _ADMIN_CATEGORY, "code": "inpatient", "display": "Inpatient"}]
}
_OUTPATIENT_ADMINISTRATION = {
    "coding": [{"system": _ADMIN_CATEGORY, "code": "outpatient", "display": "Outpatient"}]
}
#: Human-readable units for the UCUM codes used in dosages.
_UNIT_NAMES = {"mg": "mg", "g": "g", "ug": "µg", "[IU]": "I.E.", "{Hub}": "Hub"}

_CONSENT_CATEGORY = [
    {"coding": [{"system": LOINC, "code": "57016-8"}]},
    {
        "coding": [
            {
                "system": f"{_MII}/modul-consent/CodeSystem/mii-cs-consent-version-modules",
                "code": "2.16.840.1.113883.3.1937.777.24.2.184",
            }
        ]
    },
]
_CONSENT_SCOPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]
}
_CONSENT_POLICY = [{"uri": codes.CONSENT_POLICY}]
_CONSENT_CODES = [
    [{"coding": [{"system": codes.CONSENT_PROVISION_SYSTEM, "code": code, "display": display}]}]
    for code, display in codes.CONSENT_PROVISIONS
]

BLOOD_TYPES = {
    code: {"coding": [{"system": SNOMED, "code": code, "display": d}]} for code, d, _ in codes.BLOOD_SPECIMENS
}
TISSUE_TYPE = {
    "coding": [{"system": SNOMED, "code": codes.TISSUE_SPECIMEN[0], "display": codes.TISSUE_SPECIMEN[1]}]
}
VENIPUNCTURE_SITES = [
    {"coding": [{"system": SNOMED, "code": c, "display": d}]} for c, d in codes.VENIPUNCTURE_SITES
]
TUMOUR_SITES = {
    key: {"coding": [{"system": SNOMED, "code": c, "display": d}]}
    for key, (c, d) in codes.TUMOUR_SITES.items()
}
_SPECIMEN_DIAGNOSIS = f"{_MII}/ext/modul-biobank/StructureDefinition/Diagnose"

# Codings of versioned catalogues depend on the year of use, so they are built on first use and cached.
_icd_cache: dict[tuple[str, str, str], dict[str, Any]] = {}
_ops_cache: dict[tuple[str, str], dict[str, Any]] = {}


def icd_code(code: str, display: str, year: str) -> dict[str, Any]:
    """Return the Condition.code for an ICD-10-GM code in the catalogue version of ``year``."""
    key = (code, display, year)  # the display too: the same code is written with other texts (waves.py)
    concept = _icd_cache.get(key)
    if concept is None:
        concept = {"coding": [{"system": ICD10GM, "version": year, "code": code, "display": display}]}
        _icd_cache[key] = concept
    return concept


def ops_code(code: str, year: str) -> dict[str, Any]:
    """Return the Procedure.code for an OPS code in the catalogue version of ``year``."""
    key = (code, year)
    concept = _ops_cache.get(key)
    if concept is None:
        coding = {"system": OPS, "version": year, "code": code, "display": codes.OPS_DISPLAYS[code]}
        concept = {"coding": [coding]}
        _ops_cache[key] = concept
    return concept


def reference(resource_type: str, resource_id: str) -> dict[str, str]:
    """Return a literal reference ``{"reference": "Type/id"}``."""
    return {"reference": f"{resource_type}/{resource_id}"}


def patient(
    patient_id: str,
    identifier: list[dict[str, Any]],
    gender: str,
    birth_date: str,
    deceased: tuple[str, bool | str] | None,
) -> Resource:
    """Build a Patient of the MII person module; ``deceased`` is ``(element name, value)`` if known."""
    resource: Resource = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": _PATIENT_META,
        "identifier": identifier,
        "gender": gender,
        "birthDate": birth_date,
    }
    if gender == "other":
        resource["_gender"] = _GENDER_DIVERS
    if deceased is not None:
        resource[deceased[0]] = deceased[1]
    return resource


def encounter(
    encounter_id: str,
    identifier_system: str,
    subject: dict[str, str],
    inpatient: bool,
    start: str,
    end: str,
    department: str,
) -> Resource:
    """Build a finished Encounter (KontaktGesundheitseinrichtung) at facility level."""
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": _ENCOUNTER_META,
        "identifier": [{"type": _VISIT_NUMBER_TYPE, "system": identifier_system, "value": encounter_id}],
        "status": "finished",
        "class": _INPATIENT_CLASS if inpatient else _OUTPATIENT_CLASS,
        "type": _INPATIENT_TYPE if inpatient else _OUTPATIENT_TYPE,
        "serviceType": _DEPARTMENTS[department],
        "subject": subject,
        "period": {"start": start, "end": end},
    }


def condition(
    condition_id: str,
    subject: dict[str, str],
    encounter_ref: dict[str, str],
    code: dict[str, Any],
    clinical_status: dict[str, Any],
    recorded: str,
    onset: str | None,
) -> Resource:
    """Build a Condition of the MII diagnosis module."""
    resource: Resource = {
        "resourceType": "Condition",
        "id": condition_id,
        "meta": _CONDITION_META,
        "clinicalStatus": clinical_status,
        "verificationStatus": _CONFIRMED,
        "code": code,
        "subject": subject,
        "encounter": encounter_ref,
    }
    if onset is not None:
        resource["onsetDateTime"] = onset
    resource["recordedDate"] = recorded
    return resource


def lab_observation(
    observation_id: str,
    subject: dict[str, str],
    encounter_ref: dict[str, str],
    effective: str,
    test: LabTest,
    value: float,
    female: bool,
) -> Resource:
    """Build a quantitative ObservationLab; ``value`` is rounded to the test's reporting precision."""
    rounded: float = round(value, test.decimals) if test.decimals else round(value)
    resource: Resource = {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": _LAB_META,
        "status": "final",
        "category": _LAB_CATEGORY,
        "code": _LAB_CODES[test.key],
        "subject": subject,
        "encounter": encounter_ref,
        "effectiveDateTime": effective,
        "valueQuantity": {"value": rounded, "unit": test.unit, "system": UCUM, "code": test.ucum},
    }
    low = test.low_female if female and test.low_female is not None else test.low
    high = test.high_female if female and test.high_female is not None else test.high
    # Laboratory systems flag abnormal results only; normal ones carry no interpretation.
    if rounded > high:
        resource["interpretation"] = _HIGH
    elif rounded < low:
        resource["interpretation"] = _LOW
    return resource


def pcr_observation(
    observation_id: str,
    subject: dict[str, str],
    encounter_ref: dict[str, str],
    effective: str,
    detected: bool,
) -> Resource:
    """Build a qualitative SARS-CoV-2 PCR ObservationLab."""
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": _LAB_META,
        "status": "final",
        "category": _LAB_CATEGORY,
        "code": _PCR_CODE,
        "subject": subject,
        "encounter": encounter_ref,
        "effectiveDateTime": effective,
        "valueCodeableConcept": _DETECTED if detected else _NOT_DETECTED,
    }


def procedure(
    procedure_id: str,
    subject: dict[str, str],
    encounter_ref: dict[str, str],
    ops: str,
    year: str,
    start: str,
    end: str | None,
) -> Resource:
    """Build a Procedure coded in OPS; with ``end`` it is documented as a period, else as an instant."""
    resource: Resource = {
        "resourceType": "Procedure",
        "id": procedure_id,
        "meta": _PROCEDURE_META,
        "status": "completed",
        "category": _PROCEDURE_CATEGORIES[ops[0]],
        "code": ops_code(ops, year),
        "subject": subject,
        "encounter": encounter_ref,
    }
    if end is None:
        resource["performedDateTime"] = start
    else:
        resource["performedPeriod"] = {"start": start, "end": end}
    return resource


def medication(drug: Drug) -> Resource:
    """Build the catalogue Medication for ``drug``, identified by PZN and ATC code."""
    resource: Resource = {
        "resourceType": "Medication",
        "id": medication_id(drug.atc),
        "meta": _MEDICATION_META,
        "code": {
            "coding": [
                {"system": PZN, "code": drug.pzn, "display": drug.product},
                {"system": ATC, "version": "2024", "code": drug.atc, "display": drug.name},
            ],
            "text": drug.product,
        },
        "status": "active",
    }
    if drug.form is not None:
        resource["form"] = {"coding": [{"system": EDQM, "code": drug.form[0], "display": drug.form[1]}]}
    return resource


def medication_id(atc: str) -> str:
    """Return the id of the catalogue Medication of an ATC code (the same at every site)."""
    return f"med-{atc}"


_MEDICATION_REFS = {atc: reference("Medication", medication_id(atc)) for atc in codes.DRUGS}
_DOSES = {
    atc: {"dose": {"value": d.dose, "unit": _UNIT_NAMES[d.dose_unit], "system": UCUM, "code": d.dose_unit}}
    for atc, d in codes.DRUGS.items()
}
_DOSAGE_TEXTS = {atc: [{"text": d.dosage_text}] for atc, d in codes.DRUGS.items()}


def medication_administration(
    administration_id: str,
    subject: dict[str, str],
    encounter_ref: dict[str, str],
    atc: str,
    inpatient: bool,
    start: str,
    end: str | None,
    part_of: dict[str, str] | None,
) -> Resource:
    """Build a completed MedicationAdministration: a single dose at ``start`` or a course until ``end``."""
    resource: Resource = {
        "resourceType": "MedicationAdministration",
        "id": administration_id,
        "meta": _ADMINISTRATION_META,
        "status": "completed",
        "category": _INPATIENT_ADMINISTRATION if inpatient else _OUTPATIENT_ADMINISTRATION,
        "medicationReference": _MEDICATION_REFS[atc],
        "subject": subject,
        "context": encounter_ref,
    }
    if part_of is not None:
        resource["partOf"] = [part_of]
    if end is None:
        resource["effectiveDateTime"] = start
    else:
        resource["effectivePeriod"] = {"start": start, "end": end}
    resource["dosage"] = _DOSES[atc]
    return resource


def medication_statement(
    statement_id: str,
    subject: dict[str, str],
    encounter_ref: dict[str, str],
    atc: str,
    start: str,
    end: str | None,
    asserted: str,
) -> Resource:
    """Build a MedicationStatement of long-term medication taken at admission (active unless ``end``)."""
    return {
        "resourceType": "MedicationStatement",
        "id": statement_id,
        "meta": _STATEMENT_META,
        "status": "active" if end is None else "completed",
        "medicationReference": _MEDICATION_REFS[atc],
        "subject": subject,
        "context": encounter_ref,
        "effectivePeriod": {"start": start} if end is None else {"start": start, "end": end},
        "dateAsserted": asserted,
        "dosage": _DOSAGE_TEXTS[atc],
    }


def consent(
    consent_id: str,
    patient_ref: dict[str, str],
    signed: str,
    start: str,
    end: str,
    permit: bool,
) -> Resource:
    """Build an MII broad consent that permits (or refuses) every module from ``start`` to ``end``.

    As in the MII profile, the top-level provision denies everything and the nested provisions grant
    (or, for a refusal, explicitly deny) each module, so a consumer must evaluate the nested ones.
    """
    period = {"start": start, "end": end}
    kind = "permit" if permit else "deny"
    return {
        "resourceType": "Consent",
        "id": consent_id,
        "meta": _CONSENT_META,
        "status": "active",
        "scope": _CONSENT_SCOPE,
        "category": _CONSENT_CATEGORY,
        "patient": patient_ref,
        "dateTime": signed,
        "policy": _CONSENT_POLICY,
        "provision": {
            "type": "deny",
            "period": period,
            "provision": [{"type": kind, "period": period, "code": code} for code in _CONSENT_CODES],
        },
    }


def specimen(
    specimen_id: str,
    identifier_system: str,
    subject: dict[str, str],
    collected: str,
    available: bool,
    specimen_type: dict[str, Any],
    body_site: dict[str, Any] | None,
    diagnosis: dict[str, str] | None,
) -> Resource:
    """Build a biobank Specimen; ``diagnosis`` references the Condition the sample was taken for."""
    collection: dict[str, Any] = {"collectedDateTime": collected}
    if body_site is not None:
        collection["bodySite"] = body_site
    resource: Resource = {
        "resourceType": "Specimen",
        "id": specimen_id,
        "meta": _SPECIMEN_META,
        "identifier": [{"system": identifier_system, "value": specimen_id}],
        "status": "available" if available else "unavailable",
        "type": specimen_type,
        "subject": subject,
        "collection": collection,
    }
    if diagnosis is not None:
        resource["extension"] = [{"url": _SPECIMEN_DIAGNOSIS, "valueReference": diagnosis}]
    return resource
