"""The view model: ViewDefinitions as small frozen dataclasses, loaded from JSON and checked on load.

Each table of the site store is described by one JSON file in `fhir/views/`, written in the shape of an
HL7 SQL-on-FHIR v2 ViewDefinition (`resource`, `select` with `column`, `forEach`, `forEachOrNull` and
nested `select`). Adding a column is a change to that file, not to code.

Column paths are FHIRPath of the subset in fhirpath.py. Loading normalises them for the engines:
`x.ofType(T)` becomes the member `xT` (how FHIR JSON spells choice elements), and `exists()` may only
end a path. So the engines never see `OfType`, and a path they cannot read fails here, when a view is
loaded, naming its column, never at ingest time.

Column semantics: a column takes the *first* value its path yields (SQL-on-FHIR would raise for more
than one; for research tables the first coding/value is the useful reading, and repeated codings get
their own rows through `forEach`).
"""

from __future__ import annotations

import functools
import importlib.resources
from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from datenraum.fhir.primitives import CONVERTERS
from datenraum.fhir.viewdef import fhirpath
from datenraum.fhir.viewdef.fhirpath import Exists, First, Member, OfType, Path, Union

__all__ = [
    "Column",
    "Select",
    "ViewDefinition",
    "ViewDefinitionError",
    "columns_of",
    "ends_in_exists",
    "load_view",
    "standard_view_definitions",
    "takes_first",
]


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
        return tuple(columns_of(self.select))


def columns_of(select: Select) -> Iterator[Column]:
    """The columns of a select and of its nested selects, in table order."""
    yield from select.columns
    for child in select.selects:
        yield from columns_of(child)


def ends_in_exists(path: Path) -> bool:
    """Whether the path asks `exists()`: its column is then true or false, never null."""
    return isinstance(path.steps[-1], Exists)


def takes_first(path: Path) -> bool:
    """Whether a forEach path keeps only its first value (`first()` anywhere in it)."""
    return any(isinstance(step, First) for step in path.steps)


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
def standard_view_definitions() -> tuple[ViewDefinition, ...]:
    """The views that define the site store's tables (`fhir/views/*.json`), in file name order."""
    files = sorted(importlib.resources.files("datenraum.fhir.views").iterdir(), key=lambda e: e.name)
    return tuple(
        load_view(orjson.loads(entry.read_bytes()), entry.name)
        for entry in files
        if entry.name.endswith(".json")
    )
