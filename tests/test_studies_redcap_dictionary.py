"""The GECCO REDCap data dictionary (547 fields, 14 forms) becomes Questionnaires and comes back: every
type mapped, every branching rule converted, the age and SOFA calculations evaluating as REDCap does."""

from __future__ import annotations

import collections
import datetime as dt

import pytest
from shared_data import shared_data_folder

from datenraum.studies.questionnaire import Value, parse_questionnaire
from datenraum.studies.redcap import (
    RedcapError,
    dictionary_to_questionnaires,
    questionnaires_to_dictionary,
)
from datenraum.studies.redcap.csvtext import read_rows
from datenraum.studies.redcap.fields import CHOICES, COLUMNS
from datenraum.studies.responses import check_response

# The columns a round trip may change, and how: everything else comes back character for character.
DOCUMENTED_DIFFERENCES = {CHOICES: "choices are written in REDCap's canonical 'code, label | code, label'"}
HEADER = ",".join(f'"{c}"' if "," in c else c for c in COLUMNS)


@pytest.fixture(scope="module")
def dictionary_text() -> str:
    return (shared_data_folder("edc") / "gecco-redcap" / "datadictionary.csv").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def conversion(dictionary_text):
    return dictionary_to_questionnaires(dictionary_text, "datadictionary.csv")


@pytest.fixture(scope="module")
def forms(conversion):
    return {q["name"]: parse_questionnaire(q) for q in conversion.questionnaires}


def test_gecco_becomes_fourteen_questionnaires_holding_all_547_fields(conversion, forms) -> None:
    assert len(conversion.questionnaires) == 14
    assert len(conversion.report) == 547
    assert {r.status for r in conversion.report} <= {"converted", "partial"}
    partial = [(r.field, r.notes) for r in conversion.report if r.status == "partial"]
    assert partial == [
        (
            "alter",
            ("the calculation reads aufnahmedatum of another form: a hidden copy item holds the value",),
        )
    ]
    fields = {r.field for r in conversion.report}
    assert all(any(f in form.items_by_link_id for form in forms.values()) for f in fields)


def test_every_field_type_of_gecco_is_mapped(dictionary_text, conversion) -> None:
    rows = [r.values for r in read_rows(dictionary_text, "d")[1:]]
    redcap_types = {row[0]: row[3] for row in rows}
    assert collections.Counter(redcap_types.values()) == {
        "dropdown": 343,
        "text": 181,
        "descriptive": 15,
        "calc": 8,
    }
    mapped = collections.defaultdict(set)
    for report in conversion.report:
        mapped[redcap_types[report.field]].add(report.item_type)
    assert mapped == {
        "dropdown": {"choice"},
        "text": {"string", "date", "dateTime", "integer", "decimal"},
        "descriptive": {"display"},
        "calc": {"decimal"},
    }


def test_all_256_branching_rules_become_enable_when(dictionary_text, forms) -> None:
    rows = [r.values for r in read_rows(dictionary_text, "d")[1:]]
    branched = [row[0] for row in rows if row[11].strip()]
    assert len(branched) == 256
    items = {i.link_id: i for form in forms.values() for i in form.walk()}
    assert all(items[name].enable_when for name in branched)
    consent = items["miibc_widerruf"]
    assert [(c.question, c.operator, c.answer.value.code) for c in consent.enable_when] == [
        ("miibc_vorlage", "=", "1"),
        ("miibc_consent_status", "=", "3"),
    ]
    assert consent.enable_behavior == "all"
    assert items["miibc_w_dat_dok"].enable_behavior == "any"
    blank_tests = [i.link_id for i in items.values() if any(c.operator == "exists" for c in i.enable_when)]
    assert len(blank_tests) == 37  # the travel fields shown once `[reiseaktivitat_..._n] <> ""`


def test_validations_required_identifier_and_action_tags_are_converted(forms) -> None:
    demographie = forms["demographie"].items_by_link_id
    birth = demographie["geburtsdatum"]
    assert (birth.type, birth.identifier, str(birth.min_value.value)) == ("date", True, "1900-01-01")
    record = forms["einwilligungserklaerung_mii_broad_consent"].items_by_link_id["record_id"]
    assert (record.required, record.identifier) == (True, True)
    temperature = forms["vitalparameter"].items_by_link_id["korpertemperatur"]
    assert (temperature.type, temperature.min_value.number, temperature.max_value.number) == (
        "decimal",
        27.0,
        44.0,
    )
    hidden = forms["anamnese_risikofaktoren"].items_by_link_id["chronische_lungenerkrankungen_code"]
    assert (hidden.hidden, hidden.initial) == (True, (Value("String", "1"),))
    country = forms["anamnese_risikofaktoren"].items_by_link_id["reiseaktivitat_country_1"]
    assert country.item_control == "autocomplete"


