"""Builders for the spec tests: tiny FHIR resources and structured queries, spelling out only what matters.

Resources are plain dicts as a site would send them (MII KDS shapes, trimmed to the elements a
criterion reads). Every builder gives its resource a fresh id unless one is passed, so that a test
only names the ids it refers to. Times are given as a string (a dateTime) or as a (start, end) pair (a
Period; None for a missing end).
"""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    Unit,
)

ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
OPS = "http://fhir.de/CodeSystem/bfarm/ops"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
PROVISION = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
COMBINED_CONSENT = "fdpg.consent.combined"
ICD_O_3 = "urn:oid:2.16.840.1.113883.6.43.1"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
KONTAKTEBENE = "http://fhir.de/CodeSystem/Kontaktebene"
KONTAKTART = "http://fhir.de/CodeSystem/kontaktart-de"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
DIAGNOSESICHERHEIT = "https://fhir.kbv.de/CodeSystem/KBV_CS_SFHIR_ICD_DIAGNOSESICHERHEIT"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ROUTE = "http://standardterms.edqm.eu"
BIOBANK_DIAGNOSE = (
    "https://www.medizininformatik-initiative.de/fhir/ext/modul-biobank/StructureDefinition/Diagnose"
)
CERTAINTY_EXTENSION = "http://fhir.de/StructureDefinition/icd-10-gm-diagnosesicherheit"

# Provision codes of the MII broad consent (codes of the system PROVISION, an OID without "urn:oid:").
PROVISION_CODE = "2.16.840.1.113883.3.1937.777.24.5.3"
MDAT_STORE = f"{PROVISION_CODE}.8"  # MDAT wissenschaftlich nutzen
INSURANCE = f"{PROVISION_CODE}.10"  # KKDAT retrospektiv übertragen, speichern, nutzen

_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def ref(resource_type: str, resource_id: str) -> dict:
    return {"reference": f"{resource_type}/{resource_id}"}


def coding(system: str, code: str, **extra: Any) -> dict:
    return {"system": system, "code": code, **extra}


def concept(*codings: dict) -> dict:
    return {"coding": list(codings)}


def _time(prefix: str, value: str | tuple | None) -> dict:
    """`onset="2020-01-01"` -> onsetDateTime; `onset=("2020-01-01", "2020-02-01")` -> onsetPeriod."""
    if value is None:
        return {}
    if isinstance(value, tuple):
        start, end = value
        period = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
        return {f"{prefix}Period": period}
    return {f"{prefix}DateTime": value}


# --- resources -------------------------------------------------------------------------------------


def patient(
    resource_id: str, gender: str | None = "female", birth_date: str | None = "1970-05-01", **extra
) -> dict:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": resource_id}
    if gender is not None:
        resource["gender"] = gender
    if birth_date is not None:
        resource["birthDate"] = birth_date
    return {**resource, **extra}


def condition(
    patient_id: str,
    icd_code: str | None = "E11.9",
    *,
    onset: str | tuple | None = "2020-03-01",
    recorded: str | None = None,
    codings: list[dict] | None = None,
    id: str | None = None,
    **extra: Any,
) -> dict:
    """A Diagnose: ICD-10-GM `icd_code` (or the given codings), onset as dateTime or Period."""
    if codings is None:
        codings = [coding(ICD10GM, icd_code, version="2024")]
    resource = {
        "resourceType": "Condition",
        "id": id or _id("condition"),
        "subject": ref("Patient", patient_id),
        "code": {"coding": codings},
        **_time("onset", onset),
    }
    if recorded is not None:
        resource["recordedDate"] = recorded
    return {**resource, **extra}


def procedure(
    patient_id: str,
    ops_code: str = "5-820.00",
    *,
    performed: str | tuple | None = "2020-03-01",
    category: str | None = None,
    status: str = "completed",
    **extra: Any,
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": _id("procedure"),
        "status": status,
        "subject": ref("Patient", patient_id),
        "code": concept(coding(OPS, ops_code, version="2024")),
        **_time("performed", performed),
    }
    if category is not None:
        resource["category"] = concept(coding(SNOMED, category))
    return {**resource, **extra}


