"""The server's check of a submitted QuestionnaireResponse against its form: the browser renders and
calculates, but the server decides. `check_response` re-evaluates enablement (enableWhen with
enableBehavior, enableWhenExpression) and calculatedExpression with fhirpathpy and checks every answer,
returning one `ResponseProblem` per defect, each naming the item (linkId) and the JSON path of the answer.
An empty list means the response is accepted.

Decisions (shared with the renderer where it matters):
- `%resource` is the response (see `datenraum.studies.fhirpath`); variables are evaluated once per
  response, in document order, questionnaire level first.
- The question of an enableWhen is looked up in the innermost enclosing group instance that contains it,
  else in the whole response (so a condition inside a repeating group refers to its own instance).
- `!=` holds when no answer equals the value, so also when the question is unanswered (REDCap's `<>`).
- An item with the `questionnaire-hidden` extension is not shown: it may only carry its `initial` value or
  its calculated value. An item not enabled may carry no answer at all.
- `regex` is tested as the browser does (JavaScript `RegExp.test`: a match anywhere; anchor with ^...$).
- A response `in-progress` is a draft: "required" is not checked, everything else is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from datenraum.studies.fhirpath import ExpressionError
from datenraum.studies.questionnaire import (
    ANSWER_KINDS,
    Coding,
    EnableWhen,
    Expression,
    Item,
    Questionnaire,
    Value,
    make_value,
    value_error,
)

STATUSES = frozenset({"in-progress", "completed", "amended", "entered-in-error", "stopped"})
MAX_RESPONSE_NODES = 200_000  # items and answers together; beyond, the response is refused unread
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ResponseProblem:
    link_id: str | None  # None: the response as a whole
    path: str
    message: str


@dataclass(frozen=True)
class _Answer:
    value: Value | None  # None where the answer's JSON was not a valid value (already a problem)
    path: str


@dataclass
class _Node:
    """One item of the response as read: its answers and its children (under the item or an answer)."""

    link_id: str
    path: str
    answers: list[_Answer]
    children: list[_Node]
    parent: _Node | None


class _TooLarge(Exception):
    pass


class _Check:
    def __init__(self, form: Questionnaire, raw: Mapping[str, Any]) -> None:
        self.form = form
        self.raw = raw
        self.problems: list[ResponseProblem] = []
        self.nodes = 0
        self.variables: dict[str, Any] = {}
        self.evaluated: dict[int, list[Any] | ExpressionError] = {}
        self.indexes: dict[int, dict[str, list[_Answer]]] = {}
        self.draft = raw.get("status") == "in-progress"

    def problem(self, link_id: str | None, path: str, message: str) -> None:
        self.problems.append(ResponseProblem(link_id, path, message))

    # --- reading the response (only where the form has items: unknown items are not descended) ---

    def read_items(
        self, raw: Any, path: str, parent: _Node | None, allowed: Mapping[str, Item]
    ) -> list[_Node]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(parent.link_id if parent else None, path, "item must be a list")
            return []
        nodes = []
        for i, entry in enumerate(raw):
            where = f"{path}[{i}]"
            self.count()
            if not isinstance(entry, dict) or not isinstance(entry.get("linkId"), str):
                self.problem(None, where, "a response item is an object with a linkId")
                continue
            link_id = entry["linkId"]
            definition = allowed.get(link_id)
            if definition is None:
                known = self.form.items_by_link_id.get(link_id)
                where_known = f" (it belongs under {known.path})" if known is not None else ""
                self.problem(
                    link_id[:200],
                    f"{where}.linkId",
                    f"no item {link_id[:200]!r} here in the form{where_known}",
                )
                continue
            node = _Node(link_id, where, [], [], parent)
            children = {child.link_id: child for child in definition.items}
            node.children.extend(self.read_items(entry.get("item"), f"{where}.item", node, children))
            node.answers.extend(
                self.read_answers(entry.get("answer"), f"{where}.answer", node, definition, children)
            )
            nodes.append(node)
        return nodes

    def read_answers(
        self, raw: Any, path: str, node: _Node, definition: Item, children: Mapping[str, Item]
    ) -> list[_Answer]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(node.link_id, path, "answer must be a list")
            return []
        if definition.type in ("group", "display") and raw:
            self.problem(node.link_id, path, f"a {definition.type} item has no answers")
            return []
        answers = []
        for i, entry in enumerate(raw):
            where = f"{path}[{i}]"
            self.count()
            if not isinstance(entry, dict):
                self.problem(node.link_id, where, "an answer is an object")
                continue
            keys = [key for key in entry if key.startswith("value")]
            if len(keys) != 1:
                self.problem(node.link_id, where, "an answer has exactly one value[x]")
                answers.append(_Answer(None, where))
            else:
                kind = keys[0][len("value") :]
                problem = value_error(kind, entry[keys[0]])
                allowed = ANSWER_KINDS[definition.type]
                if definition.type in ("choice", "open-choice"):  # options may be strings, integers, dates...
                    allowed = allowed | {option.value.kind for option in definition.answer_options}
                if problem is not None:
                    self.problem(node.link_id, f"{where}.{keys[0]}", problem)
                    answers.append(_Answer(None, where))
                elif kind not in allowed:
                    expected = " or ".join(f"value{k}" for k in sorted(allowed))
                    self.problem(
                        node.link_id,
                        f"{where}.{keys[0]}",
                        f"a {definition.type} item is answered with {expected}",
                    )
                    answers.append(_Answer(None, where))
                else:
                    answers.append(_Answer(make_value(kind, entry[keys[0]]), where))
            node.children.extend(self.read_items(entry.get("item"), f"{where}.item", node, children))
        return answers

    def count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_RESPONSE_NODES:
            raise _TooLarge

    # --- expressions ---

    def evaluate(self, expression: Expression) -> list[Any] | ExpressionError:
        key = id(expression)
        if key not in self.evaluated:
            try:
                self.evaluated[key] = expression.compiled.evaluate(self.raw, self.variables)
            except ExpressionError as error:
                self.evaluated[key] = error
        return self.evaluated[key]

    def define_variables(self) -> None:
        """Every variable, in document order (a variable may use the ones before it)."""
        scopes = [self.form.variables, *(item.variables for item in self.form.walk())]
        for variables in scopes:
            for variable in variables:
                result = self.evaluate(variable)
                self.variables[variable.name or ""] = [] if isinstance(result, ExpressionError) else result

    # --- enablement ---

    def index(self, node: _Node | None, roots: list[_Node]) -> dict[str, list[_Answer]]:
        """linkId -> answers below `node` (None: the whole response), computed once per node."""
        key = id(node)
        if key not in self.indexes:
            found: dict[str, list[_Answer]] = {}
            stack = list(roots if node is None else node.children)
            while stack:
                current = stack.pop()
                found.setdefault(current.link_id, []).extend(current.answers)
                stack.extend(current.children)
            self.indexes[key] = found
        return self.indexes[key]

    def answers_of(self, question: str, context: _Node | None, roots: list[_Node]) -> list[_Answer]:
        scope = context
        while scope is not None:
            below = self.index(scope, roots)
            if question in below:
                return below[question]
            scope = scope.parent
        return self.index(None, roots).get(question, [])

    def enabled(self, item: Item, context: _Node | None, roots: list[_Node]) -> bool | str:
        """True, or why the item is not enabled."""
        if item.enable_when:
            results = [self.condition(c, context, roots) for c in item.enable_when]
            holds = any(results) if item.enable_behavior == "any" else all(results)
            if not holds:
                if len(results) == 1:
                    return "not enabled (its enableWhen is not met)"
                if item.enable_behavior == "any":
                    return "not enabled (none of its enableWhen conditions holds)"
                return "not enabled (not all of its enableWhen conditions hold)"
        if item.enable_when_expression is not None:
            result = self.evaluate(item.enable_when_expression)
            if isinstance(result, ExpressionError):
                return f"not enabled (enableWhenExpression could not be evaluated: {result})"
            if result != [True]:
                return "not enabled (enableWhenExpression is not true)"
        return True

    def condition(self, condition: EnableWhen, context: _Node | None, roots: list[_Node]) -> bool:
        values = [a.value for a in self.answers_of(condition.question, context, roots) if a.value is not None]
        if condition.operator == "exists":
            return bool(values) == condition.answer.value
        if condition.operator == "=":
            return any(_equal(v, condition.answer) for v in values)
        if condition.operator == "!=":
            return not any(_equal(v, condition.answer) for v in values)
        return any(_compare(v, condition.answer, condition.operator) for v in values)

    # --- the walk over the form ---

    def check(
        self, items: tuple[Item, ...], instances: list[_Node], context: _Node | None, roots: list[_Node]
    ) -> None:
        by_link_id: dict[str, list[_Node]] = {}
        for node in instances:
            by_link_id.setdefault(node.link_id, []).append(node)
        for item in items:
            nodes = by_link_id.get(item.link_id, [])
            enabled = self.enabled(item, context, roots)
            if enabled is not True:
                for node in nodes:
                    for answered in _answered(node):
                        self.problem(
                            answered.link_id,
                            answered.path,
                            f"{answered.link_id!r} is answered although {enabled}",
                        )
                continue
            if item.type != "group" and len(nodes) > 1:
                self.problem(item.link_id, nodes[1].path, f"{item.link_id!r} occurs more than once")
            if item.type == "group" and not item.repeats and len(nodes) > 1:
                self.problem(item.link_id, nodes[1].path, f"the group {item.link_id!r} does not repeat")
            if item.required and not self.draft and not any(True for node in nodes for _ in _answered(node)):
                where = context.path if context is not None else "$"
                self.problem(item.link_id, where, f"{item.link_id!r} is required")
            answers = [a for node in nodes for a in node.answers]
            if item.type not in ("group", "display"):
                self.check_answers(item, answers)
            for node in nodes:
                self.check(item.items, node.children, node, roots)

    def check_answers(self, item: Item, answers: list[_Answer]) -> None:
        if len(answers) > 1 and not item.repeats:
            self.problem(
                item.link_id, answers[1].path, f"{item.link_id!r} takes one answer (it does not repeat)"
            )
        values = [a for a in answers if a.value is not None]
        if item.calculated_expression is not None:
            self.check_calculated(item, values, answers)
        elif item.copied_from is not None:
            pass  # the value of another form's item: checked like any answer below
        elif item.hidden:
            for answer in values:
                if not any(_equal(answer.value, initial) for initial in _defaults(item)):
                    self.problem(
                        item.link_id,
                        answer.path,
                        f"{item.link_id!r} is hidden: it may carry only its initial value",
                    )
            return
        elif item.read_only and values and item.initial_expression is None:
            for answer in values:
                if not any(_equal(answer.value, initial) for initial in _defaults(item)):
                    self.problem(item.link_id, answer.path, f"{item.link_id!r} is read-only")
        for answer in values:
            self.check_value(item, answer)

    def check_calculated(self, item: Item, values: list[_Answer], answers: list[_Answer]) -> None:
        result = self.evaluate(item.calculated_expression)  # type: ignore[arg-type]
        if isinstance(result, ExpressionError):
            self.problem(
                item.link_id,
                item.path,
                f"the calculation of {item.link_id!r} could not be evaluated: {result}",
            )
            return
        expected = [v for v in result if v is not None]
        given = [a.value for a in values]
        where = answers[0].path if answers else item.path
        if not expected:
            if given:
                self.problem(
                    item.link_id,
                    where,
                    f"{item.link_id!r} is calculated as empty, the response says {_show_values(given)}",
                )
            return
        if not given:
            self.problem(
                item.link_id, where, f"{item.link_id!r} is calculated as {_show(expected)} but has no value"
            )
            return
        if len(given) != len(expected) or not all(
            answer_equals(g, e) for g, e in zip(given, expected, strict=False)
        ):
            self.problem(
                item.link_id,
                where,
                f"{item.link_id!r} is calculated as {_show(expected)}, the response says {_show_values(given)}",
            )

    def check_value(self, item: Item, answer: _Answer) -> None:
        value = answer.value
        assert value is not None
        say = lambda message: self.problem(item.link_id, answer.path, f"{item.link_id!r}: {message}")  # noqa: E731
        if isinstance(value.value, str) and value.kind in ("String", "Uri"):
            if item.max_length is not None and len(value.value) > item.max_length:
                say(f"longer than {item.max_length} characters ({len(value.value)})")
            elif item.regex is not None and not re.search(item.regex, value.value):
                say(f"{value.value[:60]!r} does not match the pattern {item.regex}")
        if item.min_value is not None and _compare(value, item.min_value, "<"):
            say(f"{_show_values([value])} is below the minimum {_show_values([item.min_value])}")
        if item.max_value is not None and _compare(value, item.max_value, ">"):
            say(f"{_show_values([value])} is above the maximum {_show_values([item.max_value])}")
        if value.kind == "Quantity" and item.units:
            unit = Coding(value.value.system, value.value.code, None)
            if not any(option.matches(unit) for option in item.units):
                say(
                    f"the unit {value.value.code or value.value.unit!r} is not one of {', '.join(str(u.code) for u in item.units)}"
                )
        if item.type in ("choice", "open-choice") and (value.kind != "String" or item.type == "choice"):
            options = [o.value for o in item.answer_options]
            if item.value_set_codings is not None:
                options = [Value("Coding", coding) for coding in item.value_set_codings]
            if (options or (item.type == "choice" and item.answer_value_set is None)) and not any(
                _equal(value, option) for option in options
            ):
                say(f"{_show_values([value])} is not one of the answer options")


def _defaults(item: Item) -> list[Value]:
    """The values an item starts with: its initial values and its options selected initially."""
    return [*item.initial, *(option.value for option in item.answer_options if option.initial_selected)]


def _answered(node: _Node) -> Iterator[_Node]:
    """`node` and the items below it that carry answers."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.answers:
            yield current
        stack.extend(current.children)


