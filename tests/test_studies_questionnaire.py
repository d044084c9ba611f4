"""Reading a Questionnaire into the frozen form model: the SDC subset is understood, and every defect a
form can have is refused with the JSON path of the element at fault."""

from __future__ import annotations

import dataclasses

import pytest
from studies_forms import item, visit_form

from datenraum.studies.questionnaire import (
    EXT_CALCULATED_EXPRESSION,
    EXT_ENABLE_WHEN_EXPRESSION,
    Coding,
    FormError,
    Value,
    parse_questionnaire,
)


@pytest.fixture(scope="module")
def form():
    return parse_questionnaire(visit_form())


def test_every_r4_item_type_is_read(form) -> None:
    assert {i.type for i in form.walk()} == {
        *("group", "display", "boolean", "decimal", "integer", "date", "dateTime", "time", "string", "text"),
        *("url", "choice", "open-choice", "attachment", "reference", "quantity"),
    }


def test_items_by_link_id_reaches_nested_items(form) -> None:
    assert form.items_by_link_id["wirkstoff"].path == "$.item[11].item[0]"
    assert form.items_by_link_id["initialen"].path == "$.item[1].item[0]"
    assert form.canonical == "https://datenraum.de/fhir/Questionnaire/besuch|2"


def test_constraints_and_sdc_extensions_become_fields(form) -> None:
    initialen = form.items_by_link_id["initialen"]
    assert (initialen.required, initialen.max_length, initialen.regex, initialen.identifier) == (
        True,
        3,
        "^[A-Z]{2,3}$",
        True,
    )
    packungsjahre = form.items_by_link_id["packungsjahre"]
    assert (packungsjahre.min_value, packungsjahre.max_value) == (Value("Integer", 0), Value("Integer", 150))
    assert packungsjahre.enable_when[0].answer == Value(
        "Coding", Coding("https://datenraum.de/fhir/CodeSystem/janein", "1", None)
    )
    gewicht = form.items_by_link_id["gewicht"]
    assert [u.code for u in gewicht.units] == ["kg", "g"]
    assert gewicht.observation_extract and gewicht.min_value.number == 0.5
    assert form.items_by_link_id["bmi"].calculated_expression.expression.startswith("(%gewicht")
    assert form.items_by_link_id["bmi"].read_only
    assert form.items_by_link_id["schwanger"].enable_when_expression is not None
    assert form.items_by_link_id["uhrzeit"].initial_expression.expression == "timeOfDay()"
    assert form.items_by_link_id["intern"].hidden
    assert form.items_by_link_id["raucher"].item_control == "radio-button"
    assert [c.code for c in form.items_by_link_id["schweregrad"].value_set_codings] == ["leicht", "schwer"]
    assert form.items_by_link_id["schweregrad"].enable_behavior == "any"
    assert form.items_by_link_id["symptome"].answer_options[1].initial_selected
    assert form.items_by_link_id["kommentar"].initial == (Value("String", "keiner"),)
    assert [v.name for v in form.variables] == ["gewicht"]


def test_the_form_model_is_frozen(form) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        form.items[0].required = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        form.items_by_link_id["neu"] = form.items[0]  # type: ignore[index]


def _refused(form: dict) -> FormError:
    with pytest.raises(FormError) as caught:
        parse_questionnaire(form)
    return caught.value


def test_a_duplicate_link_id_is_refused_where_it_repeats() -> None:
    form = visit_form()
    item(form, "wirkstoff")["linkId"] = "initialen"
    error = _refused(form)
    assert error.path == "$.item[11].item[0].linkId"
    assert "duplicate linkId 'initialen'" in error.message and "$.item[1].item[0]" in error.message


def test_an_enable_when_on_an_unknown_question_names_its_path() -> None:
    form = visit_form()
    nested = item(form, "beginn")
    nested["enableWhen"] = [{"question": "gibtsnicht", "operator": "exists", "answerBoolean": True}]
    error = _refused(form)
    assert error.path == "$.item[11].item[1].enableWhen[0].question"
    assert "gibtsnicht" in error.message


