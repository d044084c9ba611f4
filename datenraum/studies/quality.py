"""Data-quality rules over a study's responses: REDCap's default rules A-H and custom FHIRPath rules.

`run_rules(questionnaire, entries, rules)` returns one `Finding` (record, event, instance, linkId, rule,
message) per defect. Each blank or wrong value is reported by exactly one default rule:

- A blank value of an optional question, B blank required question (REDCap's A counts required ones
  too; here they are B's, so one blank is one finding). Only questions that are enabled count: a
  question hidden by branching is meant to be blank.
- C wrong type or format: a value of another type than the item's, a malformed date, maxLength, regex.
- D out of range: minValue / maxValue (numbers, dates).
- E outlier: a number more than 2 standard deviations (of all entries' values of that item, population
  SD, at least 3 values) from their mean.
- F hidden field with a value: an answer to a question that enableWhen / enableWhenExpression disables.
- G invalid choice value: a coded answer that is none of the item's answer options or value set codes.
- H calculated value that differs: the calculatedExpression, re-evaluated on the response, gives another
  value than the one stored (or the value is missing).

Custom rules (`CustomRule`) are FHIRPath over the QuestionnaireResponse (`%resource`, answers as
`%resource.repeat(item).where(linkId='X').answer.value`): an entry is flagged when the expression is
true, as REDCap flags the records its custom rule's logic matches. Rules travel as CSV (`rules_to_csv`,
`rules_from_csv`, errors with line and column).

Enablement is evaluated over the whole response (the question of an enableWhen is looked up anywhere in
it), which is exact for forms without repeating groups, the shape REDCap forms have.
"""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datenraum.studies.collection import FormEntry, answers_by_link_id
from datenraum.studies.fhirpath import ExpressionError, compile_expression
from datenraum.studies.questionnaire import (
    ANSWER_KINDS,
    Item,
    Questionnaire,
    Value,
    make_value,
    value_error,
)
from datenraum.studies.responses import answer_equals, plain_result

__all__ = [
    "DEFAULT_RULES",
    "CustomRule",
    "Finding",
    "RuleError",
    "rules_from_csv",
    "rules_to_csv",
    "run_rules",
]

DEFAULT_RULES: Mapping[str, str] = {
    "A": "blank value",
    "B": "blank required value",
    "C": "wrong type or format",
    "D": "out of range",
    "E": "outlier (more than 2 SD from the mean)",
    "F": "hidden field with a value",
    "G": "invalid choice value",
    "H": "calculated value differs",
}
QUESTION_TYPES = frozenset(ANSWER_KINDS)  # every type but group and display
OUTLIER_SD = 2.0
MIN_VALUES_FOR_OUTLIERS = 3
_TOLERANCE = 1e-9
CSV_COLUMNS = ("name", "expression", "message", "questionnaire", "link_id", "real_time")
MAX_RULES_CSV = 1_000_000


class RuleError(ValueError):
    """A custom rule that cannot run (its CSV line and column, or the rule's name)."""


@dataclass(frozen=True)
class Finding:
    record: str
    event: str | None
    instance: int | None
    link_id: str | None  # None: a custom rule about the response as a whole
    rule: str  # "A".."H" or the custom rule's name
    message: str


@dataclass(frozen=True)
class CustomRule:
    """`expression` is true where there is a problem. `questionnaire`: the canonical URL (without
    version) of the forms it applies to, None for all; `link_id`: the item the finding names;
    `real_time`: run on every save at the site, not only in the data manager's run."""

    name: str
    expression: str
    message: str
    questionnaire: str | None = None
    link_id: str | None = None
    real_time: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.name in DEFAULT_RULES:
            raise RuleError(f"rule name {self.name!r}: must not be empty nor one of A-H (the default rules)")
        try:
            compile_expression(self.expression)
        except ExpressionError as error:
            raise RuleError(f"rule {self.name!r}: expression: {error}") from None
        if not self.message:
            raise RuleError(f"rule {self.name!r}: message must not be empty")


# --- reading a response's answers against the form ---------------------------------------------------


def _values(raw: list[tuple[str, Any]]) -> list[Value | None]:
    """The answers as Values; None for an answer whose JSON is not a valid value (rule C's case)."""
    return [None if value_error(kind, value) else make_value(kind, value) for kind, value in raw]


