"""Where each criterion context of a structured query lives: `mapping.json`, read into frozen values.

The mapping names, for every context the national portal uses (Diagnose, Laboruntersuchung, ...), the
store table and columns that the SQL engines read and the FHIR elements that the reference evaluator
reads. Keeping both in one declarative file is what lets the two engines be checked against each other:
they share the *what*, never the *how*.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass, field

import orjson

from datenraum.query.model import Criterion, TermCode

__all__ = [
    "AttributeMapping",
    "CodeMapping",
    "ConsentCombination",
    "ConsentPart",
    "ContextMapping",
    "Mapping",
    "PatientTerm",
    "TimeMapping",
    "UnsupportedCriterion",
    "ValueMapping",
    "load_mapping",
]


class UnsupportedCriterion(ValueError):
    """A criterion this site cannot answer (unknown context, term or attribute): say which and why."""


@dataclass(frozen=True)
class CodeMapping:
    code_column: str
    fhir: str
    system_column: str | None = None
    # Medication contexts: codes are on the resource itself or on the Medication it references.
    medication_column: str | None = None


@dataclass(frozen=True)
class TimeMapping:
    """The resource's time as an interval: first non-null of `start`, first non-null of `end`."""

    start: tuple[str, ...]
    end: tuple[str, ...]
    fhir: tuple[str, ...]


@dataclass(frozen=True)
class ValueMapping:
    quantity_column: str
    unit_column: str
    system_column: str
    code_column: str
    fhir: str


@dataclass(frozen=True)
class AttributeMapping:
    kind: str  # "concept" or "reference"
    fhir: str
    code_column: str | None = None
    system_column: str | None = None
    column: str | None = None  # reference: the column holding the referenced resource's id
    target_context: str | None = None


@dataclass(frozen=True)
class PatientTerm:
    kind: str  # "age", "gender" or "deceased"
    column: str
    fhir: str
    system: str | None = None


@dataclass(frozen=True)
class ConsentPart:
    """One question of a combined consent code and the provision codes each answer requires."""

    name: str
    yes: tuple[str, ...]
    no: tuple[str, ...]


@dataclass(frozen=True)
class ConsentCombination:
    """The portal's combined consent codes ("yes-no-yes-no"): one answer per part, each answer requires
    a set of provision codes (of `provision_system`). Both answers can require codes: "no" to
    distributed analysis means central analysis, which needs consent to merging with third parties."""

    system: str
    parts: tuple[ConsentPart, ...]
    provision_system: str

    def provisions(self, code: str) -> tuple[str, ...]:
        answers = code.split("-")
        if len(answers) != len(self.parts) or any(a not in ("yes", "no") for a in answers):
            raise UnsupportedCriterion(
                f"combined consent code {code!r} must be {len(self.parts)} parts of yes/no, e.g. yes-yes-no-no"
            )
        return tuple(
            c for answer, part in zip(answers, self.parts, strict=True) for c in getattr(part, answer)
        )

    def required_provisions(self, term: TermCode) -> tuple[str, ...]:
        """The provision codes a consent term code requires: itself, or those of a combined code."""
        if term.system == self.provision_system:
            return (term.code,)
        if term.system == self.system:
            return self.provisions(term.code)
        raise UnsupportedCriterion(
            f"consent term code system {term.system!r} is neither {self.provision_system!r} nor {self.system!r}"
        )


@dataclass(frozen=True)
class ContextMapping:
    name: str
    resource: str
    table: str
    kind: str = "standard"  # "standard", "patient" or "consent"
    code: CodeMapping | None = None
    time: TimeMapping | None = None
    value: ValueMapping | None = None
    attributes: dict[str, AttributeMapping] = field(default_factory=dict)
    terms: dict[tuple[str, str], PatientTerm] = field(default_factory=dict)
    combined: ConsentCombination | None = None

    def attribute(self, code: TermCode) -> AttributeMapping:
        try:
            return self.attributes[code.code]
        except KeyError:
            known = ", ".join(sorted(self.attributes)) or "none"
            raise UnsupportedCriterion(
                f"attribute {code.code!r} is not supported for {self.name} (supported: {known})"
            ) from None

    def patient_term(self, term: TermCode) -> PatientTerm:
        try:
            return self.terms[term.key()]
        except KeyError:
            raise UnsupportedCriterion(
                f"{term.system}|{term.code} is not a supported Patient criterion "
                "(age 424144002, gender 263495000, deceased 419099009)"
            ) from None


@dataclass(frozen=True)
class Mapping:
    contexts: dict[str, ContextMapping]
    hierarchies: dict[str, str]

    def context(self, criterion: Criterion) -> ContextMapping:
        try:
            return self.contexts[criterion.context.code]
        except KeyError:
            known = ", ".join(sorted(self.contexts))
            raise UnsupportedCriterion(
                f"context {criterion.context.code!r} is not mapped to this site's store (mapped: {known})"
            ) from None


def _context(name: str, raw: dict) -> ContextMapping:
    code = CodeMapping(**raw["code"]) if "code" in raw else None
    time = None
    if "time" in raw:
        time = TimeMapping(tuple(raw["time"]["start"]), tuple(raw["time"]["end"]), tuple(raw["time"]["fhir"]))
    value = ValueMapping(**raw["value"]) if "value" in raw else None
    attributes = {key: AttributeMapping(**spec) for key, spec in raw.get("attributes", {}).items()}
    terms = {}
    for key, spec in raw.get("terms", {}).items():
        system, _, term_code = key.rpartition("|")
        terms[(system, term_code)] = PatientTerm(
            spec["kind"], spec["column"], spec["fhir"], spec.get("system")
        )
    combined = None
    if "combined" in raw:
        spec = raw["combined"]
        parts = tuple(ConsentPart(p["name"], tuple(p["yes"]), tuple(p["no"])) for p in spec["parts"])
        combined = ConsentCombination(spec["system"], parts, spec["provision_system"])
    kind = raw.get("kind", "patient" if terms else "standard")
    return ContextMapping(
        name, raw["resource"], raw["table"], kind, code, time, value, attributes, terms, combined
    )


@functools.cache
def load_mapping() -> Mapping:
    raw = orjson.loads(importlib.resources.files("datenraum.query").joinpath("mapping.json").read_bytes())
    contexts = {name: _context(name, spec) for name, spec in raw["contexts"].items()}
    return Mapping(contexts, dict(raw["hierarchies"]))