def test_an_enable_when_on_a_group_is_refused() -> None:
    form = visit_form()
    item(form, "kommentar")["enableWhen"] = [
        {"question": "medikation", "operator": "exists", "answerBoolean": True}
    ]
    assert "group item" in _refused(form).message


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("1 +* 2", "syntax error at character 4"),
        ("%resource.item.answer.value c", "syntax error"),
        ("frobnicate(1)", "unknown function frobnicate()"),
        ("%nichtda + 1", "unknown variable %nichtda"),
        ("", "empty"),
    ],
)
def test_an_expression_that_does_not_compile_is_refused(expression: str, says: str) -> None:
    form = visit_form()
    item(form, "bmi")["extension"][0]["valueExpression"]["expression"] = expression
    error = _refused(form)
    assert error.path == "$.item[6].extension[0].valueExpression.expression"
    assert says in error.message


def test_a_variable_is_visible_only_below_where_it_is_defined() -> None:
    form = visit_form()
    group = item(form, "medikation")
    group["extension"] = [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/variable",
            "valueExpression": {"name": "anzahl", "language": "text/fhirpath", "expression": "1"},
        }
    ]
    group["item"][0]["extension"] = [
        {
            "url": EXT_ENABLE_WHEN_EXPRESSION,
            "valueExpression": {"language": "text/fhirpath", "expression": "%anzahl > 0"},
        }
    ]
    parse_questionnaire(form)  # inside the group: fine
    item(form, "kommentar")["extension"] = [
        {
            "url": EXT_CALCULATED_EXPRESSION,
            "valueExpression": {"language": "text/fhirpath", "expression": "%anzahl"},
        }
    ]
    del item(form, "kommentar")["initial"]
    assert "unknown variable %anzahl" in _refused(form).message


def test_an_expression_in_another_language_is_refused() -> None:
    form = visit_form()
    item(form, "bmi")["extension"][0]["valueExpression"]["language"] = "text/cql"
    error = _refused(form)
    assert error.path == "$.item[6].extension[0].valueExpression.language"


@pytest.mark.parametrize(
    ("change", "path", "says"),
    [
        (
            lambda f: item(f, "raucher").update(type="question"),
            "$.item[2].type",
            "unknown item type 'question'",
        ),
        (
            lambda f: item(f, "initialen").update(maxLength="3"),
            "$.item[1].item[0].maxLength",
            "positive whole number",
        ),
        (lambda f: item(f, "initialen").update(required="ja"), "$.item[1].item[0].required", "true or false"),
        (lambda f: item(f, "initialen").pop("linkId"), "$.item[1].item[0].linkId", "is required"),
        (
            lambda f: item(f, "initialen")["extension"][0].update(valueString="[A-"),
            "$.item[1].item[0].extension[0].valueString",
            "not a regular expression",
        ),
        (
            lambda f: item(f, "packungsjahre")["enableWhen"][0].update(operator="~"),
            "$.item[3].enableWhen[0].operator",
            "unknown operator",
        ),
        (
            lambda f: item(f, "schweregrad").pop("enableBehavior"),
            "$.item[7].enableBehavior",
            "more than one enableWhen",
        ),
        (
            lambda f: item(f, "schweregrad").update(answerValueSet="#fehlt"),
            "$.item[7].answerValueSet",
            "no contained ValueSet",
        ),
        (
            lambda f: item(f, "packungsjahre")["extension"][0].update(valueInteger="0"),
            "$.item[3].extension[0].valueInteger",
            "whole number",
        ),
        (
            lambda f: item(f, "geburtsdatum")["extension"][0].update(valueDate="01.01.1900"),
            "$.item[1].item[1].extension[0].valueDate",
            "not a FHIR date",
        ),
        (lambda f: item(f, "kommentar").update(initial=[{}]), "$.item[16].initial[0]", "needs a value[x]"),
        (lambda f: f.update(status="final"), "$.status", "draft, active"),
        (lambda f: f.update(resourceType="QuestionnaireResponse"), "$.resourceType", "'Questionnaire'"),
        (lambda f: f.update(item={"linkId": "x"}), "$.item", "list of items"),
    ],
)
def test_a_malformed_element_is_refused_with_its_json_path(change, path: str, says: str) -> None:
    form = visit_form()
    change(form)
    error = _refused(form)
    assert (error.path, says in error.message) == (path, True), error


def test_items_nested_too_deep_are_refused_without_recursion_trouble() -> None:
    top: dict = {"linkId": "g0", "type": "group"}
    current = top
    for depth in range(1, 200):
        child = {"linkId": f"g{depth}", "type": "group"}
        current["item"] = [child]
        current = child
    error = _refused({"resourceType": "Questionnaire", "status": "draft", "item": [top]})
    assert "deeper than" in error.message


def test_a_non_object_is_not_a_questionnaire() -> None:
    assert _refused([]).path == "$"  # type: ignore[arg-type]
