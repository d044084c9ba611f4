"""The criteria search over the catalogue: "Diabetes", "E11" or "HbA1c" to the best concepts.

`ConceptIndex` answers a search in well under 100 ms even for 100,000 concepts: concepts are numbered
in their static rank order (common before rare, higher levels before their children), every word prefix
maps to a bitset of concept numbers (a Python int), a query is the AND of its tokens' bitsets, and the
best matches are the lowest set bits.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from array import array
from collections.abc import Iterable

from datenraum.query.catalogue.load import KINDS, LANGUAGES, Concept, ConceptOption, load_catalogue

__all__ = ["MAX_SEARCH_LENGTH", "ConceptIndex", "concept_index"]

#: Longer text is no search a person types; refusing it keeps every search fast.
MAX_SEARCH_LENGTH = 200
_WORD = re.compile(r"[^\W_]+")
_CODE_SEPARATORS = re.compile(r"[\s.\-_]+")
_DIGRAPHS = (("ae", "a"), ("oe", "o"), ("ue", "u"))


@functools.lru_cache(maxsize=1 << 17)
def _fold(word: str) -> str:
    """Accents and German spelling variants folded away: Hämoglobin = Haemoglobin = Hamoglobin.
    Cached per word: a catalogue repeats its words far more often than it has different ones."""
    folded = unicodedata.normalize("NFKD", word)
    if not folded.isascii():
        folded = "".join(c for c in folded if not unicodedata.combining(c))
    for digraph, vowel in _DIGRAPHS:
        folded = folded.replace(digraph, vowel)
    return folded


def _words(text: str) -> list[str]:
    """The folded words of a text; casefold first turns ß into ss, NFC keeps a decomposed ä one letter."""
    return [_fold(word) for word in _WORD.findall(unicodedata.normalize("NFC", text.casefold()))]


def _code_key(code: str) -> str:
    """A code as typed with or without dots, dashes, spaces or case: E11.9 = e119, 4548-4 = 45484."""
    return _CODE_SEPARATORS.sub("", code.casefold())


def _bits(ids: Iterable[int], size: int) -> int:
    buffer = bytearray(size)
    for i in ids:
        buffer[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buffer, "little")


def _lowest(bits: int, limit: int) -> list[int]:
    found = []
    while bits and len(found) < limit:
        low = bits & -bits
        found.append(low.bit_length() - 1)
        bits ^= low
    return found


class _PrefixTable:
    """Sorted keys with their concept numbers laid out in one array, so that every key starting with a
    prefix is one contiguous slice. Prefixes of one or two characters match so many keys that their
    bitsets are built ahead; longer ones are built on demand and cached."""

    def __init__(self, postings: dict[str, set[int]], size: int) -> None:
        self.size = size
        self.keys = sorted(postings)
        self.starts = array("l", [0])
        self.ids = array("l")
        for key in self.keys:
            self.ids.extend(sorted(postings[key]))
            self.starts.append(len(self.ids))
        self.short: dict[str, int] = {}
        heads: dict[str, list[int]] = {}
        for index, key in enumerate(self.keys):
            heads.setdefault(key[:2], []).append(index)
        for head, indexes in heads.items():
            self.short[head] = _bits(self.ids[self.starts[indexes[0]] : self.starts[indexes[-1] + 1]], size)
        for head, bits in list(self.short.items()):
            if len(head) == 2:
                self.short[head[0]] = self.short.get(head[0], 0) | bits
        self.bits = functools.lru_cache(maxsize=8192)(self._bits)

    def _bits(self, prefix: str) -> int:
        if len(prefix) <= 2:
            return self.short.get(prefix, 0)
        low = bisect.bisect_left(self.keys, prefix)
        high = bisect.bisect_left(self.keys, prefix[:-1] + chr(ord(prefix[-1]) + 1), low)
        return _bits(self.ids[self.starts[low] : self.starts[high]], self.size) if high > low else 0


def _rank(concept: Concept) -> tuple:
    """The static order of results that match equally well: common concepts first, then higher levels
    (a block before its categories, a category before its subcategories), then shorter displays."""
    return (
        -concept.weight,
        concept.level,
        len(concept.display_de),
        KINDS.index(concept.kind),
        concept.term.code,
    )


class ConceptIndex:
    """Search over concepts by code (exact, prefix) and by word prefixes of displays and synonyms.

    Results come in tiers: the exact code, then codes starting with the text, then concepts whose
    display in the chosen language matches every word, then those matching with their synonyms too,
    then with the other language's display as well; within a tier in static rank order (`_rank`).
    """

    def __init__(self, concepts: Iterable[Concept]) -> None:
        self._concepts = sorted(concepts, key=_rank)
        size = (len(self._concepts) + 7) // 8
        fields: dict[str, dict[str, set[int]]] = {"de": {}, "en": {}, "synonyms": {}}
        codes: dict[str, set[int]] = {}
        kinds: dict[str, list[int]] = {}
        for number, concept in enumerate(self._concepts):
            # The values a concept offers name it too: "weiblich" is a search for the gender criterion.
            values = concept.value_filter.concepts if isinstance(concept.value_filter, ConceptOption) else ()
            for field, texts in (
                ("de", (concept.display_de, *(v.display_de for v in values))),
                ("en", (concept.display_en, *(v.display_en for v in values))),
                ("synonyms", concept.synonyms),
            ):
                for text in texts:
                    for word in _words(text):
                        fields[field].setdefault(word, set()).add(number)
            codes.setdefault(_code_key(concept.term.code), set()).add(number)
            kinds.setdefault(concept.kind, []).append(number)
        self._fields = {field: _PrefixTable(postings, size) for field, postings in fields.items()}
        self._codes = _PrefixTable(codes, size)
        self._exact_codes = {key: tuple(ids) for key, ids in codes.items()}
        self._kinds = {kind: _bits(ids, size) for kind, ids in kinds.items()}
        self._by_key = {(c.context.code, c.term.system, c.term.code): c for c in self._concepts}

    def __len__(self) -> int:
        return len(self._concepts)

    def concept(self, context: str, system: str, code: str) -> Concept:
        """The concept a page picked earlier, by its context code, code system and code."""
        try:
            return self._by_key[(context, system, code)]
        except KeyError:
            raise LookupError(f"no concept {system}|{code} in context {context!r}") from None

    def search(
        self, text: str, *, language: str = "de", limit: int = 20, kinds: Iterable[str] | None = None
    ) -> list[Concept]:
        """The best `limit` concepts for what the user typed; [] for blank text.

        Raises ValueError for text longer than MAX_SEARCH_LENGTH, an unknown language or kind, or a
        limit below 1.
        """
        if not isinstance(text, str):
            raise ValueError(f"search text must be a string, got {type(text).__name__}")
        if len(text) > MAX_SEARCH_LENGTH:
            raise ValueError(
                f"search text is {len(text)} characters long; at most {MAX_SEARCH_LENGTH} are searched"
            )
        if language not in LANGUAGES:
            raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a whole number of at least 1, got {limit!r}")
        mask = self._kind_mask(kinds)
        tiers = [*self._code_tiers(text), *self._word_tiers(text, language)]
        found: list[int] = []
        taken = 0
        for tier in tiers:
            if mask is not None:
                tier &= mask
            tier &= ~taken
            found.extend(_lowest(tier, limit - len(found)))
            if len(found) >= limit:
                break
            taken |= tier
        return [self._concepts[number] for number in found]

    def _kind_mask(self, kinds: Iterable[str] | None) -> int | None:
        if kinds is None:
            return None
        chosen = [kinds] if isinstance(kinds, str) else list(kinds)
        unknown = sorted(set(chosen) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kind {', '.join(unknown)} (kinds: {', '.join(KINDS)})")
        mask = 0
        for kind in chosen:
            mask |= self._kinds.get(kind, 0)
        return mask

    def _code_tiers(self, text: str) -> list[int]:
        key = _code_key(text)
        if not key:
            return []
        exact = sum(1 << number for number in self._exact_codes.get(key, ()))
        # A code always has a digit; without one, "c" or "dia" would list every code starting with it.
        prefix = self._codes.bits(key) if any(c.isdigit() for c in key) else 0
        return [exact, prefix]

    def _word_tiers(self, text: str, language: str) -> list[int]:
        tokens = sorted(set(_words(text)), key=len, reverse=True)
        if not tokens:
            return []
        own, other = self._fields[language], self._fields["en" if language == "de" else "de"]
        synonyms = self._fields["synonyms"]
        displayed = named = anywhere = -1
        for token in tokens:
            in_display = own.bits(token)
            in_names = in_display | synonyms.bits(token)
            displayed &= in_display
            named &= in_names
            anywhere &= in_names | other.bits(token)
            if not anywhere:
                return []
        return [displayed, named, anywhere]


@functools.cache
def concept_index() -> ConceptIndex:
    """The index over the shipped catalogue, built on first use."""
    return ConceptIndex(load_catalogue())
