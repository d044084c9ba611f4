"""ViewDefinitions: declarative flattening of FHIR resources into typed tables.

Each table of the site store is described by one JSON file in `views/`, written in the shape of an
HL7 SQL-on-FHIR v2 ViewDefinition (`resource`, `select` with `column`, `forEach`, `forEachOrNull` and
nested `select`). Adding a column is a change to that file, not to code.

A view is compiled once into Python source, because flattening runs for every one of tens of millions
of resources and an interpreter walking the path objects would be several times slower. The compiled
code navigates without checks; when it fails (an element of the wrong JSON type), `explain` walks the
same paths slowly, with checks, to say which element is wrong and why.

Column semantics: a column takes the *first* value its path yields (SQL-on-FHIR would raise for more
than one; for research tables the first coding/value is the useful reading, and repeated codings get
their own rows through `forEach`).
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from datenraum.fhir import fhirpath
from datenraum.fhir.fhirpath import (
    Exists,
    Extension,
    First,
    Member,
    OfType,
    Path,
    ReferenceKey,
    Union,
    Where,
)
from datenraum.fhir.primitives import ARROW_TYPES, CONVERTERS, ElementTypeError

__all__ = [
    "Column",
    "CompiledView",
    "Resolver",
    "Select",
    "ViewDefinition",
    "ViewDefinitionError",
    "load_view",
    "standard_views",
]

# Resolves a Reference element to the id of a resource of the given type, or None.
Resolver = Callable[[Any, str], str | None]


class ViewDefinitionError(ValueError):
    pass


@dataclass(frozen=True)
class Column:
    name: str
    path: Union
    type: str
    source: str


@dataclass(frozen=True)
class Select:
    columns: tuple[Column, ...] = ()
    for_each: Union | None = None
    or_null: bool = False
    selects: tuple[Select, ...] = ()


@dataclass(frozen=True)
class ViewDefinition:
    name: str
    resource: str
    select: Select
    description: str = ""

    @property
    def columns(self) -> tuple[Column, ...]:
        return tuple(_columns(self.select))


def _columns(select: Select) -> Iterator[Column]:
    yield from select.columns
    for child in select.selects:
        yield from _columns(child)


def _parse_select(raw: dict, where: str) -> Select:
    if not isinstance(raw, dict):
        raise ViewDefinitionError(f"{where}: a select must be an object")
    columns = []
    for index, column in enumerate(raw.get("column", [])):
        column_where = f"{where}.column[{index}]"
        try:
            name, path_text = column["name"], column["path"]
        except (KeyError, TypeError):
            raise ViewDefinitionError(f"{column_where}: needs name and path") from None
        column_type = column.get("type", "string")
        if column_type not in CONVERTERS:
            raise ViewDefinitionError(f"{column_where}: unknown type {column_type!r}")
        columns.append(Column(name, _parse_path(path_text, column_where), column_type, path_text))
    for_each_text = raw.get("forEach") or raw.get("forEachOrNull")
    for_each = _parse_path(for_each_text, f"{where}.forEach") if for_each_text else None
    selects = tuple(_parse_select(child, f"{where}.select[{i}]") for i, child in enumerate(raw.get("select", [])))
    return Select(tuple(columns), for_each, "forEachOrNull" in raw, selects)


def _parse_path(text: str, where: str) -> Union:
    try:
        return _normalise(fhirpath.parse(text))
    except fhirpath.PathSyntaxError as error:
        raise ViewDefinitionError(f"{where}: {error}") from None


def _normalise(union: Union) -> Union:
    """Fold `x.ofType(T)` into the JSON key `xT`, which is how FHIR JSON spells choice elements."""
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
            if isinstance(step, Exists) and position != len(steps) - 1:
                raise fhirpath.PathSyntaxError("exists() must end a path")
        paths.append(Path(tuple(steps)))
    return Union(tuple(paths))


def load_view(raw: dict, source: str = "<view>") -> ViewDefinition:
    try:
        name, resource = raw["name"], raw["resource"]
    except (KeyError, TypeError):
        raise ViewDefinitionError(f"{source}: a ViewDefinition needs name and resource") from None
    root = Select(selects=tuple(_parse_select(s, f"{source}: select[{i}]") for i, s in enumerate(raw["select"])))
    view = ViewDefinition(name, resource, root, raw.get("description", ""))
    names = [column.name for column in view.columns]
    if len(names) != len(set(names)):
        raise ViewDefinitionError(f"{source}: duplicate column names in {names}")
    return view


@functools.cache
def standard_views() -> dict[str, CompiledView]:
    """The views that define the site store's tables, keyed by table name."""
    views = {}
    for entry in sorted(importlib.resources.files("datenraum.fhir.views").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            view = load_view(orjson.loads(entry.read_bytes()), entry.name)
            views[view.name] = CompiledView(view)
    return views


# --- code generation -------------------------------------------------------------------------------


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.counter = 0

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.name("_k")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _emit_steps(src: _Source, steps: tuple, var: str, indent: int, leaf: Callable[[str, int], None]) -> None:
    if not steps:
        leaf(var, indent)
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, Member | Extension):
        key = step.name if isinstance(step, Member) else "extension"
        raw, item = src.name("_r"), src.name("_v")
        src.emit(indent, f"{raw} = {var}.get({key!r})")
        src.emit(indent, f"if {raw} is not None:")
        src.emit(indent + 1, f"for {item} in ({raw} if type({raw}) is list else ({raw},)):")
        if isinstance(step, Extension):
            src.emit(indent + 2, f"if {item}.get('url') == {step.url!r}:")
            _emit_steps(src, rest, item, indent + 3, leaf)
        else:
            _emit_steps(src, rest, item, indent + 2, leaf)
    elif isinstance(step, Where):
        src.emit(indent, f"if {var}.get({step.element!r}) == {step.literal!r}:")
        _emit_steps(src, rest, var, indent + 1, leaf)
    elif isinstance(step, ReferenceKey):
        key = src.name("_ref")
        src.emit(indent, f"{key} = resolve({var}, {step.resource_type!r})")
        src.emit(indent, f"if {key} is not None:")
        _emit_steps(src, rest, key, indent + 1, leaf)
    elif isinstance(step, First):
        _emit_steps(src, rest, var, indent, leaf)
    elif isinstance(step, Exists):
        leaf(var, indent)
    else:  # pragma: no cover - the parser admits no other steps
        raise ViewDefinitionError(f"cannot compile step {step!r}")


