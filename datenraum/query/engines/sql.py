"""The SQL engine: a structured query compiled into one SQL statement over the site store's tables.

The statement implements `docs/feasibility-semantics.md` and nothing else; the mapping says which
table and columns each context reads. It is built as sqlglot expressions, not strings, so that one
compiler serves every backend a site may run (DuckDB on the site store, Spark or PostgreSQL on a data
warehouse): `dialect` only changes how the same tree is written out.

Shape, chosen for DuckDB's strengths (hash joins over column scans):

    WITH in_0_0 AS (SELECT patient_id FROM condition WHERE <one row meets all of the criterion>),
         in_1_0 AS (...), ex_0_0 AS (...), ex_0_1 AS (...),
         cohort AS (
           SELECT patient_id FROM patient
           WHERE birth_date <= CAST('2006-06-15' AS DATE)            -- Patient criteria, on the row
             AND (patient_id IN (SELECT patient_id FROM in_0_0) OR ...)        -- inclusion: any of
             AND NOT (patient_id IN (SELECT patient_id FROM ex_0_0) AND ...))  -- exclusion: all of
    SELECT patient_id FROM cohort ORDER BY patient_id          -- or SELECT COUNT(*) FROM cohort

The patient table drives the statement: it is the universe (contract 1), so resources of unknown
patients count for nobody and a negation needs no set difference, and Patient criteria become filters
on its scan. Every other criterion is one scan of one table with all of its conditions on the same row
(the contract's "some resource satisfies all of"), which lets the scan push its filters down; DuckDB
answers each IN with a semi (or mark) join on a hash table of the criterion's ids, so no id list is
ever deduplicated or intersected as a set (measured: about half the CPU time of INTERSECT/UNION/EXCEPT
of DISTINCT id sets on a synthetic site).

Predicates avoid per-row functions where a plain comparison does the same: an age filter becomes a
range of birth dates computed here from `today`, a code hierarchy a LIKE prefix, a time restriction
two timestamp comparisons. Timestamps are naive UTC (TIMESTAMP_NTZ on Spark).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from sqlglot import exp

from datenraum.query.check import check_query
from datenraum.query.mapping import (
    AttributeMapping,
    ContextMapping,
    Mapping,
    PatientTerm,
    TimeMapping,
    ValueMapping,
    load_mapping,
)
from datenraum.query.model import (
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    ValueFilter,
)
from datenraum.query.terminology import CodeMatch, code_match
from datenraum.query.units import comparable_units, to_years_factor

__all__ = ["DIALECTS", "compile_count", "compile_query"]

DIALECTS = ("duckdb", "spark", "postgres")

PATIENT_ID = "patient_id"
# The store's Medication view, which medication contexts join through their medication reference.
MEDICATION_TABLE = "medication"
MEDICATION_ID, MEDICATION_SYSTEM, MEDICATION_CODE = "id", "code_system", "code"
# Every view names a resource's own id `id` (the target of a reference attribute).
RESOURCE_ID = "id"

_COMPARATORS: dict[str, type[exp.Binary]] = {
    "gt": exp.GT,
    "ge": exp.GTE,
    "lt": exp.LT,
    "le": exp.LTE,
    "eq": exp.EQ,
    "ne": exp.NEQ,
}


def compile_query(
    query: StructuredQuery,
    *,
    today: dt.date,
    mapping: Mapping | None = None,
    dialect: str = "duckdb",
    pretty: bool = False,
) -> str:
    """One SQL statement selecting the distinct patient ids of the cohort, in order.

    Raises QueryError (with the JSON path) for a query the mapping cannot answer.
    """
    ordered = exp.Ordered(this=_column(PATIENT_ID), desc=False, nulls_first=False)
    statement = _statement(query, today, mapping, _from("cohort").order_by(ordered, copy=False))
    return _render(statement, dialect, pretty)


def compile_count(
    query: StructuredQuery,
    *,
    today: dt.date,
    mapping: Mapping | None = None,
    dialect: str = "duckdb",
    pretty: bool = False,
) -> str:
    """One SQL statement counting the patients of the cohort (one row, column `patients`)."""
    patients = _select(exp.Count(this=exp.Star()).as_("patients", copy=False))
    statement = _statement(query, today, mapping, patients.from_(exp.table_("cohort"), copy=False))
    return _render(statement, dialect, pretty)


def _statement(
    query: StructuredQuery, today: dt.date, mapping: Mapping | None, statement: exp.Select
) -> exp.Select:
    """`statement` (which reads `cohort`) with the criteria and the cohort as its CTEs."""
    mapping = mapping if mapping is not None else load_mapping()
    check_query(query, mapping)
    ctes = [
        exp.CTE(this=cte, alias=exp.TableAlias(this=exp.to_identifier(name)))
        for name, cte in _Compiler(mapping, today).ctes(query)
    ]
    statement.set("with_", exp.With(expressions=ctes))
    return statement


def _render(statement: exp.Expression, dialect: str, pretty: bool) -> str:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r} (supported: {', '.join(DIALECTS)})")
    return statement.sql(dialect=dialect, pretty=pretty, copy=False)


# --- small builders --------------------------------------------------------------------------------


def _column(name: str) -> exp.Column:
    return exp.column(name)


# Every node here is built fresh and used once, so the builders need not copy (which, on a growing
# statement, costs time quadratic in its size).
def _and(*parts: exp.Expression) -> exp.Expression:
    return exp.and_(*parts, copy=False)


def _or(*parts: exp.Expression) -> exp.Expression:
    return exp.or_(*parts, copy=False)


def _select(*columns: str | exp.Expression) -> exp.Select:
    return exp.Select(expressions=[_column(c) if isinstance(c, str) else c for c in columns])


def _string(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _double(value: float) -> exp.Expression:
    # repr gives the shortest text that reads back as the same double, so SQL compares exactly the
    # float the reference evaluator compares; the cast keeps DuckDB from reading it as a DECIMAL.
    return exp.cast(exp.Literal.number(repr(float(value))), exp.DataType.Type.DOUBLE, copy=False)


def _timestamp(day: dt.date) -> exp.Expression:
    """Midnight (UTC) at the start of `day`."""
    return exp.cast(_string(f"{day.isoformat()} 00:00:00"), exp.DataType.Type.TIMESTAMPNTZ, copy=False)


def _date(day: dt.date) -> exp.Expression:
    return exp.cast(_string(day.isoformat()), exp.DataType.Type.DATE, copy=False)


def _coalesce(columns: Sequence[str]) -> exp.Expression:
    if len(columns) == 1:
        return _column(columns[0])
    return exp.Coalesce(this=_column(columns[0]), expressions=[_column(c) for c in columns[1:]])


def _number(value: int) -> exp.Literal:
    return exp.Literal.number(value)


def _equals(column: str, value: str) -> exp.Expression:
    return exp.EQ(this=_column(column), expression=_string(value))


def _one_if(condition: exp.Expression) -> exp.Expression:
    """1 where the condition holds, else 0 (NULL counts as not holding)."""
    return exp.Case(ifs=[exp.If(this=condition, true=_number(1))], default=_number(0))


def _not(condition: exp.Expression) -> exp.Expression:
    # sqlglot writes NOT before an AND/OR without parentheses, which would negate only the first part.
    return exp.Not(this=exp.Paren(this=condition) if isinstance(condition, exp.Connector) else condition)


def _true(condition: exp.Expression) -> exp.Expression:
    """The condition with NULL read as false, so that NOT of it is true where it does not hold."""
    return exp.Coalesce(this=condition, expressions=[exp.false()])


def _is_null(expression: exp.Expression) -> exp.Expression:
    return exp.Is(this=expression.copy(), expression=exp.Null())


def _is_not_null(expression: exp.Expression) -> exp.Expression:
    return exp.Not(this=_is_null(expression))


def _in(column: exp.Expression, values: Sequence[str]) -> exp.Expression:
    if len(values) == 1:
        return exp.EQ(this=column.copy(), expression=_string(values[0]))
    return column.copy().isin(*(_string(v) for v in values), copy=False)


def _starts_with(column: exp.Expression, prefix: str) -> exp.Expression:
    """`column LIKE 'prefix%'`: an index- and statistics-friendly prefix test in every dialect.

    Codes rarely hold LIKE wildcards; when one does, it is escaped, and only then is an ESCAPE clause
    written (DuckDB turns a plain prefix LIKE into a fast prefix comparison).
    """
    if not any(char in prefix for char in "%_\\"):
        return exp.Like(this=column.copy(), expression=_string(prefix + "%"))
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    like = exp.Like(this=column.copy(), expression=_string(escaped + "%"))
    return exp.Escape(this=like, expression=_string("\\"))


def _from(table: str) -> exp.Select:
    """`SELECT patient_id FROM table`"""
    return _select(PATIENT_ID).from_(exp.table_(table), copy=False)


def _compare(value: exp.Expression, value_filter: ComparatorFilter | RangeFilter) -> exp.Expression:
    if isinstance(value_filter, RangeFilter):
        # Inclusive at both ends (contract 2).
        return exp.Between(
            this=value, low=_double(value_filter.min_value), high=_double(value_filter.max_value)
        )
    return _COMPARATORS[value_filter.comparator](this=value, expression=_double(value_filter.value))


# --- age as a range of birth dates -----------------------------------------------------------------


def _latest_birth_date(today: dt.date, years: int) -> dt.date | None:
    """The last birth date of someone who has completed `years` whole years on `today`; None when no
    representable date is early enough.

    Someone has completed `years` years when their birthday `years` years on is not after today, so
    the bound is today moved back by `years` years (a person born on 29 February completes a year on
    1 March in other years, so on 29 February of a leap year the bound in a common year is 28 February).
    """
    year = today.year - years
    if year < dt.MINYEAR:
        return None
    if year > dt.MAXYEAR:
        return dt.date.max
    try:
        return today.replace(year=year)
    except ValueError:
        return dt.date(year, 2, 28)


class _Age:
    """Predicates on a birth-date column meaning "age in whole years on `today`" is at least/below n.

    Turning the filter on age into a filter on birth dates keeps the comparison a plain column range,
    the same in every dialect, instead of date arithmetic on every row.
    """

    def __init__(self, column: str, today: dt.date) -> None:
        self.column = column
        self.today = today

    def at_least(self, years: int) -> exp.Expression:
        bound = _latest_birth_date(self.today, years)
        if bound is None:
            return exp.false()
        return exp.LTE(this=_column(self.column), expression=_date(bound))

    def below(self, years: int) -> exp.Expression:
        bound = _latest_birth_date(self.today, years)
        if bound is None:
            return _is_not_null(_column(self.column))
        return exp.GT(this=_column(self.column), expression=_date(bound))

    def matches(self, value_filter: ComparatorFilter | RangeFilter) -> exp.Expression:
        """The age (an integer) compared with the filter's value in years (a float), as the contract says."""
        factor = to_years_factor(value_filter.unit.code if value_filter.unit is not None else None)
        if isinstance(value_filter, RangeFilter):
            low, high = value_filter.min_value * factor, value_filter.max_value * factor
            return _and(self.at_least(math.ceil(low)), self.below(math.floor(high) + 1))
        value = value_filter.value * factor
        comparator = value_filter.comparator
        if comparator == "gt":
            return self.at_least(math.floor(value) + 1)
        if comparator == "ge":
            return self.at_least(math.ceil(value))
        if comparator == "lt":
            return self.below(math.ceil(value))
        if comparator == "le":
            return self.below(math.floor(value) + 1)
        whole = value.is_integer()
        if comparator == "eq":
            return _and(self.at_least(int(value)), self.below(int(value) + 1)) if whole else exp.false()
        # ne: every patient with a birth date whose age is not the value
        if not whole:
            return _is_not_null(_column(self.column))
        return _or(self.below(int(value)), self.at_least(int(value) + 1))


