"""Reject what the mapping cannot answer, before any engine runs (contract, section 6).

Both engines call `check_query` first, so they reject exactly the same queries for the same reason,
and neither ever returns a count for a criterion it would have to guess at: an unknown context,
patient term or attribute, a value filter where the context has no value, a unit we cannot convert,
or a malformed combined consent code. The error names the JSON path of the offending element, as the
user wrote it, so that they can find it in their query.
"""

from __future__ import annotations

from datenraum.query.mapping import ContextMapping, Mapping, UnsupportedCriterion
from datenraum.query.model import (
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    QueryError,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    ValueFilter,
)
from datenraum.query.units import UnknownUnit, comparable_units, to_years_factor

__all__ = ["check_query"]


def check_query(query: StructuredQuery, mapping: Mapping) -> None:
    """Raise QueryError for the first criterion the mapping cannot answer; return None if all can."""
    for key, groups in (("inclusionCriteria", query.inclusion), ("exclusionCriteria", query.exclusion)):
        for i, group in enumerate(groups):
            for j, criterion in enumerate(group):
                _check_criterion(criterion, f"$.{key}[{i}][{j}]", mapping)


def _check_criterion(criterion: Criterion, path: str, mapping: Mapping) -> None:
    try:
        context = mapping.context(criterion)
    except UnsupportedCriterion as error:
        raise QueryError(f"{path}.context", str(error)) from None
    if context.kind == "patient":
        _check_patient(criterion, context, path)
    elif context.kind == "consent":
        _check_consent(criterion, context, path)
    else:
        _check_standard(criterion, context, path, mapping)


def _check_patient(criterion: Criterion, context: ContextMapping, path: str) -> None:
    if criterion.attribute_filters:
        raise QueryError(f"{path}.attributeFilters[0]", "the Patient context has no attributes to filter on")
    if criterion.time_restriction is not None:
        raise QueryError(f"{path}.timeRestriction", "the Patient context has no time to restrict")
    value_filter = criterion.value_filter
    for i, term in enumerate(criterion.term_codes):
        try:
            kind = context.patient_term(term).kind
        except UnsupportedCriterion as error:
            raise QueryError(f"{path}.termCodes[{i}]", str(error)) from None
        if kind == "age":
            if not isinstance(value_filter, ComparatorFilter | RangeFilter):
                raise QueryError(
                    f"{path}.valueFilter",
                    "an age criterion needs a quantity-comparator or quantity-range filter",
                )
            try:
                to_years_factor(value_filter.unit.code if value_filter.unit is not None else None)
            except UnknownUnit as error:
                raise QueryError(f"{path}.valueFilter.unit", str(error)) from None
        elif kind == "gender" and not isinstance(value_filter, ConceptFilter):
            raise QueryError(f"{path}.valueFilter", "a gender criterion needs a concept filter (e.g. female)")
        elif kind == "deceased" and value_filter is not None:
            raise QueryError(f"{path}.valueFilter", "a deceased criterion takes no value filter")


def _check_consent(criterion: Criterion, context: ContextMapping, path: str) -> None:
    if criterion.value_filter is not None:
        raise QueryError(f"{path}.valueFilter", "a consent criterion takes no value filter")
    if criterion.attribute_filters:
        raise QueryError(f"{path}.attributeFilters[0]", "a consent criterion has no attributes to filter on")
    for i, term in enumerate(criterion.term_codes):
        try:
            context.combined.required_provisions(term)
        except UnsupportedCriterion as error:
            raise QueryError(f"{path}.termCodes[{i}]", str(error)) from None


def _check_standard(criterion: Criterion, context: ContextMapping, path: str, mapping: Mapping) -> None:
    if context.code is None:
        raise QueryError(f"{path}.context", f"{context.name} has no code to match term codes against")
    if criterion.value_filter is not None:
        _check_value_filter(criterion.value_filter, context, f"{path}.valueFilter")
    if criterion.time_restriction is not None and context.time is None:
        raise QueryError(f"{path}.timeRestriction", f"{context.name} has no time to restrict")
    for i, attribute_filter in enumerate(criterion.attribute_filters):
        where = f"{path}.attributeFilters[{i}]"
        try:
            attribute = context.attribute(attribute_filter.attribute)
        except UnsupportedCriterion as error:
            raise QueryError(where, str(error)) from None
        code = attribute_filter.attribute.code
        if attribute.kind == "reference":
            if not isinstance(attribute_filter.filter, ReferenceFilter):
                raise QueryError(where, f"attribute {code!r} of {context.name} needs a reference filter")
            for k, referenced in enumerate(attribute_filter.filter.criteria):
                if referenced.context.code != attribute.target_context:
                    raise QueryError(
                        f"{where}.criteria[{k}].context",
                        f"attribute {code!r} refers to a {attribute.target_context}, not a {referenced.context.code}",
                    )
                _check_criterion(referenced, f"{where}.criteria[{k}]", mapping)
        elif not isinstance(attribute_filter.filter, ConceptFilter):
            raise QueryError(where, f"attribute {code!r} of {context.name} needs a concept filter")


def _check_value_filter(value_filter: ValueFilter, context: ContextMapping, path: str) -> None:
    if context.value is None:
        raise QueryError(path, f"{context.name} has no value to filter on")
    if isinstance(value_filter, ComparatorFilter | RangeFilter) and value_filter.unit is not None:
        try:
            comparable_units(value_filter.unit.code)
        except UnknownUnit as error:
            raise QueryError(f"{path}.unit", str(error)) from None
