"""The statistician's exports: one table per form (record, event, repeat instance, then the items, a
checkbox as one 0/1 column per option), as CSV with codes, CSV with labels and a data dictionary, and as
SPSS, Stata, SAS and R files that read back with their values and labels; identifying items left out and
dates shifted per record on request; the CSV files byte-identical for the same responses."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyreadr
import pyreadstat
import pytest
from shared_data import shared_data_folder

from datenraum.studies.exports import ExportError, export_form, form_table
from datenraum.studies.questionnaire import EXT_IDENTIFIER, parse_questionnaire
from datenraum.studies.redcap.records import EXT_EVENT, EXT_REPEAT_INSTANCE

URL = "https://example.org/fhir/Questionnaire/visite"
FORM = parse_questionnaire(
    {
        "resourceType": "Questionnaire",
        "url": URL,
        "version": "2",
        "name": "visite",
        "status": "active",
        "item": [
            {"linkId": "initialen", "text": "Initialen", "type": "string",
             "extension": [{"url": EXT_IDENTIFIER, "valueBoolean": True}]},
            {"linkId": "visitdatum", "text": "Datum der Visite", "type": "date"},
            {"linkId": "gewicht", "text": "Gewicht (kg)", "type": "decimal"},
            {"linkId": "raucher", "text": "Raucher", "type": "choice",
             "answerOption": [{"valueCoding": {"code": "1", "display": "Ja"}},
                              {"valueCoding": {"code": "0", "display": "Nein"}}]},
            {"linkId": "symptome", "text": "Symptome", "type": "choice", "repeats": True,
             "answerOption": [{"valueCoding": {"code": "fieber", "display": "Fieber"}},
                              {"valueCoding": {"code": "husten", "display": "Husten"}}]},
            {"linkId": "labor", "text": "Labor", "type": "group", "item": [
                {"linkId": "crp", "text": "CRP (mg/l)", "type": "integer"},
                {"linkId": "abnahme", "text": "Abnahme", "type": "dateTime"},
            ]},
        ],
    }
)  # fmt: skip


def response(record: str, event: str, instance: int | None, **answers: object) -> dict:
    extensions = [{"url": EXT_EVENT, "valueString": event}]
    if instance is not None:
        extensions.append({"url": EXT_REPEAT_INSTANCE, "valueInteger": instance})
    values = {
        "initialen": [{"valueString": answers.get("initialen", "MM")}],
        "visitdatum": [{"valueDate": answers.get("visitdatum", "2026-03-02")}],
        "gewicht": [{"valueDecimal": answers.get("gewicht", 81.5)}],
        "raucher": [{"valueCoding": {"code": answers.get("raucher", "0")}}],
        "symptome": [{"valueCoding": {"code": c}} for c in answers.get("symptome", ("husten",))],
    }
    items = [{"linkId": k, "answer": v} for k, v in values.items()]
    items.append({"linkId": "labor", "item": [
        {"linkId": "crp", "answer": [{"valueInteger": answers.get("crp", 12)}]},
        {"linkId": "abnahme", "answer": [{"valueDateTime": "2026-03-02T09:30:00+01:00"}]},
    ]})  # fmt: skip
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": f"{URL}|2",
        "status": "completed",
        "subject": {"identifier": {"value": record}},
        "extension": extensions,
        "item": items,
    }


RESPONSES = [
    response("PSN-B", "baseline_arm_1", None, raucher="1", symptome=("fieber", "husten"), crp=40),
    response("PSN-A", "baseline_arm_1", None),
    response("PSN-A", "woche_4_arm_1", 1, gewicht=79.0, symptome=()),
]


def test_one_row_per_response_sorted_with_record_event_instance_and_checkbox_columns() -> None:
    table = form_table(FORM, RESPONSES)
    assert [c.name for c in table.columns] == [
        "record_id", "redcap_event_name", "redcap_repeat_instance", "initialen", "visitdatum", "gewicht",
        "raucher", "symptome___fieber", "symptome___husten", "crp", "abnahme",
    ]  # fmt: skip
    assert table.rows[0][:3] == ("PSN-A", "baseline_arm_1", None)
    assert table.rows[1][:3] == ("PSN-A", "woche_4_arm_1", 1)
    by_record = {row[0]: row for row in table.rows if row[1] == "baseline_arm_1"}
    assert by_record["PSN-B"][6:10] == ("1", 1, 1, 40)
    assert table.rows[1][7:9] == (0, 0)
    assert by_record["PSN-A"][10] == dt.datetime(2026, 3, 2, 8, 30)  # UTC


def test_identifying_items_are_left_out_and_dates_move_by_one_shift_per_record() -> None:
    table = form_table(FORM, RESPONSES, drop_identifiers=True, date_shift_key=b"k" * 32)
    names = [c.name for c in table.columns]
    assert "initialen" not in names
    date, moment = names.index("visitdatum"), names.index("abnahme")
    shifts = {}
    for row in table.rows:
        shift = dt.date(2026, 3, 2) - row[date]
        assert dt.timedelta(0) <= shift < dt.timedelta(days=365)
        assert dt.datetime(2026, 3, 2, 8, 30) - row[moment] == shift  # intervals within a record kept
        shifts.setdefault(row[0], set()).add(shift)
    assert all(len(s) == 1 for s in shifts.values())
    again = form_table(FORM, RESPONSES, drop_identifiers=True, date_shift_key=b"k" * 32)
    assert again == table


def test_the_csv_files_are_byte_identical_for_the_same_responses(tmp_path: Path) -> None:
    formats = ("csv", "labels.csv", "dictionary.csv")
    first = export_form(form_table(FORM, RESPONSES), tmp_path / "a", formats)
    second = export_form(form_table(FORM, list(reversed(RESPONSES))), tmp_path / "b", formats)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    labels = (tmp_path / "a" / "visite.labels.csv").read_text().splitlines()
    assert labels[1].split(",")[6] == "Nein" and labels[3].split(",")[6] == "Ja"
    dictionary = (tmp_path / "a" / "visite.dictionary.csv").read_text().splitlines()
    assert 'raucher,Raucher,string,"1, Ja | 0, Nein",' in dictionary
    assert "initialen,Initialen,string,,y" in dictionary


def test_the_statistical_files_read_back_with_values_and_labels(tmp_path: Path) -> None:
    files = {
        p.suffix: p for p in export_form(form_table(FORM, RESPONSES), tmp_path, ("sav", "dta", "xpt", "rds"))
    }
    frame, meta = pyreadstat.read_sav(str(files[".sav"]))
    assert list(frame["record_id"]) == ["PSN-A", "PSN-A", "PSN-B"]
    assert list(frame["gewicht"]) == [81.5, 79.0, 81.5]
    assert meta.column_names_to_labels["crp"] == "CRP (mg/l)"
    assert meta.variable_value_labels["raucher"] == {"1": "Ja", "0": "Nein"}
    stata, stata_meta = pyreadstat.read_dta(str(files[".dta"]))
    assert list(stata["symptome___fieber"]) == [0, 0, 1]
    assert stata_meta.column_names_to_labels["visitdatum"] == "Datum der Visite"
    sas, _ = pyreadstat.read_xport(str(files[".xpt"]))
    assert list(sas["crp"]) == [12, 12, 40]
    r = pyreadr.read_r(str(files[".rds"]))[None]
    assert list(r["raucher"]) == ["0", "0", "1"]


def test_a_response_without_its_record_or_with_a_bad_date_is_refused_by_name() -> None:
    nameless = {**RESPONSES[0], "id": "qr-7", "subject": {}}
    with pytest.raises(
        ExportError, match=r"response qr-7: subject.identifier.value \(the record\) is missing"
    ):
        form_table(FORM, [nameless])
    bad = response("PSN-C", "baseline_arm_1", None, visitdatum="2.3.2026")
    with pytest.raises(ExportError, match=r"item visitdatum: '2\.3\.2026' is not a date"):
        form_table(FORM, [bad])
    with pytest.raises(ExportError, match="formats: docx unknown"):
        export_form(form_table(FORM, RESPONSES), Path("/nonexistent"), ("docx",))


def test_the_command_line_exports_the_gecco_records_one_table_per_form(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from datenraum.cli import main

    folder = shared_data_folder("edc") / "gecco-redcap"
    runner = CliRunner()
    imported = runner.invoke(
        main,
        ["studies", "import-redcap-records", str(folder / "datadictionary.csv"),
         str(folder / "REDCap_Realistic_Data_2021-08-04.csv"), "--out", str(tmp_path / "in")],
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    exported = runner.invoke(
        main,
        ["studies", "export", str(tmp_path / "in" / "questionnaires"), str(tmp_path / "in" / "responses.ndjson"),
         "--out", str(tmp_path / "out"), "--format", "csv", "--format", "dictionary.csv", "--drop-identifiers"],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    lines = dict(line.split("\t", 1) for line in exported.output.splitlines())
    per_form: dict[str, int] = {}
    for line in (tmp_path / "in" / "responses.ndjson").read_text().splitlines():
        name = json.loads(line)["questionnaire"].split("/")[-1].split("|")[0]
        per_form[name] = per_form.get(name, 0) + 1
    assert len(lines) == 14
    assert {form: int(text.split()[0]) for form, text in lines.items() if form in per_form} == per_form
    assert lines["einwilligungserklaerung_mii_broad_consent"].startswith("10 rows")
    broken = tmp_path / "broken.ndjson"
    broken.write_text('{"resourceType": "QuestionnaireResponse"}\n{oops\n')
    refused = runner.invoke(
        main,
        [
            "studies",
            "export",
            str(tmp_path / "in" / "questionnaires"),
            str(broken),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert refused.exit_code == 2 and f"{broken}:2:2: not JSON" in refused.output