def _equal(value: Value, other: Value) -> bool:
    if value.kind == "Coding" or other.kind == "Coding":
        return value.kind == other.kind and value.value.matches(other.value)
    left, right = value.number, other.number
    if left is not None and right is not None:
        return math.isclose(left, right, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)
    return value.value == other.value


def _order(value: Value, bound: Value) -> int | None:
    """-1, 0, 1 comparing `value` to `bound` (numbers; dates, dateTimes, times of one precision), None
    when they do not compare."""
    left: Any = value.number
    right: Any = bound.number
    if left is None or right is None:
        kinds = ("Date", "DateTime", "Time")
        if value.kind not in kinds or bound.kind not in kinds:
            return None
        left, right = str(value.value), str(bound.value)
        if value.kind != bound.kind:
            left, right = left[:10], right[:10]
        if len(left) != len(right):
            return None
    return (left > right) - (left < right)


_COMPARISONS = {"<": lambda o: o < 0, ">": lambda o: o > 0, "<=": lambda o: o <= 0, ">=": lambda o: o >= 0}


class _Entry:
    """One response read against its form: answers per linkId and which items are enabled."""

    def __init__(self, questionnaire: Questionnaire, entry: FormEntry) -> None:
        self.questionnaire = questionnaire
        self.entry = entry
        self.raw = answers_by_link_id(entry.response)
        self.values = {link_id: _values(raw) for link_id, raw in self.raw.items()}
        self.variables = self._evaluate_variables()
        self.enabled: dict[str, bool] = {}
        for item in questionnaire.items:
            self._enable(item, parent_enabled=True)

    def _evaluate_variables(self) -> dict[str, Any]:
        variables: dict[str, Any] = {}
        for variable in self.questionnaire.variables:
            try:
                variables[variable.name or ""] = variable.compiled.evaluate(self.entry.response, variables)
            except ExpressionError:
                variables[variable.name or ""] = []
        return variables

    def _scope(self, item: Item) -> dict[str, Any]:
        scope = dict(self.variables)
        for variable in item.variables:
            try:
                scope[variable.name or ""] = variable.compiled.evaluate(self.entry.response, scope)
            except ExpressionError:
                scope[variable.name or ""] = []
        return scope

    def evaluate(self, item: Item, expression: Any) -> list[Any] | None:
        """The result of one of the item's expressions; None when evaluation fails on this response."""
        try:
            return list(expression.compiled.evaluate(self.entry.response, self._scope(item)))
        except ExpressionError:
            return None

    def _condition(self, condition: Any) -> bool:
        answers = [v for v in self.values.get(condition.question, []) if v is not None]
        if condition.operator == "exists":
            return bool(answers) == bool(condition.answer.value)
        if condition.operator == "=":
            return any(_equal(a, condition.answer) for a in answers)
        if condition.operator == "!=":
            return not any(_equal(a, condition.answer) for a in answers)
        test = _COMPARISONS[condition.operator]
        return any((o := _order(a, condition.answer)) is not None and test(o) for a in answers)

    def _enable(self, item: Item, parent_enabled: bool) -> None:
        enabled = parent_enabled
        if enabled and item.enable_when:
            results = [self._condition(c) for c in item.enable_when]
            enabled = any(results) if item.enable_behavior == "any" else all(results)
        if enabled and item.enable_when_expression is not None:
            enabled = self.evaluate(item, item.enable_when_expression) == [True]
        self.enabled[item.link_id] = enabled
        for child in item.items:
            self._enable(child, enabled)

    def finding(self, item: Item | None, rule: str, message: str) -> Finding:
        e = self.entry
        return Finding(e.record, e.event, e.instance, item.link_id if item else None, rule, message)


# --- the default rules ---------------------------------------------------------------------------------


def _show(value: Value | None) -> str:
    if value is None:
        return "nothing"
    if value.kind == "Coding":
        return repr(value.value.code)
    if value.kind == "Quantity":
        return f"{value.value.value} {value.value.code or value.value.unit or ''}".strip()
    return repr(value.value)


