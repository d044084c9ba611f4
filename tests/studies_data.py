"""Shared study-data test inputs: a small visit form (tests/fixtures/studies/dq-visit-form.json) whose
items exercise every data-quality rule and every export column kind, and entries of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datenraum.studies.collection import FormEntry
from datenraum.studies.questionnaire import Questionnaire, parse_questionnaire

FIXTURES = Path(__file__).parent / "fixtures" / "studies"


def dq_visit_form_json() -> dict[str, Any]:
    return json.loads((FIXTURES / "dq-visit-form.json").read_text(encoding="utf-8"))


def dq_visit_form() -> Questionnaire:
    return parse_questionnaire(dq_visit_form_json())


def coded(code: str) -> dict[str, Any]:
    return {"valueCoding": {"code": code}}


CLEAN: dict[str, Any] = {
    "visit_date": {"valueDate": "2024-03-01"},
    "birth_date": {"valueDate": "1970-05-01"},
    "sex": coded("1"),
    "height": {"valueInteger": 176},
    "weight": {"valueDecimal": 70.5},
    "q1": {"valueInteger": 2},
    "q2": {"valueInteger": 3},
    "score": {"valueInteger": 5},
    "comment": {"valueString": "ohne Befund"},
}


def response(answers: dict[str, Any], response_id: str) -> dict[str, Any]:
    """A completed QuestionnaireResponse of the visit form; an answer of None leaves the item out."""
    return {
        "resourceType": "QuestionnaireResponse",
        "id": response_id,
        "questionnaire": "https://datenraum.example/fhir/Questionnaire/visit|1",
        "status": "completed",
        "item": [
            {"linkId": link_id, "answer": [answer]}
            for link_id, answer in answers.items()
            if answer is not None
        ],
    }


def entry(record: str, event: str = "baseline", instance: int | None = None, **changes: Any) -> FormEntry:
    """The clean answers with `changes`; q1 (and so the score) varies with the record's number, so that
    scores spread like real ones."""
    q1 = int(record.lstrip("r") or 0) % 4 + 1 if record.lstrip("r").isdigit() else 2
    answers = {**CLEAN, "q1": {"valueInteger": q1}, "score": {"valueInteger": q1 + 3}, **changes}
    return FormEntry(record, event, instance, response(answers, f"{record}-{event}-{instance or 0}"))
