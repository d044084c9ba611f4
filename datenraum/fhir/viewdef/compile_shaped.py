"""The shaped compiler: ViewDefinitions compiled for resources decoded into their shape (shapes.py).

The dict compiler (compile_json.py) works on any parsed JSON and so checks, at every step, whether an
element is a list, an object or something else. A resource decoded by msgspec into its shape has been
checked already: where FHIR says an element repeats it is a list, elsewhere an object or a value of
the right JSON type. The code generated here relies on that and does only the navigation, and it
appends plain tuples, which the strict reader transposes into columns for Arrow to convert one call
each (instead of Arrow taking rows apart). This is the ingest's hot path.

Semantics are the dict compiler's, step for step: a column takes the first value its path yields,
of a union the first alternative with a value, `forEach` a row per value, `forEachOrNull` a row of
nulls (null throughout its nested selects) when there are none. Whatever that compiler would have to
decide with more than the text (a date it refuses, a reference other than a plain `Type/id`) raises
`NeedsRowReader`, and the resource is left to the row-by-row reader. tests/test_views.py runs the
view semantics on both compilers; tests/test_strict_reader.py compares both readers on all the test
data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from datenraum.fhir.primitives import ARROW_TYPES, DAYS, MICROSECONDS, date_days, datetime_microseconds
from datenraum.fhir.viewdef.compile_json import CompiledView, uses_row_index
from datenraum.fhir.viewdef.evaluate import dedupe, runner, where_test
from datenraum.fhir.viewdef.fhirpath import Evaluate, Extension, First, Member, ReferenceKey, Step, Where
from datenraum.fhir.viewdef.model import (
    CardinalityError,
    Column,
    Select,
    ViewDefinitionError,
    ends_in_exists,
    is_row_index,
    takes_first,
)
from datenraum.fhir.viewdef.shapes import STRING_TYPES, Element, ResourceShape, expr_element
from datenraum.fhir.viewdef.steps import PATIENT_ELEMENTS, CodeSource, StepVisitor, plain_reference_test

__all__ = ["NeedsRowReader", "RowsFunction", "compile_for_shape", "compile_patient"]


class NeedsRowReader(Exception):
    """This resource needs what only the row-by-row reader does: resolving, or explaining a refusal."""


# Reads one decoded resource, appending its rows as tuples (values..., seq).
RowsFunction = Callable[[Any, Callable[[tuple], None], int], None]


def _resolve(reference: Any, resource_type: str) -> str | None:
    """What an evaluated getReferenceKey() cannot read as a plain `Type/id`: the row-by-row reader resolves it."""
    raise NeedsRowReader


def _dynamic(column_type: str) -> Callable[[Any], Any]:
    """The conversion of a computed value (of an Evaluate step, whose type the shape does not know) to
    what the strict reader hands to Arrow; NeedsRowReader where the row-by-row reader must decide."""
    string_typed = ARROW_TYPES[column_type] == pa.string()

    def convert(value: Any) -> Any:
        kind = type(value)
        if string_typed and kind is str:
            return value
        if column_type == "boolean" and kind is bool:
            return value
        if column_type == "integer" and kind is int:
            return value
        if column_type == "decimal" and kind in (int, float):
            return float(value)
        if column_type == "date" and kind is str:
            return date_days(value)
        if column_type in ("dateTime", "instant") and kind is str:
            return datetime_microseconds(value)
        raise NeedsRowReader

    return convert


def _source() -> CodeSource:
    return CodeSource(
        {
            "_resolve": _resolve,
            "_where_test": where_test,
            "_dedupe": dedupe,
            "CardinalityError": CardinalityError,
            "_days": DAYS.get,
            "_microseconds": MICROSECONDS.get,
            "date_days": date_days,
            "datetime_microseconds": datetime_microseconds,
            "NeedsRowReader": NeedsRowReader,
        }
    )


def _emit_reference(
    src: CodeSource, var: str, element: Element, resource_type: str, target: str, indent: int, where: str
) -> None:
    """Code setting `target` to the id a decoded Reference in `var` names as a plain `Type/id`, and raising
    NeedsRowReader for any other reference it holds (literal or logical)."""
    if element.type != "Reference":
        raise ViewDefinitionError(f"{where}: getReferenceKey() needs a Reference, not {element.type}")
    text, key = src.name("_t"), src.name("_k")
    src.emit(indent, f"{text} = {var}.{element.field('reference')}")
    src.emit(indent, f"if {text} is not None and {plain_reference_test(text, key, resource_type)}:")
    src.emit(indent + 1, f"{target} = {key}")
    src.emit(indent, f"elif {text} is not None or {var}.{element.field('identifier')} is not None:")
    src.emit(indent + 1, "raise NeedsRowReader")


# --- what happens where a path ends -----------------------------------------------------------------


class _Leaf:
    """Where a path yields a value `var` of shape `element`: `value`, or `reference` for a path that ends
    in getReferenceKey(). `member` may fuse the last step, a single-valued member read as the attribute
    `attribute`, with the leaf, and returns False where it does not."""

    def __init__(self, src: CodeSource, target: str, where: str) -> None:
        self.src, self.target, self.where = src, target, where
        self.assigned: set[tuple[int, int]] = set()  # (line, indent) where the leaf assigns `target` outright

    def value(self, var: str, element: Element, indent: int) -> None:
        raise NotImplementedError

    def member(self, attribute: str, element: Element, indent: int) -> bool:
        return False

    def reference(self, var: str, element: Element, resource_type: str, indent: int) -> None:
        raise NotImplementedError

    def _assign(self, indent: int, value: str) -> None:
        self.assigned.add((len(self.src.lines), indent))
        self.src.emit(indent, f"{self.target} = {value}")


class _Collect(_Leaf):
    """Every value of a forEach path appended to the list `target`; `elements` their shapes."""

    def __init__(self, src: CodeSource, target: str, where: str) -> None:
        super().__init__(src, target, where)
        self.elements: list[Element] = []

    def value(self, var: str, element: Element, indent: int) -> None:
        if element is None or element.primitive:
            raise ViewDefinitionError(f"{self.where}: forEach must reach elements, not values")
        self.elements.append(element)
        self.src.emit(indent, f"{self.target}.append({var})")

    def reference(self, var: str, element: Element, resource_type: str, indent: int) -> None:
        raise ViewDefinitionError(f"{self.where}: forEach must reach elements, not values")


class _ColumnExists(_Leaf):
    """True where a path ending in exists() has a value."""

    def value(self, var: str, element: Element, indent: int) -> None:
        self._assign(indent, "True")


class _ColumnValue(_Leaf):
    """The first value of a column's path, converted to its type, in `target`."""

    def __init__(self, src: CodeSource, target: str, where: str, column_type: str) -> None:
        super().__init__(src, target, where)
        self.column_type = column_type

    def value(self, var: str, element: Element, indent: int) -> None:
        converted = self._convert(var, element)
        if isinstance(converted, tuple):  # a cached conversion: a lookup, a call when it misses
            lookup, convert = converted
            self.src.emit(indent, f"{self.target} = {lookup}({var})")
            self.src.emit(indent, f"if {self.target} is None:")
            self.src.emit(indent + 1, f"{self.target} = {convert}({var})")
        else:
            self._assign(indent, converted)

    def member(self, attribute: str, element: Element, indent: int) -> bool:
        if element is None:
            return False
        # A value taken as it is: `target = resource.f3` instead of a test for None around it (target
        # is None before), the most common kind of column.
        if self._convert("_", element) != "_":
            return False
        self._assign(indent, attribute)
        return True

    def reference(self, var: str, element: Element, resource_type: str, indent: int) -> None:
        _emit_reference(self.src, var, element, resource_type, self.target, indent, self.where)

    def _convert(self, var: str, element: Element) -> str | tuple[str, str]:
        """The expression converting `var` to the column's type, or (cache lookup, converter) for dates
        and times, which are kept as the integers Arrow stores."""
        if element is None:
            return f"{self.src.constant(_dynamic(self.column_type))}({var})"
        column_type, element_type, where = self.column_type, element.type, self.where
        if not element.primitive:
            raise ViewDefinitionError(f"{where}: the path ends at a {element_type}, not a value")
        if ARROW_TYPES[column_type] == pa.string() and element_type in STRING_TYPES:
            return var
        if column_type == "decimal" and element_type == "decimal":
            return var
        if column_type == "decimal" and element_type == "integer":
            return f"float({var})"
        if column_type == element_type and column_type in ("integer", "boolean"):
            return var
        if column_type == "date" and element_type in STRING_TYPES:
            return "_days", "date_days"
        if column_type in ("dateTime", "instant") and element_type in STRING_TYPES:
            return "_microseconds", "datetime_microseconds"
        raise ViewDefinitionError(f"{where}: a {column_type} column cannot hold a FHIR {element_type}")


