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
import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import msgspec
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from datenraum.fhir.references import resolve_reference
from datenraum.fhir.viewdef.compile_json import CompiledView
from datenraum.fhir.viewdef.compile_shaped import NeedsRowReader, compile_for_shape
from datenraum.fhir.viewdef.evaluate import ShapeMiss
from datenraum.fhir.viewdef.model import ViewDefinition, ViewDefinitionError, load_view
from datenraum.fhir.viewdef.shapes import shape_for
from datenraum.fhir.viewdef.steps import Resolver

__all__ = [
    "DictRunner",
    "ShapedRunner",
    "read_resources",
    "read_view_file",
    "run_views",
    "runner_for",
    "write_table",
]

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


# --- views over files: the library of `datenraum view run` ----------------------------------------------


def read_view_file(path: Path) -> ViewDefinition:
    """A ViewDefinition from a JSON file; one without a name is named after the file."""
    try:
        raw = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise ViewDefinitionError(f"{path}: malformed JSON: {error}") from None
    return load_view(raw, str(path), default_name=path.name.removesuffix(".json").replace(".", "_"))


def read_resources(paths: Iterable[Path]) -> Iterator[tuple[dict, bytes | None]]:
    """The resources of NDJSON files (.ndjson, .ndjson.gz) and JSON files (a Bundle's entries, or one
    resource), folders of them recursively, each with its NDJSON line where it has one."""
    for path in paths:
        if path.is_dir():
            yield from read_resources(sorted(p for p in path.rglob("*") if p.is_file()))
            continue
        name = path.name
        if name.endswith((".ndjson", ".ndjson.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as lines:
                for line in lines:
                    line = line.strip()
                    if line:
                        yield orjson.loads(line), line
        elif name.endswith(".json"):
            document = orjson.loads(path.read_bytes())
            if isinstance(document, dict) and document.get("resourceType") == "Bundle":
                for entry in document.get("entry") or []:
                    if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                        yield entry["resource"], None
            elif isinstance(document, dict):
                yield document, None


def run_views(
    views: list[ViewDefinition],
    resources: Iterable[tuple[dict, bytes | None]],
    engine: str = "shaped",
    strict: bool = True,
) -> dict[str, pa.Table]:
    """The rows of each view over the resources, as Arrow tables keyed by view name."""
    runners = [runner_for(view, engine, strict) for view in views]
    rows: list[list[tuple]] = [[] for _ in runners]
    for resource, line in resources:
        for runner, out in zip(runners, rows, strict=True):
            if isinstance(runner, ShapedRunner):
                out += runner.rows(resource, line)
            else:
                out += runner.rows(resource)
    tables = {}
    for runner, out in zip(runners, rows, strict=True):
        schema = runner.compiled.schema
        columns = list(zip(*out, strict=True)) if out else [()] * len(schema)
        tables[runner.view.name] = pa.table(
            [pa.array(list(column), f.type) for column, f in zip(columns, schema, strict=True)], schema=schema
        )
    return tables


def write_table(table: pa.Table, out: BinaryIO, file_format: str) -> None:
    """A table as NDJSON (one object a row), CSV (with a header) or Parquet."""
    if file_format == "parquet":
        pq.write_table(table, out)
    elif file_format == "csv":
        flat = table
        for index, field in enumerate(table.schema):
            if pa.types.is_list(field.type):  # CSV has no lists: a collection as its JSON array
                values = [
                    None if v is None else orjson.dumps(v, default=str).decode()
                    for v in table[index].to_pylist()
                ]
                flat = flat.set_column(index, field.name, pa.array(values, pa.string()))
        pacsv.write_csv(flat, out)
    else:
        for row in table.to_pylist():
            out.write(orjson.dumps(row, default=str, option=orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE))
