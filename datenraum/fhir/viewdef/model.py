"""The view model: ViewDefinitions as small frozen dataclasses, loaded from JSON and checked on load.

Each table of the site store is described by one JSON file in `fhir/views/`, an HL7 SQL-on-FHIR v2
ViewDefinition (`resource`, `constant`, `where`, `select` with `column`, `forEach`, `forEachOrNull`,
`repeat`, `unionAll` and nested `select`). Adding a column is a change to that file, not to code; a
site can register ViewDefinitions of its own (site/views.py), and our views run on other runners.

Column paths are FHIRPath (fhirpath.py). Loading substitutes the view's constants, folds
`x.ofType(T)` into the member `xT` (how FHIR JSON spells choice elements) and lowers each path into
steps where it can (`fhirpath.lower`). So a path no engine can read fails here, when a view is loaded,
naming its column, never at ingest time; so does an undefined constant or a unionAll whose branches
have different columns.

Column semantics: the specification's (`strict=True` in the compilers): a column's path yields at
most one value unless the column is declared `collection: true`, and more than one is an error
(`CardinalityError`). The ingest runs our views with `strict=False`, where a column takes the first
value its path yields; our views write `first()` wherever a path can yield more than one value, so
both readings agree on them (tests/test_sof_conformance.py runs them strict over the test data).
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from datenraum.fhir.primitives import CONVERTERS
from datenraum.fhir.viewdef import fhirpath
from datenraum.fhir.viewdef.fhirpath import (
    Binary,
    Call,
    Child,
    Evaluate,
    Exists,
    Expr,
    First,
    Index,
    Literal,
    Member,
    OfType,
    Path,
    RowIndex,
    Union,
    Variable,
)

__all__ = [
    "CardinalityError",
    "Column",
    "Select",
    "ViewDefinition",
    "ViewDefinitionError",
    "columns_of",
    "ends_in_exists",
    "is_row_index",
    "load_view",
    "shareable_problems",
    "standard_view_definitions",
    "takes_first",
]


class ViewDefinitionError(ValueError):
    pass


class CardinalityError(ViewDefinitionError):
    """A column not declared a collection yields more than one value (only with `strict=True`), or a
    where clause something other than a boolean: the view is refused for this data."""


@dataclass(frozen=True)
class Column:
    name: str
    path: Union
    type: str
    source: str
    collection: bool = False


@dataclass(frozen=True)
class Select:
    """A select: its columns, then its nested selects' columns, then its unionAll's (whose branches all
    have the same columns), for each item of `for_each` (or of `repeat`) or for the focus."""

    columns: tuple[Column, ...] = ()
    for_each: Union | None = None
    or_null: bool = False
    selects: tuple[Select, ...] = ()
    union_all: tuple[Select, ...] = ()
    repeat: tuple[Union, ...] = ()


@dataclass(frozen=True)
class ViewDefinition:
    name: str
    resource: str
    select: Select
    description: str = ""
    where: tuple[Expr, ...] = ()

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(columns_of(self.select))


def columns_of(select: Select) -> Iterator[Column]:
    """The columns of a select and of its nested selects, in table order."""
    yield from select.columns
    for child in select.selects:
        yield from columns_of(child)
    if select.union_all:
        yield from columns_of(select.union_all[0])


def ends_in_exists(path: Path) -> bool:
    """Whether the path asks `exists()`: its column is then true or false, never null."""
    return bool(path.steps) and isinstance(path.steps[-1], Exists)


def is_row_index(column: Column) -> bool:
    """Whether the column is `%rowIndex`, which is 0 in the row of nulls of a forEachOrNull, not null."""
    steps = column.path.alternatives[0].steps
    return len(steps) == 1 and isinstance(steps[0], Evaluate) and isinstance(steps[0].expr, RowIndex)


def takes_first(path: Path) -> bool:
    """Whether a forEach path keeps only its first value (`first()` anywhere in it)."""
    return any(isinstance(step, First) for step in path.steps)


_COLUMN_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_SELECT_KEYS = frozenset({"column", "select", "forEach", "forEachOrNull", "unionAll", "repeat"})


class _Loader:
    def __init__(self, constants: dict[str, Literal]) -> None:
        self.constants = constants

    def select(self, raw: Any, where: str) -> Select:
        if not isinstance(raw, dict):
            raise ViewDefinitionError(f"{where}: a select must be an object")
        unknown = set(raw) - _SELECT_KEYS
        if unknown:
            raise ViewDefinitionError(f"{where}: unknown keys {sorted(unknown)}")
        columns = []
        for index, column in enumerate(self.list_of(raw, "column", where)):
            column_where = f"{where}.column[{index}]"
            try:
                name, path_text = column["name"], column["path"]
            except (KeyError, TypeError):
                raise ViewDefinitionError(f"{column_where}: needs name and path") from None
            if not isinstance(name, str) or not _COLUMN_NAME.match(name):
                raise ViewDefinitionError(f"{column_where}: {name!r} is not a column name")
            column_type = column.get("type", "string")
            if column_type not in CONVERTERS:
                raise ViewDefinitionError(f"{column_where}: unknown type {column_type!r}")
            collection = column.get("collection", False)
            if type(collection) is not bool:
                raise ViewDefinitionError(f"{column_where}: collection must be true or false")
            path = self.path(path_text, column_where)
            columns.append(Column(name, path, column_type, path_text, collection))
        kinds = [key for key in ("forEach", "forEachOrNull", "repeat") if key in raw]
        if len(kinds) > 1:
            raise ViewDefinitionError(f"{where}: a select takes only one of {kinds}")
        for_each = repeat = None
        if "forEach" in raw or "forEachOrNull" in raw:
            for_each = self.path(raw.get("forEach", raw.get("forEachOrNull")), f"{where}.forEach")
        if "repeat" in raw:
            texts = raw["repeat"]
            if not isinstance(texts, list) or not texts:
                raise ViewDefinitionError(f"{where}.repeat: must be a list of paths")
            repeat = tuple(self.path(text, f"{where}.repeat[{i}]") for i, text in enumerate(texts))
        selects = tuple(
            self.select(child, f"{where}.select[{i}]")
            for i, child in enumerate(self.list_of(raw, "select", where))
        )
        union_all = tuple(
            self.select(child, f"{where}.unionAll[{i}]")
            for i, child in enumerate(self.list_of(raw, "unionAll", where))
        )
        if union_all:
            first = [column.name for column in columns_of(union_all[0])]
            for index, branch in enumerate(union_all[1:], 1):
                names = [column.name for column in columns_of(branch)]
                if names != first:
                    raise ViewDefinitionError(
                        f"{where}.unionAll[{index}]: columns {names} differ from the first branch's {first}"
                    )
        return Select(tuple(columns), for_each, "forEachOrNull" in raw, selects, union_all, repeat or ())

    @staticmethod
    def list_of(raw: dict, key: str, where: str) -> list:
        value = raw.get(key, [])
        if not isinstance(value, list):
            raise ViewDefinitionError(f"{where}.{key}: must be a list")
        return value

    def expression(self, text: Any, where: str) -> Expr:
        try:
            return self.resolve(fhirpath.parse_expression(text), where)
        except fhirpath.PathSyntaxError as error:
            raise ViewDefinitionError(f"{where}: {error}") from None

    def path(self, text: Any, where: str) -> Union:
        try:
            return _normalise(fhirpath.lower(self.expression(text, where)))
        except fhirpath.PathSyntaxError as error:
            raise ViewDefinitionError(f"{where}: {error}") from None

    def resolve(self, expr: Expr, where: str) -> Expr:
        """The expression with constants substituted and `x.ofType(T)` folded into the member `xT`."""
        if isinstance(expr, Variable):
            if expr.name not in self.constants:
                raise ViewDefinitionError(f"{where}: constant %{expr.name} is not defined")
            return self.constants[expr.name]
        if isinstance(expr, Child):
            return Child(self.resolve(expr.source, where), expr.name)
        if isinstance(expr, Index):
            return Index(self.resolve(expr.source, where), self.resolve(expr.index, where))
        if isinstance(expr, Binary):
            return Binary(expr.op, self.resolve(expr.left, where), self.resolve(expr.right, where))
        if isinstance(expr, Call):
            source = self.resolve(expr.source, where)
            if expr.name == "ofType" and isinstance(source, Child):
                wanted = fhirpath.type_name(expr.args[0])
                return Child(source.source, source.name + wanted[0].upper() + wanted[1:])
            if expr.name in ("ofType", "getReferenceKey"):
                return Call(source, expr.name, expr.args)  # their arguments are type names
            return Call(source, expr.name, tuple(self.resolve(arg, where) for arg in expr.args))
        return expr


def _normalise(union: Union) -> Union:
    """Fold `x.ofType(T)` steps into the JSON key `xT`, which is how FHIR JSON spells choice elements."""
    paths = []
    for path in union.alternatives:
        steps: list = []
        for step in path.steps:
            if isinstance(step, OfType):
                if not steps or not isinstance(steps[-1], Member):
                    raise fhirpath.PathSyntaxError("ofType() must follow a choice element name")
                steps[-1] = Member(steps[-1].name + step.type_name[0].upper() + step.type_name[1:])
            else:
                steps.append(step)
        for position, step in enumerate(steps):
            if isinstance(step, (Exists, First)) and position != len(steps) - 1:
                raise fhirpath.PathSyntaxError(f"{type(step).__name__.lower()}() must end a path of steps")
        paths.append(Path(tuple(steps)))
    return Union(tuple(paths))


def _constants(raw: Any, source: str) -> dict[str, Literal]:
    constants: dict[str, Literal] = {}
    if not isinstance(raw, list):
        raise ViewDefinitionError(f"{source}: constant must be a list")
    for index, constant in enumerate(raw):
        where = f"{source}: constant[{index}]"
        name = constant.get("name") if isinstance(constant, dict) else None
        values = [key for key in (constant if isinstance(constant, dict) else ()) if key.startswith("value")]
        if not isinstance(name, str) or len(values) != 1:
            raise ViewDefinitionError(f"{where}: a constant needs a name and one value[x]")
        value = constant[values[0]]
        if value is None or isinstance(value, (dict, list)):
            raise ViewDefinitionError(f"{where}: {values[0]} must be a primitive value")
        constants[name] = Literal(value)
    return constants


def load_view(raw: dict, source: str = "<view>", default_name: str | None = None) -> ViewDefinition:
    """Load a ViewDefinition; `default_name` names one without a name (a shared view run ad hoc)."""
    if not isinstance(raw, dict):
        raise ViewDefinitionError(f"{source}: a ViewDefinition must be a JSON object")
    if raw.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise ViewDefinitionError(f"{source}: resourceType is {raw['resourceType']!r}, not 'ViewDefinition'")
    name, resource = raw.get("name", default_name), raw.get("resource")
    if not isinstance(name, str) or not isinstance(resource, str) or not resource:
        raise ViewDefinitionError(f"{source}: a ViewDefinition needs name and resource")
    selects = raw.get("select")
    if not isinstance(selects, list) or not selects:
        raise ViewDefinitionError(f"{source}: a ViewDefinition needs a select")
    loader = _Loader(_constants(raw.get("constant", []), source))
    root = Select(selects=tuple(loader.select(s, f"{source}: select[{i}]") for i, s in enumerate(selects)))
    wheres = raw.get("where", [])
    if not isinstance(wheres, list) or not all(isinstance(w, dict) and "path" in w for w in wheres):
        raise ViewDefinitionError(f"{source}: where must be a list of {{'path': ...}}")
    where = tuple(loader.expression(w["path"], f"{source}: where[{i}]") for i, w in enumerate(wheres))
    view = ViewDefinition(name, resource, root, raw.get("description", ""), where)
    names = [column.name for column in view.columns]
    if len(names) != len(set(names)):
        raise ViewDefinitionError(f"{source}: duplicate column names in {names}")
    return view


def shareable_problems(raw: dict) -> list[str]:
    """What keeps a ViewDefinition from being a valid resource other runners take: the elements the
    specification's ShareableViewDefinition profile requires (an empty list when there are none)."""
    problems = []
    if raw.get("resourceType") != "ViewDefinition":
        problems.append("resourceType is not 'ViewDefinition'")
    for key in ("name", "status", "resource"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            problems.append(f"{key} is missing")
    if not isinstance(raw.get("select"), list) or not raw["select"]:
        problems.append("select is missing")
    if raw.get("fhirVersion") is None:
        problems.append("fhirVersion is missing")

    def columns(select: dict) -> Iterator[dict]:
        yield from select.get("column", [])
        for key in ("select", "unionAll"):
            for child in select.get(key, []):
                yield from columns(child)

    for select in raw.get("select", []):
        for column in columns(select):
            if "type" not in column:
                problems.append(f"column {column.get('name')} has no type")
    return problems


@functools.cache
def standard_view_definitions() -> tuple[ViewDefinition, ...]:
    """The views that define the site store's tables (`fhir/views/*.json`), in file name order."""
    files = sorted(importlib.resources.files("datenraum.fhir.views").iterdir(), key=lambda e: e.name)
    return tuple(
        load_view(orjson.loads(entry.read_bytes()), entry.name)
        for entry in files
        if entry.name.endswith(".json")
    )