class _CollectValues(_ColumnValue):
    """Every value of a column's path, converted, appended to the list `target` (strict reading)."""

    def value(self, var: str, element: Element, indent: int) -> None:
        converted = self._convert(var, element)
        if isinstance(converted, tuple):
            lookup, convert = converted
            value = self.src.name("_t")
            self.src.emit(indent, f"{value} = {lookup}({var})")
            self.src.emit(indent, f"if {value} is None:")
            self.src.emit(indent + 1, f"{value} = {convert}({var})")
            converted = value
        self.src.emit(indent, f"{self.target}.append({converted})")

    def member(self, attribute: str, element: Element, indent: int) -> bool:
        return False

    def reference(self, var: str, element: Element, resource_type: str, indent: int) -> None:
        key = self.src.name("_r")
        self.src.emit(indent, f"{key} = None")
        _emit_reference(self.src, var, element, resource_type, key, indent, self.where)
        self.src.emit(indent, f"if {key} is not None:")
        self.src.emit(indent + 1, f"{self.target}.append({key})")


# --- paths --------------------------------------------------------------------------------------------

# Where the generated code is: the variable holding the value, its shape, and the indent of the next line.
_At = tuple[str, Element, int]


class _Navigate(StepVisitor[_At, None]):
    """Code navigating a path from a decoded struct, handing each value reached to `leaf`; with `found`
    (the variable the leaf assigns), loops break at the first value."""

    def __init__(self, src: CodeSource, leaf: _Leaf, found: str | None, row_index: str = "0") -> None:
        self.src, self.leaf, self.found, self.row_index = src, leaf, found, row_index

    def end(self, at: _At) -> None:
        self.leaf.value(*at)

    def evaluate(self, step: Evaluate, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, element, indent) = self.src, at
        if rest:
            raise ViewDefinitionError(f"{self.leaf.where}: a path continues after an evaluated expression")
        reached = expr_element(step.expr, element, self.leaf.where)
        item = src.name("_v")
        expr = src.constant(runner(step.expr))
        src.emit(indent, f"for {item} in {expr}({var}, resource, {self.row_index}, _resolve):")
        self.leaf.value(item, reached, indent + 1)
        self._break_if_found(indent + 1)

    def member(self, step: Member, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, element, indent) = self.src, at
        child = element.child(step.name, self.leaf.where)
        attribute = f"{var}.{element.field(step.name)}"
        last = all(isinstance(later, First) for later in rest)
        if last and not child.repeats and self.leaf.member(attribute, child, indent):
            return
        value = src.name("_v")
        src.emit(indent, f"{value} = {attribute}")
        src.emit(indent, f"if {value} is not None:")
        if not child.repeats:
            self.walk(rest, (value, child, indent + 1))
            return
        item = src.name("_i")
        src.emit(indent + 1, f"for {item} in {value}:")
        self.walk(rest, (item, child, indent + 2))
        self._break_if_found(indent + 2)

    def extension(self, step: Extension, rest: tuple[Step, ...], at: _At) -> None:
        src, (var, element, indent) = self.src, at
        extensions = element.child("extension", self.leaf.where)
        items, item = src.name("_e"), src.name("_x")
        src.emit(indent, f"{items} = {var}.{element.field('extension')}")
        src.emit(indent, f"if {items} is not None:")
        src.emit(indent + 1, f"for {item} in {items}:")
        src.emit(indent + 2, f"if {item}.{extensions.field('url')} == {step.url!r}:")
        self.walk(rest, (item, extensions, indent + 3))
        self._break_if_found(indent + 2)

    def where(self, step: Where, rest: tuple[Step, ...], at: _At) -> None:
        var, element, indent = at
        if element.child(step.element, self.leaf.where).repeats:
            raise ViewDefinitionError(f"{self.leaf.where}: where() on a repeating element")
        self.src.emit(indent, f"if {var}.{element.field(step.element)} == {step.literal!r}:")
        self.walk(rest, (var, element, indent + 1))

    def reference_key(self, step: ReferenceKey, rest: tuple[Step, ...], at: _At) -> None:
        if any(not isinstance(later, First) for later in rest):
            raise ViewDefinitionError(f"{self.leaf.where}: getReferenceKey() must end a path")
        var, element, indent = at
        self.leaf.reference(var, element, step.resource_type, indent)

    def _break_if_found(self, indent: int) -> None:
        if self.found:
            self.src.emit(indent, f"if {self.found} is not None:")
            self.src.emit(indent + 1, "break")


