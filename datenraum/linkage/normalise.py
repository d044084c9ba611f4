"""Normalisation of identity values before tokenisation: German names, places, dates, postcodes.

Both sites must normalise identically, so every rule here is deterministic and independent of locale:
Unicode NFKC, case folding, umlauts and ß spelt out (ä → ae, ß → ss, so that "Müller" and "Mueller"
agree), other diacritics dropped (é → e), academic titles and name particles (von, zu, van der, ...)
removed, double names ("Müller-Lüdenscheidt", "Meyer Schulz") joined by a single space, everything that
is not a letter, digit or space dropped.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

# Spelt out rather than stripped: German writes "ae" where a keyboard lacks "ä".
_GERMAN = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ẞ": "ss", "æ": "ae", "ø": "oe", "œ": "oe"}
)
_EXTRA = str.maketrans({"ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"})

# Name particles (German, Dutch, French, Italian, Spanish, Portuguese, Scandinavian) and titles.
PARTICLES = frozenset(
    [
        "von",
        "vom",
        "zu",
        "zum",
        "zur",
        "der",
        "den",
        "des",
        "van",
        "ter",
        "ten",
        "de",
        "da",
        "di",
        "del",
        "della",
        "dos",
        "das",
        "du",
        "la",
        "le",
        "lo",
        "af",
        "av",
    ]
)
TITLES = frozenset(
    ["dr", "prof", "med", "rer", "nat", "phil", "dipl", "ing", "mag", "hc", "habil", "frau", "herr"]
)

_NOT_WORD = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")


def fold(value: str) -> str:
    """Unicode folding: NFKC, case folding, umlauts and ß spelt out, other marks dropped, ASCII only."""
    text = unicodedata.normalize("NFKC", value).casefold().translate(_GERMAN).translate(_EXTRA)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).encode("ascii", "ignore").decode()


def _words(value: str) -> list[str]:
    text = fold(value).replace("-", " ").replace("'", " ").replace(".", " ")
    return _NOT_WORD.sub("", _SPACES.sub(" ", text)).split()


def name(value: str) -> str:
    """A person's name: folded, titles and particles removed, double names joined by one space.
    "Prof. Dr. Hans-Jürgen von der Müller-Lüdenscheidt" → "hans juergen mueller luedenscheidt". A name that
    is nothing but particles ("van der") is kept as it is."""
    words = _words(value)
    kept = [w for w in words if w not in TITLES and w not in PARTICLES]
    return " ".join(kept if kept else [w for w in words if w not in TITLES])


def place(value: str) -> str:
    """A place or street: folded; "str." and "strasse" agree; "Frankfurt a. M." keeps its letters."""
    text = " ".join(_words(value))
    return re.sub(r"str\b", "strasse", text).replace(" strasse", "strasse")


def plain(value: str) -> str:
    """Any other string: folded and trimmed, inner spaces collapsed."""
    return _SPACES.sub(" ", fold(value)).strip()


def digits(value: str) -> str:
    """Digits only: postcodes, phone numbers ("01069 " → "01069")."""
    return "".join(ch for ch in value if ch.isdigit())


def date(value: str, fmt: str = "%Y-%m-%d", out: str = "%Y%m%d") -> str:
    """A date parsed with `fmt` and written as `out` (clkhash's date format: strftime both ways)."""
    return dt.datetime.strptime(value.strip(), fmt).strftime(out)


NORMALISERS = {"name": name, "place": place, "plain": plain, "digits": digits, "none": lambda v: v}
