"""ViewDefinitions compiled for resources decoded into their shape (fhir/shapes.py), column by column.

The row-by-row reader (viewdef.CompiledView) works on any parsed JSON and so checks, at every step,
whether an element is a list, an object or something else. A resource decoded by msgspec into its
shape has been checked already: where FHIR says an element repeats it is a list, elsewhere an object or
a value of the right JSON type. The code generated here relies on that and does only the navigation,
and it appends plain tuples, which the reader transposes into columns for Arrow to convert one call
each (instead of Arrow taking rows apart).

Semantics are the row-by-row reader's, step for step: a column takes the first value its path yields,
of a union the first alternative with a value, `forEach` a row per value, `forEachOrNull` a row of
nulls (null throughout its nested selects) when there are none. Whatever that reader would have to
decide with more than the text (a date it refuses, a reference other than a plain `Type/id`) raises
`NeedsRowReader`, and the resource is left to it. tests/test_strict_reader.py compares both on all the
test data.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from datenraum.fhir.fhirpath import Exists, Extension, First, Member, ReferenceKey, Where
from datenraum.fhir.primitives import ARROW_TYPES, DAYS, MICROSECONDS, date_days, datetime_microseconds
from datenraum.fhir.shapes import STRING_TYPES, Element, ResourceShape
from datenraum.fhir.viewdef import (
    CodeSource,
    Column,
    CompiledView,
    Select,
    ViewDefinitionError,
    plain_reference_test,
)

__all__ = ["NeedsRowReader", "RowsFunction", "compile_for_shape", "compile_patient"]


class NeedsRowReader(Exception):
    """This resource needs what only the row-by-row reader does: resolving, or explaining a refusal."""


# Reads one decoded resource, appending its rows as tuples (values..., seq).
RowsFunction = Callable[[Any, Callable[[tuple], None], int], None]


def _source() -> CodeSource:
    return CodeSource(
        {
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


class _Compiler:
    def __init__(self, view: CompiledView, shape: ResourceShape) -> None:
        self.view = view
        self.shape = shape
        self.src = _source()
        self.collected: dict[int, tuple[str, Element]] = {}  # foci collected ahead, by id of their select

    def early_exits(self) -> None:
        """Collect the foci of the root's plain forEach selects first: without any, there are no rows,
        and the row-by-row reader does not read the other columns either (most Observations have no
        components)."""
        for select in self.view.view.select.selects:
            if select.for_each is not None and not select.or_null:
                foci, element = self.foci(select, "resource", self.shape.root, False, 1)
                self.collected[id(select)] = foci, element
                self.src.emit(1, f"if not {foci}:")
                self.src.emit(2, "return")

    def where(self, column: Column | None = None) -> str:
        return f"view {self.view.name}" + (f", column {column.name}" if column else "")

    # --- paths ---------------------------------------------------------------------------------------

    def steps(
        self, steps: tuple, var: str, element: Element, indent: int, leaf, found: str | None, where: str
    ):
        """Navigate `steps` from `var` (of shape `element`), calling leaf(var, element, indent) where the
        path yields a value; with `found`, stop at the first (loops break once it is not None)."""
        src = self.src
        if not steps:
            leaf(var, element, indent)
            return
        step, rest = steps[0], steps[1:]
        if isinstance(step, First):
            self.steps(rest, var, element, indent, leaf, found, where)
        elif isinstance(step, Exists):
            leaf(var, element, indent)
        elif isinstance(step, Member):
            child = element.child(step.name, where)
            self._into(
                f"{var}.{element.field(step.name)}", child, child.repeats, rest, indent, leaf, found, where
            )
        elif isinstance(step, Extension):
            extensions = element.child("extension", where)
            items, item = src.name("_e"), src.name("_x")
            src.emit(indent, f"{items} = {var}.{element.field('extension')}")
            src.emit(indent, f"if {items} is not None:")
            src.emit(indent + 1, f"for {item} in {items}:")
            src.emit(indent + 2, f"if {item}.{extensions.field('url')} == {step.url!r}:")
            self.steps(rest, item, extensions, indent + 3, leaf, found, where)
            if found:
                src.emit(indent + 2, f"if {found} is not None:")
                src.emit(indent + 3, "break")
        elif isinstance(step, Where):
            if element.child(step.element, where).repeats:
                raise ViewDefinitionError(f"{where}: where() on a repeating element")
            src.emit(indent, f"if {var}.{element.field(step.element)} == {step.literal!r}:")
            self.steps(rest, var, element, indent + 1, leaf, found, where)
        elif isinstance(step, ReferenceKey):
            if rest:
                raise ViewDefinitionError(f"{where}: getReferenceKey() must end a path")
            leaf(var, element, indent, step.resource_type)
        else:  # pragma: no cover - the parser admits no other steps
            raise ViewDefinitionError(f"{where}: cannot compile step {step!r}")

    def _into(self, attribute: str, child: Element, repeats: bool, rest, indent, leaf, found, where) -> None:
        src = self.src
        value = src.name("_v")
        src.emit(indent, f"{value} = {attribute}")
        src.emit(indent, f"if {value} is not None:")
        if not repeats:
            self.steps(rest, value, child, indent + 1, leaf, found, where)
            return
        item = src.name("_i")
        src.emit(indent + 1, f"for {item} in {value}:")
        self.steps(rest, item, child, indent + 2, leaf, found, where)
        if found:
            src.emit(indent + 2, f"if {found} is not None:")
            src.emit(indent + 3, "break")

    # --- columns -------------------------------------------------------------------------------------

    def column(self, column: Column, focus: str, element: Element, nullable: bool, indent: int) -> str:
        """Code setting a variable to the column's value at `focus`; its name."""
        src, where = self.src, self.where(column)
        target = src.name("_c")
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

            def leaf(
                var: str,
                reached: Element,
                level: int,
                reference_type: str | None = None,
                ends_in_exists: bool = isinstance(path.steps[-1], Exists),
            ) -> None:
                if ends_in_exists:
                    src.emit(level, f"{target} = True")
                elif reference_type is not None:
                    _emit_reference(src, var, reached, reference_type, target, level, where)
                else:
                    converted = self._convert(var, column.type, reached, where)
                    if isinstance(converted, tuple):  # a cached conversion: a lookup, a call when it misses
                        lookup, convert = converted
                        src.emit(level, f"{target} = {lookup}({var})")
                        src.emit(level, f"if {target} is None:")
                        src.emit(level + 1, f"{target} = {convert}({var})")
                    else:
                        src.emit(level, f"{target} = {converted}")

            self.steps(path.steps, focus, element, at, leaf, target, where)
        if isinstance(alternatives[-1].steps[-1], Exists):
            src.emit(indent, f"if {target} is None:")
            src.emit(indent + 1, f"{target} = False")  # exists() answers false, not nothing
        return target

    def _convert(self, var: str, column_type: str, element: Element, where: str) -> str | tuple[str, str]:
        """The expression converting `var` to the column's type, or (cache lookup, converter) for dates
        and times, which are kept as the integers Arrow stores."""
        element_type = element.type
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

    # --- selects -------------------------------------------------------------------------------------

    def foci(
        self, select: Select, focus: str, element: Element, nullable: bool, indent: int
    ) -> tuple[str, Element]:
        """Code collecting the values of a forEach path into a list; its name and their shape."""
        src, where = self.src, self.where()
        foci = src.name("_f")
        src.emit(indent, f"{foci} = []")
        if nullable:
            src.emit(indent, f"if {focus} is not None:")
            indent += 1
        reached: set[str] = set()
        elements: list[Element] = []
        for position, path in enumerate(select.for_each.alternatives):
            at = indent
            if position:
                src.emit(indent, f"if not {foci}:")
                at = indent + 1

            def collect(
                var: str, value_element: Element, level: int, reference_type: str | None = None
            ) -> None:
                if reference_type is not None or value_element.primitive:
                    raise ViewDefinitionError(f"{where}: forEach must reach elements, not values")
                reached.add(value_element.type)
                elements.append(value_element)
                src.emit(level, f"{foci}.append({var})")

            self.steps(path.steps, focus, element, at, collect, None, where)
            if any(isinstance(step, First) for step in path.steps):
                src.emit(at, f"del {foci}[1:]")
        if len(reached) != 1:
            raise ViewDefinitionError(f"{where}: forEach reaches {sorted(reached) or 'nothing'}")
        return foci, elements[0]

    def selects(self, work: list[tuple[Select, str, Element, bool]], values: list[str], indent: int) -> None:
        """Code for the rows of the selects in `work` (with their focus), cross-multiplied, as the
        row-by-row reader makes them; `values` are the column variables so far."""
        src = self.src
        if not work:
            src.emit(indent, f"out(({''.join(f'{value}, ' for value in values)}seq))")
            return
        (select, focus, element, nullable), rest = work[0], work[1:]
        if select.for_each is not None:
            if id(select) in self.collected:
                foci, item_element = self.collected[id(select)]
            else:
                foci, item_element = self.foci(select, focus, element, nullable, indent)
            item = src.name("_x")
            if select.or_null:
                items = f"({foci} or (None,))"
            elif nullable:  # under a row of nulls, a row of nulls
                items = f"({foci} if {focus} is not None else (None,))"
            else:
                items = foci
            src.emit(indent, f"for {item} in {items}:")
            focus, element, nullable, indent = item, item_element, nullable or select.or_null, indent + 1
        columns = [self.column(column, focus, element, nullable, indent) for column in select.columns]
        children = [(child, focus, element, nullable) for child in select.selects]
        self.selects(children + rest, values + columns, indent)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _peephole(lines: list[str]) -> list[str]:
    """`v = a` / `if v is not None:` / `t = v` and nothing else in the if, as `t = a`: the same (t is
    None before), with one test and one name less for the most common kind of column."""
    out: list[str] = []
    position = 0
    while position < len(lines):
        window = lines[position : position + 4]
        if len(window) >= 3:
            first, test, assign = (line.strip() for line in window[:3])
            name, _, value = first.partition(" = ")
            target, _, source = assign.partition(" = ")
            indent = _indent(window[0])
            if (
                value
                and test == f"if {name} is not None:"
                and source == name
                and _indent(window[1]) == indent
                and _indent(window[2]) > indent
                and (len(window) < 4 or _indent(window[3]) <= indent)
            ):
                out.append(" " * indent + f"{target} = {value}")
                position += 3
                continue
        out.append(lines[position])
        position += 1
    # `t = None` right before another `t = ...` at the same depth says nothing.
    return [
        line
        for line, following in zip(out, [*out[1:], ""], strict=True)
        if not (
            line.strip().endswith(" = None")
            and _indent(line) == _indent(following)
            and following.strip().startswith(line.strip().removesuffix("None"))
        )
    ]