# --- columns and selects --------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, view: CompiledView, shape: ResourceShape) -> None:
        self.view = view
        self.shape = shape
        self.src = _source()
        self.strict = view.strict
        self.row_index = uses_row_index(view.view)
        self.collected: dict[int, tuple[str, Element]] = {}  # foci collected ahead, by id of their select

    def wheres(self) -> None:
        """A view's where clauses: a resource they do not keep has no rows."""
        for expr in self.view.view.where:
            expr_element(expr, self.shape.root, self.where())
            test = f"{self.src.constant(runner(expr))}(resource, resource, 0, _resolve)"
            self.src.emit(1, f"if not _where_test({test}):")
            self.src.emit(2, "return")

    def early_exits(self) -> None:
        """Collect the foci of the root's plain forEach selects first: without any, there are no rows,
        and the row-by-row reader does not read the other columns either (most Observations have no
        components)."""
        for select in self.view.view.select.selects:
            if select.for_each is not None and not select.or_null:
                foci, element = self.foci(select, "resource", self.shape.root, False, 1, "0")
                self.collected[id(select)] = foci, element
                self.src.emit(1, f"if not {foci}:")
                self.src.emit(2, "return")

    def where(self, column: Column | None = None) -> str:
        return f"view {self.view.name}" + (f", column {column.name}" if column else "")

    def column(
        self, column: Column, focus: str, element: Element, nullable: bool, indent: int, row_index: str
    ) -> str:
        """Code setting a variable to the column's value at `focus`; its name."""
        if is_row_index(column):
            return row_index  # 0 in a row of nulls too
        if self.strict or column.collection:
            return self.column_values(column, focus, element, nullable, indent, row_index)
        src, where = self.src, self.where(column)
        target = src.name("_c")
        default = len(src.lines)
        src.emit(indent, f"{target} = None")
        if nullable:
            src.emit(indent, f"if {focus} is not None:")
            indent += 1
        alternatives = column.path.alternatives
        for position, path in enumerate(alternatives):
            at = indent
            if position:
                src.emit(indent, f"if {target} is None:")
                at = indent + 1
            if ends_in_exists(path):
                leaf: _Leaf = _ColumnExists(src, target, where)
            else:
                leaf = _ColumnValue(src, target, where, column.type)
            _Navigate(src, leaf, target, row_index).walk(path.steps, (focus, element, at))
            if not position and not nullable and (default + 1, indent) in leaf.assigned:
                del src.lines[default]  # the first line assigns the column outright: no default needed
        if ends_in_exists(alternatives[-1]):
            src.emit(indent, f"if {target} is None:")
            src.emit(indent + 1, f"{target} = False")  # exists() answers false, not nothing
        return target

    def column_values(
        self, column: Column, focus: str, element: Element, nullable: bool, indent: int, row_index: str
    ) -> str:
        """A column read as the specification reads it (compile_json._emit_column_values)."""
        src, where = self.src, self.where(column)
        values, target = src.name("_l"), src.name("_c")
        src.emit(indent, f"{values} = []")
        if nullable:
            src.emit(indent, f"if {focus} is not None:")
            indent += 1
        for path in column.path.alternatives:
            at = (focus, element, indent)
            if ends_in_exists(path):
                flag = src.name("_b")
                src.emit(indent, f"{flag} = None")
                _Navigate(src, _ColumnExists(src, flag, where), flag, row_index).walk(path.steps, at)
                src.emit(indent, f"{values}.append({flag} is not None)")
            elif takes_first(path):
                found = src.name("_l")
                src.emit(indent, f"{found} = []")
                leaf = _CollectValues(src, found, where, column.type)
                _Navigate(src, leaf, None, row_index).walk(path.steps, at)
                src.emit(indent, f"{values} += {found}[:1]")
            else:
                leaf = _CollectValues(src, values, where, column.type)
                _Navigate(src, leaf, None, row_index).walk(path.steps, at)
        if nullable:
            indent -= 1
        if len(column.path.alternatives) > 1:
            src.emit(indent, f"{values} = _dedupe({values})")
        if column.collection:
            src.emit(indent, f"{target} = {values}")
            return target
        message = f"{where}: more than one value (it is not a collection)"
        src.emit(indent, f"if len({values}) > 1:")
        src.emit(indent + 1, f"raise CardinalityError({message!r})")
        src.emit(indent, f"{target} = {values}[0] if {values} else None")
        return target

    def foci(
        self, select: Select, focus: str, element: Element, nullable: bool, indent: int, row_index: str
    ) -> tuple[str, Element]:
        """Code collecting the values of a forEach path into a list; its name and their shape."""
        src, where = self.src, self.where()
        if select.repeat:
            raise ViewDefinitionError(f"{where}: repeat would need a recursive shape")
        foci = src.name("_f")
        src.emit(indent, f"{foci} = []")
        if nullable:
            src.emit(indent, f"if {focus} is not None:")
            indent += 1
        collect = _Collect(src, foci, where)
        for position, path in enumerate(select.for_each.alternatives):
            at = indent
            if position:
                src.emit(indent, f"if not {foci}:")
                at = indent + 1
            _Navigate(src, collect, None, row_index).walk(path.steps, (focus, element, at))
            if takes_first(path):
                src.emit(at, f"del {foci}[1:]")
        reached = {reached.type for reached in collect.elements}
        if len(reached) != 1:
            raise ViewDefinitionError(f"{where}: forEach reaches {sorted(reached) or 'nothing'}")
        return foci, collect.elements[0]

    def selects(self, work: list, values: list[str], indent: int) -> None:
        """Code for the rows of the selects in `work` (with their focus and row index), cross-multiplied,
        as the row-by-row reader makes them; `values` are the column variables so far. A work item
        `("union", branches, ...)` adds the rows of each branch in turn."""
        src = self.src
        if not work:
            src.emit(indent, f"out(({''.join(f'{value}, ' for value in values)}seq))")
            return
        item, rest = work[0], work[1:]
        if item[0] == "union":
            _, branches, focus, element, nullable, row_index = item
            for branch in branches:
                self.selects([(branch, focus, element, nullable, row_index), *rest], values, indent)
            return
        select, focus, element, nullable, row_index = item
        if select.for_each is not None or select.repeat:
            if id(select) in self.collected:
                foci, item_element = self.collected[id(select)]
            else:
                foci, item_element = self.foci(select, focus, element, nullable, indent, row_index)
            value = src.name("_x")
            if select.or_null:
                items = f"({foci} or (None,))"
            elif nullable:  # under a row of nulls, a row of nulls
                items = f"({foci} if {focus} is not None else (None,))"
            else:
                items = foci
            if self.row_index:
                row_index = src.name("_n")
                src.emit(indent, f"for {row_index}, {value} in enumerate({items}):")
            else:
                src.emit(indent, f"for {value} in {items}:")
            focus, element, nullable, indent = value, item_element, nullable or select.or_null, indent + 1
        columns = [
            self.column(column, focus, element, nullable, indent, row_index) for column in select.columns
        ]
        children: list = [(child, focus, element, nullable, row_index) for child in select.selects]
        if select.union_all:
            children.append(("union", select.union_all, focus, element, nullable, row_index))
        self.selects(children + rest, values + columns, indent)