def _equal(value: Value, other: Value) -> bool:
    if value.kind == "Coding" or other.kind == "Coding":
        return value.kind == other.kind and value.value.matches(other.value)
    if value.kind == "Quantity" or other.kind == "Quantity":
        if value.kind != other.kind:
            return False
        return value.value.value == other.value.value and (value.value.code or value.value.unit) == (
            other.value.code or other.value.unit
        )
    left, right = value.number, other.number
    if left is not None and right is not None:
        return math.isclose(left, right, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)
    return value.value == other.value


def _compare(value: Value, bound: Value, operator: str) -> bool:
    """`value <operator> bound` where both are numbers, or both dates/dateTimes/times of comparable
    precision; anything else is not comparable (False)."""
    left: Any
    right: Any
    left, right = value.number, bound.number
    if left is None or right is None:
        if not (isinstance(value.value, str) and isinstance(bound.value, str)):
            return False
        if value.kind not in ("Date", "DateTime", "Time") or bound.kind not in ("Date", "DateTime", "Time"):
            return False
        left, right = value.value, bound.value
        if value.kind != bound.kind:  # a date against a dateTime: compare the date part
            left, right = left[:10], right[:10]
        if len(left) != len(right):
            return False
    return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[operator]


def plain_result(result: Any) -> Any:
    """A fhirpathpy result as JSON-like Python: numbers, strings, booleans or dicts."""
    if isinstance(result, Decimal):
        return float(result)
    if isinstance(result, bool | int | float | str | dict):
        return result
    return str(result)