def _blank_and_hidden(entry: _Entry, item: Item) -> list[Finding]:
    given = entry.raw.get(item.link_id, [])
    if not entry.enabled[item.link_id]:
        if given:
            return [entry.finding(item, "F", f"{item.link_id!r} is hidden by its branching but has a value")]
        return []
    if given or item.calculated_expression is not None or item.hidden or item.read_only:
        return []  # a missing calculated value is H's; hidden and read-only items are nobody's to fill
    if item.required:
        return [entry.finding(item, "B", f"{item.link_id!r} is required and blank")]
    return [entry.finding(item, "A", f"{item.link_id!r} is blank")]


def _type_and_range(entry: _Entry, item: Item) -> list[Finding]:
    out = []
    allowed = ANSWER_KINDS[item.type]
    for (kind, raw), value in zip(
        entry.raw.get(item.link_id, []), entry.values.get(item.link_id, []), strict=True
    ):
        if kind not in allowed:
            out.append(entry.finding(item, "C", f"{item.link_id!r} is {item.type} but has a value{kind}"))
            continue
        if value is None:
            out.append(entry.finding(item, "C", f"{item.link_id!r}: {value_error(kind, raw)}"))
            continue
        if isinstance(value.value, str):
            if item.max_length is not None and len(value.value) > item.max_length:
                out.append(
                    entry.finding(item, "C", f"{item.link_id!r} is longer than {item.max_length} characters")
                )
            elif item.regex is not None and not _regex_matches(item.regex, value.value):
                out.append(
                    entry.finding(item, "C", f"{item.link_id!r}: {value.value!r} does not match {item.regex}")
                )
        for bound, word, test in (
            (item.min_value, "below the minimum", -1),
            (item.max_value, "above the maximum", 1),
        ):
            if bound is not None and _order(value, bound) == test:
                out.append(
                    entry.finding(item, "D", f"{item.link_id!r}: {_show(value)} is {word} {_show(bound)}")
                )
        if item.type in ("choice", "open-choice") and value.kind == "Coding" and not _is_option(item, value):
            out.append(
                entry.finding(item, "G", f"{item.link_id!r}: {_show(value)} is not one of the item's choices")
            )
    return out


def _regex_matches(pattern: str, text: str) -> bool:
    # As the browser tests it (JavaScript RegExp.test: a match anywhere; a form anchors with ^...$).
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return True  # the form's regex is the form's problem (refused when it is parsed)


def _is_option(item: Item, value: Value) -> bool:
    options = [o.value.value for o in item.answer_options if o.value.kind == "Coding"]
    options.extend(item.value_set_codings or ())
    if not options and item.answer_value_set is not None:
        return True  # an external value set: not expandable here
    return any(value.value.matches(option) for option in options)


def _calculated(entry: _Entry, item: Item) -> list[Finding]:
    if item.calculated_expression is None or not entry.enabled[item.link_id]:
        return []
    expected = entry.evaluate(item, item.calculated_expression)
    if expected is None:
        return []  # evaluation fails on this response: there is no value it should have
    given = entry.values.get(item.link_id, [])
    if not expected and not given:
        return []
    if len(expected) == len(given) and all(answer_equals(g, e) for g, e in zip(given, expected, strict=True)):
        return []
    shown = ", ".join(repr(plain_result(e)) for e in expected[:5]) or "nothing"
    stored = ", ".join(_show(g) for g in given[:5]) or "nothing"
    return [entry.finding(item, "H", f"{item.link_id!r} is {stored} but calculates to {shown}")]


def _outliers(entries: Sequence[_Entry], questionnaire: Questionnaire) -> list[Finding]:
    out = []
    for item in questionnaire.walk():
        if item.type not in ("integer", "decimal", "quantity"):
            continue
        numbers = [
            (entry, value.number)
            for entry in entries
            if entry.enabled[item.link_id]
            for value in entry.values.get(item.link_id, [])
            if value is not None and value.number is not None
        ]
        if len(numbers) < MIN_VALUES_FOR_OUTLIERS:
            continue
        values = [n for _, n in numbers]
        mean, sd = statistics.fmean(values), statistics.pstdev(values)
        if sd == 0:
            continue
        for entry, number in numbers:
            if abs(number - mean) > OUTLIER_SD * sd:
                out.append(
                    entry.finding(
                        item,
                        "E",
                        f"{item.link_id!r}: {number:g} is more than 2 SD from the mean {mean:.4g} (SD {sd:.4g})",
                    )
                )
    return out


