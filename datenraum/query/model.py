"""The query model: an MII structured query (CCDL) as small immutable values.

A cohort is `inclusion AND NOT exclusion`:
- `inclusion` is a conjunction of disjunctions: every inner group must have one criterion that holds;
- `exclusion` is a disjunction of conjunctions: a patient is excluded when all criteria of any one
  inner group hold.
A criterion holds for a patient when they have a resource of the criterion's context that carries one
of its term codes (or a descendant of one, for hierarchical code systems) and satisfies its value
filter, every attribute filter and the time restriction. A negated criterion (CCDL v3) holds when no
such resource exists.

`parse_query` accepts the JSON exactly as the national feasibility portal writes it (versions 1 to 3
of the schema), so that a query saved there runs here unchanged, and names the JSON path of the first
problem it finds. Engines (SQL compiler, reference evaluator) only ever see these values.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "COMPARATORS",
    "MAX_CODES",
    "MAX_CRITERIA",
    "MAX_DEPTH",
    "MAX_GROUPS",
    "AttributeFilter",
    "ComparatorFilter",
    "ConceptFilter",
    "Criterion",
    "QueryError",
    "RangeFilter",
    "ReferenceFilter",
    "StructuredQuery",
    "TermCode",
    "TimeRestriction",
    "Unit",
    "ValueFilter",
    "canonical_json",
    "parse_query",
    "query_to_json",
]

COMPARATORS = ("gt", "ge", "lt", "le", "eq", "ne")

# What one query may cost a site (issue 12, P-2). The national portal's builder writes at most about 100
# criteria; each criterion becomes a subquery at the site, each group a join, and a long OR of criteria
# or codes a nested SQL expression (DuckDB refuses expressions more than 1000 deep). So:
MAX_CRITERIA = 200  # criteria in the whole query, referenced ones included: twice what the portal needs
MAX_GROUPS = 100  # inclusion and exclusion groups together: every group of the largest portal query
MAX_CODES = 500  # term codes and selected concepts in the whole query: far from DuckDB's depth limit
MAX_DEPTH = 32  # JSON nesting, unknown keys included: a CCDL query is at most about 12 deep


class QueryError(ValueError):
    """An invalid structured query; `path` is the JSON path of the offending element."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class TermCode:
    system: str
    code: str
    display: str = ""
    version: str | None = None

    def key(self) -> tuple[str, str]:
        return self.system, self.code


@dataclass(frozen=True)
class Unit:
    code: str
    display: str = ""


@dataclass(frozen=True)
class ConceptFilter:
    concepts: tuple[TermCode, ...]


@dataclass(frozen=True)
class ComparatorFilter:
    comparator: str
    value: float
    unit: Unit | None = None


@dataclass(frozen=True)
class RangeFilter:
    min_value: float
    max_value: float
    unit: Unit | None = None


ValueFilter = ConceptFilter | ComparatorFilter | RangeFilter


@dataclass(frozen=True)
class ReferenceFilter:
    """The referenced resource (e.g. a specimen's diagnosis) must meet one of these criteria."""

    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class AttributeFilter:
    attribute: TermCode
    filter: ValueFilter | ReferenceFilter


@dataclass(frozen=True)
class TimeRestriction:
    """The resource's time (a point or a period) must overlap [after, before], both days inclusive."""

    after: dt.date | None = None
    before: dt.date | None = None


@dataclass(frozen=True)
class Criterion:
    context: TermCode
    term_codes: tuple[TermCode, ...]
    value_filter: ValueFilter | None = None
    attribute_filters: tuple[AttributeFilter, ...] = ()
    time_restriction: TimeRestriction | None = None
    negated: bool = False


@dataclass(frozen=True)
class StructuredQuery:
    inclusion: tuple[tuple[Criterion, ...], ...]
    exclusion: tuple[tuple[Criterion, ...], ...] = ()
    display: str = ""
    version: str = ""

    def criteria(self) -> list[Criterion]:
        return [c for groups in (self.inclusion, self.exclusion) for group in groups for c in group]


# --- parsing ---------------------------------------------------------------------------------------

# The portal writes the context for every criterion; queries of schema v1 omit it. Where it is missing
# it is inferred from the code system, as the translator of the national portal does.
_CONTEXT_BY_SYSTEM = {
    "http://fhir.de/CodeSystem/bfarm/icd-10-gm": "Diagnose",
    "http://fhir.de/CodeSystem/dimdi/icd-10-gm": "Diagnose",
    "http://fhir.de/CodeSystem/bfarm/ops": "Procedure",
    "http://fhir.de/CodeSystem/dimdi/ops": "Procedure",
    "http://loinc.org": "Laboruntersuchung",
    "http://fhir.de/CodeSystem/bfarm/atc": "Medikamentenverabreichung",
    "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3": "Einwilligung",
    "fdpg.consent.combined": "Einwilligung",
}


