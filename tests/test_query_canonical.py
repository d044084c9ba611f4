"""The semantic canonical form (issue 12, P-1): one form for every way of writing a question, and which
pairs of questions are near-duplicates. That variants also find the same patients is a property in
tests/test_engine_properties.py."""

from __future__ import annotations

from typing import Any

import pytest

from datenraum.query.canonical import canonical_query, near_duplicates
from datenraum.query.model import parse_query

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"


def dx(*codes: str, display: str = "") -> dict[str, Any]:
    return {
        "context": {"system": "fdpg.mii.cds", "code": "Diagnose", "display": display},
        "termCodes": [{"system": ICD, "code": c, "display": display} for c in codes],
    }


def lab(comparator: str, value: float, unit: str) -> dict[str, Any]:
    return {
        "context": {"system": "fdpg.mii.cds", "code": "Laboruntersuchung"},
        "termCodes": [{"system": "http://loinc.org", "code": "2345-7"}],
        "valueFilter": {
            "type": "quantity-comparator",
            "comparator": comparator,
            "value": value,
            "unit": {"code": unit},
        },
    }


def form(inclusion: list, exclusion: list | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"inclusionCriteria": inclusion}
    if exclusion:
        body["exclusionCriteria"] = exclusion
    return canonical_query(parse_query(body)).to_json()


def test_order_duplicates_absorbed_groups_and_display_texts_do_not_matter():
    a, b, c = dx("E11"), dx("C00-C97"), dx("I10")
    expected = form([[a], [b]], [[c]])
    assert form([[b], [a]], [[c]]) == expected
    assert form([[a, a], [b, b, b]], [[c], [c]]) == expected
    assert form([[b], [a], [a, b], [a, c]], [[c], [c, a]]) == expected  # absorbed groups on both sides
    assert form([[dx("E11", display="Diabetes")], [b]], [[c]]) == expected
    assert form([[dx("E11", "E11")], [b]], [[c]]) == expected


def test_term_codes_of_a_criterion_are_a_set():
    assert form([[dx("E11", "E10")]]) == form([[dx("E10", "E11", "E10")]])


def test_different_questions_have_different_forms():
    a, b = dx("E11"), dx("C00-C97")
    assert form([[a], [b]]) != form([[a, b]])
    assert form([[a]], [[b]]) != form([[a], [b]])
    assert form([[a]]) != form([[dx("e11")]])  # codes are compared exactly by the engines, so is the form


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (lab("gt", 100, "mg/dL"), lab("gt", 1, "g/L")),
        (lab("gt", 0.5, "g/dL"), lab("gt", 5000, "mg/L")),
        (lab("ge", 1, "mmol/L"), lab("ge", 1000, "umol/L")),
    ],
)
def test_one_quantity_in_two_units_is_one_value(first, second):
    assert form([[first]]) == form([[second]])
    assert form([[first]]) != form(
        [[{**second, "valueFilter": {**second["valueFilter"], "comparator": "lt"}}]]
    )


def test_a_factor_not_exact_in_binary_still_meets():
    age = {
        "context": {"system": "fdpg.mii.cds", "code": "Patient"},
        "termCodes": [{"system": "http://snomed.info/sct", "code": "424144002"}],
    }

    def older(value: float, unit: str) -> dict[str, Any]:
        return {
            **age,
            "valueFilter": {
                "type": "quantity-comparator",
                "comparator": "gt",
                "value": value,
                "unit": {"code": unit},
            },
        }

    assert form([[older(24, "h")]]) == form([[older(1, "d")]])
    assert form([[older(216, "mo")]]) == form([[older(18, "a")]])
    assert form([[older(18, "a")]]) != form([[older(19, "a")]])


def near(first: dict, second: dict) -> bool:
    return near_duplicates(canonical_query(parse_query(first)), canonical_query(parse_query(second)))


def test_a_question_with_one_criterion_or_group_more_is_a_near_duplicate():
    a, b, c = dx("E11"), dx("C00-C97"), dx("I10")
    assert near({"inclusionCriteria": [[a]]}, {"inclusionCriteria": [[a]], "exclusionCriteria": [[b]]})
    assert near({"inclusionCriteria": [[a], [b]]}, {"inclusionCriteria": [[a]]})
    assert near(
        {"inclusionCriteria": [[a]], "exclusionCriteria": [[b]]},
        {"inclusionCriteria": [[a]], "exclusionCriteria": [[b, c]]},
    )
    assert near({"inclusionCriteria": [[a, c]]}, {"inclusionCriteria": [[a]]})
    # not near: the same question, another question, or two steps apart
    assert not near({"inclusionCriteria": [[a], [b]]}, {"inclusionCriteria": [[b], [a]]})
    assert not near({"inclusionCriteria": [[a]]}, {"inclusionCriteria": [[c]]})
    assert not near(
        {"inclusionCriteria": [[a]]}, {"inclusionCriteria": [[a], [b]], "exclusionCriteria": [[c]]}
    )
