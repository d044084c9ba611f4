"""What a study has collected: one filled-in form of one participant at one event and repeat instance.

Data quality (`quality.py`) and the statistician's exports (`exports.py`) both read a study's data as
`FormEntry` values, the shape of REDCap's flat export (record, event, repeat instance) with the
QuestionnaireResponse as the row's content.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FormEntry", "answers_by_link_id"]


@dataclass(frozen=True)
class FormEntry:
    """`record`: the participant's study pseudonym (REDCap's record id); `event`: the visit (None in a
    study without events); `instance`: the repeat instance of a repeating form (None when it does not
    repeat); `response`: the QuestionnaireResponse JSON."""

    record: str
    event: str | None
    instance: int | None
    response: Mapping[str, Any]

    def sort_key(self) -> tuple[str, str, int]:
        return (self.record, self.event or "", self.instance or 0)


def _items(items: Any) -> Iterator[Mapping[str, Any]]:
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        yield item
        yield from _items(item.get("item"))
        for answer in item.get("answer") if isinstance(item.get("answer"), list) else []:
            if isinstance(answer, Mapping):
                yield from _items(answer.get("item"))


def answers_by_link_id(response: Mapping[str, Any]) -> dict[str, list[tuple[str, Any]]]:
    """(value[x] key, JSON value) of every answer by linkId, in document order: the form's convention
    `%resource.repeat(item).where(linkId='X').answer.value`, kept with the kind of each value."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for item in _items(response.get("item")):
        link_id = item.get("linkId")
        if not isinstance(link_id, str):
            continue
        answers = item.get("answer")
        for answer in answers if isinstance(answers, list) else []:
            if not isinstance(answer, Mapping):
                continue
            for key, value in answer.items():
                if key.startswith("value") and key[5:6].isupper():
                    found.setdefault(link_id, []).append((key[5:], value))
    return found