def _response(**answers) -> dict:
    items = []
    for link_id, value in answers.items():
        if isinstance(value, str) and len(value) == 10 and value[4] == "-":
            items.append({"linkId": link_id, "answer": [{"valueDate": value}]})
        elif isinstance(value, str):
            items.append({"linkId": link_id, "answer": [{"valueCoding": {"code": value}}]})
        else:
            items.append({"linkId": link_id, "answer": [{"valueDecimal": value}]})
    return {"resourceType": "QuestionnaireResponse", "status": "completed", "item": items}


def _redcap_age(admission: str, birth: str) -> int:
    """REDCap: round(datediff([aufnahmedatum], [geburtsdatum], "y"), 0), "y" being 365.2425 days."""
    days = abs((dt.date.fromisoformat(birth) - dt.date.fromisoformat(admission)).days)
    return int(days / 365.2425 + 0.5)


@pytest.mark.parametrize(
    ("admission", "birth"),
    [
        ("2020-06-28", "1967-11-29"),
        ("2020-03-01", "2000-02-29"),
        ("2021-01-01", "1930-12-19"),
        ("2020-12-02", "2020-01-02"),
    ],
)
def test_the_age_calculation_equals_redcap(forms, admission: str, birth: str) -> None:
    alter = forms["demographie"].items_by_link_id["alter"]
    result = alter.calculated_expression.compiled.evaluate(
        _response(geburtsdatum=birth, aufnahmedatum=admission), {}
    )
    assert [float(v) for v in result] == [_redcap_age(admission, birth)]


def test_the_age_copies_the_admission_date_from_its_form(forms) -> None:
    copy = forms["demographie"].items_by_link_id["aufnahmedatum"]
    assert copy.hidden and copy.copied_from == forms["krankheitsbeginn_aufnahme"].url
    alter = forms["demographie"].items_by_link_id["alter"]
    assert alter.calculated_expression.compiled.evaluate(_response(geburtsdatum="1967-11-29"), {}) == []


SOFA = ("resp", "ns", "cvs", "liv", "coa", "kid")


@pytest.mark.parametrize("scores", [(0, 1, 2, 3, 4, 0), (4, 4, 4, 4, 4, 4), (2, None, 1, None, None, 3)])
def test_the_sofa_scores_equal_redcap(forms, scores) -> None:
    form = forms["vitalparameter"] if "sofa_total_score" in forms["vitalparameter"].items_by_link_id else None
    form = form or next(f for f in forms.values() if "sofa_total_score" in f.items_by_link_id)
    chosen = {
        f"sofa_score_{organ}": f"{organ}{score}"
        for organ, score in zip(SOFA, scores, strict=True)
        if score is not None
    }
    response = _response(**chosen)
    for organ, score in zip(SOFA, scores, strict=True):
        calc = form.items_by_link_id[f"sofa_score_{organ}_calc"].calculated_expression
        result = calc.compiled.evaluate(response, {})
        assert [float(v) for v in result] == ([] if score is None else [score])  # REDCap: "NaN" is blank
        if score is not None:
            response["item"].append(
                {"linkId": f"sofa_score_{organ}_calc", "answer": [{"valueDecimal": score}]}
            )
    total = form.items_by_link_id["sofa_total_score"].calculated_expression.compiled.evaluate(response, {})
    assert [float(v) for v in total] == [
        sum(s for s in scores if s is not None)
    ]  # REDCap's sum() skips blanks


def test_a_tampered_sofa_total_is_refused_by_the_server(forms) -> None:
    form = next(f for f in forms.values() if "sofa_total_score" in f.items_by_link_id)
    response = _response(sofa_score_resp="resp2")
    response["item"].append({"linkId": "sofa_score_resp_calc", "answer": [{"valueDecimal": 2}]})
    response["item"].append({"linkId": "sofa_total_score", "answer": [{"valueDecimal": 9}]})
    response["questionnaire"] = form.canonical
    problems = check_response(form, response)
    assert [p.link_id for p in problems] == ["sofa_total_score"]
    assert "calculated as 2.0" in problems[0].message


