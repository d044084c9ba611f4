"""Contract 2, attribute filters: every attribute of the mapping, each on the same resource as the code.

A concept attribute reads the *first* coding of its element; where the mapping has a system column a
stored system must equal the concept's (a coding without system matches on its code). The Specimen's
festgestellteDiagnose follows the MII biobank extension to a Condition that must meet one of the
referenced criteria.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from datenraum.query.model import TermCode

from .builders import (
    ACT_CODE,
    CERTAINTY_EXTENSION,
    CLINICAL_STATUS,
    DIAGNOSESICHERHEIT,
    ICD10GM,
    ICD_O_3,
    INTERPRETATION,
    KONTAKTEBENE,
    ROUTE,
    SNOMED,
    VERIFICATION_STATUS,
    atc,
    attribute,
    coding,
    comparator,
    concept,
    concepts,
    condition,
    criterion,
    diagnosis,
    during,
    encounter,
    lab,
    lab_test,
    loinc,
    medication_administration,
    medication_request,
    medication_statement,
    ops,
    patient,
    procedure,
    query,
    references,
    snomed,
    specimen,
)

EVENT_STATUS = "http://hl7.org/fhir/event-status"
OBSERVATION_STATUS = "http://hl7.org/fhir/observation-status"
SPECIMEN_STATUS = "http://hl7.org/fhir/specimen-status"


def _certainty(code: str) -> list[dict]:
    extension = [{"url": CERTAINTY_EXTENSION, "valueCoding": coding(DIAGNOSESICHERHEIT, code)}]
    return [coding(ICD10GM, "E11.9", extension=extension)]


# (context, term code, builder of a resource whose attribute has the given code, attribute, system)
ATTRIBUTES: dict[str, tuple[str, TermCode, Callable[[str, str], dict], str, str]] = {
    "Diagnose clinicalStatus": (
        "Diagnose", TermCode(ICD10GM, "E11"),
        lambda p, c: condition(p, "E11.9", clinicalStatus=concept(coding(CLINICAL_STATUS, c))),
        "clinicalStatus", CLINICAL_STATUS,
    ),
    "Diagnose verificationStatus": (
        "Diagnose", TermCode(ICD10GM, "E11"),
        lambda p, c: condition(p, "E11.9", verificationStatus=concept(coding(VERIFICATION_STATUS, c))),
        "verificationStatus", VERIFICATION_STATUS,
    ),
    "Diagnose diagnosesicherheit": (
        "Diagnose", TermCode(ICD10GM, "E11"),
        lambda p, c: condition(p, codings=_certainty(c)),
        "diagnosesicherheit", DIAGNOSESICHERHEIT,
    ),
    "Diagnose bodySite": (
        "Diagnose", TermCode(ICD10GM, "E11"),
        lambda p, c: condition(p, "E11.9", bodySite=[concept(coding(SNOMED, c))]),
        "bodySite", SNOMED,
    ),
    "Diagnose severity": (
        "Diagnose", TermCode(ICD10GM, "E11"),
        lambda p, c: condition(p, "E11.9", severity=concept(coding(SNOMED, c))),
        "severity", SNOMED,
    ),
    "Procedure bodySite": (
        "Procedure", ops("5-820"),
        lambda p, c: procedure(p, "5-820.00", bodySite=[concept(coding(SNOMED, c))]),
        "bodySite", SNOMED,
    ),
    "Procedure status": (
        "Procedure", ops("5-820"),
        lambda p, c: procedure(p, "5-820.00", status=c),
        "status", EVENT_STATUS,
    ),
    "Laboruntersuchung interpretation": (
        "Laboruntersuchung", loinc("4548-4"),
        lambda p, c: lab(p, "4548-4", 7.0, "%", interpretation=[concept(coding(INTERPRETATION, c))]),
        "interpretation", INTERPRETATION,
    ),
    "Laboruntersuchung status": (
        "Laboruntersuchung", loinc("4548-4"),
        lambda p, c: lab(p, "4548-4", 7.0, "%", status=c),
        "status", OBSERVATION_STATUS,
    ),
    "Medikamentenverabreichung route": (
        "Medikamentenverabreichung", atc("A10BA02"),
        lambda p, c: medication_administration(p, "A10BA02", route=c),
        "route", ROUTE,
    ),
    "Medikamentenverordnung route": (
        "Medikamentenverordnung", atc("A10BA02"),
        lambda p, c: medication_statement(p, "A10BA02", route=c),
        "route", ROUTE,
    ),
    "Medikamentenanordnung route": (
        "Medikamentenanordnung", atc("A10BA02"),
        lambda p, c: medication_request(p, "A10BA02", route=c),
        "route", ROUTE,
    ),
    "Specimen icd-o-3": (
        "Specimen", snomed("119364003"),
        lambda p, c: specimen(p, "119364003", body_site=c),
        "icd-o-3", ICD_O_3,
    ),
    "Specimen bodySite": (
        "Specimen", snomed("119364003"),
        lambda p, c: specimen(p, "119364003", body_site=c),
        "bodySite", ICD_O_3,
    ),
    "Specimen status": (
        "Specimen", snomed("119364003"),
        lambda p, c: specimen(p, "119364003", status=c),
        "status", SPECIMEN_STATUS,
    ),
    "Fall Kontaktebene": (
        "Fall", TermCode(ACT_CODE, "IMP"),
        lambda p, c: encounter(p, "IMP", level=c),
        "Kontaktebene", KONTAKTEBENE,
    ),
}  # fmt: skip

# Two codes of each attribute: the one the filter selects, and another.
CODES = {
    "clinicalStatus": ("active", "resolved"),
    "verificationStatus": ("confirmed", "refuted"),
    "diagnosesicherheit": ("G", "V"),
    "bodySite": ("368209003", "368208006"),
    "severity": ("24484000", "6736007"),
    "status": ("completed", "in-progress"),
    "interpretation": ("H", "L"),
    "route": ("20045000", "20053000"),
    "icd-o-3": ("C50.9", "C34.1"),
    "Kontaktebene": ("einrichtungskontakt", "abteilungskontakt"),
}
CODES_BY_CASE = {
    "Laboruntersuchung status": ("final", "preliminary"),
    "Specimen status": ("available", "unavailable"),
    "Specimen bodySite": ("C50.9", "C34.1"),
}


@pytest.mark.parametrize("case", sorted(ATTRIBUTES))
def test_a_concept_attribute_filter_selects_resources_by_the_attributes_code(spec_test, case):
    context_name, term, build, name, system = ATTRIBUTES[case]
    wanted, other = CODES_BY_CASE.get(case, CODES[name])
    spec_test(
        [
            [patient("p1"), build("p1", wanted)],
            [patient("p2"), build("p2", other)],
            [patient("p3"), build("p3", other), build("p3", wanted)],
        ],
        query(
            criterion(context_name, term, attributes=[attribute(name, concepts(TermCode(system, wanted)))])
        ),
        {"p1", "p3"},
    )


def test_an_attribute_filter_with_several_concepts_matches_any(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", clinicalStatus=concept(coding(CLINICAL_STATUS, "active")))],
            [patient("p2"), condition("p2", clinicalStatus=concept(coding(CLINICAL_STATUS, "recurrence")))],
            [patient("p3"), condition("p3", clinicalStatus=concept(coding(CLINICAL_STATUS, "resolved")))],
        ],
        query(
            diagnosis(
                "E11",
                attributes=[
                    attribute(
                        "clinicalStatus",
                        concepts(
                            TermCode(CLINICAL_STATUS, "active"), TermCode(CLINICAL_STATUS, "recurrence")
                        ),
                    )
                ],
            )
        ),
        {"p1", "p2"},
    )


def test_an_attribute_filter_reads_only_the_first_coding_of_its_element(spec_test):
    status = concept(coding(CLINICAL_STATUS, "resolved"), coding(CLINICAL_STATUS, "active"))
    spec_test(
        [
            [patient("p1"), condition("p1", clinicalStatus=status)],
            [patient("p2"), condition("p2", clinicalStatus=concept(coding(CLINICAL_STATUS, "active")))],
        ],
        query(
            diagnosis(
                "E11", attributes=[attribute("clinicalStatus", concepts(TermCode(CLINICAL_STATUS, "active")))]
            )
        ),
        {"p2"},
    )


def test_with_a_system_column_the_stored_system_must_match_where_there_is_one(spec_test):
    def condition_at(patient_id: str, body_site: dict) -> dict:
        return condition(patient_id, bodySite=[concept(body_site)])

    spec_test(
        [
            [patient("same"), condition_at("same", coding(SNOMED, "368209003"))],
            [patient("other"), condition_at("other", coding("urn:other-body-sites", "368209003"))],
            [patient("none"), condition_at("none", {"code": "368209003"})],
        ],
        query(diagnosis("E11", attributes=[attribute("bodySite", concepts(TermCode(SNOMED, "368209003")))])),
        {"same", "none"},
    )


def test_without_a_system_column_only_the_code_of_an_attribute_is_compared(spec_test):
    # Diagnose clinicalStatus has no system column in the mapping.
    spec_test(
        [[patient("p1"), condition("p1", clinicalStatus=concept(coding("urn:local-status", "active")))]],
        query(
            diagnosis(
                "E11", attributes=[attribute("clinicalStatus", concepts(TermCode(CLINICAL_STATUS, "active")))]
            )
        ),
        {"p1"},
    )


def test_a_resource_without_the_attribute_does_not_match_its_filter(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1")],
            [
                patient("p2"),
                condition("p2", verificationStatus=concept(coding(VERIFICATION_STATUS, "confirmed"))),
            ],
        ],
        query(
            diagnosis(
                "E11",
                attributes=[
                    attribute("verificationStatus", concepts(TermCode(VERIFICATION_STATUS, "confirmed")))
                ],
            )
        ),
        {"p2"},
    )


def test_all_attribute_filters_and_the_code_must_hold_on_the_same_resource(spec_test):
    active = concept(coding(CLINICAL_STATUS, "active"))
    confirmed = concept(coding(VERIFICATION_STATUS, "confirmed"))
    spec_test(
        [
            # active on one diagnosis, confirmed on another, and a third of another code with both
            [
                patient("p1"),
                condition("p1", "E11.9", clinicalStatus=active),
                condition("p1", "E11.9", verificationStatus=confirmed),
                condition("p1", "I10.00", clinicalStatus=active, verificationStatus=confirmed),
            ],
            [patient("p2"), condition("p2", "E11.9", clinicalStatus=active, verificationStatus=confirmed)],
        ],
        query(
            diagnosis(
                "E11",
                attributes=[
                    attribute("clinicalStatus", concepts(TermCode(CLINICAL_STATUS, "active"))),
                    attribute("verificationStatus", concepts(TermCode(VERIFICATION_STATUS, "confirmed"))),
                ],
            )
        ),
        {"p2"},
    )


def test_kontaktebene_is_read_from_an_mii_encounter_that_also_has_a_kontaktart(spec_test):
    # MII Fall encounters list the Kontaktebene first and the Kontaktart after it.
    spec_test(
        [
            [patient("p1"), encounter("p1", "IMP", level="einrichtungskontakt", kind="normalstationaer")],
            [patient("p2"), encounter("p2", "IMP", level="abteilungskontakt", kind="normalstationaer")],
        ],
        query(
            criterion(
                "Fall",
                TermCode(ACT_CODE, "IMP"),
                attributes=[
                    attribute("Kontaktebene", concepts(TermCode(KONTAKTEBENE, "einrichtungskontakt")))
                ],
            )
        ),
        {"p1"},
    )


# --- Specimen festgestellteDiagnose: a reference to a Condition -------------------------------------------


def _specimen_of(*criteria) -> object:
    return query(
        criterion(
            "Specimen", snomed("119364003"), attributes=[references("festgestellteDiagnose", *criteria)]
        )
    )


def test_a_specimen_matches_when_its_diagnosis_meets_the_referenced_criterion(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "C50.9", id="d1"), specimen("p1", diagnosis_id="d1")],
            [patient("p2"), condition("p2", "E11.9", id="d2"), specimen("p2", diagnosis_id="d2")],
            # a breast cancer, but the specimen points to another diagnosis
            [
                patient("p3"),
                condition("p3", "C50.9"),
                condition("p3", "E11.9", id="d3"),
                specimen("p3", diagnosis_id="d3"),
            ],
            # a breast cancer and a specimen, but the specimen names no diagnosis
            [patient("p4"), condition("p4", "C50.9"), specimen("p4")],
        ],
        _specimen_of(diagnosis("C50")),
        {"p1"},
    )


def test_a_specimen_diagnosis_may_meet_any_one_of_the_referenced_criteria(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "C50.9", id="d1"), specimen("p1", diagnosis_id="d1")],
            [patient("p2"), condition("p2", "C34.1", id="d2"), specimen("p2", diagnosis_id="d2")],
            [patient("p3"), condition("p3", "E11.9", id="d3"), specimen("p3", diagnosis_id="d3")],
        ],
        _specimen_of(diagnosis("C50"), diagnosis("C34")),
        {"p1", "p2"},
    )


def test_a_specimen_diagnosis_must_meet_the_time_and_attributes_of_the_referenced_criterion(spec_test):
    active = concept(coding(CLINICAL_STATUS, "active"))
    resolved = concept(coding(CLINICAL_STATUS, "resolved"))
    spec_test(
        [
            [
                patient("p1"),
                condition("p1", "C50.9", id="d1", onset="2021-05-01", clinicalStatus=active),
                specimen("p1", diagnosis_id="d1"),
            ],
            [
                patient("p2"),
                condition("p2", "C50.9", id="d2", onset="2019-05-01", clinicalStatus=active),
                specimen("p2", diagnosis_id="d2"),
            ],
            [
                patient("p3"),
                condition("p3", "C50.9", id="d3", onset="2021-05-01", clinicalStatus=resolved),
                specimen("p3", diagnosis_id="d3"),
            ],
        ],
        _specimen_of(
            diagnosis(
                "C50",
                time=during("2021-01-01", "2021-12-31"),
                attributes=[attribute("clinicalStatus", concepts(TermCode(CLINICAL_STATUS, "active")))],
            )
        ),
        {"p1"},
    )


def test_a_specimen_pointing_to_a_missing_diagnosis_does_not_match(spec_test):
    spec_test(
        [[patient("p1"), specimen("p1", diagnosis_id="nowhere")]],
        _specimen_of(diagnosis("C50")),
        set(),
    )


def test_the_specimen_itself_must_meet_its_own_code_and_filters_too(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                condition("p1", "C50.9", id="d1"),
                specimen("p1", "119364003", diagnosis_id="d1", collected="2022-01-01"),
            ],
            [
                patient("p2"),
                condition("p2", "C50.9", id="d2"),
                specimen("p2", "441652008", diagnosis_id="d2", collected="2022-01-01"),
            ],
            [
                patient("p3"),
                condition("p3", "C50.9", id="d3"),
                specimen("p3", "119364003", diagnosis_id="d3", collected="2018-01-01"),
            ],
        ],
        query(
            criterion(
                "Specimen",
                snomed("119364003"),
                time=during("2020-01-01"),
                attributes=[references("festgestellteDiagnose", diagnosis("C50"))],
            )
        ),
        {"p1"},
    )


def test_a_lab_attribute_and_value_filter_combine_on_one_observation(spec_test):
    high = [concept(coding(INTERPRETATION, "H"))]
    spec_test(
        [
            [patient("p1"), lab("p1", "4548-4", 7.0, "%", interpretation=high)],
            [
                patient("p2"),
                lab("p2", "4548-4", 7.0, "%"),
                lab("p2", "4548-4", 6.0, "%", interpretation=high),
            ],
        ],
        query(
            lab_test(
                "4548-4",
                comparator("gt", 6.5, "%"),
                attributes=[attribute("interpretation", concepts(TermCode(INTERPRETATION, "H")))],
            )
        ),
        {"p1"},
    )
