"""The dict compiler: a ViewDefinition compiled into Python that flattens a resource parsed from JSON.

This is what the row-by-row reader (site/ingest/rows.py) runs: it works on any parsed JSON. A view is
compiled once into Python source, because flattening runs for every one of tens of millions of
resources and an interpreter walking the path objects would be several times slower. The compiled
code navigates without checks; when it fails (an element of the wrong JSON type), `explain` asks the
checked walk (interpret.py) which element is wrong and why.

A view becomes one function `_rows(resource, resolve, suffix) -> list[tuple]`. Sibling and nested
selects turn into nested loops (their cross product), each column into inline navigation that stops
at the first value. FHIR JSON does not say whether an element repeats, so every member access tests
for a list; the code for the rest of the path is emitted once for each case, which keeps the common
single-valued case free of loops and temporary tuples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from datenraum.fhir.primitives import ARROW_TYPES, CONVERTERS
from datenraum.fhir.viewdef.evaluate import dedupe, runner, where_test
from datenraum.fhir.viewdef.fhirpath import (
    Evaluate,
    Extension,
    First,
    Member,
    ReferenceKey,
    Step,
    Union,
    Where,
)
from datenraum.fhir.viewdef.interpret import explain
from datenraum.fhir.viewdef.model import (
    CardinalityError,
    Column,
    Select,
    ViewDefinition,
    columns_of,
    ends_in_exists,
    is_row_index,
    standard_view_definitions,
    takes_first,
)
from datenraum.fhir.viewdef.steps import (
    PATIENT_ELEMENTS,
    CodeSource,
    Resolver,
    StepVisitor,
    plain_reference_test,
)

__all__ = ["CompiledView", "arrow_type", "patient_of", "standard_views", "uses_row_index"]


@functools.cache
def standard_views() -> dict[str, CompiledView]:
    """The views that define the site store's tables, compiled, keyed by table name."""
    return {view.name: CompiledView(view) for view in standard_view_definitions()}


def arrow_type(column: Column) -> pa.DataType:
    """The Arrow type of a column: a list of its type for a collection."""
    return pa.list_(ARROW_TYPES[column.type]) if column.collection else ARROW_TYPES[column.type]


def uses_row_index(view: ViewDefinition) -> bool:
    """Whether any path of the view reads %rowIndex (only then do the loops count their items)."""
    return "RowIndex()" in repr(view)


class CompiledView:
    """A ViewDefinition turned into a fast function from a resource to its rows.

    `strict` reads columns as the specification does: all values, more than one an error unless the
    column is a collection (CardinalityError). Without, a column takes the first value (the ingest's
    reading of our views, which say first() where they mean it).
    """

    def __init__(self, view: ViewDefinition, strict: bool = False) -> None:
        self.view = view
        self.name = view.name
        self.resource = view.resource
        self.columns = view.columns
        self.strict = strict
        self.schema = pa.schema([pa.field(c.name, arrow_type(c)) for c in self.columns])
        src = CodeSource({"_where_test": where_test, "_dedupe": dedupe, "CardinalityError": CardinalityError})
        src.emit(0, "def _rows(resource, resolve, suffix=()):")
        src.emit(1, "out = []")
        for expr in view.where:
            src.emit(1, f"if not _where_test({src.constant(runner(expr))}(resource, resource, 0, resolve)):")
            src.emit(2, "return out")
        context = _Context(strict, uses_row_index(view), view.name)
        collected = _emit_early_exits(src, context, view.select)
        _emit_selects(src, context, [(view.select, "resource", "0")], [], 1, collected)
        src.emit(1, "return out")
        self._rows: Callable[[Any, Resolver, tuple], list[tuple]] = src.function("_rows", f"view {view.name}")
        # The generated function itself answers `rows`: no wrapper call for each of millions of resources.
        self.rows = self._rows  # type: ignore[method-assign]

    def rows(self, resource: dict, resolve: Resolver, suffix: tuple = ()) -> list[tuple]:
        """The table rows of one resource, each followed by `suffix`.

        Raises on elements of the wrong type (ElementTypeError, or AttributeError where an object was
        expected); `explain` then says which element.
        """
        return self._rows(resource, resolve, suffix)

    def explain(self, resource: dict, resolve: Resolver) -> str:
        """Why `rows` fails for this resource: the element, its JSON path, and what was wrong."""
        return explain(self.view, resource, resolve)


