"""Contract 2, code: which stored codings a criterion's term codes match.

ICD-10-GM, OPS and ATC are hierarchical (a code stands for its descendants, an ICD block for its
categories); every other code system matches exactly. Medication codes live on the administration /
statement / request itself or on the Medication it references.
"""

from __future__ import annotations

from datenraum.query.model import TermCode

from .builders import (
    ACT_CODE,
    ICD10GM,
    LOINC,
    SNOMED,
    atc,
    coding,
    condition,
    criterion,
    diagnosis,
    encounter,
    genetic_report,
    lab,
    lab_test,
    loinc,
    medication,
    medication_administration,
    medication_request,
    medication_statement,
    ops,
    patient,
    procedure,
    query,
    snomed,
    specimen,
)


def test_an_icd_category_matches_its_subcategories(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.90")],
            [patient("p2"), condition("p2", "E11")],
            [patient("p3"), condition("p3", "E10.9")],
            [patient("p4"), condition("p4", "E13.9")],
        ],
        query(diagnosis("E11")),
        {"p1", "p2"},
    )


def test_an_icd_subcategory_does_not_match_its_parent_or_siblings(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.90")],
            [patient("p2"), condition("p2", "E11")],
            [patient("p3"), condition("p3", "E11.2")],
        ],
        query(diagnosis("E11.9")),
        {"p1"},
    )


def test_an_icd_block_matches_every_category_in_its_range(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E10.9")],
            [patient("p2"), condition("p2", "E14")],
            [patient("p3"), condition("p3", "E12.90")],
            [patient("p4"), condition("p4", "E15")],
            [patient("p5"), condition("p5", "E09.9")],
        ],
        query(diagnosis("E10-E14")),
        {"p1", "p2", "p3"},
    )


def test_an_ops_code_matches_its_descendants(spec_test):
    spec_test(
        [
            [patient("p1"), procedure("p1", "5-820.00")],
            [patient("p2"), procedure("p2", "5-820.4")],
            [patient("p3"), procedure("p3", "5-821.0")],
        ],
        query(criterion("Procedure", ops("5-820"))),
        {"p1", "p2"},
    )


def test_an_atc_group_matches_its_substances(spec_test):
    spec_test(
        [
            [patient("p1"), medication_administration("p1", "A10BA02")],
            [patient("p2"), medication_administration("p2", "A10BB01")],
            [patient("p3"), medication_administration("p3", "A10AB01")],
        ],
        query(criterion("Medikamentenverabreichung", atc("A10B"))),
        {"p1", "p2"},
    )


def test_a_loinc_code_matches_only_itself(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", "4548-4", 7.0, "%")],
            [patient("p2"), lab("p2", "4548-40", 7.0, "%")],
        ],
        query(lab_test("4548-4")),
        {"p1"},
    )


def test_a_snomed_code_matches_only_itself(spec_test):
    spec_test(
        [
            [patient("p1"), specimen("p1", "119364003")],
            [patient("p2"), specimen("p2", "1193640031")],
        ],
        query(criterion("Specimen", snomed("119364003"))),
        {"p1"},
    )


def test_a_code_matches_only_in_its_own_system(spec_test):
    other_system = "http://fhir.de/CodeSystem/dimdi/icd-10-gm"
    spec_test(
        [
            [patient("p1"), condition("p1", codings=[coding(ICD10GM, "E11.9")])],
            [patient("p2"), condition("p2", codings=[coding(other_system, "E11.9")])],
        ],
        query(diagnosis("E11")),
        {"p1"},
    )


def test_the_version_and_display_of_a_term_code_are_ignored(spec_test):
    spec_test(
        [[patient("p1"), condition("p1", codings=[coding(ICD10GM, "E11.9", version="2019", display="x")])]],
        query(criterion("Diagnose", TermCode(ICD10GM, "E11", "Diabetes mellitus, Typ 2", "2024"))),
        {"p1"},
    )


