"""The concept catalogue of the feasibility query builder and the criteria search over it.

A researcher types "Diabetes", "E11" or "HbA1c" and picks a `Concept`: a term code of a catalogue
(ICD-10-GM, OPS, LOINC, ATC, SNOMED CT specimen types, MII consent provisions, demographics) in the
structured-query context the national portal files it under. What the builder may offer for it — a
value filter and its units, attribute filters, a time restriction — is read from `mapping.json`, the
same file the engines answer from, so the builder never offers a filter a site would reject.
`criterion_json` then writes the criterion exactly as the portal does, so queries move between the
portal and Datenraum unchanged.

The catalogue lives in `concepts/` (TSV per code system, `catalogues.json` for the rest; see
`concepts/SOURCE.md`). `ConceptIndex` answers a search in well under 100 ms even for 100,000
concepts: concepts are numbered in their static rank order (common before rare, higher levels before
their children), every word prefix maps to a bitset of concept numbers (a Python int), a query is the
AND of its tokens' bitsets, and the best matches are the lowest set bits.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import functools
import importlib.resources
import re
import unicodedata
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import orjson

from datenraum.query.mapping import ContextMapping, Mapping, load_mapping
from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    Unit,
    ValueFilter,
    query_to_json,
)
from datenraum.query.units import UnknownUnit, comparable_units

__all__ = [
    "KINDS",
    "LANGUAGES",
    "MAX_SEARCH_LENGTH",
    "SHIPPED",
    "AgeOption",
    "AttributeOption",
    "CatalogueError",
    "Concept",
    "ConceptChoiceError",
    "ConceptIndex",
    "ConceptOption",
    "QuantityOption",
    "ValueConcept",
    "ValueOption",
    "build_criterion",
    "concept_index",
    "criterion_json",
    "load_catalogue",
]

#: UI categories, in the order the builder lists them.
KINDS = ("demographics", "diagnosis", "procedure", "laboratory", "medication", "specimen", "consent")
LANGUAGES = ("de", "en")
#: Longer text is no search a person types; refusing it keeps every search fast.
MAX_SEARCH_LENGTH = 200
_CONTEXT_SYSTEM = "fdpg.mii.cds"
#: The catalogue shipped with the package.
SHIPPED: Traversable = importlib.resources.files("datenraum.query").joinpath("concepts")
_AGE_UNITS = ("a", "mo", "wk")


class CatalogueError(ValueError):
    """A catalogue file that cannot be read: names the file, line and field."""


class ConceptChoiceError(ValueError):
    """Filter choices a concept does not offer (a unit, a value, an attribute, a time restriction)."""


@dataclass(frozen=True)
class ValueConcept:
    """A code the user can pick as a value (female, Detected, confirmed, ...)."""

    system: str
    code: str
    display_de: str
    display_en: str

    def display(self, language: str = "de") -> str:
        return self.display_de if language == "de" else self.display_en

    def term_code(self) -> TermCode:
        return TermCode(self.system, self.code, self.display_de)


@dataclass(frozen=True)
class QuantityOption:
    """A numeric value filter (comparator or range) in any of `units`, all comparable by units.py."""

    units: tuple[str, ...]
    default_unit: str


@dataclass(frozen=True)
class ConceptOption:
    """A value filter choosing among coded values."""

    concepts: tuple[ValueConcept, ...]


@dataclass(frozen=True)
class AgeOption:
    """The Patient age: a comparator or range in years, months or weeks."""

    units: tuple[str, ...] = _AGE_UNITS
    default_unit: str = "a"


ValueOption = QuantityOption | ConceptOption | AgeOption


@dataclass(frozen=True)
class AttributeOption:
    """An attribute filter of the concept's context.

    `kind` "concept": pick among `values` (any code of their systems too, when `open`, e.g. body sites);
    "reference": the referenced resource must meet criteria of `target_context` (a specimen's diagnosis).
    """

    code: TermCode
    display_de: str
    display_en: str
    kind: str
    values: tuple[ValueConcept, ...] = ()
    open: bool = False
    target_context: str | None = None

    def display(self, language: str = "de") -> str:
        return self.display_de if language == "de" else self.display_en


@dataclass(frozen=True)
class Concept:
    """One pickable criterion: a term code in the context the portal files it under, with what the UI
    may offer for it. `system_label` names the code system for display ("ICD-10-GM", "LOINC", ...)."""

    term: TermCode
    display_de: str
    display_en: str
    context: TermCode
    context_de: str
    context_en: str
    kind: str
    system_label: str
    value_filter: ValueOption | None = None
    attributes: tuple[AttributeOption, ...] = ()
    time_restriction: bool = False
    level: int = 2
    weight: int = 1
    synonyms: tuple[str, ...] = ()

    def display(self, language: str = "de") -> str:
        return self.display_de if language == "de" else self.display_en

    def context_display(self, language: str = "de") -> str:
        return self.context_de if language == "de" else self.context_en

    def attribute(self, code: str) -> AttributeOption:
        for option in self.attributes:
            if option.code.code == code:
                return option
        offered = ", ".join(a.code.code for a in self.attributes) or "none"
        raise ConceptChoiceError(
            f"{self.system_label} {self.term.code} in {self.context.code} has no attribute {code!r} "
            f"(offered: {offered})"
        )


# --- the catalogue ----------------------------------------------------------------------------------


def _read(folder: Traversable, name: str) -> bytes:
    try:
        return folder.joinpath(name).read_bytes()
    except OSError as error:
        raise CatalogueError(f"{name}: cannot be read ({error.strerror or error})") from None


def _value_concepts(raw: list[dict], where: str) -> tuple[ValueConcept, ...]:
    try:
        return tuple(ValueConcept(v["system"], v["code"], v["de"], v["en"]) for v in raw)
    except (KeyError, TypeError) as error:
        raise CatalogueError(f"{where}: every value needs system, code, de and en ({error})") from None


def _rows(folder: Traversable, name: str) -> Iterable[tuple[int, dict[str, str]]]:
    try:
        text = _read(folder, name).decode("utf-8")
    except UnicodeDecodeError as error:
        raise CatalogueError(f"{name}: not UTF-8 text (byte {error.start})") from None
    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    required = {"code", "level", "weight", "display_de", "display_en", "synonyms"}
    missing = required - set(reader.fieldnames or ())
    if missing:
        raise CatalogueError(f"{name}, line 1: missing columns {', '.join(sorted(missing))}")
    for line, row in enumerate(reader, start=2):
        if None in row or any(value is None for value in row.values()):
            raise CatalogueError(f"{name}, line {line}: expected {len(reader.fieldnames)} fields")
        for field in ("code", "display_de", "display_en"):
            if not row[field].strip():
                raise CatalogueError(f"{name}, line {line}, {field}: must not be empty")
        yield line, row


def _number(row: dict[str, str], field: str, name: str, line: int) -> int:
    try:
        return int(row[field])
    except ValueError:
        raise CatalogueError(
            f"{name}, line {line}, {field}: expected a whole number, got {row[field]!r}"
        ) from None


def _quantity(unit: str, name: str, line: int) -> QuantityOption:
    try:
        units = tuple(u.unit for u in comparable_units(unit))
    except UnknownUnit as error:
        raise CatalogueError(f"{name}, line {line}, unit: {error}") from None
    return QuantityOption(units, unit)


class _Builder:
    """Turns catalogue rows into concepts, deriving each concept's options from the mapping."""

    def __init__(self, folder: Traversable, meta: dict, mapping: Mapping) -> None:
        self.folder = folder
        self.meta = meta
        self.mapping = mapping
        self.value_concepts = {
            key: _value_concepts(raw, f"catalogues.json value_concepts {key}")
            for key, raw in meta["value_concepts"].items()
        }
        self.attribute_options = {name: self._attributes(name) for name in meta["contexts"]}

    def context(self, name: str) -> tuple[TermCode, str, str, ContextMapping]:
        try:
            info, mapped = self.meta["contexts"][name], self.mapping.contexts[name]
        except KeyError:
            raise CatalogueError(
                f"catalogues.json: context {name!r} must be described there and mapped in mapping.json"
            ) from None
        return (
            TermCode(_CONTEXT_SYSTEM, name, info["display"], info["version"]),
            info["de"],
            info["en"],
            mapped,
        )

    def _attributes(self, context: str) -> tuple[AttributeOption, ...]:
        mapped = self.mapping.contexts.get(context)
        if mapped is None:
            return ()
        described = self.meta["attributes"].get(context, {})
        undescribed = sorted(set(mapped.attributes) - set(described))
        if undescribed:
            raise CatalogueError(
                f"catalogues.json attributes.{context}: no display or values for {', '.join(undescribed)}"
            )
        options = []
        for code, attribute in mapped.attributes.items():
            spec = described[code]
            options.append(
                AttributeOption(
                    code=TermCode(self.meta["attribute_system"], code, spec["display"]),
                    display_de=spec["de"],
                    display_en=spec["en"],
                    kind=attribute.kind,
                    values=_value_concepts(spec["values"], f"catalogues.json attributes.{context}.{code}"),
                    open=spec["open"],
                    target_context=attribute.target_context,
                )
            )
        return tuple(options)

    def concepts(self, catalogue: dict) -> Iterable[Concept]:
        name, system = catalogue["file"], catalogue["system"]
        kind = catalogue["kind"]
        if kind not in KINDS:
            raise CatalogueError(f"catalogues.json: {name} has kind {kind!r}, not one of {', '.join(KINDS)}")
        for line, row in _rows(self.folder, name):
            term = TermCode(system, row["code"].strip(), row["display_de"])
            for context_name in catalogue["contexts"]:
                context, context_de, context_en, mapped = self.context(context_name)
                value_filter, attributes, time = self._options(term, row, mapped, name, line)
                yield Concept(
                    term=term,
                    display_de=row["display_de"],
                    display_en=row["display_en"],
                    context=context,
                    context_de=context_de,
                    context_en=context_en,
                    kind=kind,
                    system_label=catalogue["label"],
                    value_filter=value_filter,
                    attributes=attributes,
                    time_restriction=time,
                    level=_number(row, "level", name, line),
                    weight=_number(row, "weight", name, line),
                    synonyms=tuple(s for s in row["synonyms"].split("|") if s.strip()),
                )

    def _options(
        self, term: TermCode, row: dict[str, str], mapped: ContextMapping, name: str, line: int
    ) -> tuple[ValueOption | None, tuple[AttributeOption, ...], bool]:
        if mapped.kind == "patient":
            patient_term = mapped.terms.get(term.key())
            if patient_term is None:
                raise CatalogueError(
                    f"{name}, line {line}, code: {term.code} is not a Patient term of mapping.json"
                )
            if patient_term.kind == "age":
                return AgeOption(), (), False
            if patient_term.kind == "gender":
                values = self.value_concepts.get(f"{term.system}|{term.code}")
                if not values:
                    raise CatalogueError(
                        f"catalogues.json value_concepts: no values for {term.system}|{term.code}"
                    )
                return ConceptOption(values), (), False
            return None, (), False
        value_filter: ValueOption | None = None
        if mapped.value is not None:
            unit = row.get("unit", "").strip()
            coded = self.value_concepts.get(f"{term.system}|{term.code}")
            if unit:
                value_filter = _quantity(unit, name, line)
            elif coded:
                value_filter = ConceptOption(coded)
        return value_filter, self.attribute_options[mapped.name], mapped.time is not None

    def combined_consents(self) -> Iterable[Concept]:
        """The portal's combined consent codes, one per answer combination of mapping.json's parts."""
        spec = self.meta["combined_consent"]
        context, context_de, context_en, mapped = self.context(spec["context"])
        combined = mapped.combined
        if combined is None or len(combined.parts) != len(spec["parts"]):
            raise CatalogueError(
                "catalogues.json combined_consent: needs wording for each part of mapping.json's combined codes"
            )
        for number in range(2 ** len(combined.parts)):
            answers = [
                "no" if number >> (len(combined.parts) - 1 - i) & 1 else "yes"
                for i in range(len(combined.parts))
            ]
            words = {
                language: spec["template"][language].format(
                    *(part[answer][language] for part, answer in zip(spec["parts"], answers, strict=True))
                )
                for language in LANGUAGES
            }
            yield Concept(
                term=TermCode(combined.system, "-".join(answers), words["de"]),
                display_de=words["de"],
                display_en=words["en"],
                context=context,
                context_de=context_de,
                context_en=context_en,
                kind="consent",
                system_label=spec["label"],
                level=2,
                weight=1,
                synonyms=tuple(spec["synonyms"]),
            )


@functools.cache
def load_catalogue(folder: Traversable = SHIPPED) -> tuple[Concept, ...]:
    """Every concept of the catalogue in `folder` (the shipped one by default; a site may keep fuller
    lists in a folder of its own, see concepts/SOURCE.md), read once. Raises CatalogueError naming the
    file, line and field of a problem."""
    try:
        meta = orjson.loads(_read(folder, "catalogues.json"))
    except orjson.JSONDecodeError as error:
        raise CatalogueError(
            f"catalogues.json, line {error.lineno}, column {error.colno}: malformed JSON ({error.msg})"
        ) from None
    try:
        builder = _Builder(folder, meta, load_mapping())
        concepts = [c for catalogue in meta["catalogues"] for c in builder.concepts(catalogue)]
        concepts.extend(builder.combined_consents())
    except KeyError as error:
        raise CatalogueError(f"catalogues.json: missing key {error}") from None
    return tuple(concepts)


# --- criteria ---------------------------------------------------------------------------------------


def _with_unit(value_filter: ValueFilter, units: tuple[str, ...], default: str, what: str) -> ValueFilter:
    if not isinstance(value_filter, ComparatorFilter | RangeFilter):
        raise ConceptChoiceError(f"{what} takes a number or a range, not a choice of concepts")
    if value_filter.unit is None:
        return dataclasses.replace(value_filter, unit=Unit(default, default))
    if value_filter.unit.code not in units:
        raise ConceptChoiceError(
            f"{what}: unit {value_filter.unit.code!r} cannot be compared here (units: {', '.join(units)})"
        )
    return value_filter


def _check_concepts(chosen: ConceptFilter, allowed: tuple[ValueConcept, ...], open_: bool, what: str) -> None:
    known = {(v.system, v.code) for v in allowed}
    systems = {v.system for v in allowed}
    for term in chosen.concepts:
        if term.key() in known or (open_ and term.system in systems):
            continue
        offered = ", ".join(v.code for v in allowed)
        raise ConceptChoiceError(f"{what}: {term.system}|{term.code} is not offered (offered: {offered})")


def _value_filter(concept: Concept, value_filter: ValueFilter | None) -> ValueFilter | None:
    what = f"{concept.display_de} ({concept.system_label} {concept.term.code})"
    option = concept.value_filter
    if value_filter is None:
        if isinstance(option, AgeOption | ConceptOption) and concept.kind == "demographics":
            raise ConceptChoiceError(f"{what} needs a value filter")
        return None
    if option is None:
        raise ConceptChoiceError(f"{what} has no value to filter on")
    if isinstance(option, ConceptOption):
        if not isinstance(value_filter, ConceptFilter):
            raise ConceptChoiceError(f"{what} takes a choice of concepts, not a number")
        _check_concepts(value_filter, option.concepts, False, what)
        return value_filter
    return _with_unit(value_filter, option.units, option.default_unit, what)


def _attribute_filter(concept: Concept, chosen: AttributeFilter) -> AttributeFilter:
    option = concept.attribute(chosen.attribute.code)
    what = f"attribute {option.code.code} of {concept.display_de}"
    if option.kind == "reference":
        if not isinstance(chosen.filter, ReferenceFilter):
            raise ConceptChoiceError(f"{what} takes criteria of {option.target_context}")
        for criterion in chosen.filter.criteria:
            if criterion.context.code != option.target_context:
                raise ConceptChoiceError(
                    f"{what} refers to a {option.target_context}, not a {criterion.context.code}"
                )
    else:
        if not isinstance(chosen.filter, ConceptFilter):
            raise ConceptChoiceError(f"{what} takes a choice of concepts")
        _check_concepts(chosen.filter, option.values, option.open, what)
    return AttributeFilter(option.code, chosen.filter)


def build_criterion(
    concept: Concept,
    *,
    value_filter: ValueFilter | None = None,
    attribute_filters: Sequence[AttributeFilter] = (),
    time_restriction: TimeRestriction | None = None,
    negated: bool = False,
) -> Criterion:
    """The criterion for a concept and the user's choices; raises ConceptChoiceError for a choice the
    concept does not offer. A quantity without a unit gets the concept's default unit, and attribute
    codes are written the way the portal writes them."""
    if time_restriction is not None and not concept.time_restriction:
        raise ConceptChoiceError(f"{concept.display_de} in {concept.context.code} has no time to restrict")
    return Criterion(
        context=concept.context,
        term_codes=(concept.term,),
        value_filter=_value_filter(concept, value_filter),
        attribute_filters=tuple(_attribute_filter(concept, a) for a in attribute_filters),
        time_restriction=time_restriction,
        negated=negated,
    )


def criterion_json(
    concept: Concept,
    *,
    value_filter: ValueFilter | None = None,
    attribute_filters: Sequence[AttributeFilter] = (),
    time_restriction: TimeRestriction | None = None,
    negated: bool = False,
) -> dict:
    """The criterion as the portal writes it (termCodes, context, valueFilter, attributeFilters,
    timeRestriction); see build_criterion for the checks."""
    criterion = build_criterion(
        concept,
        value_filter=value_filter,
        attribute_filters=attribute_filters,
        time_restriction=time_restriction,
        negated=negated,
    )
    # The model's writer is the one place that knows the portal's JSON; a query of one criterion uses it.
    return query_to_json(StructuredQuery(inclusion=((criterion,),)))["inclusionCriteria"][0][0]


# --- search -----------------------------------------------------------------------------------------

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
