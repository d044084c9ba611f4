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
from dataclasses import dataclass
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
    "CodeSource",
    "Column",
    "CompiledView",
    "Resolver",
    "Select",
    "ViewDefinition",
    "ViewDefinitionError",
    "load_view",
    "plain_reference_test",
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
    selects = tuple(
        _parse_select(child, f"{where}.select[{i}]") for i, child in enumerate(raw.get("select", []))
    )
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
    root = Select(
        selects=tuple(_parse_select(s, f"{source}: select[{i}]") for i, s in enumerate(raw["select"]))
    )
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
#
# A view becomes one function `_rows(resource, resolve, suffix) -> list[tuple]`. Sibling and nested
# selects turn into nested loops (their cross product), each column into inline navigation that stops
# at the first value. FHIR JSON does not say whether an element repeats, so every member access tests
# for a list; the code for the rest of the path is emitted once for each case, which keeps the common
# single-valued case free of loops and temporary tuples.


class CodeSource:
    """Python source being generated: unique names, constants the code refers to, lines to compile."""

    def __init__(self, constants: dict[str, Any] | None = None) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = dict(constants or {})
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

    def function(self, name: str, label: str, lines: list[str] | None = None) -> Callable:
        """Compile the source (or `lines` made of it) and return the function `name` it defines."""
        namespace = dict(self.constants)
        try:
            exec(compile("\n".join(self.lines if lines is None else lines), f"<{label}>", "exec"), namespace)
        except SyntaxError as error:  # nesting too deep for Python
            raise ViewDefinitionError(f"{label} cannot be compiled: {error.msg}") from None
        return namespace[name]


class _Leaf:
    """What happens where a path ends: by default `value`; `member` and `reference` may fuse the last
    step with it for the common single-valued case, and return False where they do not."""

    def value(self, var: str, indent: int) -> None:
        raise NotImplementedError

    def member(self, var: str, name: str, indent: int) -> bool:
        return False

    def reference(self, var: str, resource_type: str, indent: int) -> bool:
        return False


class _Collect(_Leaf):
    """Every value of a forEach path appended to a list."""

    def __init__(self, src: CodeSource, target: str) -> None:
        self.src, self.target = src, target

    def value(self, var: str, indent: int) -> None:
        self.src.emit(indent, f"{self.target}.append({var})")


class _ColumnValue(_Leaf):
    """The first value of a column's path, converted to its type, in `target`."""

    def __init__(self, src: CodeSource, target: str, column_type: str) -> None:
        self.src, self.target = src, target
        self.converter = src.constant(CONVERTERS[column_type])
        self.first_converter = src.constant(_first_of(CONVERTERS[column_type]))
        self.string_typed = ARROW_TYPES[column_type] == pa.string()

    def value(self, var: str, indent: int) -> None:
        if self.string_typed:
            self.src.emit(indent, f"{self.target} = {var} if type({var}) is str else {self.converter}({var})")
        else:
            self.src.emit(indent, f"{self.target} = {self.converter}({var})")

    def member(self, var: str, name: str, indent: int) -> bool:
        target = self.target
        self.src.emit(indent, f"{target} = {var}.get({name!r})")
        check = f" and type({target}) is not str" if self.string_typed else ""
        self.src.emit(indent, f"if {target} is not None{check}:")
        self.src.emit(indent + 1, f"{target} = {self.first_converter}({target})")
        return True

    def reference(self, var: str, resource_type: str, indent: int) -> bool:
        if not self.string_typed:
            return False
        # A relative reference `Type/id` means the same to every resolver: read it here, leave the rest to it.
        src, text, key = self.src, self.src.name("_s"), self.src.name("_t")
        src.emit(indent, f"{text} = {var}.get('reference') if type({var}) is dict else None")
        src.emit(indent, f"if type({text}) is str and {plain_reference_test(text, key, resource_type)}:")
        src.emit(indent + 1, f"{self.target} = {key}")
        src.emit(indent, "else:")
        src.emit(indent + 1, f"{self.target} = resolve({var}, {resource_type!r})")  # an id, or None
        return True


class _ColumnExists(_Leaf):
    def __init__(self, src: CodeSource, target: str) -> None:
        self.src, self.target = src, target

    def value(self, var: str, indent: int) -> None:
        self.src.emit(indent, f"{self.target} = True")


def plain_reference_test(text: str, key: str, resource_type: str) -> str:
    """Python code testing that the str in `text` is a plain relative reference `Type/id` (which means
    the same to every resolver), binding the id to `key`."""
    prefix = f"{resource_type}/"
    return (
        f"{text}.startswith({prefix!r}) and ({key} := {text}[{len(prefix)}:]) "
        f"and '/' not in {key} and '?' not in {key}"
    )