def answer_equals(given: Value | None, expected: Any) -> bool:
    """Whether an answer is the value a FHIRPath expression gave (numbers within 1e-9, codings by
    system and code, a quantity by its value)."""
    if given is None:
        return False
    expected = plain_result(expected)
    if isinstance(expected, bool):
        return given.kind == "Boolean" and given.value is expected
    if isinstance(expected, int | float):
        number = given.number
        return number is not None and math.isclose(number, expected, rel_tol=_TOLERANCE, abs_tol=_TOLERANCE)
    if isinstance(expected, dict):
        if given.kind == "Coding" and "code" in expected:
            return given.value.matches(Coding(expected.get("system"), expected.get("code"), None))
        if given.kind == "Quantity" and "value" in expected:
            return answer_equals(Value("Decimal", given.value.value), expected["value"])
        return False
    if given.kind == "Coding":
        return given.value.code == expected
    return str(given.value) == expected


def _show(results: list[Any]) -> str:
    return ", ".join(repr(plain_result(r)) for r in results[:5])


def _show_values(values: list[Value | None]) -> str:
    shown = []
    for value in values[:5]:
        if value is None:
            continue
        if value.kind == "Coding":
            shown.append(repr(value.value.code))
        elif value.kind == "Quantity":
            shown.append(f"{value.value.value} {value.value.code or value.value.unit or ''}".strip())
        else:
            shown.append(repr(value.value))
    return ", ".join(shown)


