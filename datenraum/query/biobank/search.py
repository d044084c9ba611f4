"""What a sample search asks beside the cohort: which categories, storage temperatures, biobanks and
diagnoses. The hub builds it from the search page and sends it to the sites; the site reads it with
`parse_sample_filter`, which names the JSON path of the first problem (a hostile or broken filter never
reaches the store's SQL: every value is checked against a closed list or a pattern here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from datenraum.query.biobank.terminology import CATEGORIES, TEMPERATURE_CLASSES
from datenraum.query.model import QueryError

__all__ = ["MAX_FILTER_VALUES", "SampleFilter", "parse_sample_filter"]

MAX_FILTER_VALUES = 200
_CATEGORY_CODES = frozenset(c.code for c in CATEGORIES)
_GROUPS = frozenset(c.group for c in CATEGORIES)
_TEMPERATURES = frozenset(t.code for t in TEMPERATURE_CLASSES)
# An ICD-10-GM code or the start of one (a category, `E11`, finds `E11.9`).
_ICD = re.compile(r"[A-Z][0-9]{2}(\.[0-9A-Z!+*-]{1,4})?")
# FHIR ids and BBMRI-ERIC ids (`de-12345`, `bbmri-eric:ID:CZ_CUNI_PILS:collection:serum_plasma`).
_BIOBANK = re.compile(r"[A-Za-z0-9\-._:]{1,128}")
_SINGULAR = {
    "categories": "sample category or group",
    "temperatures": "storage temperature class",
    "biobanks": "biobank id",
    "diagnoses": "ICD-10-GM code",
}


@dataclass(frozen=True)
class SampleFilter:
    """Empty sets ask for everything. `biobanks` are Organization ids or BBMRI-ERIC ids."""

    categories: frozenset[str] = frozenset()
    temperatures: frozenset[str] = frozenset()
    biobanks: frozenset[str] = frozenset()
    diagnoses: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, list[str]]:
        return {
            name: sorted(getattr(self, name))
            for name in ("categories", "temperatures", "biobanks", "diagnoses")
            if getattr(self, name)
        }


def _values(body: dict, name: str, valid: Any) -> frozenset[str]:
    values = body.get(name, [])
    if not isinstance(values, list):
        raise QueryError(f"samples.{name}", "expected a list of strings")
    if len(values) > MAX_FILTER_VALUES:
        raise QueryError(f"samples.{name}", f"at most {MAX_FILTER_VALUES} values")
    for index, value in enumerate(values):
        if not isinstance(value, str) or not valid(value):
            shown = repr(value)[:60]
            raise QueryError(f"samples.{name}[{index}]", f"{shown} is not a known {_SINGULAR[name]}")
    return frozenset(values)


def parse_sample_filter(body: Any) -> SampleFilter:
    """The filter of a JSON object `{"categories": [...], "temperatures": [...], "biobanks": [...],
    "diagnoses": [...]}`; a category group of the type tree (`blood`, `tissue`, ...) stands for its
    categories. QueryError names the first problem."""
    if body is None:
        return SampleFilter()
    if not isinstance(body, dict):
        raise QueryError("samples", "expected an object")
    unknown = sorted(set(body) - {"categories", "temperatures", "biobanks", "diagnoses"})
    if unknown:
        raise QueryError(f"samples.{unknown[0]}", "unknown field")
    chosen = _values(body, "categories", lambda v: v in _CATEGORY_CODES or v in _GROUPS)
    categories = frozenset(c.code for c in CATEGORIES if c.code in chosen or c.group in chosen)
    return SampleFilter(
        categories=categories,
        temperatures=_values(body, "temperatures", lambda v: v in _TEMPERATURES),
        biobanks=_values(body, "biobanks", lambda v: _BIOBANK.fullmatch(v) is not None),
        diagnoses=_values(body, "diagnoses", lambda v: _ICD.fullmatch(v) is not None),
    )