def _first_of(converter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The converter applied to a value, or to the first item of a list of them (None for an empty one)."""

    def first(value: Any) -> Any:
        if type(value) is list:
            return converter(value[0]) if value else None
        return converter(value)

    return first


def _emit_steps(src: CodeSource, steps: tuple, var: str, indent: int, leaf: _Leaf, found: str | None) -> None:
    """Navigate `steps` from `var`, handing each value reached to `leaf`.

    With `found` (a variable the leaf assigns), navigation stops at the first value: loops break as
    soon as it is set. Without, every value is visited.
    """
    if not steps:
        leaf.value(var, indent)
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, Member):
        if not rest and leaf.member(var, step.name, indent):
            return
        raw, item = src.name("_r"), src.name("_v")
        src.emit(indent, f"{raw} = {var}.get({step.name!r})")
        src.emit(indent, f"if type({raw}) is list:")
        src.emit(indent + 1, f"for {item} in {raw}:")
        _emit_steps(src, rest, item, indent + 2, leaf, found)
        if found:
            src.emit(indent + 2, f"if {found} is not None:")
            src.emit(indent + 3, "break")
        src.emit(indent, f"elif {raw} is not None:")
        _emit_steps(src, rest, raw, indent + 1, leaf, found)
    elif isinstance(step, Extension):
        raw, item = src.name("_r"), src.name("_v")
        src.emit(indent, f"{raw} = {var}.get('extension')")
        src.emit(indent, f"if {raw} is not None:")
        src.emit(indent + 1, f"for {item} in ({raw} if type({raw}) is list else ({raw},)):")
        src.emit(indent + 2, f"if {item}.get('url') == {step.url!r}:")
        _emit_steps(src, rest, item, indent + 3, leaf, found)
        if found:
            src.emit(indent + 3, f"if {found} is not None:")
            src.emit(indent + 4, "break")
    elif isinstance(step, Where):
        src.emit(indent, f"if {var}.get({step.element!r}) == {step.literal!r}:")
        _emit_steps(src, rest, var, indent + 1, leaf, found)
    elif isinstance(step, ReferenceKey):
        if not rest and leaf.reference(var, step.resource_type, indent):
            return
        key = src.name("_ref")
        src.emit(indent, f"{key} = resolve({var}, {step.resource_type!r})")
        src.emit(indent, f"if {key} is not None:")
        _emit_steps(src, rest, key, indent + 1, leaf, found)
    elif isinstance(step, First):
        _emit_steps(src, rest, var, indent, leaf, found)  # a column takes the first value anyway
    elif isinstance(step, Exists):
        leaf.value(var, indent)
    else:  # pragma: no cover - the parser admits no other steps
        raise ViewDefinitionError(f"cannot compile step {step!r}")


def _emit_column(src: CodeSource, column: Column, focus: str, indent: int) -> str:
    """Code that sets a variable to the column's value at `focus`; returns the variable's name."""
    target = src.name("_c")
    src.emit(indent, f"{target} = None")
    for position, path in enumerate(column.path.alternatives):
        at = indent
        if position:
            src.emit(indent, f"if {target} is None:")
            at = indent + 1
        leaf = _ColumnExists(src, target) if _ends_in_exists(path) else _ColumnValue(src, target, column.type)
        _emit_steps(src, path.steps, focus, at, leaf, target)
    if _ends_in_exists(column.path.alternatives[-1]):
        src.emit(indent, f"if {target} is None:")
        src.emit(indent + 1, f"{target} = False")  # exists() answers false, not nothing
    return target


def _emit_foci(src: CodeSource, union: Union, focus: str, indent: int) -> str:
    """Code that collects every value of a forEach path into a list; returns the list's name."""
    foci = src.name("_f")
    src.emit(indent, f"{foci} = []")
    for position, path in enumerate(union.alternatives):
        at = indent
        if position:
            src.emit(indent, f"if not {foci}:")
            at = indent + 1
        _emit_steps(src, path.steps, focus, at, _Collect(src, foci), None)
        if any(isinstance(step, First) for step in path.steps):
            src.emit(at, f"del {foci}[1:]")
    return foci


def _emit_selects(
    src: CodeSource, work: list[tuple[Select, str]], values: list[str], indent: int, collected: dict[int, str]
) -> None:
    """Code for the rows of the selects in `work` (each with its focus variable), cross-multiplied.

    `collected` names the foci lists already collected, by id of their select.
    """
    if not work:
        src.emit(indent, f"out.append(({''.join(f'{v}, ' for v in values)}) + suffix)")
        return
    (select, focus), rest = work[0], work[1:]
    if select.for_each is None:
        columns = [_emit_column(src, column, focus, indent) for column in select.columns]
        _emit_selects(
            src, [(child, focus) for child in select.selects] + rest, values + columns, indent, collected
        )
        return
    foci = collected.get(id(select)) or _emit_foci(src, select.for_each, focus, indent)
    item = src.name("_x")
    src.emit(indent, f"for {item} in {foci}:")
    columns = [_emit_column(src, column, item, indent + 1) for column in select.columns]
    _emit_selects(
        src, [(child, item) for child in select.selects] + rest, values + columns, indent + 1, collected
    )
    if select.or_null:
        src.emit(indent, f"if not {foci}:")
        nulls = ["None"] * sum(1 for _column in _columns(select))
        _emit_selects(src, rest, values + nulls, indent + 1, collected)


def _emit_early_exits(src: CodeSource, root: Select) -> dict[int, str]:
    """Collect the foci of the resource's plain forEach selects first: with none, it has no rows at all.

    Most Observations have no components: their observation_component rows cost one lookup this way.
    """
    collected = {}
    for select in root.selects:
        if select.for_each is not None and not select.or_null:
            collected[id(select)] = foci = _emit_foci(src, select.for_each, "resource", 1)
            src.emit(1, f"if not {foci}:")
            src.emit(2, "return out")
    return collected


def _ends_in_exists(path: Path) -> bool:
    return isinstance(path.steps[-1], Exists)


class CompiledView:
    """A ViewDefinition turned into a fast function from a resource to its rows."""

    def __init__(self, view: ViewDefinition) -> None:
        self.view = view
        self.name = view.name
        self.resource = view.resource
        self.columns = view.columns
        self.schema = pa.schema([pa.field(c.name, ARROW_TYPES[c.type]) for c in self.columns])
        src = CodeSource()
        src.emit(0, "def _rows(resource, resolve, suffix):")
        src.emit(1, "out = []")
        _emit_selects(src, [(view.select, "resource")], [], 1, _emit_early_exits(src, view.select))
        src.emit(1, "return out")
        self._rows: Callable[[Any, Resolver, tuple], list[tuple]] = src.function("_rows", f"view {view.name}")

    def rows(self, resource: dict, resolve: Resolver, suffix: tuple = ()) -> list[tuple]:
        """The table rows of one resource, each followed by `suffix`.

        Raises on elements of the wrong type (ElementTypeError, or AttributeError where an object was
        expected); `explain` then says which element.
        """
        return self._rows(resource, resolve, suffix)

    def explain(self, resource: dict, resolve: Resolver) -> str:
        """Why `rows` fails for this resource: the element, its JSON path, and what was wrong."""
        try:
            _check_select(self.view.select, resource, "", resolve)
        except ElementTypeError as error:
            return f"{self.resource}.{error.json_path}: {error}"
        return f"{self.resource}: an element has an unexpected structure"


# --- the slow path: walking a view with checks, to explain a failure -------------------------------


def _check_select(select: Select, node: Any, json_path: str, resolve: Resolver) -> None:
    """Raise ElementTypeError, with its json_path set, at the first element `rows` cannot read."""
    if select.for_each is None:
        foci = [(json_path, node)]
    else:
        foci = _collect_union(select.for_each, node, resolve, json_path)
    for focus_path, focus in foci:
        for column in select.columns:
            for path in column.path.alternatives:
                found = next(_collect(path.steps, focus, resolve, focus_path), None)
                if found is None:
                    continue
                if not _ends_in_exists(path):
                    try:
                        CONVERTERS[column.type](found[1])
                    except ElementTypeError as error:
                        error.json_path = found[0]
                        raise
                break
        for child in select.selects:
            _check_select(child, focus, focus_path, resolve)


def _collect_union(union: Union, node: Any, resolve: Resolver, json_path: str) -> list[tuple[str, Any]]:
    for path in union.alternatives:
        found = list(_collect(path.steps, node, resolve, json_path))
        if found:
            return found[:1] if any(isinstance(step, First) for step in path.steps) else found
    return []


def _collect(steps: tuple, node: Any, resolve: Resolver, json_path: str) -> Iterator[tuple[str, Any]]:
    """Every value a path yields from `node`, with its JSON path, checking structure on the way."""
    if not steps:
        yield json_path, node
        return
    step, rest = steps[0], steps[1:]
    if isinstance(step, First):
        yield from _collect(rest, node, resolve, json_path)
        return
    if isinstance(step, Exists):
        yield json_path, node
        return
    if not isinstance(node, dict):
        error = ElementTypeError(f"expected an object, got {_json_kind(node)}")
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
        if isinstance(step, Extension):
            if not isinstance(item, dict):
                error = ElementTypeError(f"expected an Extension object, got {_json_kind(item)}")
                error.json_path = item_path
                raise error
            if item.get("url") != step.url:
                continue
        yield from _collect(rest, item, resolve, item_path)


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
    return kinds.get(type(value), type(value).__name__)
