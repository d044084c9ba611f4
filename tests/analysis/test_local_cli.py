"""Local mode on the command line: `datenraum analysis glm|summary --local-sites DIR ... --json`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from datenraum.cli import main


@pytest.fixture
def sites(analysis_testdata: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "sites"
    folder.mkdir()
    for i in (1, 2, 3):  # into the test's temporary folder only, never into the repository
        shutil.copy(analysis_testdata / f"cnsim/CNSIM{i}.csv", folder / f"study{i}.csv")
    return folder


def test_glm_as_json(sites: Path, analysis_testdata: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "analysis",
            "glm",
            "--local-sites",
            str(sites),
            "--formula",
            "LAB_TSC ~ LAB_TRIG",
            "--family",
            "gaussian",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    reference = json.loads((analysis_testdata / "reference_results.json").read_text())[
        "gaussian_LAB_TSC~LAB_TRIG"
    ]
    assert body["deviance"] == pytest.approx(reference["deviance"], rel=1e-8)
    assert body["coefficients"]["LAB_TRIG"]["estimate"] == pytest.approx(
        reference["coef"]["LAB_TRIG"], rel=1e-8
    )
    assert body["sites"] == ["study1", "study2", "study3"]


def test_summary_as_json(sites: Path) -> None:
    result = CliRunner().invoke(
        main, ["analysis", "summary", "--local-sites", str(sites), "--variable", "LAB_TSC", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["LAB_TSC"]["mean"] == pytest.approx(5.85192485623003, rel=1e-12)


def test_errors_are_structured_and_name_the_site(sites: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "analysis",
            "glm",
            "--local-sites",
            str(sites),
            "--formula",
            "DIS_AMI ~ LAB_TSC",
            "--family",
            "binomial",
            "--json",
        ],
    )
    body = json.loads(result.output)
    assert result.exit_code == 1 and body["ok"] is False
    assert {e["site"] for e in body["errors"]} <= {"study1", "study2", "study3"}
    assert all(e["rule"] and e["message_de"] for e in body["errors"] if e["code"] == "disclosure")
    bad = CliRunner().invoke(
        main, ["analysis", "glm", "--local-sites", str(sites), "--formula", "y ~ eval(x)"]
    )
    assert bad.exit_code == 2 and "not an allowed transform" in bad.output
