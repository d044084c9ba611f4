"""Criteria from the catalogue: the criterion for a picked concept and the user's filter choices.

`build_criterion` checks each choice against what the concept offers (`load.Concept`: units, values,
attributes, time restriction) and raises `ConceptChoiceError` for anything else; `criterion_json` then
writes the criterion exactly as the portal does, so queries move between the portal and Datenraum
unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from datenraum.query.catalogue.load import (
    AgeOption,
    Concept,
    ConceptChoiceError,
    ConceptOption,
    ValueConcept,
)
from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TimeRestriction,
    Unit,
    ValueFilter,
    query_to_json,
)

__all__ = ["build_criterion", "criterion_json"]


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
