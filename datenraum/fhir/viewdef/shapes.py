"""The shape of a resource as the views read it: which elements, of which type, repeating or not.

The strict reader (site/ingest/strict.py) decodes NDJSON lines with msgspec into structs of exactly
this shape: a line passes only if every element the views read has the JSON type FHIR gives it (an
array where the element repeats, an object, a string, a number). Because the shape is known, the views
compiled for it (compile_shaped.py) need none of the checks the row-by-row reader makes at every
step; lines that do not pass go to that reader, which explains what is wrong or reads what FHIR JSON
tolerates. The shape is built from the views' paths and `elements.json` (FHIR's types and
cardinalities for those elements), so a new column in a view needs at most a new line there.
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
import orjson

from datenraum.fhir.viewdef.compile_json import CompiledView, standard_views
from datenraum.fhir.viewdef.fhirpath import (
    Binary,
    Call,
    Child,
    Evaluate,
    Expr,
    Extension,
    Index,
    Member,
    ReferenceKey,
    Step,
    This,
    Where,
)
from datenraum.fhir.viewdef.model import Select, ViewDefinitionError
from datenraum.fhir.viewdef.steps import PATIENT_ELEMENTS, StepVisitor

__all__ = ["STRING_TYPES", "Element", "ResourceShape", "expr_element", "resource_shapes", "shape_for", "walk"]

# FHIR primitive types by the JSON type that carries them.
STRING_TYPES = frozenset(
    {"string", "code", "id", "uri", "url", "canonical", "markdown", "date", "dateTime", "instant", "time"}
)
_INT64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
_PRIMITIVES: dict[str, Any] = {  # FHIR type -> msgspec type
    **dict.fromkeys(STRING_TYPES, str),
    "decimal": float,
    "integer": _INT64,
    "boolean": bool,
}


@dataclass
class Element:
    """One element of a shape: its FHIR type, whether it repeats, and the children the views read."""

    type: str
    repeats: bool = False
    children: dict[str, Element] = field(default_factory=dict)

    @property
    def primitive(self) -> bool:
        return self.type in _PRIMITIVES

    def field(self, name: str) -> str:
        """The attribute of the decoded struct that holds child `name`."""
        return f"f{list(self.children).index(name)}"

    def child(self, name: str, where: str) -> Element:
        """The child `name`, added to the shape the first time a path reads it."""
        if name not in self.children:
            type_name = _element_types()["datatypes"].get(self.type, {}).get(name)
            if type_name is None:
                raise ViewDefinitionError(f"{where}: {self.type}.{name} is not in elements.json")
            self.children[name] = Element(type_name.removesuffix("[]"), type_name.endswith("[]"))
        return self.children[name]


@dataclass
class ResourceShape:
    """A resource type's shape, with the msgspec decoder that checks lines against it."""

    resource_type: str
    root: Element

    @functools.cached_property
    def decoder(self) -> msgspec.json.Decoder:
        return msgspec.json.Decoder(_msgspec_type(self.root, self.resource_type))


@functools.cache
def _element_types() -> dict:
    raw = orjson.loads(
        importlib.resources.files("datenraum.fhir.viewdef").joinpath("elements.json").read_bytes()
    )
    resources = raw["resources"]
    common = resources.pop("*")
    datatypes = dict(raw["datatypes"])
    for name, elements in resources.items():
        datatypes[name] = {**common, **elements}
    datatypes["*"] = common
    return {"datatypes": datatypes}


def shape_for(resource_type: str, views: list[CompiledView]) -> ResourceShape:
    """The shape of `resource_type` that `views` read, plus what every load reads: type, id, and the
    PATIENT_ELEMENTS that name a resource's patient. Type and id come first, so that a decoded resource
    holds them as `f0` and `f1`."""
    known = resource_type in _element_types()["datatypes"]
    root = Element(resource_type if known else "*")
    root.child("resourceType", resource_type)
    root.child("id", resource_type)
    if resource_type != "Patient":
        for name in PATIENT_ELEMENTS:
            _reference_children(root.child(name, resource_type), resource_type)
    for view in views:
        for expr in view.view.where:
            expr_element(expr, root, f"view {view.name}, where")
        _add_select(root, view.view.select, f"view {view.name}")
    return ResourceShape(resource_type, root)


def _reference_children(element: Element, where: str) -> None:
    """A reference the reader resolves needs its literal reference, and its identifier to see that it is
    a logical one (which only the row-by-row reader resolves)."""
    if element.type != "Reference":
        raise ViewDefinitionError(f"{where}: getReferenceKey() needs a Reference, not {element.type}")
    element.child("reference", where)
    element.child("identifier", where).child("value", where)