def _custom(entry: _Entry, rule: CustomRule, compiled: Any, questionnaire: Questionnaire) -> list[Finding]:
    try:
        result = compiled.evaluate(entry.entry.response, entry.variables)
    except ExpressionError as error:
        return [
            entry.finding(_item(questionnaire, rule), rule.name, f"the rule could not be evaluated: {error}")
        ]
    if result == [True]:
        return [entry.finding(_item(questionnaire, rule), rule.name, rule.message)]
    return []


def _item(questionnaire: Questionnaire, rule: CustomRule) -> Item | None:
    return questionnaire.items_by_link_id.get(rule.link_id) if rule.link_id else None


def run_rules(
    questionnaire: Questionnaire,
    entries: Iterable[FormEntry],
    rules: Sequence[CustomRule] = (),
    defaults: Iterable[str] = tuple(DEFAULT_RULES),
) -> list[Finding]:
    """Every finding of the chosen default rules (A-H) and the custom rules on the entries of one form,
    sorted by record, event, instance, rule and item."""
    chosen = set(defaults)
    unknown = sorted(chosen - set(DEFAULT_RULES))
    if unknown:
        raise RuleError(f"unknown default rules {', '.join(unknown)} (they are A-H)")
    for rule in rules:
        if (
            rule.link_id
            and rule.link_id not in questionnaire.items_by_link_id
            and (rule.questionnaire in (None, questionnaire.url))
        ):
            raise RuleError(f"rule {rule.name!r}: the form has no item {rule.link_id!r}")
    applicable = [
        (rule, compile_expression(rule.expression))
        for rule in rules
        if rule.questionnaire in (None, questionnaire.url)
    ]
    read = [_Entry(questionnaire, entry) for entry in entries]
    findings: list[Finding] = []
    for entry in read:
        for item in questionnaire.walk():
            if item.type not in QUESTION_TYPES:
                continue
            findings.extend(_blank_and_hidden(entry, item))
            if entry.enabled[item.link_id]:
                findings.extend(_type_and_range(entry, item))
            findings.extend(_calculated(entry, item))
        for rule, compiled in applicable:
            findings.extend(_custom(entry, rule, compiled, questionnaire))
    findings.extend(_outliers(read, questionnaire))
    order = {link_id: i for i, link_id in enumerate(questionnaire.items_by_link_id)}
    kept = [f for f in findings if f.rule in chosen or f.rule not in DEFAULT_RULES]
    return sorted(
        kept,
        key=lambda f: (f.record, f.event or "", f.instance or 0, f.rule, order.get(f.link_id or "", -1)),
    )


# --- rules as CSV ------------------------------------------------------------------------------------


def rules_to_csv(rules: Sequence[CustomRule]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for rule in rules:
        writer.writerow(
            [
                rule.name,
                rule.expression,
                rule.message,
                rule.questionnaire or "",
                rule.link_id or "",
                "y" if rule.real_time else "n",
            ]
        )
    return out.getvalue()


def rules_from_csv(text: str, source: str = "rules.csv") -> list[CustomRule]:
    """Custom rules from CSV (the header `CSV_COLUMNS`); errors name the file, line and column."""
    if len(text) > MAX_RULES_CSV:
        raise RuleError(f"{source}: larger than {MAX_RULES_CSV} characters")
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != CSV_COLUMNS:
            raise RuleError(f"{source}:1: the header must be {','.join(CSV_COLUMNS)}, got {header}")
        rules, names = [], set()
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(CSV_COLUMNS):
                raise RuleError(f"{source}:{line}: {len(row)} columns, expected {len(CSV_COLUMNS)}")
            name, expression, message, questionnaire, link_id, real_time = (c.strip() for c in row)
            if real_time not in ("y", "n", ""):
                raise RuleError(f"{source}:{line}: column real_time must be y or n, got {real_time!r}")
            if name in names:
                raise RuleError(f"{source}:{line}: column name: the rule {name!r} is defined twice")
            names.add(name)
            try:
                rules.append(
                    CustomRule(
                        name, expression, message, questionnaire or None, link_id or None, real_time == "y"
                    )
                )
            except RuleError as error:
                raise RuleError(f"{source}:{line}: {error}") from None
    except csv.Error as error:
        raise RuleError(f"{source}:{reader.line_num}: not valid CSV ({error})") from None
    return rules