# --- the compiler ----------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, mapping: Mapping, today: dt.date) -> None:
        self.mapping = mapping
        self.today = today
        self.patients = next(c for c in mapping.contexts.values() if c.kind == "patient")

    def ctes(self, query: StructuredQuery) -> list[tuple[str, exp.Query]]:
        """The named subqueries of the statement, in order; the last one is `cohort`."""
        ctes: list[tuple[str, exp.Query]] = []

        def holds(criterion: Criterion, name: str, *, negated_group: bool) -> exp.Expression:
            """The criterion as a condition on a patient row."""
            context = self.mapping.context(criterion)
            if context.kind != "patient":
                ctes.append((name, self.criterion(criterion, context)))
                ids = _select(PATIENT_ID).from_(exp.table_(name), copy=False)
                # The subqueries hold no NULL ids, so IN is true or false and NOT IN is its opposite.
                condition = _column(PATIENT_ID).isin(query=ids, copy=False)
            else:
                condition = self.patient(criterion, context)
                if criterion.negated or negated_group:
                    # A patient without birth date makes an age condition NULL; NOT NULL would drop them.
                    condition = _true(condition)
            # Contract 5: holds exactly for the patients the criterion itself does not hold for.
            return _not(condition) if criterion.negated else condition

        # DuckDB joins the conditions in the order written, each probing the patients the previous ones
        # left. Consent and negated criteria hold for most patients, so they go last.
        broad = [
            any(c.negated or self.mapping.context(c).kind == "consent" for c in g) for g in query.inclusion
        ]
        order = sorted(range(len(query.inclusion)), key=lambda i: broad[i])
        conditions = [
            _or(*(holds(c, f"in_{i}_{j}", negated_group=False) for j, c in enumerate(query.inclusion[i])))
            for i in order
        ]
        conditions += [
            _not(_and(*(holds(c, f"ex_{i}_{j}", negated_group=True) for j, c in enumerate(group))))
            for i, group in enumerate(query.exclusion)
        ]
        ctes.append(("cohort", _from(self.patients.table).where(_and(*conditions), copy=False)))
        return ctes

    # -- one criterion: the patients it holds for

    def criterion(self, criterion: Criterion, context: ContextMapping) -> exp.Query:
        """The patient ids of a criterion of a standard or the consent context (duplicates allowed)."""
        if context.kind == "consent":
            return self.consent(criterion, context)
        # One scan per way a row can carry the codes: an OR across them would keep the scan from
        # pushing the code filter down (a medication table has no codes where it references a Medication).
        scans = [
            _from(context.table).where(
                _and(_is_not_null(_column(PATIENT_ID)), codes, *self.restrictions(criterion, context)),
                copy=False,
            )
            for codes in self.codes(criterion.term_codes, context)
        ]
        union = scans[0]
        for scan in scans[1:]:
            union = exp.union(union, scan, distinct=False, copy=False)
        return union

    def resource(self, criterion: Criterion, context: ContextMapping) -> exp.Expression:
        """A row of the context's table that satisfies everything the criterion asks (contract 2)."""
        return _and(_or(*self.codes(criterion.term_codes, context)), *self.restrictions(criterion, context))

    def restrictions(self, criterion: Criterion, context: ContextMapping) -> list[exp.Expression]:
        """What the criterion asks of a row besides its codes: value, attributes and time."""
        parts = []
        if criterion.value_filter is not None:
            parts.append(self.value(criterion.value_filter, context.value))
        for attribute_filter in criterion.attribute_filters:
            attribute = context.attribute(attribute_filter.attribute)
            parts.append(self.attribute(attribute, attribute_filter.filter))
        if criterion.time_restriction is not None:
            parts.append(self.time(criterion.time_restriction, context.time))
        return parts

    # -- codes

    def codes(self, term_codes: Sequence[TermCode], context: ContextMapping) -> list[exp.Expression]:
        """The ways a row matches one of the term codes (contract 2, code); any one of them suffices."""
        code = context.code
        matches = [code_match(t.system, t.code, self.mapping.hierarchies) for t in term_codes]
        on_row = _code_predicate(matches, code.system_column, code.code_column)
        if code.medication_column is None:
            return [on_row]
        # Medication contexts: the codes are on the row itself (medicationCodeableConcept) or on the
        # Medication the row references.
        medications = (
            _select(MEDICATION_ID)
            .from_(exp.table_(MEDICATION_TABLE), copy=False)
            .where(_code_predicate(matches, MEDICATION_SYSTEM, MEDICATION_CODE), copy=False)
        )
        return [on_row, _column(code.medication_column).isin(query=medications, copy=False)]

    # -- value filter

    def value(self, value_filter: ValueFilter, value: ValueMapping) -> exp.Expression:
        if isinstance(value_filter, ConceptFilter):
            return _or(
                *(
                    _and(
                        exp.EQ(this=_column(value.system_column), expression=_string(c.system)),
                        exp.EQ(this=_column(value.code_column), expression=_string(c.code)),
                    )
                    for c in value_filter.concepts
                )
            )
        quantity = exp.cast(_column(value.quantity_column), exp.DataType.Type.DOUBLE, copy=False)
        if value_filter.unit is None:
            return _compare(quantity, value_filter)
        # Only values in a unit of the filter's dimension count, converted into the filter's unit.
        units = comparable_units(value_filter.unit.code)
        unit = _column(value.unit_column)
        if all(u.factor == 1.0 for u in units):
            return _and(_in(unit, [u.unit for u in units]), _compare(quantity, value_filter))
        # The factor is NULL for any other unit, so the comparison fails there without a unit list
        # (which DuckDB would turn into a join that keeps the code filter out of the scan).
        factor = exp.Case(
            this=unit, ifs=[exp.If(this=_string(u.unit), true=_double(u.factor)) for u in units]
        )
        return _compare(exp.Mul(this=quantity, expression=factor), value_filter)

    # -- attribute filters

    def attribute(
        self, attribute: AttributeMapping, attribute_filter: ConceptFilter | ReferenceFilter
    ) -> exp.Expression:
        if isinstance(attribute_filter, ReferenceFilter):
            target = self.mapping.contexts[attribute.target_context]
            referenced = (
                _select(RESOURCE_ID)
                .from_(exp.table_(target.table), copy=False)
                .where(_or(*(self.resource(c, target) for c in attribute_filter.criteria)), copy=False)
            )
            return _column(attribute.column).isin(query=referenced, copy=False)
        code = _column(attribute.code_column)
        by_system: dict[str, list[str]] = {}
        for concept in attribute_filter.concepts:
            by_system.setdefault(concept.system, []).append(concept.code)
        alternatives = []
        for system, codes in by_system.items():
            predicate = _in(code, codes)
            if attribute.system_column is not None:
                # A stored system must agree; a coding without system is matched by its code alone.
                stored = _column(attribute.system_column)
                predicate = _and(
                    predicate, _or(_is_null(stored), exp.EQ(this=stored, expression=_string(system)))
                )
            alternatives.append(predicate)
        return _or(*alternatives)

    # -- time restriction

    def time(self, restriction: TimeRestriction, time: TimeMapping) -> exp.Expression:
        return _overlaps(time.start, time.end, restriction)

    # -- the Patient context (contract 3)

    def patient(self, criterion: Criterion, context: ContextMapping) -> exp.Expression:
        return _or(
            *(
                self.patient_term(context.patient_term(t), criterion.value_filter)
                for t in criterion.term_codes
            )
        )

    def patient_term(self, term: PatientTerm, value_filter: ValueFilter | None) -> exp.Expression:
        if term.kind == "age":
            return _Age(term.column, self.today).matches(value_filter)
        if term.kind == "gender":
            return _in(_column(term.column), sorted({c.code for c in value_filter.concepts}))
        if term.kind == "deceased":
            return exp.EQ(this=_column(term.column), expression=exp.true())
        raise AssertionError(f"unknown patient term kind {term.kind!r}")

    # -- consent (contract 4)

    def consent(self, criterion: Criterion, context: ContextMapping) -> exp.Query:
        """Patients for whom, for one term code, every required provision code is permitted.

        Per patient and provision code, the latest active consent naming the code decides (a later
        withdrawal overrides an earlier permit; an undated consent is older than any dated one): the
        code is permitted when every provision coded with it in those consents is a permit whose period
        overlaps today (or the time restriction); deny wins on a tie. Rather than ranking the rows (a
        window per patient and code), one aggregation finds the latest permitting and the latest other
        provision: the code is permitted when all provisions permit, or the latest permit is later than
        every other provision, which is the same decision at a fraction of the cost.
        """
        combined = context.combined
        required = [sorted(set(combined.required_provisions(t))) for t in criterion.term_codes]
        code_column = context.code.code_column
        window = criterion.time_restriction or TimeRestriction(self.today, self.today)
        permits = _and(
            _equals("provision_type", "permit"),
            _overlaps(("provision_start",), ("provision_end",), window, open_ended=True),
        )
        last_permit = exp.Max(this=exp.Case(ifs=[exp.If(this=permits.copy(), true=_column("date_time"))]))
        last_other = exp.Max(
            this=exp.Case(ifs=[exp.If(this=permits.copy(), true=exp.Null())], default=_column("date_time"))
        )
        permitted = _or(
            exp.EQ(this=exp.Count(this=exp.Star()), expression=exp.Sum(this=_one_if(permits))),
            _and(
                _is_not_null(last_permit),
                _or(_is_null(last_other), exp.GT(this=last_permit.copy(), expression=last_other.copy())),
            ),
        )
        rows = _from(context.table).where(
            _and(
                _is_not_null(_column(PATIENT_ID)),
                _equals("status", "active"),
                _equals(context.code.system_column, combined.provision_system),
                _in(_column(code_column), sorted({c for codes in required for c in codes})),
            ),
            copy=False,
        )
        if len(required) == 1 and len(required[0]) == 1:
            # One provision code: its rows are one group per patient.
            return rows.group_by(_column(PATIENT_ID), copy=False).having(permitted, copy=False)
        decisions = rows.select(
            _column(code_column), _one_if(permitted).as_("permitted", copy=False), copy=False
        ).group_by(_column(PATIENT_ID), _column(code_column), copy=False)
        # Each (patient, code) is one row of `decisions`, so counting permitted rows counts codes.
        all_permitted = [
            exp.EQ(
                this=exp.Sum(
                    this=_one_if(
                        _and(
                            exp.EQ(this=_column("permitted"), expression=_number(1)),
                            _in(_column(code_column), codes),
                        )
                    )
                ),
                expression=_number(len(codes)),
            )
            for codes in required
        ]
        return (
            _select(PATIENT_ID)
            .from_(decisions.subquery("decisions", copy=False), copy=False)
            .group_by(_column(PATIENT_ID), copy=False)
            .having(_or(*all_permitted), copy=False)
        )


