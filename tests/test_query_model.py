"""The query model: what `parse_query` accepts and how it says what is wrong, and what `check_query`
rejects before any engine runs (contract, section 6). Every rejection names the JSON path."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datenraum.query.check import check_query
from datenraum.query.mapping import load_mapping
from datenraum.query.model import (
    MAX_CODES,
    MAX_CRITERIA,
    MAX_DEPTH,
    MAX_GROUPS,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    QueryError,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    parse_query,
    query_to_json,
)

ICD = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
PROVISION = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"


def term(system: str, code: str) -> dict:
    return {"system": system, "code": code, "display": code}


def criterion(context: str, *codes: tuple[str, str], **extra: Any) -> dict:
    return {"context": term("fdpg.mii.cds", context), "termCodes": [term(s, c) for s, c in codes], **extra}


def diagnosis(code: str = "E11", **extra: Any) -> dict:
    return criterion("Diagnose", (ICD, code), **extra)


def wrap(*criteria: dict) -> dict:
    return {"inclusionCriteria": [list(criteria)]}


def rejected(data: Any) -> QueryError:
    with pytest.raises(QueryError) as error:
        parse_query(data)
    return error.value


# --- parse_query: what it reads ------------------------------------------------------------------------


def test_a_portal_query_parses_into_groups_of_criteria():
    parsed = parse_query(
        {
            "version": "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
            "display": "Diabetics",
            "inclusionCriteria": [[diagnosis("E11"), diagnosis("E10")], [diagnosis("I10")]],
            "exclusionCriteria": [[diagnosis("C50")]],
        }
    )
    assert [[c.term_codes[0].code for c in group] for group in parsed.inclusion] == [["E11", "E10"], ["I10"]]
    assert parsed.exclusion[0][0].term_codes == (TermCode(ICD, "C50", "C50"),)
    assert parsed.display == "Diabetics"


def test_json_text_and_bytes_parse_like_the_object():
    text = '{"inclusionCriteria": [[{"termCodes": [{"system": "http://loinc.org", "code": "718-7"}]}]]}'
    assert (
        parse_query(text)
        == parse_query(text.encode())
        == parse_query({"inclusionCriteria": [[{"termCodes": [{"system": LOINC, "code": "718-7"}]}]]})
    )


def test_a_criterion_without_context_takes_the_context_of_its_code_system():
    parsed = parse_query({"inclusionCriteria": [[{"termCodes": [term(LOINC, "718-7")]}]]})
    assert parsed.inclusion[0][0].context.code == "Laboruntersuchung"


def test_every_filter_kind_parses():
    parsed = parse_query(
        wrap(
            criterion(
                "Laboruntersuchung",
                (LOINC, "4548-4"),
                valueFilter={
                    "type": "quantity-comparator",
                    "comparator": "gt",
                    "value": 6.5,
                    "unit": {"code": "%"},
                },
                timeRestriction={"afterDate": "2020-01-01", "beforeDate": "2020-12-31T00:00:00"},
            ),
            criterion(
                "Specimen",
                (SNOMED, "119364003"),
                attributeFilters=[
                    {
                        "type": "reference",
                        "attributeCode": term("x", "festgestellteDiagnose"),
                        "criteria": [diagnosis()],
                    },
                    {
                        "type": "concept",
                        "attributeCode": term("x", "status"),
                        "selectedConcepts": [term("x", "available")],
                    },
                ],
            ),
            criterion(
                "Patient",
                (SNOMED, "424144002"),
                valueFilter={"type": "quantity-range", "minValue": 18, "maxValue": 65},
            ),
        )
    )
    lab, specimen, patient = parsed.inclusion[0]
    assert lab.value_filter == ComparatorFilter("gt", 6.5, lab.value_filter.unit)
    assert lab.time_restriction == TimeRestriction(dt.date(2020, 1, 1), dt.date(2020, 12, 31))
    assert isinstance(specimen.attribute_filters[0].filter, ReferenceFilter)
    assert isinstance(specimen.attribute_filters[1].filter, ConceptFilter)
    assert patient.value_filter == RangeFilter(18.0, 65.0)


def test_a_negated_criterion_parses_as_negated():
    assert parse_query(wrap({**diagnosis(), "negated": True})).inclusion[0][0].negated


# --- parse_query: what it refuses, and where ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "path", "problem"),
    [
        ('{"inclusionCriteria": [', "$", "malformed JSON"),
        ([], "$", "expected an object"),
        ({}, "$.inclusionCriteria", "is required"),
        ({"inclusionCriteria": []}, "$.inclusionCriteria", "must not be empty"),
        ({"inclusionCriteria": [[]]}, "$.inclusionCriteria[0]", "must not be empty"),
        ({"inclusionCriteria": {"a": 1}}, "$.inclusionCriteria", "expected an array"),
        ({"inclusionCriteria": [["E11"]]}, "$.inclusionCriteria[0][0]", "expected an object"),
        (
            wrap({"context": term("fdpg.mii.cds", "Diagnose")}),
            "$.inclusionCriteria[0][0].termCodes",
            "is required",
        ),
        (wrap(criterion("Diagnose")), "$.inclusionCriteria[0][0].termCodes", "must not be empty"),
        (wrap(diagnosis(" ")), "$.inclusionCriteria[0][0].termCodes[0].code", "must not be blank"),
        (
            wrap({"termCodes": [{"system": ICD, "code": 11}]}),
            "$.inclusionCriteria[0][0].termCodes[0].code",
            "expected a string, got the number 11",
        ),
        (
            wrap({"termCodes": [{"code": "E11"}]}),
            "$.inclusionCriteria[0][0].termCodes[0].system",
            "is required",
        ),
        (
            wrap({"termCodes": [term("http://example.org", "x")]}),
            "$.inclusionCriteria[0][0].context",
            "is required for code system",
        ),
        (
            wrap({**diagnosis(), "negated": "yes"}),
            "$.inclusionCriteria[0][0].negated",
            "expected true or false",
        ),
    ],
)
def test_a_malformed_query_is_refused_with_the_path_of_the_problem(data, path, problem):
    error = rejected(data)
    assert error.path == path
    assert problem in error.problem


@pytest.mark.parametrize(
    ("value_filter", "path", "problem"),
    [
        ({"type": "quantity-comparator", "comparator": "gte", "value": 1}, ".comparator", "must be one of"),
        ({"type": "quantity-comparator", "comparator": "gt"}, ".value", "is required"),
        ({"type": "quantity-comparator", "comparator": "gt", "value": "7"}, ".value", "expected a number"),
        ({"type": "quantity-comparator", "comparator": "gt", "value": True}, ".value", "expected a number"),
        ({"type": "quantity-range", "minValue": 10, "maxValue": 5}, ".minValue", "greater than maxValue"),
        ({"type": "quantity-range", "minValue": 1}, ".maxValue", "is required"),
        (
            {"type": "quantity-comparator", "comparator": "gt", "value": 1, "unit": "%"},
            ".unit",
            "expected an object",
        ),
        ({"type": "concept", "selectedConcepts": []}, ".selectedConcepts", "must not be empty"),
        ({"type": "quantity-comperator", "comparator": "gt", "value": 1}, ".type", "unknown filter type"),
    ],
)
def test_a_malformed_value_filter_is_refused_at_its_element(value_filter, path, problem):
    error = rejected(wrap(criterion("Laboruntersuchung", (LOINC, "718-7"), valueFilter=value_filter)))
    assert error.path == "$.inclusionCriteria[0][0].valueFilter" + path
    assert problem in error.problem


def test_a_time_restriction_must_have_a_bound_in_order_and_be_a_date():
    base = "$.inclusionCriteria[0][0].timeRestriction"
    assert rejected(wrap(diagnosis(timeRestriction={"afterDate": None, "beforeDate": None}))).path == base
    later = rejected(wrap(diagnosis(timeRestriction={"afterDate": "2021-02-01", "beforeDate": "2021-01-01"})))
    assert later.path == base and "later than" in later.problem
    assert rejected(wrap(diagnosis(timeRestriction={"afterDate": "01.02.2021"}))).path == f"{base}.afterDate"


def test_a_referenced_criterion_may_not_be_negated_or_refer_further():
    nested = {
        "type": "reference",
        "attributeCode": term("x", "festgestellteDiagnose"),
        "criteria": [{**diagnosis(), "negated": True}],
    }
    error = rejected(wrap(criterion("Specimen", (SNOMED, "119364003"), attributeFilters=[nested])))
    assert error.path == "$.inclusionCriteria[0][0].attributeFilters[0].criteria[0].negated"


def test_a_criteria_group_of_the_ccdl_v3_draft_is_refused_as_such():
    group = {"id": "anchor", "anchorOccurrence": "first", "criteria": [[diagnosis()]]}
    error = rejected({"inclusionCriteria": [[group]]})
    assert error.path == "$.inclusionCriteria[0][0]"
    assert "criteria group" in error.problem


def test_the_2021_draft_with_term_code_singular_is_refused_as_such():
    error = rejected({"inclusionCriteria": [[{"termCode": term(ICD, "E11")}]]})
    assert error.path == "$.inclusionCriteria[0][0]" and "2021 draft" in error.problem


# --- round trip ----------------------------------------------------------------------------------------

codes = st.text(alphabet="ABCEIJKZ0123456789.-", min_size=1, max_size=8).filter(str.strip)
# Any text a query may hold: every character but NUL and lone surrogates, which the parser refuses.
texts = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=5)
terms = st.builds(TermCode, st.sampled_from([ICD, LOINC, SNOMED]), codes, texts, st.none() | codes)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=32)
days = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 1, 1))


@st.composite
def time_restrictions(draw) -> TimeRestriction:
    after, before = draw(st.none() | days), draw(st.none() | days)
    if after is None and before is None:
        after = draw(days)
    if after and before and after > before:
        after, before = before, after
    return TimeRestriction(after, before)


@st.composite
def ranges(draw) -> RangeFilter:
    low, high = sorted((draw(numbers), draw(numbers)))
    return RangeFilter(low, high)


value_filters = st.one_of(
    st.builds(ConceptFilter, st.lists(terms, min_size=1, max_size=2).map(tuple)),
    st.builds(ComparatorFilter, st.sampled_from(["gt", "ge", "lt", "le", "eq", "ne"]), numbers),
    ranges(),
)
criteria = st.builds(
    Criterion,
    context=st.builds(TermCode, st.just("fdpg.mii.cds"), st.sampled_from(["Diagnose", "Laboruntersuchung"])),
    term_codes=st.lists(terms, min_size=1, max_size=3).map(tuple),
    value_filter=st.none() | value_filters,
    time_restriction=st.none() | time_restrictions(),
    negated=st.booleans(),
)
groups = st.lists(st.lists(criteria, min_size=1, max_size=3).map(tuple), min_size=1, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(st.builds(StructuredQuery, groups, st.just(()) | groups, texts, st.just("v3")))
def test_writing_and_parsing_a_query_gives_the_same_query(query):
    assert parse_query(query_to_json(query)) == query


@pytest.mark.parametrize("text", ["E11\x00", "\ud800", "a\udfffb"])
@pytest.mark.parametrize("where", ["code", "display", "system"])
def test_nul_and_lone_surrogates_are_refused_in_any_string_naming_it(where, text):
    """Issue 12 P-5, P-10: PostgreSQL cannot store NUL, and a lone surrogate cannot be written as UTF-8."""
    term = {"system": ICD, "code": "E11", where: text}
    with pytest.raises(QueryError) as raised:
        parse_query({"inclusionCriteria": [[{"termCodes": [term]}]]})
    assert raised.value.path == f"$.inclusionCriteria[0][0].termCodes[0].{where}"


@pytest.mark.parametrize("value", [10**400, -(10**400), 10**5000], ids=["1e400", "-1e400", "1e5000"])
def test_an_integer_beyond_any_float_is_refused_naming_it(value):
    """Issue 12 P-5: 10**400 made math.isfinite raise OverflowError."""
    criterion = {
        "context": {"system": "fdpg.mii.cds", "code": "Patient"},
        "termCodes": [{"system": SNOMED, "code": "424144002"}],
        "valueFilter": {
            "type": "quantity-comparator",
            "comparator": "gt",
            "value": value,
            "unit": {"code": "a"},
        },
    }
    with pytest.raises(QueryError) as raised:
        parse_query({"inclusionCriteria": [[criterion]]})
    assert raised.value.path == "$.inclusionCriteria[0][0].valueFilter.value"


# --- check_query: what the mapping cannot answer -----------------------------------------------------


def check(*criteria: dict, exclude: list[list[dict]] | None = None) -> None:
    body = wrap(*criteria)
    if exclude:
        body["exclusionCriteria"] = exclude
    check_query(parse_query(body), load_mapping())


def check_rejects(*criteria: dict, exclude: list[list[dict]] | None = None) -> QueryError:
    with pytest.raises(QueryError) as error:
        check(*criteria, exclude=exclude)
    return error.value


def test_a_query_of_every_mapped_context_passes_the_check():
    check(
        diagnosis("E10-E14"),
        criterion("Procedure", ("http://fhir.de/CodeSystem/bfarm/ops", "5-820")),
        criterion("Medikamentenverabreichung", ("http://fhir.de/CodeSystem/bfarm/atc", "J01")),
        criterion("Fall", ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP")),
        criterion(
            "Einwilligung",
            ("fdpg.consent.combined", "no-yes-yes-no"),
            timeRestriction={"afterDate": "2020-01-01"},
        ),
        criterion("Patient", (SNOMED, "419099009")),
    )


def test_an_unknown_context_is_rejected_at_the_context():
    error = check_rejects(diagnosis(), criterion("Vitaldaten", (LOINC, "8867-4")))
    assert error.path == "$.inclusionCriteria[0][1].context" and "Vitaldaten" in error.problem


def test_a_rejection_in_an_exclusion_group_names_that_group():
    error = check_rejects(
        diagnosis(),
        exclude=[
            [diagnosis(), diagnosis(valueFilter={"type": "concept", "selectedConcepts": [term("x", "y")]})]
        ],
    )
    assert error.path == "$.exclusionCriteria[0][1].valueFilter"
    assert "Diagnose has no value" in error.problem


def test_an_unknown_attribute_is_rejected_at_the_attribute_filter():
    unknown = {"type": "concept", "attributeCode": term("x", "stage"), "selectedConcepts": [term("x", "I")]}
    error = check_rejects(diagnosis(attributeFilters=[unknown]))
    assert error.path == "$.inclusionCriteria[0][0].attributeFilters[0]" and "'stage'" in error.problem


def test_a_quantity_filter_on_a_concept_attribute_is_rejected():
    quantity = {
        "type": "quantity-comparator",
        "attributeCode": term("x", "clinicalStatus"),
        "comparator": "gt",
        "value": 1,
    }
    assert (
        check_rejects(diagnosis(attributeFilters=[quantity])).path
        == "$.inclusionCriteria[0][0].attributeFilters[0]"
    )


def test_a_referenced_criterion_is_checked_like_any_other():
    bad = diagnosis(
        attributeFilters=[
            {"type": "concept", "attributeCode": term("x", "stage"), "selectedConcepts": [term("x", "I")]}
        ]
    )
    reference = {
        "type": "reference",
        "attributeCode": term("x", "festgestellteDiagnose"),
        "criteria": [diagnosis(), bad],
    }
    error = check_rejects(criterion("Specimen", (SNOMED, "119364003"), attributeFilters=[reference]))
    assert error.path == "$.inclusionCriteria[0][0].attributeFilters[0].criteria[1].attributeFilters[0]"


def test_a_reference_must_point_to_the_context_its_attribute_refers_to():
    reference = {
        "type": "reference",
        "attributeCode": term("x", "festgestellteDiagnose"),
        "criteria": [criterion("Procedure", ("http://fhir.de/CodeSystem/bfarm/ops", "5-820"))],
    }
    error = check_rejects(criterion("Specimen", (SNOMED, "119364003"), attributeFilters=[reference]))
    assert error.path == "$.inclusionCriteria[0][0].attributeFilters[0].criteria[0].context"


def test_an_unknown_unit_is_rejected_rather_than_matching_nothing():
    value_filter = {
        "type": "quantity-comparator",
        "comparator": "gt",
        "value": 1,
        "unit": {"code": "furlong"},
    }
    error = check_rejects(criterion("Laboruntersuchung", (LOINC, "718-7"), valueFilter=value_filter))
    assert error.path == "$.inclusionCriteria[0][0].valueFilter.unit" and "furlong" in error.problem


@pytest.mark.parametrize(
    ("patient", "path", "problem"),
    [
        (criterion("Patient", (LOINC, "30525-0")), ".termCodes[0]", "not a supported Patient criterion"),
        (criterion("Patient", (SNOMED, "424144002")), ".valueFilter", "age criterion needs"),
        (
            criterion(
                "Patient",
                (SNOMED, "424144002"),
                valueFilter={
                    "type": "quantity-comparator",
                    "comparator": "gt",
                    "value": 18,
                    "unit": {"code": "year"},
                },
            ),
            ".valueFilter.unit",
            "'year'",
        ),
        (
            criterion(
                "Patient",
                (SNOMED, "263495000"),
                valueFilter={"type": "quantity-range", "minValue": 1, "maxValue": 2},
            ),
            ".valueFilter",
            "gender criterion needs a concept filter",
        ),
        (
            criterion(
                "Patient",
                (SNOMED, "419099009"),
                valueFilter={"type": "concept", "selectedConcepts": [term("x", "y")]},
            ),
            ".valueFilter",
            "deceased criterion takes no value filter",
        ),
        (
            criterion("Patient", (SNOMED, "419099009"), timeRestriction={"afterDate": "2020-01-01"}),
            ".timeRestriction",
            "no time",
        ),
    ],
)
def test_a_patient_criterion_needs_a_known_term_and_its_kind_of_filter(patient, path, problem):
    error = check_rejects(patient)
    assert error.path == "$.inclusionCriteria[0][0]" + path
    assert problem in error.problem


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        (("fdpg.consent.combined", "yes-yes-no"), "must be 4 parts of yes/no"),
        (("fdpg.consent.combined", "yes-yes-maybe-no"), "must be 4 parts of yes/no"),
        (("http://example.org/consent", "research"), "is neither"),
    ],
)
def test_a_malformed_consent_code_is_rejected_at_the_term_code(code, problem):
    error = check_rejects(criterion("Einwilligung", code))
    assert error.path == "$.inclusionCriteria[0][0].termCodes[0]" and problem in error.problem


def test_a_consent_criterion_takes_no_value_filter():
    consented = criterion(
        "Einwilligung",
        (PROVISION, f"{PROVISION[8:]}.8"),
        valueFilter={"type": "concept", "selectedConcepts": [term("x", "y")]},
    )
    assert check_rejects(consented).path == "$.inclusionCriteria[0][0].valueFilter"


def test_the_combined_consent_codes_require_the_provisions_of_every_answer():
    combined = load_mapping().contexts["Einwilligung"].combined
    short = {code: code.rsplit(".", 1)[1] for code in combined.provisions("no-no-yes-yes")}
    assert set(short.values()) == {"9", "47", "49", "10", "37", "26", "27", "28", "29", "30", "31"}
    assert {c.rsplit(".", 1)[1] for c in combined.provisions("yes-yes-no-no")} == {"8", "46"}
    assert combined.required_provisions(TermCode(PROVISION, f"{PROVISION[8:]}.8")) == (f"{PROVISION[8:]}.8",)


# --- size limits (issue 12, P-2): what one query may cost a site ----------------------------------------


def test_a_query_at_the_limits_parses():
    groups = [[diagnosis(f"E{i:02d}")] for i in range(MAX_GROUPS - 1)] + [
        [diagnosis("C50")] * (MAX_CRITERIA - MAX_GROUPS + 1)
    ]
    assert len(parse_query({"inclusionCriteria": groups}).criteria()) == MAX_CRITERIA


@pytest.mark.parametrize(
    ("data", "path", "limit"),
    [
        # the probe's shapes: 3,000 AND groups, 900 OR criteria
        ({"inclusionCriteria": [[diagnosis()]] * 3000}, "$.inclusionCriteria[100]", "at most 100 groups"),
        (wrap(*[diagnosis()] * 900), "$.inclusionCriteria[0][200]", "at most 200 criteria"),
        # inclusion and exclusion together
        (
            {"inclusionCriteria": [[diagnosis()]] * 60, "exclusionCriteria": [[diagnosis()]] * 41},
            "$.exclusionCriteria[40]",
            "at most 100 groups",
        ),
        (
            {"inclusionCriteria": [[diagnosis()] * 150], "exclusionCriteria": [[diagnosis()] * 51]},
            "$.exclusionCriteria[0][50]",
            "at most 200 criteria",
        ),
        (
            wrap(criterion("Diagnose", *[(ICD, f"E{i % 100:02d}") for i in range(MAX_CODES + 1)])),
            f"$.inclusionCriteria[0][0].termCodes[{MAX_CODES}]",
            f"at most {MAX_CODES} codes",
        ),
        (
            {**wrap(diagnosis()), "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            "$.x",
            "deeper",
        ),
    ],
)
def test_a_query_over_a_size_limit_is_refused_naming_the_path_and_the_limit(data, path, limit):
    error = rejected(data)
    assert error.path.startswith(path)
    assert limit in error.problem


def test_the_depth_limit_is_checked_without_recursion():
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    error = rejected({**wrap(diagnosis()), "x": deep})
    assert f"nested deeper than {MAX_DEPTH}" in error.problem
