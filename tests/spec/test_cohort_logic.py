"""Contract 1 and 5: the universe of patients, inclusion AND-of-OR, exclusion OR-of-AND, negation."""

from __future__ import annotations

from datenraum.query.model import parse_query

from .builders import comparator, condition, diagnosis, gender, lab, lab_test, negate, patient, query


def test_an_inclusion_group_is_met_by_any_one_of_its_criteria(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9")],
            [patient("p2"), condition("p2", "I10.00")],
            [patient("p3"), condition("p3", "J45.0")],
        ],
        query([diagnosis("E11"), diagnosis("I10")]),
        {"p1", "p2"},
    )


def test_every_inclusion_group_must_be_met(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9"), condition("p1", "I10.00")],
            [patient("p2"), condition("p2", "E11.9")],
            [patient("p3"), condition("p3", "I10.00")],
        ],
        query(diagnosis("E11"), diagnosis("I10")),
        {"p1"},
    )


def test_a_criterion_with_several_term_codes_holds_for_any_of_them(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9")],
            [patient("p2"), condition("p2", "I10.00")],
            [patient("p3"), condition("p3", "J45.0")],
        ],
        query(diagnosis("E11", "I10")),
        {"p1", "p2"},
    )


def test_an_exclusion_group_excludes_only_when_all_of_its_criteria_hold(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9"), condition("p1", "C50.9")],
            [patient("p2"), condition("p2", "E11.9"), condition("p2", "C50.9"), condition("p2", "I10.00")],
            [patient("p3"), condition("p3", "E11.9")],
        ],
        query(diagnosis("E11"), exclude=[[diagnosis("C50"), diagnosis("I10")]]),
        {"p1", "p3"},
    )


def test_any_one_exclusion_group_excludes(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9"), condition("p1", "C50.9")],
            [patient("p2"), condition("p2", "E11.9"), condition("p2", "I10.00")],
            [patient("p3"), condition("p3", "E11.9")],
        ],
        query(diagnosis("E11"), exclude=[diagnosis("C50"), diagnosis("I10")]),
        {"p3"},
    )


def test_inclusion_and_exclusion_combine_as_and_not(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9"), condition("p1", "I10.00")],
            [patient("p2"), condition("p2", "E11.9"), condition("p2", "I10.00"), condition("p2", "C50.9")],
            [patient("p3"), condition("p3", "E11.9")],
            [patient("p4"), condition("p4", "C50.9")],
        ],
        query([diagnosis("E11")], [diagnosis("I10"), diagnosis("J45")], exclude=[diagnosis("C50")]),
        {"p1"},
    )


def test_a_negated_criterion_holds_for_patients_without_a_matching_resource(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "C50.9")],
            [patient("p2"), condition("p2", "E11.9")],
            [patient("p3")],
        ],
        query(negate(diagnosis("C50"))),
        {"p2", "p3"},
    )


def test_a_negated_criterion_holds_when_no_single_resource_meets_all_of_its_filters(spec_test):
    # p1 has HbA1c, but not above 6.5 %: "no HbA1c above 6.5 %" holds for them.
    spec_test(
        [
            [patient("p1"), lab("p1", "4548-4", 6.0, "%")],
            [patient("p2"), lab("p2", "4548-4", 7.0, "%")],
        ],
        query(negate(lab_test("4548-4", comparator("gt", 6.5, "%")))),
        {"p1"},
    )


def test_a_negated_criterion_in_an_exclusion_group_keeps_only_those_who_meet_it(spec_test):
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.9"), condition("p1", "C50.9")],
            [patient("p2"), condition("p2", "E11.9")],
        ],
        query(diagnosis("E11"), exclude=[negate(diagnosis("C50"))]),
        {"p1"},
    )


def test_a_patient_without_any_resource_belongs_to_a_demographic_cohort(spec_test):
    spec_test(
        [patient("p1", gender="female"), patient("p2", gender="male")],
        query(gender("female")),
        {"p1"},
    )


def test_resources_of_patients_not_in_the_store_are_not_counted(spec_test):
    spec_test(
        [patient("p1"), condition("ghost", "E11.9"), condition("p1", "I10.00")],
        query([diagnosis("E11"), negate(diagnosis("J45"))]),
        {"p1"},
    )


def test_a_resource_sent_twice_counts_as_its_later_version(spec_test):
    spec_test(
        [patient("p1"), condition("p1", "E11.9", id="c1"), condition("p1", "I10.00", id="c1")],
        query(diagnosis("E11")),
        set(),
    )


def test_a_query_written_by_the_portal_runs_unchanged(spec_test):
    structured_query = parse_query(
        {
            "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
            "display": "",
            "inclusionCriteria": [
                [
                    {
                        "context": {
                            "code": "Diagnose",
                            "display": "Diagnose",
                            "system": "fdpg.mii.cds",
                            "version": "1.0.0",
                        },
                        "termCodes": [
                            {
                                "code": "E11",
                                "display": "Diabetes mellitus, Typ 2",
                                "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                                "version": "2023",
                            }
                        ],
                    }
                ]
            ],
            "exclusionCriteria": [
                [
                    {
                        "termCodes": [
                            {
                                "code": "C50",
                                "display": "Brustkrebs",
                                "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                            }
                        ],
                    }
                ]
            ],
        }
    )
    spec_test(
        [
            [patient("p1"), condition("p1", "E11.90")],
            [patient("p2"), condition("p2", "E11.90"), condition("p2", "C50.4")],
        ],
        structured_query,
        {"p1"},
    )
