"""The reference evaluator of FHIRPath expressions (fhirpath.py's `Expr` trees), over collections.

Every value is a collection (a Python list); an element is read from a parsed JSON object (a dict) or
from a resource decoded by msgspec into its shape (a Struct, whose fields are renamed to the JSON keys),
so both compilers hand the expressions beyond their steps (`Evaluate`) to this one function. Semantics
are FHIRPath's: empty propagates through operators, comparisons are between singletons, `and`/`or`
are three-valued, `|` is the union without duplicates (in order of first appearance), arithmetic on
decimals is exact (as Decimal, then float again).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from datenraum.fhir.viewdef.fhirpath import (
    Binary,
    Call,
    Child,
    Expr,
    Index,
    Literal,
    RowIndex,
    This,
    Variable,
    type_name,
)
from datenraum.fhir.viewdef.model import CardinalityError, ViewDefinitionError

__all__ = ["Env", "EvaluationError", "children", "evaluate", "reference_key", "run", "truth"]


class EvaluationError(ViewDefinitionError):
    """An expression that cannot be evaluated on this data (e.g. a comparison of two collections)."""


class ShapeMiss(LookupError):
    """A decoded resource lacks an element the expression reads: its shape was built without it."""


Resolver = Callable[[Any, str], str | None]


class Env:
    """What an expression sees besides its focus: the resource, the row index, the reference resolver."""

    __slots__ = ("resolve", "resource", "row_index")

    def __init__(self, resource: Any, row_index: int, resolve: Resolver) -> None:
        self.resource, self.row_index, self.resolve = resource, row_index, resolve


@functools.cache
def _fields(struct: type) -> dict[str, str]:
    return dict(zip(struct.__struct_encode_fields__, struct.__struct_fields__, strict=True))


def children(item: Any, name: str) -> list:
    """The values of child element `name` of one item (a list's items one by one)."""
    if type(item) is dict:
        value = item.get(name)
    elif isinstance(item, msgspec.Struct):
        attribute = _fields(type(item)).get(name)
        if attribute is None:
            raise ShapeMiss(name)
        value = getattr(item, attribute)
    else:
        return []
    if value is None:
        return []
    return value if type(value) is list else [value]


def run(expr: Expr, node: Any, resource: Any, row_index: int, resolve: Resolver) -> list:
    """The values of `expr` evaluated with the single item `node` as its focus."""
    return evaluate(expr, [node], Env(resource, row_index, resolve))


def runner(expr: Expr) -> Callable[[Any, Any, int, Resolver], list]:
    """`run` for one expression, compiled once: what the generated code of both compilers calls.

    The expression becomes a tree of closures, so that evaluating it no longer dispatches on the type
    of every node of its tree each time (which made a column such as the patient's `deceased`, an `or`
    of two `exists()`, three times slower than the plain paths beside it). The nodes it does not
    compile are left to `evaluate`, which defines the semantics of all of them."""
    function = _compiled(expr)

    def run_compiled(node: Any, resource: Any, row_index: int, resolve: Resolver) -> list:
        return function([node], Env(resource, row_index, resolve))

    return run_compiled


_Compiled = Callable[[list, Env], list]


def _compiled(expr: Expr) -> _Compiled:
    kind = type(expr)
    if kind is This:
        return lambda focus, env: focus
    if kind is Literal:
        value = expr.value
        return (lambda focus, env: []) if value is None else (lambda focus, env: [value])
    if kind is Child:
        return _compiled_child(_compiled(expr.source), expr.name)
    if kind is Binary:
        op, left, right = expr.op, _compiled(expr.left), _compiled(expr.right)
        if op == "or":
            return _compiled_or(left, right)
        return lambda focus, env: _combine(op, left(focus, env), right(focus, env))
    if kind is Call:
        compiled = _compiled_call(expr)
        if compiled is not None:
            return compiled
    return lambda focus, env: evaluate(expr, focus, env)


def _compiled_or(left: _Compiled, right: _Compiled) -> _Compiled:
    """`or` as `_combine` computes it (both sides evaluated, so that either may refuse its values)."""

    def either(focus: list, env: Env) -> list:
        a, b = truth(left(focus, env)), truth(right(focus, env))
        if a is True or b is True:
            return [True]
        return [] if a is None or b is None else [False]

    return either


def _compiled_child(source: _Compiled, name: str) -> _Compiled:
    def child(focus: list, env: Env) -> list:
        out: list = []
        for item in source(focus, env):
            if type(item) is dict:  # children() inline, for parsed JSON
                value = item.get(name)
                if value is None:
                    continue
                if type(value) is list:
                    out += value
                else:
                    out.append(value)
            else:
                out += children(item, name)
        return out

    return child


def _compiled_call(expr: Call) -> _Compiled | None:
    """The functions worth compiling (the rest, `evaluate`): those of paths that filter and test."""
    name, args = expr.name, expr.args
    if name == "iif" or (args and name not in ("where", "exists")):
        return None
    source = _compiled(expr.source)
    if name == "first":
        return lambda focus, env: source(focus, env)[:1]
    if name == "empty":
        return lambda focus, env: [not source(focus, env)]
    if name == "not":

        def negation(focus: list, env: Env) -> list:
            value = truth(source(focus, env))
            return [] if value is None else [not value]

        return negation
    if name in ("where", "exists"):
        if not args:
            return (
                (lambda focus, env: source(focus, env))
                if name == "where"
                else (lambda focus, env: [bool(source(focus, env))])
            )
        test, keep = _compiled(args[0]), name == "where"

        def filtered(focus: list, env: Env) -> list:
            values = [item for item in source(focus, env) if truth(test([item], env)) is True]
            return values if keep else [bool(values)]

        return filtered
    return None


def truth(values: list) -> bool | None:
    """A collection in a boolean context: None for empty, the boolean of a singleton (any other single
    value counts as true); more than one value is an error."""
    if not values:
        return None
    if len(values) > 1:
        raise EvaluationError(f"expected a single boolean, got {len(values)} values")
    value = values[0]
    return value if type(value) is bool else True


def reference_key(item: Any, resource_type: str | None, resolve: Resolver) -> str | None:
    """The id a Reference names, if of `resource_type` (any type when None): a plain `Type/id` is read
    here, anything else is left to `resolve` (which knows Bundles, conditional and logical references)."""
    texts = children(item, "reference")
    text = texts[0] if texts else None
    if type(text) is str:
        head, slash, tail = text.partition("/")
        if slash and head and tail and "/" not in tail and "?" not in tail and ":" not in head:
            return tail if resource_type is None or head == resource_type else None
    if resource_type is None:
        return None
    return resolve(item, resource_type)


def evaluate(expr: Expr, focus: list, env: Env) -> list:
    kind = type(expr)
    if kind is Child:
        out: list = []
        for item in evaluate(expr.source, focus, env):
            out += children(item, expr.name)
        return out
    if kind is This:
        return focus
    if kind is Literal:
        return [] if expr.value is None else [expr.value]
    if kind is Call:
        return _call(expr, focus, env)
    if kind is Binary:
        return _binary(expr, focus, env)
    if kind is Index:
        values = evaluate(expr.source, focus, env)
        position = evaluate(expr.index, focus, env)
        if len(position) != 1 or type(position[0]) is not int:
            raise EvaluationError("an index must be a single integer")
        index = position[0]
        return [values[index]] if 0 <= index < len(values) else []
    if kind is RowIndex:
        return [env.row_index]
    if kind is Variable:
        raise EvaluationError(f"%{expr.name} is not defined")
    raise EvaluationError(f"cannot evaluate {expr!r}")  # pragma: no cover


def _same(a: Any, b: Any) -> bool:
    """FHIRPath equality of two single values: booleans equal only booleans, numbers compare by value."""
    if (type(a) is bool) != (type(b) is bool):
        return False
    if type(a) in (int, float) and type(b) in (int, float):
        return a == b
    if isinstance(a, msgspec.Struct) or isinstance(b, msgspec.Struct):
        return msgspec.to_builtins(a) == msgspec.to_builtins(b)
    return type(a) is type(b) and a == b


def _singleton(values: list, what: str) -> Any:
    if len(values) > 1:
        raise EvaluationError(f"{what} needs single values, got {len(values)}")
    return values[0]


def _decimal(value: Any) -> Decimal:
    return Decimal(repr(value)) if type(value) is float else Decimal(value)


def _number(value: Decimal, *operands: Any) -> int | float:
    if all(type(operand) is int for operand in operands) and value == value.to_integral_value():
        return int(value)
    return float(value)


def _binary(expr: Binary, focus: list, env: Env) -> list:
    return _combine(expr.op, evaluate(expr.left, focus, env), evaluate(expr.right, focus, env))


def _combine(op: str, left: list, right: list) -> list:
    """The values of `left op right`, both sides evaluated."""
    if op == "|":
        out: list = []
        for value in left + right:
            if not any(_same(value, seen) for seen in out):
                out.append(value)
        return out
    if op in ("and", "or", "xor", "implies"):
        a, b = truth(left), truth(right)
        if op == "and":
            result = False if a is False or b is False else (None if a is None or b is None else True)
        elif op == "or":
            result = True if a is True or b is True else (None if a is None or b is None else False)
        elif op == "xor":
            result = None if a is None or b is None else a != b
        else:
            result = b if a is True else (True if a is False or b is True else None)
        return [] if result is None else [result]
    if op == "&":
        return ["".join(str(_singleton(v, op)) if v else "" for v in (left, right))]
    if op in ("~", "!~"):
        same = len(left) == len(right) and all(
            _same(a.lower() if type(a) is str else a, b.lower() if type(b) is str else b)
            for a, b in zip(left, right, strict=True)
        )
        return [same if op == "~" else not same]
    if not left or not right:
        return []
    if op in ("=", "!="):
        same = len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
        return [same if op == "=" else not same]
    a, b = _singleton(left, op), _singleton(right, op)
    if op in ("<", ">", "<=", ">="):
        numbers = type(a) in (int, float) and type(b) in (int, float)
        if not numbers and not (type(a) is str and type(b) is str):
            raise EvaluationError(f"cannot compare {a!r} {op} {b!r}")
        return [{"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]]
    if op == "+" and type(a) is str and type(b) is str:
        return [a + b]
    if type(a) not in (int, float) or type(b) not in (int, float):
        raise EvaluationError(f"cannot compute {a!r} {op} {b!r}")
    x, y = _decimal(a), _decimal(b)
    try:
        if op == "+":
            return [_number(x + y, a, b)]
        if op == "-":
            return [_number(x - y, a, b)]
        if op == "*":
            return [_number(x * y, a, b)]
        return [float(x / y)] if y else []  # "/" is always a decimal division; by zero it is empty
    except InvalidOperation:
        return []


_TYPE_TESTS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "integer": lambda v: type(v) is int,
    "decimal": lambda v: type(v) in (int, float),
}


def _call(expr: Call, focus: list, env: Env) -> list:
    name, args = expr.name, expr.args
    if name == "iif":
        condition = truth(evaluate(args[0], focus, env))
        if condition is True:
            return evaluate(args[1], focus, env)
        return evaluate(args[2], focus, env) if len(args) > 2 else []
    values = evaluate(expr.source, focus, env)
    if name == "first":
        return values[:1]
    if name == "last":
        return values[-1:]
    if name == "count":
        return [len(values)]
    if name == "empty":
        return [not values]
    if name == "where" or name == "exists":
        if args:
            values = [item for item in values if truth(evaluate(args[0], [item], env)) is True]
        return values if name == "where" else [bool(values)]
    if name == "not":
        value = truth(values)
        return [] if value is None else [not value]
    if name == "ofType":
        wanted = type_name(args[0])
        test = _TYPE_TESTS.get(wanted)
        if test is None:
            return [item for item in values if children(item, "resourceType") == [wanted]]
        return [item for item in values if test(item)]
    if name == "extension":
        url = _singleton(evaluate(args[0], focus, env), "extension()")
        return [e for item in values for e in children(item, "extension") if children(e, "url") == [url]]
    if name == "join":
        separator = evaluate(args[0], focus, env) if args else [""]
        return [_singleton(separator, "join()").join(str(value) for value in values)]
    if name == "getResourceKey":
        return [key for item in values for key in children(item, "id")[:1]]
    if name == "getReferenceKey":
        wanted = type_name(args[0]) if args else None
        keys = (reference_key(item, wanted, env.resolve) for item in values)
        return [key for key in keys if key is not None]
    if name in ("lowBoundary", "highBoundary"):
        from datenraum.fhir.viewdef.boundaries import boundary  # the optional part, kept apart

        precision = _singleton(evaluate(args[0], focus, env), name) if args else None
        source = expr.source
        timed = isinstance(source, Child) and source.name.endswith(("DateTime", "Instant"))
        found = (boundary(value, name == "lowBoundary", precision, timed) for value in values)
        return [value for value in found if value is not None]
    raise EvaluationError(f"function {name}() cannot be evaluated")  # pragma: no cover


def where_test(values: list) -> bool:
    """A view's where clause: true keeps the resource, false or empty drops it, anything else is an error."""
    if not values:
        return False
    if len(values) == 1 and type(values[0]) is bool:
        return values[0]
    raise CardinalityError(f"a where clause must give a boolean, not {values[:3]!r}")


def dedupe(values: list) -> list:
    """The values without duplicates (FHIRPath's union), in order of first appearance."""
    out: list = []
    for value in values:
        if not any(_same(value, seen) for seen in out):
            out.append(value)
    return out
