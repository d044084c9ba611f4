"""The server is the authority on a submitted QuestionnaireResponse: each rule of the form flags exactly
its own defect (naming the item and the JSON path), and hostile input gives problems, never exceptions."""

from __future__ import annotations

import time

import pytest
from studies_forms import answer, item, response, visit_form

from datenraum.studies.questionnaire import parse_questionnaire
from datenraum.studies.responses import MAX_RESPONSE_NODES, ResponseProblem, check_response

JANEIN = "https://datenraum.de/fhir/CodeSystem/janein"
KG = {"system": "http://unitsofmeasure.org", "code": "kg", "unit": "kg"}


@pytest.fixture(scope="module")
def form():
    return parse_questionnaire(visit_form())


def stammdaten(**answers) -> dict:
    values = {"initialen": {"valueString": "MK"}, "besuchsdatum": {"valueDate": "2026-01-02"}, **answers}
    return answer("stammdaten", items=[answer(k, v) for k, v in values.items() if v is not None])


def valid(**replace) -> dict:
    """A complete, correct visit; `replace` swaps (or with None drops) top-level items by linkId."""
    items = {
        "stammdaten": stammdaten(),
        "raucher": answer("raucher", {"valueCoding": {"system": JANEIN, "code": "1"}}),
        "packungsjahre": answer("packungsjahre", {"valueInteger": 20}),
        "gewicht": answer("gewicht", {"valueQuantity": {"value": 80, **KG}}),
        "groesse": answer("groesse", {"valueDecimal": 1.8}),
        "bmi": answer("bmi", {"valueDecimal": 24.7}),
        "medikation": answer("medikation", items=[answer("wirkstoff", {"valueString": "ASS"})]),
    }
    items.update(replace)
    return response(*(v for v in items.values() if v is not None))


def only(problems: list[ResponseProblem]) -> ResponseProblem:
    assert len(problems) == 1, problems
    return problems[0]


def test_a_correct_visit_is_accepted(form) -> None:
    assert check_response(form, valid()) == []


def test_an_answer_in_an_item_hidden_by_enable_when_is_refused_naming_it(form) -> None:
    problem = only(
        check_response(
            form, valid(raucher=answer("raucher", {"valueCoding": {"system": JANEIN, "code": "2"}}))
        )
    )
    assert (problem.link_id, problem.path) == ("packungsjahre", "$.item[2]")
    assert "answered although not enabled" in problem.message


def test_an_enable_when_expression_that_is_false_hides_its_item(form) -> None:
    schwanger = answer("schwanger", {"valueBoolean": False})
    male = answer(
        "geschlecht", {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "male"}}
    )
    problem = only(check_response(form, valid(schwanger=schwanger, geschlecht=male)))
    assert problem.link_id == "schwanger" and "enableWhenExpression" in problem.message
    female = answer(
        "geschlecht",
        {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}},
    )
    assert check_response(form, valid(schwanger=schwanger, geschlecht=female)) == []


def test_enable_behavior_any_enables_when_one_condition_holds(form) -> None:
    schwer = answer(
        "schweregrad",
        {"valueCoding": {"system": "https://datenraum.de/fhir/CodeSystem/schweregrad", "code": "schwer"}},
    )
    assert check_response(form, valid(schweregrad=schwer)) == []
    neither = valid(raucher=None, packungsjahre=None, schweregrad=schwer)
    assert "none of its enableWhen" in only(check_response(form, neither)).message


def test_a_calculated_value_that_differs_is_refused(form) -> None:
    problem = only(check_response(form, valid(bmi=answer("bmi", {"valueDecimal": 22.0}))))
    assert problem.link_id == "bmi" and problem.path == "$.item[5].answer[0]"
    assert "calculated as 24.7" in problem.message and "22.0" in problem.message


def test_a_missing_calculated_value_is_refused_and_an_empty_calculation_takes_no_value(form) -> None:
    assert "has no value" in only(check_response(form, valid(bmi=None))).message
    problem = only(check_response(form, valid(groesse=None)))  # no height: the BMI is empty
    assert problem.link_id == "bmi" and "calculated as empty" in problem.message


