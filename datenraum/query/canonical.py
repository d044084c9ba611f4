"""The semantic canonical form of a structured query: one form for every way of writing one question.

The hub finds a repeated question by this form (reuse fingerprint) and counts near-duplicates by it
(quota), so that writing a question differently does not make it a new one (issue 12, P-1). The form
rests on the query model's meaning (`model`): inclusion is an AND of OR-groups, exclusion an OR of
AND-groups, so
- the order of groups, of criteria in a group, of term codes, selected concepts, attribute filters and
  referenced criteria does not matter, and neither do duplicates: each is a set here;
- a group that has every criterion of another group of the same side and more is absorbed by it and
  dropped (inclusion: A and (A or B) is A; exclusion: A or (A and B) is A);
- display texts and schema versions do not take part;
- a quantity is written in the base unit of its UCUM dimension (`units.canonical_unit`: 100 mg/dL and
  1 g/L are one value), as an exact decimal rounded to 12 significant digits, so that conversion factors
  that are not exact in binary (1/24 for h to d) still meet. Two thresholds that differ only beyond the
  12th digit are taken as one question; no stored value is that precise.

Codes are not case-folded or trimmed: both engines compare codes exactly (`terminology.CodeMatch`), so
`e11` is a different (empty) criterion, not a spelling of `E11`.

This form is for comparing questions, not for running them: sites get the query as written.
"""

from __future__ import annotations

import decimal
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    ValueFilter,
)
from datenraum.query.units import canonical_unit

__all__ = ["CanonicalQuery", "canonical_query", "near_duplicates"]

_DIGITS = decimal.Context(prec=12)
Group = frozenset[bytes]  # the canonical JSON of each criterion of one group


@dataclass(frozen=True)
class CanonicalQuery:
    inclusion: frozenset[Group]
    exclusion: frozenset[Group]

    def to_json(self) -> dict[str, Any]:
        return {
            "inclusionCriteria": _groups_json(self.inclusion),
            "exclusionCriteria": _groups_json(self.exclusion),
        }

    def digest(self) -> str:
        return hashlib.sha256(orjson.dumps(self.to_json())).hexdigest()


def canonical_query(query: StructuredQuery) -> CanonicalQuery:
    return CanonicalQuery(_normal_groups(query.inclusion), _normal_groups(query.exclusion))


def near_duplicates(a: CanonicalQuery, b: CanonicalQuery) -> bool:
    """Whether one question is the other with one criterion or one group added: the pairs a differencing
    attack needs (their two answers are the narrow difference, plus noise). Equal questions are not."""
    return _one_step(a, b) or _one_step(b, a)


# --- the form -------------------------------------------------------------------------------------------


def _one_step(small: CanonicalQuery, large: CanonicalQuery) -> bool:
    """Whether `large` is `small` with one group added, or one criterion added to one of its groups."""
    changes = []
    for before, after in ((small.inclusion, large.inclusion), (small.exclusion, large.exclusion)):
        gone, new = before - after, after - before
        if gone or new:
            changes.append((gone, new))
    if len(changes) != 1:
        return False
    ((gone, new),) = changes
    if not gone and len(new) == 1:
        return True  # one group added
    if len(gone) == 1 and len(new) == 1:
        (old,), (grown,) = gone, new
        return old < grown and len(grown - old) == 1  # one criterion added to a group
    return False


def _normal_groups(groups: tuple[tuple[Criterion, ...], ...]) -> frozenset[Group]:
    sets = {frozenset(_key(_criterion(c)) for c in group) for group in groups}
    return frozenset(g for g in sets if not any(other < g for other in sets))


def _groups_json(groups: frozenset[Group]) -> list[list[Any]]:
    ordered = sorted(tuple(sorted(group)) for group in groups)
    return [[orjson.loads(key) for key in group] for group in ordered]


def _key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _set(items: list[Any]) -> list[Any]:
    """A list whose order and duplicates mean nothing, in one order and once each."""
    return [orjson.loads(k) for k in sorted({_key(item) for item in items})]


def _term(term: TermCode) -> list[str]:
    return [term.system, term.code]


def _number(value: float) -> str:
    return str(_DIGITS.create_decimal(repr(value)).normalize())


def _quantity(value: float, unit: str | None) -> dict[str, Any]:
    if unit is None:
        return {"value": _number(value)}
    known = canonical_unit(unit)
    if known is None:  # not a unit the engines know (the hub refuses it): kept as written
        return {"value": _number(value), "unit": unit}
    base, factor = known
    exact = decimal.Decimal(repr(value)) * decimal.Decimal(repr(factor))
    return {"value": str(_DIGITS.create_decimal(exact).normalize()), "unit": base}


def _filter(value_filter: ValueFilter) -> dict[str, Any]:
    if isinstance(value_filter, ConceptFilter):
        return {"concepts": _set([_term(t) for t in value_filter.concepts])}
    unit = value_filter.unit.code if value_filter.unit is not None else None
    if isinstance(value_filter, ComparatorFilter):
        return {"comparator": value_filter.comparator, **_quantity(value_filter.value, unit)}
    assert isinstance(value_filter, RangeFilter)
    low, high = _quantity(value_filter.min_value, unit), _quantity(value_filter.max_value, unit)
    return {"min": low, "max": high}


def _attribute(attribute_filter: AttributeFilter) -> dict[str, Any]:
    inner = attribute_filter.filter
    if isinstance(inner, ReferenceFilter):
        body: dict[str, Any] = {"references": _set([_criterion(c) for c in inner.criteria])}
    else:
        body = _filter(inner)
    return {"attribute": _term(attribute_filter.attribute), **body}


def _criterion(criterion: Criterion) -> dict[str, Any]:
    body: dict[str, Any] = {
        "context": _term(criterion.context),
        "codes": _set([_term(t) for t in criterion.term_codes]),
    }
    if criterion.value_filter is not None:
        body["value"] = _filter(criterion.value_filter)
    if criterion.attribute_filters:
        body["attributes"] = _set([_attribute(a) for a in criterion.attribute_filters])
    restriction = criterion.time_restriction
    if restriction is not None:
        body["time"] = [
            None if day is None else day.isoformat() for day in (restriction.after, restriction.before)
        ]
    if criterion.negated:
        body["negated"] = True
    return body
