"""A QuestionnaireResponse as the audit trail sees it: one text per answered field.

The audit trail records, per field, the old and the new answer as a person reads them. A field is named by
its linkId; an item inside a repeated group gets the group's occurrence (`labor[2].crp`), so that two
occurrences of one question are two fields. Values are written as FHIR has them: a coding as
`system|code`, a quantity as `value unit`, several answers (repeats) joined by "; ".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["answer_text", "field_answers", "field_changes"]


def answer_text(answer: Mapping[str, Any]) -> str:
    """One answer's value as text; a nested item list (answer.item) is audited as its own fields."""
    for key, value in answer.items():
        if not key.startswith("value"):
            continue
        if key == "valueCoding" and isinstance(value, Mapping):
            return f"{value.get('system', '')}|{value.get('code', '')}"
        if key == "valueQuantity" and isinstance(value, Mapping):
            return f"{value.get('value', '')} {value.get('unit') or value.get('code') or ''}".strip()
        if key == "valueReference" and isinstance(value, Mapping):
            return str(value.get("reference", ""))
        if key == "valueAttachment" and isinstance(value, Mapping):
            return str(value.get("title") or value.get("url") or "(attachment)")
        if key == "valueBoolean":
            return "true" if value else "false"
        return str(value)
    return ""


def _walk(items: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if not isinstance(items, list):
        return
    seen: dict[str, int] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        link_id = str(item.get("linkId", ""))
        occurrence = seen.get(link_id, 0)
        seen[link_id] = occurrence + 1
        name = f"{prefix}{link_id}" if occurrence == 0 else f"{prefix}{link_id}[{occurrence + 1}]"
        answers = item.get("answer") if isinstance(item.get("answer"), list) else []
        texts = [answer_text(a) for a in answers if isinstance(a, Mapping)]
        if texts:
            yield name, "; ".join(texts)
        yield from _walk(item.get("item"), f"{name}.")
        for a in answers:
            if isinstance(a, Mapping):
                yield from _walk(a.get("item"), f"{name}.")


def field_answers(response: Mapping[str, Any]) -> dict[str, str]:
    """Every answered field of a QuestionnaireResponse: field name -> its answer as text."""
    return dict(_walk(response.get("item"), ""))


def field_changes(
    old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> list[tuple[str, str | None, str | None]]:
    """(field, old text or None, new text or None) for every field whose answer differs, in field order."""
    before = field_answers(old) if old is not None else {}
    after = field_answers(new)
    names = list(before) + [name for name in after if name not in before]
    return [
        (name, before.get(name), after.get(name)) for name in names if before.get(name) != after.get(name)
    ]
