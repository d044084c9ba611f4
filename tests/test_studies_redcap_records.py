"""Both GECCO REDCap test exports import into QuestionnaireResponses with the rows per event and
instrument preserved, and export back to the same columns and cells."""

from __future__ import annotations

import collections

import pytest
from shared_data import shared_data_folder

from datenraum.studies.questionnaire import parse_questionnaire
from datenraum.studies.redcap import RedcapError, dictionary_to_questionnaires
from datenraum.studies.redcap.csvtext import read_rows
from datenraum.studies.redcap.records import FORM_STATUS, records_to_responses, responses_to_records
from datenraum.studies.responses import check_response

REALISTIC = "REDCap_Realistic_Data_2021-08-04.csv"
SYNTHETIC = "REDCap_Synthetic_Data_2021-08-04.csv"
# The one documented change of a re-export: a decimal's trailing zeros ("15,0" comes back as "15").


@pytest.fixture(scope="module")
def folder():
    return shared_data_folder("edc") / "gecco-redcap"


@pytest.fixture(scope="module")
def questionnaires(folder):
    text = (folder / "datadictionary.csv").read_text(encoding="utf-8")
    return dictionary_to_questionnaires(text, "datadictionary.csv").questionnaires


def _rows(text: str) -> list[tuple[str, ...]]:
    return [row.values for row in read_rows(text, "x")]


@pytest.mark.parametrize(("name", "records", "rows"), [(REALISTIC, 10, 110), (SYNTHETIC, 1, 184)])
def test_an_export_imports_with_its_rows_per_event_and_instrument(
    folder, questionnaires, name, records, rows
) -> None:
    text = (folder / name).read_text(encoding="utf-8")
    imported = records_to_responses(questionnaires, text, name)
    body = _rows(text)[1:]
    assert len({row[0] for row in body}) == records and len(body) == rows
    assert imported.rows_per_event_and_instrument == collections.Counter((row[1], row[2]) for row in body)
    repeated = collections.Counter(
        (r["extension"][0]["valueString"], r["questionnaire"].split("/")[-1].split("|")[0])
        for r in imported.responses
        if len(r.get("extension", [])) == 2
    )
    instruments = {(e, i): n for (e, i), n in imported.rows_per_event_and_instrument.items() if i}
    assert repeated == instruments  # one response per repeat instance
    events = {key[0] for key in imported.rows_per_event_and_instrument}
    assert events == {"basisdaten_arm_1", "1_fall_arm_1", "2_fall_arm_1", "3_fall_arm_1"}


def _same_cell(old: str, new: str) -> bool:
    if old == new:
        return True
    try:
        return float(old.replace(",", ".")) == float(new.replace(",", "."))
    except ValueError:
        return False


@pytest.mark.parametrize("name", [REALISTIC, SYNTHETIC])
def test_the_re_export_reproduces_the_input_columns_and_cells(folder, questionnaires, name) -> None:
    text = (folder / name).read_text(encoding="utf-8")
    imported = records_to_responses(questionnaires, text, name)
    before, after = (
        _rows(text),
        _rows(responses_to_records(questionnaires, imported.responses, imported.columns)),
    )
    assert after[0] == before[0] and len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert all(_same_cell(a, b) for a, b in zip(old, new, strict=True)), old[:4]


def test_values_become_typed_answers_and_the_form_status_a_tag(folder, questionnaires) -> None:
    imported = records_to_responses(
        questionnaires, (folder / REALISTIC).read_text(encoding="utf-8"), REALISTIC
    )
    labs = [r for r in imported.responses if "/laborwerte|" in r["questionnaire"]]
    answers = {i["linkId"]: i["answer"][0] for r in labs for i in r["item"]}
    assert answers["labor_datum"]["valueDateTime"].endswith(("+01:00", "+02:00"))
    vitals = [r for r in imported.responses if "/vitalparameter|" in r["questionnaire"]]
    temperatures = [i["answer"][0] for r in vitals for i in r["item"] if i["linkId"] == "korpertemperatur"]
    assert all(isinstance(t["valueDecimal"], float) for t in temperatures) and temperatures
    statuses = collections.Counter(r["meta"]["tag"][0]["code"] for r in imported.responses)
    assert set(statuses) <= {"incomplete", "unverified", "complete"} and statuses["complete"] > 0
    assert all(r["meta"]["tag"][0]["system"] == FORM_STATUS for r in imported.responses)


def test_imported_responses_pass_the_server_check_except_real_inconsistencies(folder, questionnaires) -> None:
    forms = {f"{q['url']}|{q['version']}": parse_questionnaire(q) for q in questionnaires}
    imported = records_to_responses(
        questionnaires, (folder / SYNTHETIC).read_text(encoding="utf-8"), SYNTHETIC
    )
    problems = [p for r in imported.responses for p in check_response(forms[r["questionnaire"]], r)]
    assert problems == []


def test_the_demographics_response_carries_the_admission_date_its_age_reads(folder, questionnaires) -> None:
    imported = records_to_responses(
        questionnaires, (folder / SYNTHETIC).read_text(encoding="utf-8"), SYNTHETIC
    )
    demographics = next(r for r in imported.responses if "/demographie|" in r["questionnaire"])
    items = {i["linkId"]: i["answer"][0] for i in demographics["item"]}
    assert {"aufnahmedatum", "geburtsdatum", "alter"} <= set(items)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda rows: rows[1].__setitem__(5, "7"), "gee_version: '7' is not one of the codes 1, 2"),
        (lambda rows: rows[0].__setitem__(5, "gibtsnicht"), "the column 'gibtsnicht' is not a field"),
        (lambda rows: rows[1].__setitem__(3, "x"), "'x' is not a repeat instance"),
        (lambda rows: rows[1].__setitem__(2, "demografie"), "'demografie' is not a form"),
        (lambda rows: rows[1].__setitem__(19, "3"), "the form status '3' is not 0, 1 or 2"),
    ],
)
def test_a_bad_cell_names_file_line_and_column(folder, questionnaires, change, says: str) -> None:
    rows = [list(row) for row in _rows((folder / REALISTIC).read_text(encoding="utf-8"))]
    change(rows)
    text = "\n".join(",".join(f'"{cell}"' for cell in row) for row in rows) + "\n"
    with pytest.raises(RedcapError) as caught:
        records_to_responses(questionnaires, text, "export.csv")
    error = caught.value
    assert error.source == "export.csv" and error.line is not None and error.column is not None
    assert says in error.message, error.message
