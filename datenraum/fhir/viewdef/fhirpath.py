"""FHIRPath as ViewDefinitions use it: parsed into an expression tree, and lowered into steps where it can.

SQL-on-FHIR v2 ViewDefinitions name their columns with FHIRPath. `parse_expression` reads the part of
FHIRPath the specification's "shareable" view profile asks for (and a little more): navigation,
indexing `x[n]`, literals, `$this`, `%constant`, `%rowIndex`, the operators `| = != < > <= >= + - * /
& and or xor implies`, and the functions in `FUNCTIONS`. The result is a tree of frozen dataclasses
(the `Expr` nodes), evaluated by evaluate.py.

The engines read most paths faster as *steps*: member navigation, `first()`, `ofType(T)` for choice
elements, `where(elem = 'literal')`, `exists()`, `extension('url')`, `getReferenceKey(Type)`, and the
union `|` of such chains (which, with choice elements as our views use it, `effective.ofType(dateTime) |
effective.ofType(Period).start`, yields the first alternative that has a value). `parse` lowers an
expression into those steps where it can; anything else becomes one `Evaluate` step that hands the
whole expression to evaluate.py. A path no FHIRPath parser would read is rejected here, when a view
is loaded, never at ingest time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FUNCTIONS",
    "Binary",
    "Call",
    "Child",
    "Evaluate",
    "Exists",
    "Expr",
    "Extension",
    "First",
    "Index",
    "Literal",
    "Member",
    "OfType",
    "Path",
    "PathSyntaxError",
    "ReferenceKey",
    "RowIndex",
    "Step",
    "This",
    "Union",
    "Variable",
    "Where",
    "parse",
    "parse_expression",
]


class PathSyntaxError(ValueError):
    pass


# --- the expression tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Literal:
    """A literal: a string, a number (int or float), a boolean; `value=None` is the empty collection `{}`."""

    value: Any


@dataclass(frozen=True)
class This:
    """`$this`, or the focus an expression starts from."""


@dataclass(frozen=True)
class Variable:
    """`%name`: a ViewDefinition constant, substituted by load_view (model.py) with its Literal."""

    name: str


@dataclass(frozen=True)
class RowIndex:
    """`%rowIndex`: the index of the current forEach / repeat item in its collection (0 at the top)."""


@dataclass(frozen=True)
class Child:
    """Navigation to the child element `name` of every item of `source`."""

    source: Expr
    name: str


@dataclass(frozen=True)
class Index:
    source: Expr
    index: Expr


@dataclass(frozen=True)
class Call:
    """A function `name(args)` invoked on `source`. Type names (ofType(T), getReferenceKey(T)) are args
    of `Child(This(), T)`."""

    source: Expr
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Binary:
    op: str
    left: Expr
    right: Expr


Expr = Literal | This | Variable | RowIndex | Child | Index | Call | Binary

# The functions, with how many arguments they take (min, max).
FUNCTIONS: dict[str, tuple[int, int]] = {
    "first": (0, 0),
    "last": (0, 0),
    "exists": (0, 1),
    "empty": (0, 0),
    "count": (0, 0),
    "not": (0, 0),
    "where": (1, 1),
    "ofType": (1, 1),
    "extension": (1, 1),
    "join": (0, 1),
    "getResourceKey": (0, 0),
    "getReferenceKey": (0, 1),
    "iif": (2, 3),
    "lowBoundary": (0, 1),
    "highBoundary": (0, 1),
}


# --- the steps --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    name: str


@dataclass(frozen=True)
class OfType:
    """`x.ofType(dateTime)` on a choice element `x[x]` selects the JSON key `xDateTime`."""

    type_name: str


@dataclass(frozen=True)
class Where:
    element: str
    literal: str


@dataclass(frozen=True)
class Extension:
    url: str


@dataclass(frozen=True)
class ReferenceKey:
    """The id of the referenced resource, resolved the way the ingest context knows how."""

    resource_type: str


@dataclass(frozen=True)
class First:
    pass


@dataclass(frozen=True)
class Exists:
    pass


@dataclass(frozen=True)
class Evaluate:
    """A whole expression beyond the steps, evaluated from the current value by evaluate.py; each value
    it yields is a value of the path."""

    expr: Expr


Step = Member | OfType | Where | Extension | ReferenceKey | First | Exists | Evaluate


@dataclass(frozen=True)
class Path:
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Union:
    alternatives: tuple[Path, ...]


# --- the parser -------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)"
    r"|(?P<string>'(?:[^'\\]|\\.)*')"
    r"|(?P<variable>%[A-Za-z_][A-Za-z0-9_]*|%`[^`]+`)"
    r"|(?P<this>\$this)"
    r"|(?P<op><=|>=|!=|!~|[().|=~<>+\-*/&,\[\]]))"
)

# Binary operators by precedence, loosest first (FHIRPath's table; `is`/`as`/`in`/`contains` left out).
_LEVELS: tuple[tuple[str, ...], ...] = (
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("=", "~", "!=", "!~"),
    ("<", ">", "<=", ">="),
    ("|",),
    ("+", "-", "&"),
    ("*", "/"),
)
_WORD_OPERATORS = frozenset({"implies", "or", "xor", "and"})


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip() == "":
                break
            raise PathSyntaxError(f"unexpected {text[position:]!r} in FHIRPath {text!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def fail(self, wanted: str) -> PathSyntaxError:
        token = self.peek()
        found = "the end" if token is None else repr(token[1])
        return PathSyntaxError(f"expected {wanted}, found {found} in FHIRPath {self.text!r}")

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            raise self.fail(value or kind)
        self.position += 1
        return token[1]

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[1] == value and token[0] in ("op", "ident"):
            self.position += 1
            return True
        return False

    def expression(self, level: int = 0) -> Expr:
        if level == len(_LEVELS):
            return self.unary()
        left = self.expression(level + 1)
        while True:
            token = self.peek()
            if token is None or token[1] not in _LEVELS[level]:
                return left
            if (token[0] == "ident") != (token[1] in _WORD_OPERATORS):
                return left
            self.position += 1
            left = Binary(token[1], left, self.expression(level + 1))

    def unary(self) -> Expr:
        if self.accept("-"):
            operand = self.unary()
            if isinstance(operand, Literal) and type(operand.value) in (int, float):
                return Literal(-operand.value)
            return Binary("-", Literal(0), operand)
        self.accept("+")
        return self.postfix(self.term())

    def term(self) -> Expr:
        token = self.peek()
        if token is None:
            raise self.fail("an expression")
        kind, value = token
        if kind == "number":
            self.position += 1
            return Literal(float(value) if "." in value else int(value))
        if kind == "string":
            self.position += 1
            return Literal(_unquote(value))
        if kind == "variable":
            self.position += 1
            name = value[1:].strip("`")
            return RowIndex() if name == "rowIndex" else Variable(name)
        if kind == "this":
            self.position += 1
            return This()
        if kind == "op" and value == "(":
            self.position += 1
            inner = self.expression()
            self.take("op", ")")
            return inner
        if kind == "op" and value == "{":  # pragma: no cover - the tokenizer has no braces
            raise self.fail("an expression")
        if kind == "ident":
            if value in ("true", "false"):
                self.position += 1
                return Literal(value == "true")
            return self.invocation(This())
        raise self.fail("an expression")

    def postfix(self, expr: Expr) -> Expr:
        while True:
            if self.accept("."):
                expr = self.invocation(expr)
            elif self.accept("["):
                index = self.expression()
                self.take("op", "]")
                expr = Index(expr, index)
            else:
                return expr

    def invocation(self, source: Expr) -> Expr:
        name = self.take("ident").strip("`")
        if not self.accept("("):
            return Child(source, name)
        args: list[Expr] = []
        if not self.accept(")"):
            args.append(self.expression())
            while self.accept(","):
                args.append(self.expression())
            self.take("op", ")")
        if name not in FUNCTIONS:
            raise PathSyntaxError(f"function {name}() is not supported in FHIRPath {self.text!r}")
        least, most = FUNCTIONS[name]
        if not least <= len(args) <= most:
            raise PathSyntaxError(f"{name}() takes {least} to {most} arguments in FHIRPath {self.text!r}")
        if name in ("ofType", "getReferenceKey") and args and type_name(args[0]) is None:
            raise PathSyntaxError(f"{name}() takes a type name in FHIRPath {self.text!r}")
        return Call(source, name, tuple(args))


def type_name(expr: Expr) -> str | None:
    """The type an argument of ofType() or getReferenceKey() names (`Patient`, `FHIR.Patient`)."""
    if isinstance(expr, Child) and isinstance(expr.source, This):
        return expr.name
    if isinstance(expr, Child) and isinstance(expr.source, Child) and expr.source.name in ("FHIR", "System"):
        return expr.name
    return None


def _unquote(literal: str) -> str:
    escapes = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t", "f": "\f"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(1)), literal[1:-1])


def parse_expression(text: str) -> Expr:
    """Parse a FHIRPath expression into its tree."""
    if not isinstance(text, str):
        raise PathSyntaxError(f"a FHIRPath expression must be a string, not {text!r}")
    parser = _Parser(text)
    expr = parser.expression()
    if parser.peek() is not None:
        raise PathSyntaxError(f"unexpected {parser.peek()[1]!r} in FHIRPath {text!r}")
    return expr


# --- lowering into steps ------------------------------------------------------------------------------


def lower(expr: Expr) -> Union:
    """The expression as a union of step paths where it is one, else one path of one Evaluate step."""
    alternatives = _alternatives(expr)
    if alternatives is None:
        return Union((Path((Evaluate(expr),)),))
    return Union(tuple(alternatives))


def _alternatives(expr: Expr) -> list[Path] | None:
    if isinstance(expr, Binary) and expr.op == "|":
        left, right = _alternatives(expr.left), _alternatives(expr.right)
        return None if left is None or right is None else left + right
    steps = _steps(expr)
    if steps is None:
        return None
    # first() and exists() may only end a path of steps; elsewhere they are evaluated.
    for position, step in enumerate(steps):
        if isinstance(step, (First, Exists)) and position != len(steps) - 1:
            return None
    return [Path(tuple(steps))]


def _steps(expr: Expr) -> list[Step] | None:
    if isinstance(expr, This):
        return []
    if isinstance(expr, Child):
        before = _steps(expr.source)
        return None if before is None else [*before, Member(expr.name)]
    if not isinstance(expr, Call):
        return None
    before = _steps(expr.source)
    if before is None:
        return None
    args = expr.args
    if expr.name == "first" and before:
        return [*before, First()]
    if expr.name == "exists" and not args and before:
        return [*before, Exists()]
    if expr.name == "ofType" and before:
        return [*before, OfType(type_name(args[0]))]
    if expr.name == "getReferenceKey" and args and before:
        return [*before, ReferenceKey(type_name(args[0]))]
    if expr.name == "extension" and isinstance(args[0], Literal) and type(args[0].value) is str:
        return [*before, Extension(args[0].value)]
    if expr.name == "where" and before:
        test = args[0]
        if (
            isinstance(test, Binary)
            and test.op == "="
            and isinstance(test.left, Child)
            and isinstance(test.left.source, This)
            and isinstance(test.right, Literal)
            and type(test.right.value) is str
        ):
            return [*before, Where(test.left.name, test.right.value)]
    return None


def parse(text: str) -> Union:
    """Parse a FHIRPath expression, lowered into steps where it can be (`lower`)."""
    return lower(parse_expression(text))
