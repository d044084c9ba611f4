"""The one check of free text that people write into the hub: names, titles, comments, descriptions.

`clean_text` refuses what cannot or should not be stored, with a text that starts with the field:
something that is not text, an empty text where one is required, a text longer than its limit, and the
character NUL (which PostgreSQL cannot store). With `collapse_spaces`, runs of white space (line breaks
included) become one space and the ends are trimmed before the checks, for names that are one line.
"""

from __future__ import annotations

from datenraum.hub.errors import Invalid

__all__ = ["clean_text"]


def clean_text(
    value: object,
    field: str,
    *,
    max_length: int,
    required: bool = True,
    collapse_spaces: bool = False,
    error: type[Invalid] = Invalid,
) -> str:
    """`value` as it is stored, or `error` (an `Invalid`) naming `field` and what is wrong."""
    if not isinstance(value, str):
        raise error(f"{field}: must be text")
    if collapse_spaces:
        value = " ".join(value.split())
    if required and not value.strip():
        raise error(f"{field}: must not be empty")
    if len(value) > max_length:
        raise error(f"{field}: at most {max_length} characters, got {len(value)}")
    if "\x00" in value:
        raise error(f"{field}: must not contain NUL characters")
    return value