def _compile_patient_of() -> Callable[[dict, Resolver], str | None]:
    """patient_of, generated so that the reference rule is spelt once (plain_reference_test), as in the
    shaped compiler's compile_patient."""
    src = CodeSource()
    src.emit(0, "def patient_of(resource, resolve):")
    first, *others = PATIENT_ELEMENTS
    src.emit(1, f"reference = resource.get({first!r})")
    for name in others:
        src.emit(1, "if reference is None:")
        src.emit(2, f"reference = resource.get({name!r})")
    src.emit(1, "if reference is None:")
    src.emit(2, "return None")
    src.emit(1, "text = reference.get('reference') if type(reference) is dict else None")
    src.emit(1, f"if type(text) is str and {plain_reference_test('text', 'key', 'Patient')}:")
    src.emit(2, "return key")
    src.emit(1, "return resolve(reference, 'Patient')")
    return src.function("patient_of", "patient of a resource")


patient_of = _compile_patient_of()
patient_of.__doc__ = """The id of the patient a parsed resource other than a Patient belongs to (a Patient is its own): the
first of PATIENT_ELEMENTS it has, a plain `Patient/id` read directly, any other reference resolved;
None without one. Raises what the resolver raises for a malformed reference."""


# --- code generation -------------------------------------------------------------------------------


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