def _emit_column(src: _Source, column: Column) -> str:
    function = src.name("_col")
    converter = src.constant(CONVERTERS[column.type])
    src.emit(0, f"def {function}(node, resolve):")
    for path in column.path.alternatives:
        ends_in_exists = isinstance(path.steps[-1], Exists)

        def leaf(var: str, indent: int, ends_in_exists: bool = ends_in_exists) -> None:
            src.emit(indent, "return True" if ends_in_exists else f"return {converter}({var})")

        _emit_steps(src, path.steps, "node", 1, leaf)
    # exists() answers false rather than nothing when its path is empty
    src.emit(1, "return False" if isinstance(column.path.alternatives[-1].steps[-1], Exists) else "return None")
    return function


def _emit_select_columns(src: _Source, select: Select) -> str:
    """One function per select that returns the tuple of its column values for a focus node."""
    functions = [_emit_column(src, column) for column in select.columns]
    name = src.name("_select")
    src.emit(0, f"def {name}(node, resolve):")
    src.emit(1, f"return ({''.join(f'{f}(node, resolve), ' for f in functions)})")
    return name


@dataclass
class _CompiledSelect:
    select: Select
    values: Callable[[Any, Resolver], tuple]
    nulls: tuple
    children: list[_CompiledSelect] = field(default_factory=list)
    width: int = 0