def test_the_round_trip_gives_the_dictionary_back_but_the_documented_columns(
    dictionary_text, conversion
) -> None:
    exported = questionnaires_to_dictionary(conversion.questionnaires)
    assert {r.status for r in exported.report} == {"converted"}
    before = [r.values for r in read_rows(dictionary_text, "before")]
    after = [r.values for r in read_rows(exported.text, "after")]
    assert len(after) == len(before) == 548
    changed = collections.Counter()
    for old, new in zip(before, after, strict=True):
        for column, (a, b) in enumerate(zip(old, new, strict=True)):
            if a != b:
                changed[column] += 1
                assert column in DOCUMENTED_DIFFERENCES, (old[0], COLUMNS[column], a, b)
                assert a.replace(" ", "") == b.replace(" ", "")
    assert set(changed) == set(DOCUMENTED_DIFFERENCES)


def test_an_edited_form_exports_what_it_now_says(conversion) -> None:
    questionnaires = [dict(q) for q in conversion.questionnaires]
    consent = next(q for q in questionnaires if q["name"] == "einwilligungserklaerung_mii_broad_consent")
    consent["item"] = [dict(i) for i in consent["item"]]
    version = next(i for i in consent["item"] if i["linkId"] == "gee_version")
    version["enableWhen"] = [{"question": "miibc_vorlage", "operator": "=", "answerCoding": {"code": "2"}}]
    rows = {r.values[0]: r.values for r in read_rows(questionnaires_to_dictionary(questionnaires).text, "x")}
    assert rows["gee_version"][11] == '[miibc_vorlage] = "2"'


def _dictionary(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ("", "d.csv", "empty"),
        ("Variable,Form\n", "d.csv:1:1", "expected 'Variable / Field Name'"),
        (_dictionary("a,f,,text,A,,,,,,,,,,,,"), "d.csv:2", "17 cells, not 18"),
        (
            _dictionary("a,f,,text,A,,,,,,,,,,,,,", "a,f,,text,B,,,,,,,,,,,,,"),
            "d.csv:3:1",
            "defined twice (also on line 2)",
        ),
        (_dictionary("A b,f,,text,A,,,,,,,,,,,,,"), "d.csv:2:1", "not a REDCap variable name"),
        (
            _dictionary('a,f,,dropdown,A,"1 Ja | 2,Nein",,,,,,,,,,,,'),
            "d.csv:2:17",
            "'1 Ja' is not 'code, label'",
        ),
        (_dictionary('a,f,,dropdown,A,"1,Ja | 1,Nein",,,,,,,,,,,,'), "d.csv:2:17", "occurs twice"),
        (_dictionary('a,f,,text,"A,,,,,,,,,,,,,'), "d.csv:2:11", "quoted cell is not closed"),
        (_dictionary('a,f,,text,A"x,,,,,,,,,,,,,'), "d.csv:2:12", "quote inside an unquoted cell"),
    ],
)
def test_a_dictionary_that_cannot_be_read_names_file_line_and_column(
    text: str, where: str, says: str
) -> None:
    with pytest.raises(RedcapError) as caught:
        dictionary_to_questionnaires(text, "d.csv")
    assert str(caught.value).startswith(where + ":") and says in caught.value.message, str(caught.value)


def test_what_cannot_be_converted_is_reported_per_field() -> None:
    conversion = dictionary_to_questionnaires(
        _dictionary(
            "a,f,,text,A,,,integer,,,,,,,,,,",
            'b,f,,dropdown,B,"1, Ja | 2, Nein",,,,,,,,,,,,',
            "c,f,,bogus,C,,,,,,,,,,,,,",
            'd,f,,calc,D,"stdev([a], 2)",,,,,,,,,,,,',
            "e,f,,text,E,,,,,,,[a] > 3 and ([b] = '1' or [b] = '2'),,,,,,",
            "g,f,,text,G,,,,,,,[b][a] = 1,,,,,,@WORDLIMIT=3",
            "h,f,,text,H,,,date_ymd,today,,,,,,,,,",
        ),
        "small.csv",
    )
    notes = {r.field: (r.status, r.notes) for r in conversion.report}
    assert notes["a"] == ("converted", ())
    assert notes["c"] == ("not converted", ("the field type 'bogus' has no Questionnaire equivalent",))
    assert notes["d"][0] == "partial" and "stdev() is not converted" in notes["d"][1][0]
    assert notes["e"] == ("converted", ())  # and inside or: an enableWhenExpression
    assert "event-qualified" in notes["g"][1][0] and "@WORDLIMIT" in notes["g"][1][1]
    assert "minimum 'today'" in notes["h"][1][0]
    form = parse_questionnaire(conversion.questionnaires[0])
    assert form.items_by_link_id["e"].enable_when_expression is not None