def _first_of(converter: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The converter applied to a value, or to the first item of a list of them (None for an empty one)."""

    def first(value: Any) -> Any:
        if type(value) is list:
            return converter(value[0]) if value else None
        return converter(value)

    return first


# Where the generated code is: the variable holding the value, and the indent of the next line.
_At = tuple[str, int]


def _ends(rest: tuple[Step, ...]) -> bool:
    """Whether nothing follows but `first()`, which a fused leaf honours as it is (it takes the first
    value): `code.first()` reads as fast as `code` did before our views said first()."""
    return not rest or (len(rest) == 1 and isinstance(rest[0], First))


class _Navigate(StepVisitor[_At, None]):
    """Code navigating a path from a variable, handing each value reached to `leaf`.

    With `found` (a variable the leaf assigns), navigation stops at the first value: loops break as
    soon as it is set. Without, every value is visited.
    """

    def __init__(self, src: CodeSource, leaf: _Leaf, found: str | None, row_index: str = "0") -> None:
        self.src, self.leaf, self.found, self.row_index = src, leaf, found, row_index

    def end(self, at: _At) -> None:
        self.leaf.value(*at)

    def evaluate(self, step: Evaluate, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, indent) = self.src, at
        item = src.name("_v")
        expr = src.constant(runner(step.expr))
        src.emit(indent, f"for {item} in {expr}({var}, resource, {self.row_index}, resolve):")
        self.walk(rest, (item, indent + 1))
        self._break_if_found(indent + 1)

    def member(self, step: Member, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, indent) = self.src, at
        if _ends(rest) and self.leaf.member(var, step.name, indent):
            return
        raw, item = src.name("_r"), src.name("_v")
        src.emit(indent, f"{raw} = {var}.get({step.name!r})")
        src.emit(indent, f"if type({raw}) is list:")
        src.emit(indent + 1, f"for {item} in {raw}:")
        self.walk(rest, (item, indent + 2))
        self._break_if_found(indent + 2)
        src.emit(indent, f"elif {raw} is not None:")
        self.walk(rest, (raw, indent + 1))

    def extension(self, step: Extension, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, indent) = self.src, at
        raw, item = src.name("_r"), src.name("_v")
        src.emit(indent, f"{raw} = {var}.get('extension')")
        src.emit(indent, f"if {raw} is not None:")
        src.emit(indent + 1, f"for {item} in ({raw} if type({raw}) is list else ({raw},)):")
        src.emit(indent + 2, f"if {item}.get('url') == {step.url!r}:")
        self.walk(rest, (item, indent + 3))
        self._break_if_found(indent + 3)

    def where(self, step: Where, rest: tuple[Step, ...], at: _At) -> None:
        var, indent = at
        self.src.emit(indent, f"if {var}.get({step.element!r}) == {step.literal!r}:")
        self.walk(rest, (var, indent + 1))

    def reference_key(self, step: ReferenceKey, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, indent) = self.src, at
        if _ends(rest) and self.leaf.reference(var, step.resource_type, indent):
            return
        key = src.name("_ref")
        src.emit(indent, f"{key} = resolve({var}, {step.resource_type!r})")
        src.emit(indent, f"if {key} is not None:")
        self.walk(rest, (key, indent + 1))

    def _break_if_found(self, indent: int) -> None:
        if self.found:
            self.src.emit(indent, f"if {self.found} is not None:")
            self.src.emit(indent + 1, "break")


class _Context:
    """What the code of every select of a view depends on."""

    def __init__(self, strict: bool, row_index: bool, name: str) -> None:
        self.strict, self.row_index, self.name = strict, row_index, name


def _emit_column(
    src: CodeSource, context: _Context, column: Column, focus: str, indent: int, row_index: str
) -> str:
    """Code that sets a variable to the column's value at `focus`; returns the variable's name."""
    if context.strict or column.collection:
        return _emit_column_values(src, context, column, focus, indent, row_index)
    target = src.name("_c")
    src.emit(indent, f"{target} = None")
    for position, path in enumerate(column.path.alternatives):
        at = indent
        if position:
            src.emit(indent, f"if {target} is None:")
            at = indent + 1
        leaf = _ColumnExists(src, target) if ends_in_exists(path) else _ColumnValue(src, target, column.type)
        _Navigate(src, leaf, target, row_index).walk(path.steps, (focus, at))
    if ends_in_exists(column.path.alternatives[-1]):
        src.emit(indent, f"if {target} is None:")
        src.emit(indent + 1, f"{target} = False")  # exists() answers false, not nothing
    return target


def _emit_column_values(
    src: CodeSource, context: _Context, column: Column, focus: str, indent: int, row_index: str
) -> str:
    """Code for a column read as the specification reads it: every value of the union of its
    alternatives, converted; a list for a collection, else at most one value (CardinalityError)."""
    values, target = src.name("_l"), src.name("_c")
    src.emit(indent, f"{values} = []")
    for path in column.path.alternatives:
        if ends_in_exists(path):
            flag = src.name("_b")
            src.emit(indent, f"{flag} = None")
            _Navigate(src, _ColumnExists(src, flag), flag, row_index).walk(path.steps, (focus, indent))
            src.emit(indent, f"{values}.append({flag} is not None)")
        elif takes_first(path):
            found = src.name("_l")
            src.emit(indent, f"{found} = []")
            _Navigate(src, _Collect(src, found), None, row_index).walk(path.steps, (focus, indent))
            src.emit(indent, f"{values} += {found}[:1]")
        else:
            _Navigate(src, _Collect(src, values), None, row_index).walk(path.steps, (focus, indent))
    if len(column.path.alternatives) > 1:
        src.emit(indent, f"{values} = _dedupe({values})")
    convert = src.constant(CONVERTERS[column.type])
    if column.collection:
        src.emit(indent, f"{target} = [{convert}(_v) for _v in {values}]")
        return target
    message = f"view {context.name}, column {column.name}: more than one value (it is not a collection)"
    src.emit(indent, f"if len({values}) > 1:")
    src.emit(indent + 1, f"raise CardinalityError({message!r})")
    src.emit(indent, f"{target} = {convert}({values}[0]) if {values} else None")
    return target


def _emit_foci(src: CodeSource, union: Union, focus: str, indent: int, row_index: str) -> str:
    """Code that collects every value of a forEach path into a list; returns the list's name."""
    foci = src.name("_f")
    src.emit(indent, f"{foci} = []")
    for position, path in enumerate(union.alternatives):
        at = indent
        if position:
            src.emit(indent, f"if not {foci}:")
            at = indent + 1
        _Navigate(src, _Collect(src, foci), None, row_index).walk(path.steps, (focus, at))
        if takes_first(path):
            src.emit(at, f"del {foci}[1:]")
    return foci


class _Repeat(_Leaf):
    """Each value of a repeat path appended to the list, then the paths followed from it in turn."""

    def __init__(self, src: CodeSource, target: str, function: str) -> None:
        self.src, self.target, self.function = src, target, function

    def value(self, var: str, indent: int) -> None:
        self.src.emit(indent, f"{self.target}.append({var})")
        self.src.emit(indent, f"{self.function}({var})")


def _emit_repeat(src: CodeSource, paths: tuple[Union, ...], focus: str, indent: int, row_index: str) -> str:
    """Code that collects the values of a repeat: its paths from the focus, and from every value they
    reach, recursively (depth first, each value before those reached from it)."""
    foci, function, node = src.name("_f"), src.name("_repeat"), src.name("_n")
    src.emit(indent, f"{foci} = []")
    src.emit(indent, f"def {function}({node}):")
    for union in paths:
        for path in union.alternatives:
            leaf = _Repeat(src, foci, function)
            _Navigate(src, leaf, None, row_index).walk(path.steps, (node, indent + 1))
    src.emit(indent + 1, "return None")
    src.emit(indent, f"{function}({focus})")
    return foci


class _UnionAll:
    """A work item of _emit_selects: the rows of each branch in turn, each with the work after it."""

    def __init__(self, branches: tuple[Select, ...], focus: str, row_index: str) -> None:
        self.branches, self.focus, self.row_index = branches, focus, row_index


def _emit_selects(
    src: CodeSource,
    context: _Context,
    work: list,
    values: list[str],
    indent: int,
    collected: dict[int, str],
) -> None:
    """Code for the rows of the selects in `work` (each with its focus variable and row index),
    cross-multiplied; a `_UnionAll` adds the rows of each of its branches.

    `collected` names the foci lists already collected, by id of their select.
    """
    if not work:
        src.emit(indent, f"out.append(({''.join(f'{v}, ' for v in values)}) + suffix)")
        return
    item, rest = work[0], work[1:]
    if isinstance(item, _UnionAll):
        for branch in item.branches:
            _emit_selects(
                src, context, [(branch, item.focus, item.row_index), *rest], values, indent, collected
            )
        return
    select, focus, row_index = item

    def children(focus: str, row_index: str) -> list:
        inner: list = [(child, focus, row_index) for child in select.selects]
        if select.union_all:
            inner.append(_UnionAll(select.union_all, focus, row_index))
        return inner

    if select.for_each is None and not select.repeat:
        columns = [_emit_column(src, context, column, focus, indent, row_index) for column in select.columns]
        _emit_selects(src, context, children(focus, row_index) + rest, values + columns, indent, collected)
        return
    foci = collected.get(id(select))
    if foci is None and select.repeat:
        foci = _emit_repeat(src, select.repeat, focus, indent, row_index)
    elif foci is None:
        foci = _emit_foci(src, select.for_each, focus, indent, row_index)
    element = src.name("_x")
    if context.row_index:
        index = src.name("_i")
        src.emit(indent, f"for {index}, {element} in enumerate({foci}):")
    else:
        index = "0"
        src.emit(indent, f"for {element} in {foci}:")
    columns = [_emit_column(src, context, column, element, indent + 1, index) for column in select.columns]
    _emit_selects(src, context, children(element, index) + rest, values + columns, indent + 1, collected)
    if select.or_null:
        src.emit(indent, f"if not {foci}:")
        nulls = ["0" if is_row_index(column) else "None" for column in columns_of(select)]
        _emit_selects(src, context, rest, values + nulls, indent + 1, collected)


def _emit_early_exits(src: CodeSource, context: _Context, root: Select) -> dict[int, str]:
    """Collect the foci of the resource's plain forEach selects first: with none, it has no rows at all.

    Most Observations have no components: their observation_component rows cost one lookup this way.
    """
    collected = {}
    for select in root.selects:
        if select.for_each is not None and not select.or_null:
            collected[id(select)] = foci = _emit_foci(src, select.for_each, "resource", 1, "0")
            src.emit(1, f"if not {foci}:")
            src.emit(2, "return out")
    return collected