def test_a_hidden_item_may_carry_no_answer_but_its_initial_value(form) -> None:
    problem = only(check_response(form, valid(intern=answer("intern", {"valueString": "Notiz"}))))
    assert problem.link_id == "intern" and "hidden" in problem.message
    defaulted = visit_form()
    item(defaulted, "intern")["initial"] = [{"valueString": "Standard"}]
    with_default = parse_questionnaire(defaulted)
    assert check_response(with_default, valid(intern=answer("intern", {"valueString": "Standard"}))) == []


def test_a_required_item_must_be_answered_unless_the_response_is_a_draft(form) -> None:
    missing = valid(stammdaten=stammdaten(besuchsdatum=None))
    problem = only(check_response(form, missing))
    assert (problem.link_id, problem.path, problem.message) == (
        "besuchsdatum",
        "$.item[0]",
        "'besuchsdatum' is required",
    )
    missing["status"] = "in-progress"
    assert check_response(form, missing) == []


def test_required_is_checked_in_every_instance_of_a_repeating_group(form) -> None:
    groups = answer("medikation", items=[answer("wirkstoff", {"valueString": "ASS"})])
    second = answer("medikation", items=[answer("beginn", {"valueDateTime": "2026-01-02T08:00:00+01:00"})])
    problems = check_response(form, valid(medikation=groups, zweite=second))
    assert [(p.link_id, p.path) for p in problems] == [("wirkstoff", "$.item[7]")]


def test_a_non_repeating_item_takes_one_answer(form) -> None:
    two = answer("packungsjahre", {"valueInteger": 20}, {"valueInteger": 21})
    problem = only(check_response(form, valid(packungsjahre=two)))
    assert problem.path == "$.item[2].answer[1]" and "does not repeat" in problem.message
    several = answer("symptome", {"valueString": "Husten"}, {"valueString": "Fieber"})
    assert check_response(form, valid(symptome=several)) == []


def test_a_non_repeating_group_occurs_once(form) -> None:
    problems = check_response(form, valid(zweite=stammdaten()))
    assert [(p.link_id, "does not repeat" in p.message) for p in problems] == [("stammdaten", True)]


def test_a_read_only_item_takes_no_typed_answer() -> None:
    defaulted = visit_form()
    item(defaulted, "quelle")["readOnly"] = True
    problem = only(
        check_response(
            parse_questionnaire(defaulted), valid(quelle=answer("quelle", {"valueUri": "https://x.example"}))
        )
    )
    assert problem.link_id == "quelle" and "read-only" in problem.message


@pytest.mark.parametrize(
    ("replace", "link_id", "says"),
    [
        (
            {"packungsjahre": answer("packungsjahre", {"valueString": "20"})},
            "packungsjahre",
            "answered with valueInteger",
        ),
        ({"packungsjahre": answer("packungsjahre", {"valueInteger": "20"})}, "packungsjahre", "whole number"),
        (
            {"packungsjahre": answer("packungsjahre", {"valueInteger": True})},
            "packungsjahre",
            "not a boolean",
        ),
        (
            {"packungsjahre": answer("packungsjahre", {"valueInteger": 200})},
            "packungsjahre",
            "above the maximum 150",
        ),
        (
            {"packungsjahre": answer("packungsjahre", {"valueInteger": -1})},
            "packungsjahre",
            "below the minimum 0",
        ),
        (
            {
                "groesse": answer("groesse", {"valueDecimal": 2.6}),
                "bmi": answer("bmi", {"valueDecimal": 11.8}),
            },
            "groesse",
            "above the maximum 2.5",
        ),
        (
            {
                "gewicht": answer("gewicht", {"valueQuantity": {"value": 0.2, **KG}}),
                "bmi": answer("bmi", {"valueDecimal": 0.1}),
            },
            "gewicht",
            "below the minimum 0.5 kg",
        ),
        (
            {
                "gewicht": answer(
                    "gewicht",
                    {
                        "valueQuantity": {
                            "value": 80,
                            "system": "http://unitsofmeasure.org",
                            "code": "[lb_av]",
                        }
                    },
                )
            },
            "gewicht",
            "unit '[lb_av]' is not one of kg, g",
        ),
        ({"stammdaten": stammdaten(initialen={"valueString": "MKLM"})}, "initialen", "longer than 3"),
        (
            {"stammdaten": stammdaten(initialen={"valueString": "mk"})},
            "initialen",
            "does not match the pattern",
        ),
        (
            {"stammdaten": stammdaten(geburtsdatum={"valueDate": "1899-12-31"})},
            "geburtsdatum",
            "below the minimum",
        ),
        (
            {"stammdaten": stammdaten(besuchsdatum={"valueDate": "02.01.2026"})},
            "besuchsdatum",
            "not a FHIR date",
        ),
        (
            {
                "raucher": answer("raucher", {"valueCoding": {"system": JANEIN, "code": "3"}}),
                "packungsjahre": None,
            },
            "raucher",
            "not one of the answer options",
        ),
        (
            {
                "raucher": answer("raucher", {"valueCoding": {"system": JANEIN, "code": "1"}}),
                "schweregrad": answer("schweregrad", {"valueCoding": {"code": "mittel"}}),
            },
            "schweregrad",
            "not one of the answer options",
        ),
        (
            {"symptome": answer("symptome", {"valueString": "Schnupfen"})},
            "symptome",
            "not one of the answer options",
        ),
    ],
)
def test_each_answer_rule_flags_exactly_its_case(form, replace: dict, link_id: str, says: str) -> None:
    problem = only(check_response(form, valid(**replace)))
    assert problem.link_id == link_id and says in problem.message, problem


