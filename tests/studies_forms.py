"""Shared inputs of the study-form tests: the visit form fixture (every R4 item type and the SDC subset),
copies of it to plant a defect in, and a QuestionnaireResponse builder."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

VISIT_FORM_FILE = Path(__file__).parent / "fixtures" / "studies" / "visit-form.json"
VISIT_FORM: dict[str, Any] = json.loads(VISIT_FORM_FILE.read_text(encoding="utf-8"))


def visit_form() -> dict[str, Any]:
    """A fresh deep copy of the visit form, free to modify."""
    return copy.deepcopy(VISIT_FORM)


def item(form: dict[str, Any], link_id: str) -> dict[str, Any]:
    """The item JSON with `link_id` anywhere in `form` (to modify in place)."""
    stack = list(form.get("item", []))
    while stack:
        current = stack.pop()
        if current["linkId"] == link_id:
            return current
        stack.extend(current.get("item", []))
    raise KeyError(link_id)


def answer(link_id: str, *values: dict[str, Any], items: list | None = None) -> dict[str, Any]:
    """A response item: `answer("alter", {"valueInteger": 5})`."""
    entry: dict[str, Any] = {"linkId": link_id}
    if values:
        entry["answer"] = list(values)
    if items is not None:
        entry["item"] = items
    return entry


def response(
    *items: dict[str, Any], questionnaire: str = "https://datenraum.de/fhir/Questionnaire/besuch|2"
) -> dict:
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire,
        "status": "completed",
        "item": list(items),
    }
