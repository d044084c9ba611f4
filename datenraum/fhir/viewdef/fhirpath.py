"""The small subset of FHIRPath that our ViewDefinitions use, parsed into frozen dataclasses (the steps).

SQL-on-FHIR v2 ViewDefinitions name their columns with FHIRPath. We support just enough of it for
flattening: member navigation, `first()`, `ofType(T)` for choice elements, `where(elem = 'literal')`,
`exists()`, `extension('url')`, `getReferenceKey(Type)` and the union operator `|`, which we read as
"the first alternative that has a value" (that is how our views use it: `effective.ofType(dateTime) |
effective.ofType(Period).start`). Anything else is rejected when a view is loaded, never at ingest time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "Exists",
    "Extension",
    "First",
    "Member",
    "OfType",
    "Path",
    "PathSyntaxError",
    "ReferenceKey",
    "Step",
    "Union",
    "Where",
    "parse",
]


class PathSyntaxError(ValueError):
    pass


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


Step = Member | OfType | Where | Extension | ReferenceKey | First | Exists


@dataclass(frozen=True)
class Path:
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Union:
    alternatives: tuple[Path, ...]


_TOKEN = re.compile(r"\s*(?:(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<string>'(?:[^'\\]|\\.)*')|(?P<op>[().|=]))")


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

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        if token is None or token[0] != kind or (value is not None and token[1] != value):
            wanted = value or kind
            raise PathSyntaxError(f"expected {wanted} at token {self.position} of FHIRPath {self.text!r}")
        self.position += 1
        return token[1]

    def union(self) -> Union:
        alternatives = [self.path()]
        while self.peek() == ("op", "|"):
            self.position += 1
            alternatives.append(self.path())
        if self.peek() is not None:
            raise PathSyntaxError(f"unexpected {self.peek()[1]!r} in FHIRPath {self.text!r}")
        return Union(tuple(alternatives))

    def path(self) -> Path:
        steps = [self.step()]
        while self.peek() == ("op", "."):
            self.position += 1
            steps.append(self.step())
        return Path(tuple(steps))

    def step(self) -> Step:
        name = self.take("ident")
        if self.peek() != ("op", "("):
            return Member(name)
        self.position += 1
        step = self.function(name)
        self.take("op", ")")
        return step

    def function(self, name: str) -> Step:
        if name == "first":
            return First()
        if name == "exists":
            return Exists()
        if name == "ofType":
            return OfType(self.take("ident"))
        if name == "getReferenceKey":
            return ReferenceKey(self.take("ident"))
        if name == "extension":
            return Extension(_unquote(self.take("string")))
        if name == "where":
            element = self.take("ident")
            self.take("op", "=")
            return Where(element, _unquote(self.take("string")))
        raise PathSyntaxError(f"function {name}() is not supported in FHIRPath {self.text!r}")


def _unquote(literal: str) -> str:
    return literal[1:-1].replace("\\'", "'")


def parse(text: str) -> Union:
    """Parse a FHIRPath expression of the supported subset."""
    return _Parser(text).union()