def compile_for_shape(view: CompiledView, shape: ResourceShape) -> RowsFunction:
    """A function appending the view's rows of one decoded resource, as tuples (its columns, then `_seq`):
    called with the resource, the `append` of a list of rows, and the resource's `_seq`."""
    compiler = _Compiler(view, shape)
    compiler.src.emit(0, "def _rows(resource, out, seq):")
    compiler.wheres()
    compiler.early_exits()
    compiler.selects([(view.view.select, "resource", shape.root, False, "0")], [], 1)
    return compiler.src.function("_rows", f"shaped view {view.name}")


def compile_patient(shape: ResourceShape) -> Callable[[Any], str | None]:
    """A function naming the patient a decoded resource belongs to: a Patient itself, else the one the
    first of PATIENT_ELEMENTS it has names; raises NeedsRowReader for references to resolve."""
    if shape.resource_type == "Patient":
        return lambda resource: resource.f1
    src, root = _source(), shape.root
    src.emit(0, "def _patient(resource):")
    src.emit(1, "_p = None")
    for position, name in enumerate(PATIENT_ELEMENTS):
        element = root.children[name]
        src.emit(1, f"{'if' if not position else 'elif'} resource.{root.field(name)} is not None:")
        _emit_reference(src, f"resource.{root.field(name)}", element, "Patient", "_p", 2, name)
    src.emit(1, "return _p")
    return src.function("_patient", f"patient of {shape.resource_type}")
