"""Contract 2, value filter: quantity comparators and ranges with UCUM unit conversion, and concepts."""

from __future__ import annotations

import pytest

from datenraum.query.model import TermCode

from .builders import (
    ICD10GM,
    LOINC,
    SNOMED,
    between,
    coding,
    comparator,
    concept,
    concepts,
    lab,
    lab_test,
    patient,
    query,
)

DETECTED = coding(SNOMED, "260373001")
NOT_DETECTED = coding(SNOMED, "260415000")
HBA1C = "4548-4"
GLUCOSE = "2345-7"


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        ("gt", {"high"}),
        ("ge", {"equal", "high"}),
        ("lt", {"low"}),
        ("le", {"low", "equal"}),
        ("eq", {"equal"}),
        ("ne", {"low", "high"}),
    ],
)
def test_each_comparator_compares_the_stored_value_with_the_filter_value(spec_test, op, expected):
    spec_test(
        [
            [patient("low"), lab("low", HBA1C, 6.4, "%")],
            [patient("equal"), lab("equal", HBA1C, 6.5, "%")],
            [patient("high"), lab("high", HBA1C, 6.6, "%")],
        ],
        query(lab_test(HBA1C, comparator(op, 6.5, "%"))),
        expected,
    )


def test_a_range_includes_both_of_its_bounds(spec_test):
    spec_test(
        [
            [patient("below"), lab("below", HBA1C, 6.4, "%")],
            [patient("min"), lab("min", HBA1C, 6.5, "%")],
            [patient("max"), lab("max", HBA1C, 7.5, "%")],
            [patient("above"), lab("above", HBA1C, 7.6, "%")],
        ],
        query(lab_test(HBA1C, between(6.5, 7.5, "%"))),
        {"min", "max"},
    )


def test_a_value_in_another_unit_of_the_same_dimension_is_converted(spec_test):
    # 1.2 g/L is 120 mg/dL
    spec_test(
        [
            [patient("p1"), lab("p1", GLUCOSE, 130, "mg/dL")],
            [patient("p2"), lab("p2", GLUCOSE, 110, "mg/dL")],
            [patient("p3"), lab("p3", GLUCOSE, 1.25, "g/L")],
            [patient("p4"), lab("p4", GLUCOSE, 1.1, "g/L")],
        ],
        query(lab_test(GLUCOSE, comparator("gt", 1.2, "g/L"))),
        {"p1", "p3"},
    )


def test_a_range_in_one_unit_matches_values_stored_in_another(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", GLUCOSE, 1.0, "g/L")],
            [patient("p2"), lab("p2", GLUCOSE, 1.5, "g/L")],
            [patient("p3"), lab("p3", GLUCOSE, 0.9, "g/L")],
            [patient("p4"), lab("p4", GLUCOSE, 120, "mg/dL")],
        ],
        query(lab_test(GLUCOSE, between(100, 140, "mg/dL"))),
        {"p1", "p4"},
    )


def test_hba1c_in_mmol_per_mol_does_not_match_a_filter_in_percent(spec_test):
    # % (DCCT) and mmol/mol (IFCC) are different scales, not different units of one quantity.
    spec_test(
        [
            [patient("dcct"), lab("dcct", HBA1C, 7.0, "%")],
            [patient("ifcc"), lab("ifcc", HBA1C, 53, "mmol/mol")],
        ],
        query(lab_test(HBA1C, comparator("gt", 6.5, "%"))),
        {"dcct"},
    )


def test_a_stored_value_without_unit_does_not_match_a_filter_with_unit(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", HBA1C, 7.0, "%")],
            [patient("p2"), lab("p2", HBA1C, 7.0, None)],
        ],
        query(lab_test(HBA1C, comparator("gt", 6.5, "%"))),
        {"p1"},
    )


def test_a_filter_without_unit_compares_the_stored_number_whatever_its_unit(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", HBA1C, 7.0, "%")],
            [patient("p2"), lab("p2", HBA1C, 53, "mmol/mol")],
            [patient("p3"), lab("p3", HBA1C, 7.0, None)],
            [patient("p4"), lab("p4", HBA1C, 6.0, "%")],
        ],
        query(lab_test(HBA1C, comparator("gt", 6.5))),
        {"p1", "p2", "p3"},
    )


def test_an_integer_value_is_compared_as_a_number(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", "72514-3", valueInteger=7)],
            [patient("p2"), lab("p2", "72514-3", valueInteger=3)],
        ],
        query(lab_test("72514-3", comparator("ge", 7))),
        {"p1"},
    )


def test_an_integer_value_has_no_unit_so_a_filter_with_unit_does_not_match_it(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", "72514-3", valueInteger=7)],
            [patient("p2"), lab("p2", "72514-3", 7, "1")],
        ],
        query(lab_test("72514-3", comparator("ge", 7, "1"))),
        {"p2"},
    )


def test_a_lab_without_a_value_does_not_match_a_value_filter(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", HBA1C)],
            [patient("p2"), lab("p2", HBA1C, 7.0, "%")],
        ],
        query(lab_test(HBA1C, comparator("ne", 6.5, "%"))),
        {"p2"},
    )


def test_the_value_filter_and_the_code_must_hold_on_the_same_observation(spec_test):
    spec_test(
        [
            [patient("p1"), lab("p1", HBA1C, 5.5, "%"), lab("p1", "17856-6", 7.0, "%")],
            [patient("p2"), lab("p2", HBA1C, 7.0, "%")],
        ],
        query(lab_test(HBA1C, comparator("gt", 6.5, "%"))),
        {"p2"},
    )


PCR = "94500-6"


def test_a_concept_value_filter_matches_the_first_coding_of_the_value(spec_test):
    spec_test(
        [
            [patient("pos"), lab("pos", PCR, valueCodeableConcept=concept(DETECTED))],
            [patient("neg"), lab("neg", PCR, valueCodeableConcept=concept(NOT_DETECTED))],
            [patient("later"), lab("later", PCR, valueCodeableConcept=concept(NOT_DETECTED, DETECTED))],
        ],
        query(lab_test(PCR, concepts(TermCode(SNOMED, "260373001")))),
        {"pos"},
    )


def test_a_concept_value_filter_with_several_concepts_matches_any(spec_test):
    spec_test(
        [
            [patient("pos"), lab("pos", PCR, valueCodeableConcept=concept(DETECTED))],
            [patient("neg"), lab("neg", PCR, valueCodeableConcept=concept(NOT_DETECTED))],
            [patient("none"), lab("none", PCR, 1.0, "1")],
        ],
        query(lab_test(PCR, concepts(TermCode(SNOMED, "260373001"), TermCode(SNOMED, "260415000")))),
        {"pos", "neg"},
    )


def test_a_concept_value_filter_is_exact_in_code_and_system(spec_test):
    spec_test(
        [
            [patient("exact"), lab("exact", "11526-1", valueCodeableConcept=concept(coding(ICD10GM, "E11")))],
            [
                patient("child"),
                lab("child", "11526-1", valueCodeableConcept=concept(coding(ICD10GM, "E11.9"))),
            ],
            [patient("other"), lab("other", "11526-1", valueCodeableConcept=concept(coding(LOINC, "E11")))],
        ],
        query(lab_test("11526-1", concepts(TermCode(ICD10GM, "E11")))),
        {"exact"},
    )