def _object(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise QueryError(path, f"expected an object, got {_kind(value)}")
    return value


def _array(value: Any, path: str, *, non_empty: bool = True) -> list:
    if value is None:
        raise QueryError(path, "is required")
    if not isinstance(value, list):
        raise QueryError(path, f"expected an array, got {_kind(value)}")
    if non_empty and not value:
        raise QueryError(path, "must not be empty")
    return value


def _string(node: dict, key: str, path: str, *, required: bool = True) -> str | None:
    value = node.get(key)
    if value is None:
        if required:
            raise QueryError(f"{path}.{key}", "is required")
        return None
    if not isinstance(value, str):
        raise QueryError(f"{path}.{key}", f"expected a string, got {_kind(value)}")
    return _text(value, f"{path}.{key}")


def _text(value: str, path: str) -> str:
    """A string that can be stored and written back: no NUL (PostgreSQL cannot store it) and no lone
    surrogate (half of a UTF-16 pair, which is no character and cannot be written as UTF-8)."""
    if "\x00" in value:
        raise QueryError(path, "must not contain the character NUL")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            character = f"\\u{ord(value[error.start]):04x}"
            raise QueryError(
                path, f"contains {character}, half of a UTF-16 surrogate pair, not a character"
            ) from None
    return value


def _number(node: dict, key: str, path: str) -> float:
    value = node.get(key)
    if value is None:
        raise QueryError(f"{path}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f"{path}.{key}", f"expected a number, got {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond any float, such as 10**400
        raise QueryError(f"{path}.{key}", "is too large a number") from None
    if not math.isfinite(number):
        raise QueryError(f"{path}.{key}", f"expected a number, got {_kind(value)}")
    return number


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return "an integer too large to write out"  # str() of a huge one is slow, or refused
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"the number {value}"
    return names.get(type(value), type(value).__name__)


def _term_code(value: Any, path: str) -> TermCode:
    node = _object(value, path)
    system = _string(node, "system", path)
    code = _string(node, "code", path)
    if not code.strip():
        raise QueryError(f"{path}.code", "must not be blank")
    display = _string(node, "display", path, required=False) or ""
    return TermCode(system, code, display, _string(node, "version", path, required=False))


def _unit(node: dict, path: str) -> Unit | None:
    if node.get("unit") is None:
        return None
    unit = _object(node["unit"], f"{path}.unit")
    return Unit(
        _string(unit, "code", f"{path}.unit"), _string(unit, "display", f"{path}.unit", required=False) or ""
    )


def _value_filter(value: Any, path: str) -> ValueFilter:
    node = _object(value, path)
    kind = _string(node, "type", path)
    if kind == "concept":
        concepts = _array(node.get("selectedConcepts"), f"{path}.selectedConcepts")
        return ConceptFilter(
            tuple(_term_code(c, f"{path}.selectedConcepts[{i}]") for i, c in enumerate(concepts))
        )
    if kind == "quantity-comparator":
        comparator = _string(node, "comparator", path)
        if comparator not in COMPARATORS:
            raise QueryError(
                f"{path}.comparator", f"must be one of {', '.join(COMPARATORS)}, got {comparator!r}"
            )
        return ComparatorFilter(comparator, _number(node, "value", path), _unit(node, path))
    if kind == "quantity-range":
        low, high = _number(node, "minValue", path), _number(node, "maxValue", path)
        if low > high:
            raise QueryError(f"{path}.minValue", f"minValue {low:g} is greater than maxValue {high:g}")
        return RangeFilter(low, high, _unit(node, path))
    raise QueryError(
        f"{path}.type", f"unknown filter type {kind!r} (concept, quantity-comparator, quantity-range)"
    )


def _attribute_filter(value: Any, path: str, *, nested: bool) -> AttributeFilter:
    node = _object(value, path)
    attribute = _term_code(node.get("attributeCode"), f"{path}.attributeCode")
    if node.get("type") == "reference":
        if nested:
            raise QueryError(f"{path}.type", "a referenced criterion cannot itself have a reference filter")
        criteria = _array(node.get("criteria"), f"{path}.criteria")
        return AttributeFilter(
            attribute,
            ReferenceFilter(
                tuple(_criterion(c, f"{path}.criteria[{i}]", nested=True) for i, c in enumerate(criteria))
            ),
        )
    return AttributeFilter(attribute, _value_filter(node, path))


def _date(node: dict, key: str, path: str) -> dt.date | None:
    text = _string(node, key, path, required=False)
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise QueryError(f"{path}.{key}", f"expected a date YYYY-MM-DD, got {text!r}") from None


def _time_restriction(value: Any, path: str) -> TimeRestriction:
    node = _object(value, path)
    after, before = _date(node, "afterDate", path), _date(node, "beforeDate", path)
    if after is None and before is None:
        raise QueryError(path, "needs afterDate or beforeDate")
    if after is not None and before is not None and after > before:
        raise QueryError(path, f"afterDate {after} is later than beforeDate {before}")
    return TimeRestriction(after, before)


# Keys of shapes this model does not read, and why: named so that a rejection says what it found.
_UNSUPPORTED_SHAPES = {
    "criteria": "a criteria group (CCDL v3 draft: id, anchors, relative time restrictions) is not supported",
    "termCode": "'termCode' is the 2021 draft schema; this site reads 'termCodes' (schema v2 and later)",
}


def _criterion(value: Any, path: str, *, nested: bool = False) -> Criterion:
    node = _object(value, path)
    for key, problem in _UNSUPPORTED_SHAPES.items():
        if key in node and "termCodes" not in node:
            raise QueryError(path, problem)
    term_codes = tuple(
        _term_code(t, f"{path}.termCodes[{i}]")
        for i, t in enumerate(_array(node.get("termCodes"), f"{path}.termCodes"))
    )
    if node.get("context") is not None:
        context = _term_code(node["context"], f"{path}.context")
    else:
        inferred = _CONTEXT_BY_SYSTEM.get(term_codes[0].system)
        if inferred is None:
            raise QueryError(f"{path}.context", f"is required for code system {term_codes[0].system!r}")
        context = TermCode("fdpg.mii.cds", inferred, inferred)
    value_filter = (
        _value_filter(node["valueFilter"], f"{path}.valueFilter") if node.get("valueFilter") else None
    )
    attributes = _array(node.get("attributeFilters", []), f"{path}.attributeFilters", non_empty=False)
    negated = node.get("negated", False)
    if not isinstance(negated, bool):
        raise QueryError(f"{path}.negated", f"expected true or false, got {_kind(negated)}")
    if negated and nested:
        raise QueryError(f"{path}.negated", "a referenced criterion cannot be negated")
    return Criterion(
        context=context,
        term_codes=term_codes,
        value_filter=value_filter,
        attribute_filters=tuple(
            _attribute_filter(a, f"{path}.attributeFilters[{i}]", nested=nested)
            for i, a in enumerate(attributes)
        ),
        time_restriction=(
            _time_restriction(node["timeRestriction"], f"{path}.timeRestriction")
            if node.get("timeRestriction")
            else None
        ),
        negated=negated,
    )


def _groups(value: Any, path: str) -> tuple[tuple[Criterion, ...], ...]:
    groups = _array(value, path)
    return tuple(
        tuple(_criterion(c, f"{path}[{i}][{j}]") for j, c in enumerate(_array(group, f"{path}[{i}]")))
        for i, group in enumerate(groups)
    )


def _check_depth(data: Any) -> None:
    """Refuse JSON nested deeper than MAX_DEPTH anywhere (without recursion, so any depth is safe)."""
    stack: list[tuple[Any, str, int]] = [(data, "$", 1)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            children = [(v, f"{path}.{k}") for k, v in node.items()]
        elif isinstance(node, list):
            children = [(v, f"{path}[{i}]") for i, v in enumerate(node)]
        else:
            continue
        if depth > MAX_DEPTH:
            raise QueryError(path, f"is nested deeper than {MAX_DEPTH} levels, more than any query needs")
        stack.extend((value, child, depth + 1) for value, child in children)


def _check_size(node: dict) -> None:
    """Refuse a query with more groups, criteria or codes than the limits above, naming the first element
    over a limit. Only counts: the shapes are checked when the query is read."""
    groups = criteria = codes = 0

    def count_codes(values: Any, path: str) -> None:
        nonlocal codes
        for i, _ in enumerate(values if isinstance(values, list) else ()):
            codes += 1
            if codes > MAX_CODES:
                raise QueryError(f"{path}[{i}]", f"a query may have at most {MAX_CODES} codes")

    def count_criterion(value: Any, path: str) -> None:
        nonlocal criteria
        criteria += 1
        if criteria > MAX_CRITERIA:
            raise QueryError(path, f"a query may have at most {MAX_CRITERIA} criteria")
        if not isinstance(value, dict):
            return
        count_codes(value.get("termCodes"), f"{path}.termCodes")
        if isinstance(value.get("valueFilter"), dict):
            count_codes(value["valueFilter"].get("selectedConcepts"), f"{path}.valueFilter.selectedConcepts")
        filters = value.get("attributeFilters")
        for i, item in enumerate(filters if isinstance(filters, list) else ()):
            if isinstance(item, dict):
                count_codes(item.get("selectedConcepts"), f"{path}.attributeFilters[{i}].selectedConcepts")
                referenced = item.get("criteria")
                for j, nested in enumerate(referenced if isinstance(referenced, list) else ()):
                    count_criterion(nested, f"{path}.attributeFilters[{i}].criteria[{j}]")

    for key in ("inclusionCriteria", "exclusionCriteria"):
        value = node.get(key)
        for i, group in enumerate(value if isinstance(value, list) else ()):
            groups += 1
            if groups > MAX_GROUPS:
                raise QueryError(
                    f"$.{key}[{i}]", f"a query may have at most {MAX_GROUPS} groups (inclusion and exclusion)"
                )
            for j, item in enumerate(group if isinstance(group, list) else ()):
                count_criterion(item, f"$.{key}[{i}][{j}]")


def parse_query(data: Any) -> StructuredQuery:
    """A StructuredQuery from parsed JSON, or from JSON text/bytes; raises QueryError."""
    if isinstance(data, str | bytes):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise QueryError(
                "$", f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}"
            ) from None
    _check_depth(data)
    node = _object(data, "$")
    _check_size(node)
    if node.get("inclusionCriteria") is None:
        if "queryMetadata" in node:
            raise QueryError("$", "the 2021 draft format ('queryMetadata' and 'query') is not supported")
        raise QueryError("$.inclusionCriteria", "is required")
    exclusion = node.get("exclusionCriteria")
    return StructuredQuery(
        inclusion=_groups(node["inclusionCriteria"], "$.inclusionCriteria"),
        exclusion=_groups(exclusion, "$.exclusionCriteria") if exclusion else (),
        display=_string(node, "display", "$", required=False) or "",
        version=_string(node, "version", "$", required=False) or "",
    )


# --- writing ---------------------------------------------------------------------------------------


def _term_code_json(term: TermCode) -> dict:
    body = {"system": term.system, "code": term.code, "display": term.display}
    if term.version is not None:
        body["version"] = term.version
    return body


def _filter_json(value_filter: ValueFilter) -> dict:
    if isinstance(value_filter, ConceptFilter):
        return {"type": "concept", "selectedConcepts": [_term_code_json(t) for t in value_filter.concepts]}
    if isinstance(value_filter, ComparatorFilter):
        body: dict = {
            "type": "quantity-comparator",
            "comparator": value_filter.comparator,
            "value": value_filter.value,
        }
    else:
        body = {
            "type": "quantity-range",
            "minValue": value_filter.min_value,
            "maxValue": value_filter.max_value,
        }
    if value_filter.unit is not None:
        body["unit"] = {"code": value_filter.unit.code, "display": value_filter.unit.display}
    return body


def _criterion_json(criterion: Criterion) -> dict:
    body: dict = {
        "context": _term_code_json(criterion.context),
        "termCodes": [_term_code_json(t) for t in criterion.term_codes],
    }
    if criterion.value_filter is not None:
        body["valueFilter"] = _filter_json(criterion.value_filter)
    if criterion.attribute_filters:
        filters = []
        for attribute_filter in criterion.attribute_filters:
            if isinstance(attribute_filter.filter, ReferenceFilter):
                item = {
                    "type": "reference",
                    "criteria": [_criterion_json(c) for c in attribute_filter.filter.criteria],
                }
            else:
                item = _filter_json(attribute_filter.filter)
            filters.append({"attributeCode": _term_code_json(attribute_filter.attribute), **item})
        body["attributeFilters"] = filters
    restriction = criterion.time_restriction
    if restriction is not None:
        body["timeRestriction"] = {
            key: day.isoformat()
            for key, day in (("afterDate", restriction.after), ("beforeDate", restriction.before))
            if day is not None
        }
    if criterion.negated:
        body["negated"] = True
    return body


def query_to_json(query: StructuredQuery) -> dict:
    """The structured-query JSON of a query (parse_query(query_to_json(q)) == q)."""
    body: dict = {
        "version": query.version or "https://medizininformatik-initiative.de/fdpg/StructuredQuery/v3/schema",
        "display": query.display,
        "inclusionCriteria": [[_criterion_json(c) for c in group] for group in query.inclusion],
    }
    if query.exclusion:
        body["exclusionCriteria"] = [[_criterion_json(c) for c in group] for group in query.exclusion]
    return body


def canonical_json(query: StructuredQuery) -> dict:
    """The query's meaning alone: no display texts, no schema version, so equal questions compare equal."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("display", "version")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(query_to_json(query))
