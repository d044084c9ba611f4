"""The portal's interface texts in German and English (`texts.json`, one entry per text with both).

German is the default: the portal's users work in German university hospitals. The choice follows the
signed-in user's setting, then the language cookie, then the browser's Accept-Language.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

__all__ = ["LANGUAGES", "choose_language", "script_texts", "texts_for"]

LANGUAGES = ("de", "en")
_TEXTS = Path(__file__).with_name("texts.json")


@functools.cache
def _catalogue() -> dict[str, dict[str, str]]:
    return json.loads(_TEXTS.read_text(encoding="utf-8"))


class Texts(dict):
    """The texts of one language; a missing key shows as itself, which the tests catch."""

    def __missing__(self, key: str) -> str:
        return key


@functools.cache
def texts_for(language: str) -> Texts:
    return Texts({key: entry[language] for key, entry in _catalogue().items()})


# The texts the portal's scripts show (the builder and the live results), handed to them with the page.
_SCRIPT_PREFIXES = ("builder.", "state.", "kind.", "comparator.", "queries.")


@functools.cache
def script_texts(language: str) -> dict[str, str]:
    return {key: text for key, text in texts_for(language).items() if key.startswith(_SCRIPT_PREFIXES)}


def choose_language(setting: str | None, cookie: str | None, accept_language: str) -> str:
    for candidate in (setting, cookie):
        if candidate in LANGUAGES:
            return candidate
    for part in accept_language.split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return LANGUAGES[0]
