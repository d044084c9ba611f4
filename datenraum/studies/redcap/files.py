"""The files of the REDCap commands: a conversion written as a folder (one Questionnaire JSON per form,
`conversion-report.json` with the forms' order, `conversion-report.txt` for people), read back for the
export; responses as NDJSON or a FHIR Bundle. Each file is written to a temporary name and renamed, so
an interrupted run leaves no half-written file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from datenraum.studies.redcap.csvtext import RedcapError
from datenraum.studies.redcap.dictionary import DictionaryConversion, FieldReport

REPORT_JSON = "conversion-report.json"
REPORT_TEXT = "conversion-report.txt"


def read_text(path: Path) -> str:
    """A UTF-8 text file; an encoding error names the line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise RedcapError(str(path), line, column, "not UTF-8 text (REDCap exports UTF-8)") from None


def _write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def report_text(report: Sequence[FieldReport]) -> str:
    counts: dict[str, int] = {}
    for entry in report:
        counts[entry.status] = counts.get(entry.status, 0) + 1
    lines = [", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + f" of {len(report)} fields"]
    for entry in report:
        if entry.notes or entry.status != "converted":
            for note in entry.notes or ("",):
                lines.append(f"line {entry.line}\t{entry.form}\t{entry.field}\t{entry.status}\t{note}")
    return "\n".join(lines) + "\n"


def write_conversion(conversion: DictionaryConversion, folder: Path) -> list[Path]:
    """Write the Questionnaires (`<form>.json`) and both reports into `folder` (created if missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for questionnaire in conversion.questionnaires:
        path = folder / f"{questionnaire['name']}.json"
        _write(path, json.dumps(questionnaire, ensure_ascii=False, indent=2) + "\n")
        written.append(path)
    forms = [q["name"] for q in conversion.questionnaires]
    report = {"forms": forms, "fields": [entry.to_json() for entry in conversion.report]}
    _write(folder / REPORT_JSON, json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    _write(folder / REPORT_TEXT, report_text(conversion.report))
    return [*written, folder / REPORT_JSON, folder / REPORT_TEXT]


def _load_json(path: Path) -> object:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise RedcapError(str(path), error.lineno, error.colno, f"not JSON: {error.msg}") from None


def read_questionnaires(folder: Path) -> list[dict]:
    """The Questionnaires of a folder, in the forms' order of its conversion report (else by file name)."""
    if not folder.is_dir():
        raise RedcapError(str(folder), None, None, "not a folder of Questionnaire JSON files")
    order: list[str] = []
    if (folder / REPORT_JSON).exists():
        report = _load_json(folder / REPORT_JSON)
        if isinstance(report, dict) and isinstance(report.get("forms"), list):
            order = [str(name) for name in report["forms"]]
    paths = sorted(p for p in folder.glob("*.json") if p.name != REPORT_JSON)
    paths.sort(key=lambda p: order.index(p.stem) if p.stem in order else len(order))
    questionnaires = []
    for path in paths:
        document = _load_json(path)
        if not isinstance(document, dict) or document.get("resourceType") != "Questionnaire":
            raise RedcapError(str(path), None, None, "not a Questionnaire")
        questionnaires.append(document)
    if not questionnaires:
        raise RedcapError(str(folder), None, None, "no Questionnaire JSON files")
    return questionnaires


def write_responses(responses: Iterable[dict], path: Path, form: str) -> None:
    """Responses as NDJSON (`form` "ndjson") or as a FHIR collection Bundle ("bundle")."""
    if form == "ndjson":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in responses)
    else:
        bundle = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in responses],
        }
        text = json.dumps(bundle, ensure_ascii=False, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, text)