def test_a_resource_matches_on_any_of_its_codings(spec_test):
    spec_test(
        [
            [
                patient("p1"),
                condition("p1", codings=[coding(SNOMED, "44054006"), coding(ICD10GM, "E11.9")]),
            ],
            [patient("p2"), condition("p2", codings=[coding(SNOMED, "44054006")])],
        ],
        query(diagnosis("E11")),
        {"p1"},
    )


def test_a_procedure_category_is_matched_on_its_code_alone(spec_test):
    # The Procedure Category context has no system column: a term code of another system with the
    # same code matches too.
    spec_test(
        [
            [patient("p1"), procedure("p1", category="387713003")],
            [patient("p2"), procedure("p2", category="103693007")],
            [patient("p3"), procedure("p3")],
        ],
        query(criterion("Procedure Category", TermCode("urn:some-category-system", "387713003"))),
        {"p1"},
    )


def test_a_medication_code_is_found_on_the_referenced_medication(spec_test):
    spec_test(
        [
            medication("metformin", "A10BA02"),
            medication("insulin", "A10AB01"),
            [patient("p1"), medication_administration("p1", medication_id="metformin")],
            [patient("p2"), medication_administration("p2", medication_id="insulin")],
        ],
        query(criterion("Medikamentenverabreichung", atc("A10BA"))),
        {"p1"},
    )


def test_a_medication_code_is_found_inline_or_by_reference_alike(spec_test):
    spec_test(
        [
            medication("metformin", "A10BA02"),
            [patient("p1"), medication_administration("p1", medication_id="metformin")],
            [patient("p2"), medication_administration("p2", "A10BA02")],
            [patient("p3"), medication_administration("p3", medication_id="no-such-medication")],
        ],
        query(criterion("Medikamentenverabreichung", atc("A10BA02"))),
        {"p1", "p2"},
    )


def test_a_medication_statement_matches_its_medication_code(spec_test):
    spec_test(
        [
            medication("ramipril", "C09AA05"),
            [patient("p1"), medication_statement("p1", medication_id="ramipril")],
            [patient("p2"), medication_statement("p2", "C09AA05")],
            [patient("p3"), medication_statement("p3", "C07AB07")],
            [patient("p4"), medication_administration("p4", "C09AA05")],
        ],
        query(criterion("Medikamentenverordnung", atc("C09"))),
        {"p1", "p2"},
    )


def test_a_medication_request_matches_its_medication_code(spec_test):
    spec_test(
        [
            medication("ramipril", "C09AA05"),
            [patient("p1"), medication_request("p1", medication_id="ramipril")],
            [patient("p2"), medication_request("p2", "C09AA05")],
            [patient("p3"), medication_request("p3", "C07AB07")],
            [patient("p4"), medication_statement("p4", "C09AA05")],
        ],
        query(criterion("Medikamentenanordnung", atc("C09AA05"))),
        {"p1", "p2"},
    )


def test_a_case_matches_on_its_encounter_class(spec_test):
    spec_test(
        [
            [patient("p1"), encounter("p1", "IMP")],
            [patient("p2"), encounter("p2", "AMB")],
        ],
        query(criterion("Fall", TermCode(ACT_CODE, "IMP"))),
        {"p1"},
    )


def test_a_molecular_genetic_report_matches_on_its_code(spec_test):
    spec_test(
        [
            [patient("p1"), genetic_report("p1", "81247-9")],
            [patient("p2"), genetic_report("p2", "51969-4")],
        ],
        query(criterion("Molekulargenetischer Befundbericht", TermCode(LOINC, "81247-9"))),
        {"p1"},
    )


def test_a_criterion_reads_only_resources_of_its_own_context(spec_test):
    # A LOINC code on a genetic report is not a lab result.
    spec_test(
        [
            [patient("p1"), genetic_report("p1", "4548-4")],
            [patient("p2"), lab("p2", "4548-4", 6.0, "%")],
        ],
        query(criterion("Laboruntersuchung", loinc("4548-4"))),
        {"p2"},
    )