def _code_predicate(
    matches: Sequence[CodeMatch], system_column: str | None, code_column: str
) -> exp.Expression:
    """A coding row matches one of the term codes: same system, and the code or a descendant of it."""
    by_system: dict[str, list[CodeMatch]] = {}
    for match in matches:
        by_system.setdefault(match.system, []).append(match)
    code = _column(code_column)
    alternatives = []
    for system, of_system in by_system.items():
        exact = sorted({m.code for m in of_system if not m.hierarchical})
        options = [_in(code, exact)] if exact else []
        for match in of_system:
            if match.category_range is not None:
                first, last = match.category_range
                category = exp.Substring(
                    this=code.copy(), start=exp.Literal.number(1), length=exp.Literal.number(3)
                )
                options.append(exp.Between(this=category, low=_string(first), high=_string(last)))
            elif match.hierarchical:
                # Extending the code is being below it (terminology.py), and a code extends itself.
                options.append(_starts_with(code, match.code))
        predicate = _or(*options)
        if system_column is not None:
            predicate = _and(exp.EQ(this=_column(system_column), expression=_string(system)), predicate)
        alternatives.append(predicate)
    return _or(*alternatives)


def _overlaps(
    start: Sequence[str], end: Sequence[str], restriction: TimeRestriction, *, open_ended: bool = False
) -> exp.Expression:
    """The interval [first of `start`, first of `end`] overlaps [afterDate 00:00, beforeDate + 1 day).

    A missing interval bound is unbounded, but a row without any time does not match (contract 2),
    unless `open_ended` (consent provision periods, where no period means no limit). Where the start
    columns are among the end columns (every mapping: the end falls back to the start), a missing end
    already means no time at all, and the null checks drop out.
    """
    begin, finish = _coalesce(start), _coalesce(end)
    start_implies_end = set(start) <= set(end)
    end_implies_start = set(end) <= set(start)
    parts, needs_time = [], False
    if restriction.before is not None:
        starts_in_time = exp.LT(this=begin, expression=_timestamp(restriction.before + dt.timedelta(days=1)))
        if open_ended or not end_implies_start:
            starts_in_time = _or(_is_null(begin), starts_in_time)
            needs_time = not open_ended
        parts.append(starts_in_time)
    if restriction.after is not None:
        ends_in_time = exp.GTE(this=finish, expression=_timestamp(restriction.after))
        if open_ended or not start_implies_end:
            ends_in_time = _or(_is_null(finish), ends_in_time)
            needs_time = not open_ended
        parts.append(ends_in_time)
    if needs_time:
        parts.insert(0, _is_not_null(_coalesce([*start, *(c for c in end if c not in start)])))
    return _and(*parts)