def _add_select(focus: Element, select: Select, where: str) -> None:
    add = _AddPath(where)
    if select.repeat:
        raise ViewDefinitionError(f"{where}: repeat would need a recursive shape")
    if select.for_each is not None:
        foci = [add.walk(path.steps, focus) for path in select.for_each.alternatives]
    else:
        foci = [focus]
    for element in foci:
        for column in select.columns:
            for path in column.path.alternatives:
                add.walk(path.steps, element)
        for child in (*select.selects, *select.union_all):
            _add_select(element, child, where)


class _AddPath(StepVisitor[Element, Element]):
    """Adds a path's elements to the shape; the walk gives the element the path ends at."""

    def __init__(self, where: str) -> None:
        self.label = where

    def end(self, at: Element) -> Element:
        return at

    def member(self, step: Member, rest: tuple[Step, ...], at: Element) -> Element:
        return self.walk(rest, at.child(step.name, self.label))

    def extension(self, step: Extension, rest: tuple[Step, ...], at: Element) -> Element:
        extensions = at.child("extension", self.label)
        extensions.child("url", self.label)
        return self.walk(rest, extensions)

    def where(self, step: Where, rest: tuple[Step, ...], at: Element) -> Element:
        at.child(step.element, self.label)
        return self.walk(rest, at)

    def reference_key(self, step: ReferenceKey, rest: tuple[Step, ...], at: Element) -> Element:
        _reference_children(at, self.label)
        return self.walk(rest, at)

    def evaluate(self, step: Evaluate, rest: tuple[Step, ...], at: Element) -> Element:
        reached = expr_element(step.expr, at, self.label)
        if reached is None:  # a computed value: what is read from it is not in the shape
            if rest:
                raise ViewDefinitionError(f"{self.label}: a path continues after a computed value")
            return Element("string")
        return self.walk(rest, reached)


def expr_element(expr: Expr, focus: Element | None, where: str) -> Element | None:
    """Add what an expression reads from `focus` to the shape; the element its values are of, or None
    for computed values (booleans of comparisons, numbers of arithmetic, keys, strings of join())."""
    if focus is None:
        return None
    if isinstance(expr, This):
        return focus
    if isinstance(expr, Child):
        source = expr_element(expr.source, focus, where)
        if source is None or source.primitive:
            return None
        return source.child(expr.name, where)
    if isinstance(expr, Index):
        expr_element(expr.index, focus, where)
        return expr_element(expr.source, focus, where)
    if isinstance(expr, Binary):
        expr_element(expr.left, focus, where)
        expr_element(expr.right, focus, where)
        return None
    if not isinstance(expr, Call):
        return None
    if expr.name == "iif":
        for arg in expr.args:
            expr_element(arg, focus, where)
        return None
    source = expr_element(expr.source, focus, where)
    if source is None:
        return None
    if expr.name in ("where", "exists") and expr.args:
        expr_element(expr.args[0], source, where)
    if expr.name in ("first", "last", "where", "ofType"):
        return source
    if expr.name == "extension":
        extensions = source.child("extension", where)
        extensions.child("url", where)
        return extensions
    if expr.name == "getReferenceKey":
        _reference_children(source, where)
    if expr.name == "getResourceKey":
        source.child("id", where)
    if expr.name == "join":
        for arg in expr.args:
            expr_element(arg, focus, where)
    return None


def _msgspec_type(element: Element, name: str) -> Any:
    if element.primitive:
        kind = _PRIMITIVES[element.type]
    else:
        # Field names are positional, renamed to the JSON keys: FHIR uses Python keywords (class, end).
        fields = [
            (f"f{i}", _msgspec_type(child, f"{name}_{key}") | None, None)
            for i, (key, child) in enumerate(element.children.items())
        ]
        rename = {f"f{i}": key for i, key in enumerate(element.children)}
        # No cycles are possible, so the garbage collector need not track them: decoding is much faster.
        kind = msgspec.defstruct(name, fields, rename=rename, gc=False)
    return list[kind] if element.repeats else kind


@functools.cache
def resource_shapes() -> dict[str, ResourceShape]:
    """The shape of every resource type the standard views read, keyed by resource type."""
    by_type: dict[str, list[CompiledView]] = {}
    for view in standard_views().values():
        by_type.setdefault(view.resource, []).append(view)
    return {resource_type: shape_for(resource_type, views) for resource_type, views in by_type.items()}


def walk(element: Element, prefix: str = "") -> Iterator[tuple[str, Element]]:
    """Every element of a shape with its dotted path, for tests and error messages."""
    for key, child in element.children.items():
        path = f"{prefix}.{key}" if prefix else key
        yield path, child
        yield from walk(child, path)
