"""`datenraum studies ...`: the REDCap commands write what the library converts, and refuse bad input
with the file, line and column, never a stack trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from shared_data import shared_data_folder

from datenraum.cli import main
from datenraum.studies.redcap.csvtext import read_rows


@pytest.fixture(scope="module")
def gecco() -> Path:
    return shared_data_folder("edc") / "gecco-redcap"


def test_a_dictionary_imports_to_a_folder_and_exports_back(gecco: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "studies",
            "import-redcap-dictionary",
            str(gecco / "datadictionary.csv"),
            "--out",
            str(tmp_path / "q"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "14 Questionnaires" in result.output and "546 converted, 1 partial of 547 fields" in result.output
    files = sorted(p.name for p in (tmp_path / "q").iterdir())
    assert len(files) == 16 and "conversion-report.txt" in files and "demographie.json" in files
    report = json.loads((tmp_path / "q" / "conversion-report.json").read_text())
    assert len(report["fields"]) == 547 and report["forms"][0] == "einwilligungserklaerung_mii_broad_consent"
    back = tmp_path / "back.csv"
    result = runner.invoke(
        main, ["studies", "export-redcap-dictionary", str(tmp_path / "q"), "--out", str(back)]
    )
    assert result.exit_code == 0, result.output
    original = [
        r.values[0] for r in read_rows((gecco / "datadictionary.csv").read_text(encoding="utf-8"), "a")
    ]
    assert [r.values[0] for r in read_rows(back.read_text(encoding="utf-8"), "b")] == original


@pytest.mark.parametrize("out_format", ["ndjson", "bundle"])
def test_records_import_to_responses(gecco: Path, tmp_path: Path, out_format: str) -> None:
    records = gecco / "REDCap_Synthetic_Data_2021-08-04.csv"
    result = CliRunner().invoke(
        main,
        [
            "studies",
            "import-redcap-records",
            str(gecco / "datadictionary.csv"),
            str(records),
            "--out",
            str(tmp_path),
            "--format",
            out_format,
        ],
    )
    assert result.exit_code == 0, result.output
    assert (
        "209 QuestionnaireResponses" in result.output and "1_fall_arm_1\tlaborwerte\t20 rows" in result.output
    )
    if out_format == "ndjson":
        lines = (tmp_path / "responses.ndjson").read_text().splitlines()
        assert len(lines) == 209 and json.loads(lines[0])["resourceType"] == "QuestionnaireResponse"
    else:
        bundle = json.loads((tmp_path / "responses.json").read_text())
        assert bundle["type"] == "collection" and len(bundle["entry"]) == 209


def test_a_broken_dictionary_is_refused_with_its_place(tmp_path: Path) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b"Variable / Field Name,Form\xff Name\n")
    result = CliRunner().invoke(
        main, ["studies", "import-redcap-dictionary", str(broken), "--out", str(tmp_path / "q")]
    )
    assert result.exit_code == 2
    assert f"error: {broken}:1:" in result.output and "not UTF-8" in result.output
    assert not (tmp_path / "q").exists()


def test_an_export_of_a_folder_with_broken_json_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "form.json").write_text('{"resourceType": "Questionnaire",\n  "status": }\n')
    result = CliRunner().invoke(
        main, ["studies", "export-redcap-dictionary", str(tmp_path), "--out", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 2 and f"{tmp_path / 'form.json'}:2:13: not JSON" in result.output
