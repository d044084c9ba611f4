"""Contract 6: a criterion the mapping cannot answer rejects the whole query, naming its JSON path.

Never a partial or silently wrong count: the engine raises `QueryError` before it runs anything, and
the path points at the element the user has to change.
"""

from __future__ import annotations

from datenraum.query.model import QueryError, TermCode, parse_query

from .builders import (
    COMBINED_CONSENT,
    ICD10GM,
    SNOMED,
    age,
    attribute,
    comparator,
    concepts,
    condition,
    consented_combined,
    criterion,
    diagnosis,
    during,
    gender,
    lab_test,
    patient,
    query,
    references,
    snomed,
)

DATA = [patient("p1"), condition("p1", "E11.9")]


def assert_names(error: QueryError, path: str) -> None:
    """The error's path is `path` or an element inside it."""
    assert error.path == path or error.path.startswith((f"{path}.", f"{path}[")), error


def test_an_unknown_context_is_rejected(rejects):
    error = rejects(query(diagnosis("E11"), criterion("Vitalparameter", snomed("8867-4"))), DATA)
    assert_names(error, "$.inclusionCriteria[1][0].context")


def test_an_unknown_attribute_is_rejected(rejects):
    error = rejects(
        query([diagnosis("E11"), diagnosis("I10", attributes=[attribute("stage", concepts(snomed("1")))])]),
        DATA,
    )
    assert_names(error, "$.inclusionCriteria[0][1].attributeFilters[0]")


def test_an_unknown_unit_is_rejected(rejects):
    error = rejects(query(lab_test("4548-4", comparator("gt", 6.5, "percent"))), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].valueFilter")


def test_an_age_in_an_unknown_unit_is_rejected(rejects):
    error = rejects(query(age(comparator("gt", 50, "mg"))), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].valueFilter")


def test_a_value_filter_on_a_context_without_value_is_rejected(rejects):
    error = rejects(query(diagnosis("E11", value=comparator("gt", 1))), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].valueFilter")


def test_an_unknown_patient_term_is_rejected(rejects):
    error = rejects(query(criterion("Patient", snomed("184099003"))), DATA)  # date of birth
    assert_names(error, "$.inclusionCriteria[0][0].termCodes[0]")


def test_a_time_restriction_on_the_patient_context_is_rejected(rejects):
    error = rejects(query(age(comparator("gt", 50, "a"), time=during("2020-01-01"))), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].timeRestriction")


def test_an_attribute_filter_on_the_patient_context_is_rejected(rejects):
    error = rejects(
        query(criterion("Patient", snomed("263495000"), attributes=[attribute("x", concepts(snomed("1")))])),
        DATA,
    )
    assert_names(error, "$.inclusionCriteria[0][0].attributeFilters[0]")


def test_a_malformed_combined_consent_code_is_rejected(rejects):
    error = rejects(query(consented_combined("yes-yes-no")), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].termCodes[0]")
    error = rejects(query(consented_combined("yes-maybe-no-no")), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].termCodes[0]")


def test_a_consent_code_of_an_unknown_system_is_rejected(rejects):
    error = rejects(
        query(criterion("Einwilligung", TermCode(COMBINED_CONSENT + ".v2", "yes-yes-no-no"))), DATA
    )
    assert_names(error, "$.inclusionCriteria[0][0].termCodes[0]")


def test_a_problem_in_an_exclusion_group_is_rejected_with_its_path(rejects):
    error = rejects(
        query(gender("female"), exclude=[[diagnosis("C50"), criterion("Allergie", snomed("1"))]]), DATA
    )
    assert_names(error, "$.exclusionCriteria[0][1].context")


def test_a_problem_inside_a_referenced_criterion_is_rejected_with_its_path(rejects):
    referenced = diagnosis("C50", attributes=[attribute("grading", concepts(snomed("1")))])
    specimen_criterion = criterion(
        "Specimen", snomed("119364003"), attributes=[references("festgestellteDiagnose", referenced)]
    )
    error = rejects(query(specimen_criterion), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].attributeFilters[0].criteria[0].attributeFilters[0]")


def test_a_query_is_rejected_even_when_the_rest_of_it_could_be_answered(rejects):
    # The portal JSON, as the user wrote it: the first criterion is fine, the second is not.
    structured_query = parse_query(
        {
            "inclusionCriteria": [
                [{"termCodes": [{"system": ICD10GM, "code": "E11", "display": ""}]}],
                [
                    {
                        "context": {"system": "fdpg.mii.cds", "code": "Laboruntersuchung", "display": ""},
                        "termCodes": [{"system": "http://loinc.org", "code": "4548-4", "display": ""}],
                        "valueFilter": {
                            "type": "quantity-comparator",
                            "comparator": "gt",
                            "value": 6.5,
                            "unit": {"code": "Prozent"},
                        },
                    }
                ],
            ]
        }
    )
    error = rejects(structured_query, DATA)
    assert_names(error, "$.inclusionCriteria[1][0].valueFilter")


def test_gender_without_a_concept_filter_is_rejected(rejects):
    error = rejects(query(criterion("Patient", TermCode(SNOMED, "263495000"))), DATA)
    assert_names(error, "$.inclusionCriteria[0][0].valueFilter")
