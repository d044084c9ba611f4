"""Standard ViewDefinitions run over FHIR resources: the library under `datenraum view run`, the
conformance test and the site's own views.

Two engines, the ingest's two readers: `DictRunner` (the dict compiler, any parsed JSON) and
`ShapedRunner` (the shaped compiler over the resource decoded into the view's msgspec shape). The
shaped one hands back what only the dict compiler reads, as the strict reader does: a whole view
whose shape cannot be built (an element not in elements.json, a `repeat`, which would need a recursive
shape, a forEach over a computed expression), and single resources that do not decode into the shape
or need a reference resolved (`NeedsRowReader`). `handed_back` counts both, so a caller can say how
much ran on the fast path.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from datenraum.fhir.references import resolve_reference
from datenraum.fhir.viewdef.compile_json import CompiledView
from datenraum.fhir.viewdef.compile_shaped import NeedsRowReader, compile_for_shape
from datenraum.fhir.viewdef.evaluate import ShapeMiss
from datenraum.fhir.viewdef.model import ViewDefinition, ViewDefinitionError
from datenraum.fhir.viewdef.shapes import shape_for
from datenraum.fhir.viewdef.steps import Resolver

__all__ = ["DictRunner", "ShapedRunner", "runner_for"]

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DAY = dt.date(1970, 1, 1)


class DictRunner:
    """A view compiled over parsed JSON; `rows` gives a resource's rows as tuples of Python values."""

    engine = "dict"

    def __init__(self, view: ViewDefinition, strict: bool = True, resolve: Resolver = resolve_reference):
        self.view = view
        self.compiled = CompiledView(view, strict=strict)
        self.resolve = resolve
        self.handed_back = 0
        self.refused: str | None = None

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.view.columns]

    def rows(self, resource: dict) -> list[tuple]:
        if type(resource) is not dict or resource.get("resourceType") != self.view.resource:
            return []
        return self.compiled.rows(resource, self.resolve)

    def all_rows(self, resources: Iterable[dict]) -> list[tuple]:
        return [row for resource in resources for row in self.rows(resource)]


class ShapedRunner(DictRunner):
    """A view compiled for its shape; what the shaped code cannot read goes to the dict compiler."""

    engine = "shaped"

    def __init__(self, view: ViewDefinition, strict: bool = True, resolve: Resolver = resolve_reference):
        super().__init__(view, strict, resolve)
        try:
            self.shape = shape_for(view.resource, [self.compiled])
            self.function = compile_for_shape(self.compiled, self.shape)
            self.decode = self.shape.decoder.decode
        except ViewDefinitionError as error:
            self.function = None
            self.refused = str(error)
        self.types = [column.type for column in view.columns]
        self.collections = [column.collection for column in view.columns]

    def rows(self, resource: dict, line: bytes | None = None) -> list[tuple]:
        if type(resource) is not dict or resource.get("resourceType") != self.view.resource:
            return []
        if self.function is None:
            self.handed_back += 1
            return super().rows(resource)
        out: list[tuple] = []
        try:
            decoded = self.decode(line if line is not None else orjson.dumps(resource))
            self.function(decoded, out.append, 0)
        except (NeedsRowReader, ShapeMiss, msgspec.ValidationError, msgspec.DecodeError, ValueError) as error:
            if isinstance(error, ViewDefinitionError) and not isinstance(error, ShapeMiss):
                raise
            self.handed_back += 1
            return super().rows(resource)
        return [self._values(row[:-1]) for row in out]

    def _values(self, row: tuple) -> tuple:
        """The shaped code's values as the dict compiler's: dates and times from the integers for Arrow."""
        return tuple(
            [_value(item, kind) for item in value] if many and value is not None else _value(value, kind)
            for value, kind, many in zip(row, self.types, self.collections, strict=True)
        )


def _value(value: Any, kind: str) -> Any:
    if value is None or type(value) is not int:
        return value
    if kind == "date":
        return _EPOCH_DAY + dt.timedelta(days=value)
    if kind in ("dateTime", "instant"):
        return _EPOCH + dt.timedelta(microseconds=value)
    return value


def runner_for(view: ViewDefinition, engine: str = "shaped", strict: bool = True) -> DictRunner:
    return (ShapedRunner if engine == "shaped" else DictRunner)(view, strict)