def test_open_choice_takes_free_text_but_no_unknown_coding(form) -> None:
    assert check_response(form, valid(geschlecht=answer("geschlecht", {"valueString": "divers"}))) == []
    other = answer(
        "geschlecht",
        {"valueCoding": {"system": "http://hl7.org/fhir/administrative-gender", "code": "other"}},
    )
    assert only(check_response(form, valid(geschlecht=other))).link_id == "geschlecht"


def test_an_item_out_of_place_is_refused_saying_where_it_belongs(form) -> None:
    problem = only(check_response(form, valid(initialen=answer("initialen", {"valueString": "MK"}))))
    assert problem.path == "$.item[7].linkId" and "belongs under $.item[1].item[0]" in problem.message


def test_the_response_must_answer_this_form_and_version(form) -> None:
    other = valid()
    other["questionnaire"] = "https://datenraum.de/fhir/Questionnaire/besuch|1"
    problem = only(check_response(form, other))
    assert (problem.link_id, problem.path) == (None, "$.questionnaire")


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        [],
        "QuestionnaireResponse",
        {"resourceType": "Patient"},
        {"resourceType": "QuestionnaireResponse", "status": "completed", "item": "alles"},
        {
            "resourceType": "QuestionnaireResponse",
            "status": 7,
            "item": [1, None, {"linkId": 5}, {"linkId": "raucher", "answer": {}}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "item": [{"linkId": "bmi", "answer": [{"valueDecimal": 1, "valueString": "x"}, 3]}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "item": [{"linkId": "groesse", "answer": [{"valueDecimal": "x" * 2_000_000}]}],
        },
        {
            "resourceType": "QuestionnaireResponse",
            "item": [{"linkId": "hinweis", "answer": [{"valueString": "x"}]}],
        },
    ],
)
def test_hostile_input_gives_problems_not_exceptions(form, hostile) -> None:
    problems = check_response(form, hostile)
    assert problems and all(isinstance(p, ResponseProblem) for p in problems)


def test_a_calculation_fed_a_wrong_type_is_a_problem_of_that_item(form) -> None:
    hostile = valid(groesse=answer("groesse", {"valueString": "gross"}))
    problems = check_response(form, hostile)
    assert {p.link_id for p in problems} == {"groesse", "bmi"}


def test_ten_thousand_items_give_problems_quickly(form) -> None:
    flood = valid(**{f"x{i}": answer(f"unbekannt-{i}", {"valueString": "x" * 100}) for i in range(10_000)})
    started = time.process_time()
    problems = check_response(form, flood)
    assert len(problems) == 10_000 and {p.message[:10] for p in problems} == {"no item 'u"}
    assert time.process_time() - started < 30  # a guard against quadratic work, not a benchmark


def test_a_response_beyond_the_node_limit_is_refused_unread(form) -> None:
    flood = valid(
        symptome=answer("symptome", *({"valueString": "Husten"} for _ in range(MAX_RESPONSE_NODES + 1)))
    )
    problem = only(check_response(form, flood))
    assert problem.path == "$.item" and str(MAX_RESPONSE_NODES) in problem.message
