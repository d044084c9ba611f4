"""The concept catalogue: what a researcher can pick in the query builder, read from `data/`.

A `Concept` is a term code of a catalogue (ICD-10-GM, OPS, LOINC, ATC, SNOMED CT specimen types, MII
consent provisions, demographics) in the structured-query context the national portal files it under.
What the builder may offer for it — a value filter and its units, attribute filters, a time
restriction — is read from `mapping.json`, the same file the engines answer from, so the builder never
offers a filter a site would reject.

The catalogue lives in `data/` (TSV per code system, `catalogues.json` for the rest; see
`data/SOURCE.md`); a site may keep fuller lists in a folder of its own. `load_catalogue` reads one and
refuses a broken file naming the file, line and field.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.resources.abc import Traversable

import orjson

from datenraum.query.mapping import ContextMapping, Mapping, load_mapping
from datenraum.query.model import TermCode
from datenraum.query.units import UnknownUnit, comparable_units

__all__ = [
    "KINDS",
    "LANGUAGES",
    "SHIPPED",
    "AgeOption",
    "AttributeOption",
    "CatalogueError",
    "Concept",
    "ConceptChoiceError",
    "ConceptOption",
    "QuantityOption",
    "ValueConcept",
    "ValueOption",
    "load_catalogue",
]

#: UI categories, in the order the builder lists them.
KINDS = ("demographics", "diagnosis", "procedure", "laboratory", "medication", "specimen", "consent")
LANGUAGES = ("de", "en")
_CONTEXT_SYSTEM = "fdpg.mii.cds"
#: The catalogue shipped with the package.
SHIPPED: Traversable = importlib.resources.files("datenraum.query.catalogue").joinpath("data")
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
    lists in a folder of its own, see data/SOURCE.md), read once. Raises CatalogueError naming the
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
