"""The one place the hub checks a form before it is published.

A form is a FHIR R4 Questionnaire; `checked_form` hands it to the study library's parser
(`datenraum.studies.questionnaire.parse_questionnaire`, the one the site EDC uses too), so the hub and the
site accept exactly the same forms (and the parser's own limits on items and nesting hold here), and turns
its `FormError` into the hub's `Invalid` with the JSON path of the offending element below the request
field ("questionnaire.item[3].enableWhen[0].question: ..."), so that the designer can show the error next
to that item. What the hub adds: a form is named by its canonical url, and its versions are the hub's to
number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from datenraum.hub.errors import Invalid
from datenraum.studies.questionnaire import FormError, parse_questionnaire

__all__ = ["MAX_FORM_BYTES", "CheckedForm", "checked_form"]

MAX_FORM_BYTES = 900_000  # below the hub's body limit, with room for the request around it


@dataclass(frozen=True)
class CheckedForm:
    url: str
    title: str
    questionnaire: dict[str, Any]  # as given, without `version` (the hub numbers the versions)


def checked_form(body: Any, field: str = "questionnaire") -> CheckedForm:
    """The form as the hub stores it; Invalid names the JSON path of the first problem."""
    if not isinstance(body, dict):
        raise Invalid(f"{field}: expected a FHIR Questionnaire (a JSON object)")
    if len(json.dumps(body, ensure_ascii=False)) > MAX_FORM_BYTES:
        raise Invalid(f"{field}: larger than {MAX_FORM_BYTES} bytes")
    unversioned = {key: value for key, value in body.items() if key != "version"}
    try:
        parsed = parse_questionnaire(unversioned)
    except FormError as error:
        raise Invalid(f"{field}{error.path.removeprefix('$')}: {error.message}") from None
    if parsed.url is None or not parsed.url.strip() or len(parsed.url) > 1000:
        raise Invalid(f"{field}.url: a form needs its canonical url (at most 1000 characters)")
    return CheckedForm(parsed.url, (parsed.title or parsed.name or parsed.url)[:500], unversioned)