def lab(
    patient_id: str,
    loinc: str,
    value: float | None = None,
    unit: str | None = None,
    *,
    at: str | tuple | None = "2020-03-01T10:00:00+01:00",
    status: str = "final",
    **extra: Any,
) -> dict:
    """A Laboruntersuchung with a quantity value (`unit` is the UCUM code; None: a value without unit)."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _id("lab"),
        "status": status,
        "code": concept(coding(LOINC, loinc)),
        "subject": ref("Patient", patient_id),
        **_time("effective", at),
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity.update(unit=unit, system=UCUM, code=unit)
        resource["valueQuantity"] = quantity
    return {**resource, **extra}


def medication(resource_id: str, atc_code: str) -> dict:
    return {"resourceType": "Medication", "id": resource_id, "code": concept(coding(ATC, atc_code))}


def _medication_use(
    resource_type: str, patient_id: str, atc_code: str | None, medication_id: str | None, extra: dict
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": resource_type,
        "id": _id(resource_type.lower()),
        "subject": ref("Patient", patient_id),
    }
    if medication_id is not None:
        resource["medicationReference"] = ref("Medication", medication_id)
    else:
        resource["medicationCodeableConcept"] = concept(coding(ATC, atc_code))
    return {**resource, **extra}


def medication_administration(
    patient_id: str,
    atc_code: str | None = None,
    *,
    medication_id: str | None = None,
    effective: str | tuple | None = "2020-03-01T08:00:00Z",
    route: str | None = None,
    status: str = "completed",
) -> dict:
    """A Medikamentenverabreichung of an inline ATC code, or of the Medication `medication_id`."""
    extra: dict[str, Any] = {"status": status, **_time("effective", effective)}
    if route is not None:
        extra["dosage"] = {"route": concept(coding(ROUTE, route))}
    return _medication_use("MedicationAdministration", patient_id, atc_code, medication_id, extra)


def medication_statement(
    patient_id: str,
    atc_code: str | None = None,
    *,
    medication_id: str | None = None,
    effective: str | tuple | None = "2020-03-01",
    route: str | None = None,
) -> dict:
    extra: dict[str, Any] = {"status": "active", **_time("effective", effective)}
    if route is not None:
        extra["dosage"] = [{"route": concept(coding(ROUTE, route))}]
    return _medication_use("MedicationStatement", patient_id, atc_code, medication_id, extra)


def medication_request(
    patient_id: str,
    atc_code: str | None = None,
    *,
    medication_id: str | None = None,
    authored: str | None = "2020-03-01",
    route: str | None = None,
) -> dict:
    extra: dict[str, Any] = {"status": "active", "intent": "order"}
    if authored is not None:
        extra["authoredOn"] = authored
    if route is not None:
        extra["dosageInstruction"] = [{"route": concept(coding(ROUTE, route))}]
    return _medication_use("MedicationRequest", patient_id, atc_code, medication_id, extra)


def specimen(
    patient_id: str,
    type_code: str = "119364003",
    *,
    collected: str | tuple | None = "2020-03-01",
    diagnosis_id: str | None = None,
    body_site: str | None = None,
    status: str = "available",
) -> dict:
    """A biobank Specimen (SNOMED type), optionally pointing to its Diagnose via the MII extension."""
    resource: dict[str, Any] = {
        "resourceType": "Specimen",
        "id": _id("specimen"),
        "status": status,
        "type": concept(coding(SNOMED, type_code)),
        "subject": ref("Patient", patient_id),
    }
    collection = _time("collected", collected)
    if body_site is not None:
        collection["bodySite"] = concept(coding(ICD_O_3, body_site))
    if collection:
        resource["collection"] = collection
    if diagnosis_id is not None:
        resource["extension"] = [{"url": BIOBANK_DIAGNOSE, "valueReference": ref("Condition", diagnosis_id)}]
    return resource


def encounter(
    patient_id: str,
    encounter_class: str = "IMP",
    *,
    period: tuple | None = ("2020-03-01", "2020-03-05"),
    level: str | None = "einrichtungskontakt",
    kind: str | None = None,
) -> dict:
    """A Fall: v3 ActCode class, Kontaktebene (and Kontaktart) as Encounter.type, in that order."""
    types = []
    if level is not None:
        types.append(concept(coding(KONTAKTEBENE, level)))
    if kind is not None:
        types.append(concept(coding(KONTAKTART, kind)))
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": _id("encounter"),
        "status": "finished",
        "class": coding(ACT_CODE, encounter_class),
        "subject": ref("Patient", patient_id),
    }
    if types:
        resource["type"] = types
    if period is not None:
        resource["period"] = {k: v for k, v in zip(("start", "end"), period, strict=True) if v is not None}
    return resource


def genetic_report(
    patient_id: str, loinc: str = "81247-9", *, issued: str | None = "2020-03-01T12:00:00Z"
) -> dict:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": _id("report"),
        "status": "final",
        "code": concept(coding(LOINC, loinc)),
        "subject": ref("Patient", patient_id),
    }
    if issued is not None:
        resource["issued"] = issued
    return resource


def consent(
    patient_id: str,
    *codes: str,
    decision: str = "permit",
    date: str | None = "2020-01-01",
    period: tuple = ("2020-01-01", "2050-01-01"),
    status: str = "active",
) -> dict:
    """An MII broad consent: one nested provision per code, all with `decision` and `period`."""
    start, end = period
    provision_period = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": _id("consent"),
        "status": status,
        "scope": concept(coding("http://terminology.hl7.org/CodeSystem/consentscope", "research")),
        "category": [concept(coding(LOINC, "57016-8"))],
        "patient": ref("Patient", patient_id),
        "policy": [{"uri": "urn:oid:2.16.840.1.113883.3.1937.777.24.2.1790"}],
        "provision": {
            "type": "deny",
            "period": provision_period,
            "provision": [
                {"type": decision, "period": provision_period, "code": [concept(coding(PROVISION, code))]}
                for code in codes
            ],
        },
    }
    if date is not None:
        resource["dateTime"] = date
    return resource


# --- queries ---------------------------------------------------------------------------------------


def context(name: str) -> TermCode:
    return TermCode("fdpg.mii.cds", name, name)


def icd(code: str) -> TermCode:
    return TermCode(ICD10GM, code, version="2024")


def ops(code: str) -> TermCode:
    return TermCode(OPS, code)


def atc(code: str) -> TermCode:
    return TermCode(ATC, code)


def loinc(code: str) -> TermCode:
    return TermCode(LOINC, code)


def snomed(code: str) -> TermCode:
    return TermCode(SNOMED, code)


def criterion(
    context_name: str,
    *term_codes: TermCode,
    value: Any = None,
    attributes: tuple[AttributeFilter, ...] | list[AttributeFilter] = (),
    time: TimeRestriction | None = None,
    negated: bool = False,
) -> Criterion:
    return Criterion(context(context_name), tuple(term_codes), value, tuple(attributes), time, negated)


def diagnosis(*codes: str, **options: Any) -> Criterion:
    return criterion("Diagnose", *(icd(c) for c in codes), **options)


def lab_test(code: str, value: Any = None, **options: Any) -> Criterion:
    return criterion("Laboruntersuchung", loinc(code), value=value, **options)


def comparator(op: str, value: float, unit: str | None = None) -> ComparatorFilter:
    return ComparatorFilter(op, value, Unit(unit) if unit is not None else None)


def between(low: float, high: float, unit: str | None = None) -> RangeFilter:
    return RangeFilter(low, high, Unit(unit) if unit is not None else None)


def concepts(*term_codes: TermCode) -> ConceptFilter:
    return ConceptFilter(tuple(term_codes))


def attribute(code: str, value_filter: Any) -> AttributeFilter:
    return AttributeFilter(TermCode("mii.abide", code, code), value_filter)


def references(code: str, *criteria: Criterion) -> AttributeFilter:
    return AttributeFilter(TermCode("mii.abide", code, code), ReferenceFilter(tuple(criteria)))


def during(after: str | None = None, before: str | None = None) -> TimeRestriction:
    return TimeRestriction(
        dt.date.fromisoformat(after) if after else None, dt.date.fromisoformat(before) if before else None
    )


AGE = snomed("424144002")
GENDER = snomed("263495000")
DECEASED = snomed("419099009")


def age(value_filter: Any, **options: Any) -> Criterion:
    return criterion("Patient", AGE, value=value_filter, **options)


def gender(*codes: str) -> Criterion:
    return criterion(
        "Patient",
        GENDER,
        value=concepts(*(TermCode("http://hl7.org/fhir/administrative-gender", c) for c in codes)),
    )


def deceased(**options: Any) -> Criterion:
    return criterion("Patient", DECEASED, **options)


def consented(*codes: str, **options: Any) -> Criterion:
    return criterion("Einwilligung", *(TermCode(PROVISION, c) for c in codes), **options)


def consented_combined(code: str, **options: Any) -> Criterion:
    return criterion("Einwilligung", TermCode(COMBINED_CONSENT, code), **options)


def query(*inclusion: list[Criterion] | Criterion, exclude: tuple | list = ()) -> StructuredQuery:
    """`query(a, [b, c])` is a AND (b OR c); `exclude=[[d, e], f]` excludes (d AND e) OR f."""

    def groups(items: Any) -> tuple[tuple[Criterion, ...], ...]:
        return tuple(tuple(item) if isinstance(item, list | tuple) else (item,) for item in items)

    return StructuredQuery(groups(inclusion), groups(exclude))


def negate(c: Criterion) -> Criterion:
    return Criterion(c.context, c.term_codes, c.value_filter, c.attribute_filters, c.time_restriction, True)