class CompiledView:
    """A ViewDefinition turned into a fast function from a resource to its rows."""

    def __init__(self, view: ViewDefinition) -> None:
        self.view = view
        self.name = view.name
        self.resource = view.resource
        self.columns = view.columns
        self.schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])
        src = _Source()
        names: dict[int, str] = {}
        for select in _walk_selects(view.select):
            names[id(select)] = _emit_select_columns(src, select)
        namespace: dict[str, Any] = dict(src.constants)
        exec(compile("\n".join(src.lines), f"<view {view.name}>", "exec"), namespace)
        self._root = self._link(view.select, namespace, names)

    def _link(self, select: Select, namespace: dict, names: dict[int, str]) -> _CompiledSelect:
        children = [self._link(child, namespace, names) for child in select.selects]
        width = len(select.columns) + sum(child.width for child in children)
        values = namespace[names[id(select)]]
        return _CompiledSelect(select, values, (None,) * width, children, width)

    def rows(self, resource: dict, resolve: Resolver) -> list[tuple]:
        """The table rows of one resource; raises on elements of the wrong type (see `explain`)."""
        return _select_rows(self._root, resource, resolve)

    def explain(self, resource: dict, resolve: Resolver) -> str:
        """Why `rows` fails for this resource: the element, its JSON path, and what was wrong."""
        for column in self.columns:
            for path in column.path.alternatives:
                try:
                    found = list(_collect(path.steps, resource, resolve, ""))
                except ElementTypeError as error:
                    return f"{self.resource}.{error.json_path}: {error}"
                if found and not isinstance(path.steps[-1], Exists):
                    json_path, value = found[0]
                    try:
                        CONVERTERS[column.type](value)
                    except ElementTypeError as error:
                        return f"{self.resource}.{json_path}: {error}"
        for select in _walk_selects(self.view.select):
            if select.for_each is not None:
                for path in select.for_each.alternatives:
                    try:
                        list(_collect(path.steps, resource, resolve, ""))
                    except ElementTypeError as error:
                        return f"{self.resource}.{error.json_path}: {error}"
        return f"{self.resource}: an element has an unexpected structure"


def _walk_selects(select: Select) -> Iterator[Select]:
    yield select
    for child in select.selects:
        yield from _walk_selects(child)


def _select_rows(compiled: _CompiledSelect, node: Any, resolve: Resolver) -> list[tuple]:
    select = compiled.select
    if select.for_each is None:
        foci = [node]
    else:
        foci = [value for _path, value in _collect_union(select.for_each, node, resolve)]
        if not foci:
            return [compiled.nulls] if select.or_null else []
    rows: list[tuple] = []
    for focus in foci:
        combos = [compiled.values(focus, resolve)]
        for child in compiled.children:
            child_rows = _select_rows(child, focus, resolve)
            combos = [combo + row for combo in combos for row in child_rows]
        rows.extend(combos)
    return rows


def _collect_union(union: Union, node: Any, resolve: Resolver) -> Iterator[tuple[str, Any]]:
    for path in union.alternatives:
        found = list(_collect(path.steps, node, resolve, ""))
        if found:
            yield from found
            return


def _collect(steps: tuple, node: Any, resolve: Resolver, json_path: str) -> Iterator[tuple[str, Any]]:
    """Every value a path yields from `node`, with its JSON path, checking structure on the way."""
    if not steps:
        yield json_path, node
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, First):
        for found in _collect(rest, node, resolve, json_path):
            yield found
            return
        return
    if isinstance(step, Exists):
        yield json_path, node
        return
    if not isinstance(node, dict):
        error = ElementTypeError(f"expected an object, got {type(node).__name__}")
        error.json_path = json_path or "(resource)"
        raise error
    if isinstance(step, Where):
        if node.get(step.element) == step.literal:
            yield from _collect(rest, node, resolve, json_path)
        return
    if isinstance(step, ReferenceKey):
        try:
            key = resolve(node, step.resource_type)
        except ElementTypeError as error:
            error.json_path = json_path
            raise
        if key is not None:
            yield from _collect(rest, key, resolve, json_path)
        return
    key = step.name if isinstance(step, Member) else "extension"
    value = node.get(key)
    if value is None:
        return
    child_path = f"{json_path}.{key}" if json_path else key
    items = value if type(value) is list else [value]
    for index, item in enumerate(items):
        item_path = f"{child_path}[{index}]" if type(value) is list else child_path
        if isinstance(step, Extension) and not (isinstance(item, dict) and item.get("url") == step.url):
            continue
        yield from _collect(rest, item, resolve, item_path)
