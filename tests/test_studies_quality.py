"""Data-quality rules: each of REDCap's default rules A-H flags exactly its planted defect, custom
FHIRPath rules flag what they describe, and rules travel as CSV with errors naming line and column."""

from __future__ import annotations

import pytest
from studies_data import coded, dq_visit_form, entry

from datenraum.studies.quality import CustomRule, Finding, RuleError, rules_from_csv, rules_to_csv, run_rules

VISIT_BEFORE_BIRTH = CustomRule(
    "visit-before-birth",
    "%resource.repeat(item).where(linkId='visit_date').answer.value"
    " < %resource.repeat(item).where(linkId='birth_date').answer.value",
    "the visit is before the birth date",
    questionnaire="https://datenraum.example/fhir/Questionnaire/visit",
    link_id="visit_date",
    real_time=True,
)

# One defect per record; r01 and r02 (a woman, so `pregnant` is asked) are clean.
PLANTED = [
    entry("r01"),
    entry("r02", sex=coded("2"), pregnant=coded("0"), weight={"valueDecimal": 61.0}),
    entry("r03", comment=None),
    entry("r04", sex=None),
    entry("r05", height={"valueString": "groß"}),
    entry("r06", visit_date={"valueDate": "2019-05-01"}),
    entry("r07", weight={"valueDecimal": 300.0}),
    entry("r08", pregnant=coded("1")),
    entry("r09", sex=coded("9")),
    entry("r10", score={"valueInteger": 7}),  # q1 + q2 = 6
    entry("r11", birth_date={"valueDate": "2025-01-01"}),
    entry("r12", weight={"valueDecimal": 72.0}),
]
EXPECTED = {
    ("r03", "A", "comment"),
    ("r04", "B", "sex"),
    ("r05", "C", "height"),
    ("r06", "D", "visit_date"),
    ("r07", "E", "weight"),
    ("r08", "F", "pregnant"),
    ("r09", "G", "sex"),
    ("r10", "H", "score"),
    ("r11", "visit-before-birth", "visit_date"),
}


def test_each_default_rule_and_the_custom_rule_flag_exactly_their_planted_case():
    findings = run_rules(dq_visit_form(), PLANTED, [VISIT_BEFORE_BIRTH])
    assert {(f.record, f.rule, f.link_id) for f in findings} == EXPECTED
    assert len(findings) == len(EXPECTED)


@pytest.mark.parametrize("rule", ["A", "B", "C", "D", "E", "F", "G", "H"])
def test_a_single_default_rule_runs_alone(rule):
    findings = run_rules(dq_visit_form(), PLANTED, defaults=[rule])
    assert [(f.record, f.rule, f.link_id) for f in findings] == [e for e in sorted(EXPECTED) if e[1] == rule]


def test_findings_say_what_is_wrong():
    messages = {f.rule: f.message for f in run_rules(dq_visit_form(), PLANTED, [VISIT_BEFORE_BIRTH])}
    assert messages["D"] == "'visit_date': '2019-05-01' is below the minimum '2020-01-01'"
    assert messages["H"] == "'score' is 7 but calculates to 6"
    assert messages["F"] == "'pregnant' is hidden by its branching but has a value"
    assert messages["G"] == "'sex': '9' is not one of the item's choices"
    assert messages["C"] == "'height' is integer but has a valueString"
    assert messages["visit-before-birth"] == "the visit is before the birth date"


def test_findings_carry_the_event_and_repeat_instance_of_their_entry():
    findings = run_rules(dq_visit_form(), [entry("r01", "1_fall", 2, comment=None)])
    assert findings == [Finding("r01", "1_fall", 2, "comment", "A", "'comment' is blank")]


def test_a_missing_calculated_value_is_h_and_not_a_blank():
    findings = run_rules(dq_visit_form(), [entry("r01", score=None)])
    assert [(f.rule, f.link_id, f.message) for f in findings] == [
        ("H", "score", "'score' is nothing but calculates to 5")
    ]


def test_a_hostile_response_gives_findings_not_errors():
    hostile = entry("r01", q1={"valueInteger": "2; drop table"}, weight={"valueDecimal": True})
    findings = run_rules(dq_visit_form(), [hostile])
    assert {(f.rule, f.link_id) for f in findings} == {("C", "q1"), ("C", "weight")}


def test_rules_round_trip_through_csv():
    other = CustomRule(
        "no-comment", "%resource.repeat(item).where(linkId='comment').exists().not()", "kein Kommentar"
    )
    text = rules_to_csv([VISIT_BEFORE_BIRTH, other])
    assert rules_from_csv(text) == [VISIT_BEFORE_BIRTH, other]
    assert text.splitlines()[0] == "name,expression,message,questionnaire,link_id,real_time"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rule,logic\n", r"rules.csv:1: the header must be name,expression"),
        (
            "name,expression,message,questionnaire,link_id,real_time\nx,1 +* 2,m,,,n\n",
            r"rules.csv:2: rule 'x': expression: syntax error",
        ),
        (
            "name,expression,message,questionnaire,link_id,real_time\nx,true,m,,,n\nx,true,m,,,n\n",
            r"rules.csv:3: column name: the rule 'x' is defined twice",
        ),
        (
            "name,expression,message,questionnaire,link_id,real_time\nx,true,m,,,maybe\n",
            r"rules.csv:2: column real_time must be y or n",
        ),
        (
            "name,expression,message,questionnaire,link_id,real_time\nA,true,m,,,n\n",
            r"rules.csv:2: rule name 'A': must not be empty nor one of A-H",
        ),
        (
            "name,expression,message,questionnaire,link_id,real_time\nx,true\n",
            r"rules.csv:2: 2 columns, expected 6",
        ),
        (
            "name,expression,message,questionnaire,link_id,real_time\nx,%nope = 1,m,,,n\n",
            r"unknown variable %nope",
        ),
    ],
)
def test_a_bad_rules_csv_names_the_line_and_column(text, message):
    with pytest.raises(RuleError, match=message):
        rules_from_csv(text)


def test_a_rule_naming_an_item_the_form_lacks_is_refused():
    rule = CustomRule("x", "true", "m", link_id="nicht_da")
    with pytest.raises(RuleError, match="the form has no item 'nicht_da'"):
        run_rules(dq_visit_form(), [entry("r01")], [rule])