def check_response(questionnaire: Questionnaire, response: Any) -> list[ResponseProblem]:
    """Every problem of `response` (a QuestionnaireResponse's JSON) against `questionnaire`; [] = accepted."""
    if not isinstance(response, dict):
        return [ResponseProblem(None, "$", "a QuestionnaireResponse must be a JSON object")]
    if response.get("resourceType") != "QuestionnaireResponse":
        return [ResponseProblem(None, "$.resourceType", "must be 'QuestionnaireResponse'")]
    check = _Check(questionnaire, response)
    status = response.get("status")
    if status not in STATUSES:
        check.problem(None, "$.status", f"must be one of {', '.join(sorted(STATUSES))}")
    canonical = questionnaire.canonical
    if canonical is not None and response.get("questionnaire") != canonical:
        check.problem(None, "$.questionnaire", f"must be {canonical!r} (the form and version answered)")
    top = {item.link_id: item for item in questionnaire.items}
    try:
        roots = check.read_items(response.get("item"), "$.item", None, top)
    except _TooLarge:
        return [
            ResponseProblem(
                None, "$.item", f"the response has more than {MAX_RESPONSE_NODES} items and answers"
            )
        ]
    check.define_variables()
    check.check(questionnaire.items, roots, None, roots)
    return check.problems
