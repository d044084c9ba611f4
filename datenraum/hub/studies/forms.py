"""The one place the hub checks a form before it is published.

A form is a FHIR R4 Questionnaire; `checked_form` hands it to the study library's parser
(`datenraum.studies.questionnaire.parse_questionnaire`, the same one the site EDC uses), so the hub and the
site accept exactly the same forms, and turns its `FormError` into the hub's `Invalid`, keeping the JSON path
of the offending element ("questionnaire.item[3].enableWhen[0].question: ...") so that the designer can
show the error next to that item.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from datenraum.hub.errors import Invalid

__all__ = ["MAX_FORM_BYTES", "MAX_FORM_ITEMS", "CheckedForm", "checked_form"]

MAX_FORM_BYTES = 900_000  # below the hub's body limit, with room for the request around it
MAX_FORM_ITEMS = 3000  # the GECCO case report form has 547 fields; a form with more is a mistake
_MAX_DEPTH = 12


@dataclass(frozen=True)
class CheckedForm:
    url: str
    title: str
    questionnaire: dict[str, Any]  # as given, without `version` (the hub numbers the versions)


def _count_items(items: Any, path: str, depth: int) -> int:
    """How many items there are, refusing forms too large or too deep before the parser walks them."""
    if items is None:
        return 0
    if not isinstance(items, list):
        raise Invalid(f"{path}: expected a list of items")
    if depth > _MAX_DEPTH:
        raise Invalid(f"{path}: items nested deeper than {_MAX_DEPTH} levels")
    total = 0
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise Invalid(f"{path}[{index}]: expected an item object")
        total += 1 + _count_items(item.get("item"), f"{path}[{index}].item", depth + 1)
        if total > MAX_FORM_ITEMS:
            raise Invalid(f"{path}: more than {MAX_FORM_ITEMS} items")
    return total


def checked_form(body: Any, field: str = "questionnaire") -> CheckedForm:
    """The form as the hub stores it; Invalid names the JSON path of the first problem."""
    from datenraum.studies.questionnaire import FormError, parse_questionnaire

    if not isinstance(body, dict):
        raise Invalid(f"{field}: expected a FHIR Questionnaire (a JSON object)")
    if len(json.dumps(body, ensure_ascii=False)) > MAX_FORM_BYTES:
        raise Invalid(f"{field}: larger than {MAX_FORM_BYTES} bytes")
    _count_items(body.get("item"), f"{field}.item", 0)
    url = body.get("url")
    if not isinstance(url, str) or not url.strip() or len(url) > 1000:
        raise Invalid(f"{field}.url: a form needs its canonical url (at most 1000 characters)")
    unversioned = {key: value for key, value in body.items() if key != "version"}
    try:
        parsed = parse_questionnaire({**unversioned, "version": "0"})
    except FormError as error:
        raise Invalid(f"{field}{str(error.path).removeprefix('$')}: {error.message}") from None
    title = body.get("title") if isinstance(body.get("title"), str) else None
    return CheckedForm(url, (title or getattr(parsed, "title", None) or url)[:500], unversioned)