def compile_for_shape(view: CompiledView, shape: ResourceShape) -> RowsFunction:
    """A function appending the view's rows of one decoded resource, as tuples (its columns, then `_seq`):
    called with the resource, the `append` of a list of rows, and the resource's `_seq`."""
    compiler = _Compiler(view, shape)
    compiler.src.emit(0, "def _rows(resource, out, seq):")
    compiler.early_exits()
    compiler.selects([(view.view.select, "resource", shape.root, False)], [], 1)
    return compiler.src.function("_rows", f"shaped view {view.name}", _peephole(compiler.src.lines))


def compile_patient(shape: ResourceShape) -> Callable[[Any], str | None]:
    """A function naming the patient a decoded resource belongs to: a Patient itself, else the one its
    `subject` names (or, without a subject, its `patient`); raises NeedsRowReader for references to
    resolve."""
    if shape.resource_type == "Patient":
        return lambda resource: resource.f1
    src, root = _source(), shape.root
    src.emit(0, "def _patient(resource):")
    src.emit(1, "_p = None")
    for position, name in enumerate(("subject", "patient")):
        element = root.children[name]
        src.emit(1, f"{'if' if not position else 'elif'} resource.{root.field(name)} is not None:")
        _emit_reference(src, f"resource.{root.field(name)}", element, "Patient", "_p", 2, name)
    src.emit(1, "return _p")
    return src.function("_patient", f"patient of {shape.resource_type}")
