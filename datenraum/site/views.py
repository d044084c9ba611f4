"""Site-registered views: standard ViewDefinitions a site adds, whose tables live in the store next to ours.

    datenraum view add --store DIR V.json [W.json ...] [--replace]
    datenraum view list --store DIR
    datenraum view remove --store DIR NAME

A registered view `x` is the table `site_x` of every snapshot. How it is stored (see site/store.py):
the view's canonical JSON (keys sorted, no whitespace) in `views/x.<hash>.json`, `<hash>` the first 16
hex digits of its SHA-256, and in the manifest a `site_views` entry with the name, the full hash and the
table's parts, one Parquet file per raw file of the `resource` table. The table is thus always the view
over exactly the resources the generation holds, and it is maintained by raw file:

- registering (or, with `--replace`, changing) a view builds every part, from all stored raw resources;
- a load (`datenraum ingest`) builds the parts of the raw files it adds or rewrites, after its commit
  has settled them, and publishes them in the same generation as its segments (`extend`); the parts of
  raw files it leaves alone are kept. Our own tables go on being written by the ingest's readers as
  before: the site views are read from the committed raw JSON by the dict compiler, not on the fast path;
- `datenraum compact` rewrites the raw table, so it builds every part again;
- removing a view publishes a generation without it.

Every one of these writes its files first and then publishes one manifest, under the writer lock: a
reader sees a site table whole or not at all, and a build killed half-way leaves only unreferenced files,
which the next writer sweeps (Store.sweep_debris).

A view is checked before anything is written (`check`): JSON, the elements a shareable ViewDefinition
has (resourceType, name, status, resource, select, a type for every column), a name that makes a table
name and shadows none of ours, the view model's own checks (load_view: every path, constant and
unionAll), and the conformance-validated runner (DictRunner, strict: a column yields at most one value
unless it is a collection) over every stored resource of its type. Each error names the file and the
JSON path. A later load is not refused for a site view: a resource the strict reading refuses is read
leniently (a column takes its first value) and the load report says so (`site_view_notes`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from datenraum.fhir.primitives import ElementTypeError
from datenraum.fhir.references import resolve_reference
from datenraum.fhir.resource_types import R4_RESOURCE_TYPES
from datenraum.fhir.viewdef.compile_json import CompiledView
from datenraum.fhir.viewdef.model import CardinalityError, ViewDefinition, ViewDefinitionError, load_view
from datenraum.site.store import (
    RAW_TABLE,
    ROW_GROUP_ROWS,
    Manifest,
    SiteView,
    Store,
    StoreError,
    parquet_listing,
    table_schemas,
    write_atomically,
)

__all__ = [
    "Candidate",
    "SiteViewError",
    "add_views",
    "check",
    "extend",
    "list_views",
    "remove_view",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_STATUSES = ("draft", "active", "retired", "unknown")
HASH_DIGITS = 16  # of the SHA-256 in file names; the manifest keeps all 64
MAX_NOTES = 100  # resources a load reports as read leniently, per site view


class SiteViewError(ValueError):
    """A view that cannot be registered, or a registration that cannot be done; the message says why."""


@dataclass(frozen=True)
class Candidate:
    """A checked ViewDefinition from a file, ready to be registered."""

    source: str
    raw: dict
    view: ViewDefinition
    canonical: bytes
    hash: str

    @property
    def name(self) -> str:
        return self.view.name


def canonical_json(raw: dict) -> bytes:
    """The view's canonical JSON: keys sorted, no whitespace; its hash is the view's version."""
    return orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)


def _column_paths(raw: dict) -> dict[str, str]:
    """Each column's JSON path in the view (`select[0].column[2]`), by column name (the first, for a
    unionAll's branches, which repeat the names)."""
    paths: dict[str, str] = {}

    def walk(select: Any, where: str) -> None:
        if not isinstance(select, dict):
            return
        for index, column in enumerate(select.get("column") or []):
            if isinstance(column, dict) and isinstance(column.get("name"), str):
                paths.setdefault(column["name"], f"{where}.column[{index}]")
        for key in ("select", "unionAll"):
            for index, child in enumerate(select.get(key) or []):
                walk(child, f"{where}.{key}[{index}]")

    for index, select in enumerate(raw.get("select") or []):
        walk(select, f"select[{index}]")
    return paths


def _shape_problems(raw: dict) -> list[str]:
    """What a registered view must have beyond what load_view checks, each as `json path: problem`."""
    problems = []
    if raw.get("resourceType") != "ViewDefinition":
        problems.append(f"resourceType: must be 'ViewDefinition', not {raw.get('resourceType')!r}")
    name = raw.get("name")
    if not isinstance(name, str):
        problems.append("name: missing (a site view is registered under its name)")
    elif not _NAME.match(name):
        problems.append(
            f"name: {name!r} is not a table name (lower-case letters, digits and _, starting with a "
            "letter, at most 63 characters)"
        )
    elif name in table_schemas():
        problems.append(
            f"name: {name!r} is one of Datenraum's own tables; a site view cannot shadow it (choose "
            "another name)"
        )
    if raw.get("status") not in _STATUSES:
        problems.append(f"status: must be one of {', '.join(_STATUSES)}, not {raw.get('status')!r}")
    resource = raw.get("resource")
    if not isinstance(resource, str) or resource not in R4_RESOURCE_TYPES:
        problems.append(f"resource: {resource!r} is not a FHIR R4 resource type")
    if not isinstance(raw.get("select"), list) or not raw["select"]:
        problems.append("select: missing")

    def untyped(select: Any, where: str) -> None:
        if not isinstance(select, dict):
            return
        for index, column in enumerate(select.get("column") or []):
            if isinstance(column, dict) and "type" not in column:
                problems.append(f"{where}.column[{index}].type: missing (a table column needs a type)")
        for key in ("select", "unionAll"):
            for index, child in enumerate(select.get(key) or []):
                untyped(child, f"{where}.{key}[{index}]")

    for index, select in enumerate(raw.get("select") or [] if isinstance(raw.get("select"), list) else []):
        untyped(select, f"select[{index}]")
    return problems


def check(path: Path) -> Candidate:
    """The view in `path`, checked as a site view (not yet against the stored data); SiteViewError
    naming the file and the JSON path of what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SiteViewError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise SiteViewError(f"{path}: malformed JSON: {error}") from None
    if not isinstance(raw, dict):
        raise SiteViewError(f"{path}: a ViewDefinition must be a JSON object")
    problems = _shape_problems(raw)
    if problems:
        raise SiteViewError("\n".join(f"{path}: {problem}" for problem in problems))
    try:
        view = load_view(raw, str(path))
        CompiledView(view, strict=True)  # the code generation, once, so that it cannot fail later
    except ViewDefinitionError as error:
        raise SiteViewError(str(error)) from None
    text = canonical_json(raw)
    return Candidate(str(path), raw, view, text, hashlib.sha256(text).hexdigest())


# --- building a site table, part by part -------------------------------------------------------------


class _Builder:
    """Writes the parts of one site view: its rows over one raw file each.

    `strict` (registration) refuses the view on the first resource the conformance-validated runner
    refuses; otherwise (a load) such a resource is read leniently, or left out, and noted."""

    def __init__(self, store: Store, entry: SiteView, view: ViewDefinition, strict: bool, source: str):
        self.store = store
        self.entry = entry
        self.view = view
        self.strict = strict
        self.source = source
        self.checked = CompiledView(view, strict=True)
        self.lenient = CompiledView(view, strict=False)
        self.schema = self.checked.schema
        self.column_paths = _column_paths(orjson.loads(canonical_json_of(store, entry)))
        self.notes: list[str] = []
        self.folder = store.site_tables / f"{entry.name}.{entry.hash[:HASH_DIGITS]}"

    def _refusal(self, error: Exception, resource: dict) -> str:
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        if isinstance(error, CardinalityError):
            found = re.search(r"column (\w+):", str(error))
            where = self.column_paths.get(found.group(1), "select") if found else "where"
            return f"{self.source}: {where}: {error}, for {key}"
        try:
            explained = self.checked.explain(resource, resolve_reference)
        except Exception:  # the checked walk refuses it too: the compiled code's error says why
            explained = ""
        return f"{self.source}: cannot read {key}: {explained or error}"

    def rows(self, resource: dict) -> list[tuple]:
        try:
            return self.checked.rows(resource, resolve_reference)
        except (CardinalityError, ElementTypeError, AttributeError, TypeError, ValueError) as error:
            reason = self._refusal(error, resource)
            if self.strict:
                raise SiteViewError(reason + " (the view is refused; nothing was registered)") from None
        try:
            rows = self.lenient.rows(resource, resolve_reference)
            self._note(f"site view {self.view.name}: {reason}; its first values were taken")
            return rows
        except (ElementTypeError, AttributeError, TypeError, ValueError):
            self._note(f"site view {self.view.name}: {reason}; it has no rows")
            return []

    def _note(self, note: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(note)
        elif len(self.notes) == MAX_NOTES:
            self.notes.append(f"site view {self.view.name}: more resources read leniently, not listed")

    def build(self, raw_files: Sequence[str], generation: int) -> dict[str, str | None]:
        """The parts of `raw_files` (relative to the store), written as `g<generation>-<i>.parquet`.

        A raw file is read in batches of ROW_GROUP_ROWS resources and its part written batch by batch,
        so that a big raw file (a compacted store's is one file) is built in bounded memory."""
        parts: dict[str, str | None] = {}
        if not raw_files:
            return parts
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(duckdb.connect()) as db:
            db.execute("SET threads = 1")
            for index, raw_file in enumerate(raw_files):
                target = self.folder / f"g{generation:08d}-{index:05d}.parquet"
                # The resource type is one of FHIR's names (checked), the file's path quoted safely.
                reader = db.sql(
                    f"SELECT json FROM read_parquet({parquet_listing([self.store.path / raw_file])}) "
                    f"WHERE resource_type = '{self.view.resource}' ORDER BY _seq"
                ).to_arrow_reader(ROW_GROUP_ROWS)
                writer = None
                for batch in reader:
                    rows = [
                        row for text in batch.column(0).to_pylist() for row in self.rows(orjson.loads(text))
                    ]
                    if not rows:
                        continue
                    columns = list(zip(*rows, strict=True))
                    table = pa.table(
                        [pa.array(list(c), f.type) for c, f in zip(columns, self.schema, strict=True)],
                        schema=self.schema,
                    )
                    if writer is None:
                        writer = pq.ParquetWriter(target, self.schema, compression="zstd")
                    writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
                if writer is None:
                    parts[raw_file] = None
                else:
                    writer.close()
                    parts[raw_file] = str(target.relative_to(self.store.path))
        return parts


def canonical_json_of(store: Store, entry: SiteView) -> bytes:
    return (store.path / entry.view).read_bytes()


def _stored_view(store: Store, entry: SiteView) -> ViewDefinition:
    return load_view(orjson.loads(canonical_json_of(store, entry)), entry.source)


def extend(store: Store, previous: Manifest, manifest: Manifest, notes: list[str] | None = None) -> Manifest:
    """`manifest` (the next generation, written by a load or a compaction from `previous`) with the
    site views of `previous`, their parts built for the raw files that `previous` did not have.

    Call under the writer lock, before publishing `manifest`; `notes` collects the resources a site view
    read leniently or not at all."""
    if not previous.site_views:
        return manifest
    raw_files = manifest.files(RAW_TABLE)
    views = []
    for entry in previous.site_views:
        missing = [file for file in raw_files if file not in entry.parts]
        parts = {file: entry.parts[file] for file in raw_files if file in entry.parts}
        if missing:
            builder = _Builder(store, entry, _stored_view(store, entry), strict=False, source=entry.source)
            parts |= builder.build(missing, manifest.generation)
            if notes is not None:
                notes += builder.notes
        views.append(dataclasses.replace(entry, parts={file: parts[file] for file in raw_files}))
    return dataclasses.replace(manifest, site_views=tuple(views))


# --- registering and removing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """What `add_views` did with one view: `added`, `replaced` or `unchanged`, and its table's rows."""

    name: str
    table: str
    outcome: str
    hash: str
    rows: int


def _next_manifest(previous: Manifest, views: Iterable[SiteView]) -> Manifest:
    return Manifest(previous.generation + 1, previous.segments, previous.last_load, tuple(views))


def add_views(store: Store | Path | str, paths: Sequence[Path], replace: bool = False) -> list[Registered]:
    """Register the views in `paths` in one new generation, each with its table built from every stored
    resource. A view already registered under the same name is changed only with `replace`; the same
    view again changes nothing. SiteViewError, and nothing registered, if any view is refused."""
    store = store if isinstance(store, Store) else Store(store)
    candidates = [check(Path(path)) for path in paths]
    seen: dict[str, Candidate] = {}
    for candidate in candidates:
        if candidate.name in seen:
            raise SiteViewError(
                f"{candidate.source}: name: {candidate.name!r} is also the name of "
                f"{seen[candidate.name].source}; two views cannot share a name"
            )
        seen[candidate.name] = candidate
    with store.writer_lock():
        store.sweep_debris()
        with store.snapshot() as snapshot:
            previous = snapshot.manifest
        views = {entry.name: entry for entry in previous.site_views}
        generation = previous.generation + 1
        raw_files = previous.files(RAW_TABLE)
        outcomes = []
        for candidate in candidates:
            old = views.get(candidate.name)
            if old is not None and old.hash == candidate.hash:
                outcomes.append((candidate, "unchanged"))
                continue
            if old is not None and not replace:
                raise SiteViewError(
                    f"{candidate.source}: name: a site view {candidate.name!r} is already registered "
                    f"(from {old.source}, version {old.hash[:HASH_DIGITS]}); give --replace to change it"
                )
            store.views.mkdir(exist_ok=True)
            view_file = store.views / f"{candidate.name}.{candidate.hash[:HASH_DIGITS]}.json"
            write_atomically(view_file, candidate.canonical)
            entry = SiteView(
                candidate.name,
                candidate.hash,
                candidate.view.resource,
                str(view_file.relative_to(store.path)),
                candidate.source,
                {},
            )
            builder = _Builder(store, entry, candidate.view, strict=True, source=candidate.source)
            try:
                parts = builder.build(raw_files, generation)
            except SiteViewError:
                store.sweep_debris()  # what this registration wrote: nothing of it stays
                raise
            views[candidate.name] = dataclasses.replace(entry, parts=parts)
            outcomes.append((candidate, "replaced" if old is not None else "added"))
        if any(outcome != "unchanged" for _c, outcome in outcomes):
            store.publish(_next_manifest(previous, views.values()))
    with store.snapshot() as snapshot:
        counts = {
            entry.name: snapshot.connection.execute(f"SELECT count(*) FROM {entry.table}").fetchone()[0]
            for entry in snapshot.manifest.site_views
        }
    return [
        Registered(c.name, f"site_{c.name}", outcome, c.hash, counts.get(c.name, 0))
        for c, outcome in outcomes
    ]


def remove_view(store: Store | Path | str, name: str) -> int:
    """Drop the site view `name` and its table in a new generation; returns that generation."""
    store = store if isinstance(store, Store) else Store(store)
    if not store.path.is_dir():
        raise StoreError(f"{store.path} is not a site store (no such folder)")
    with store.writer_lock():
        store.sweep_debris()
        with store.snapshot() as snapshot:
            previous = snapshot.manifest
        names = [entry.name for entry in previous.site_views]
        if name not in names:
            registered = ", ".join(names) or "none"
            raise SiteViewError(f"{store.path}: no site view named {name!r} (registered: {registered})")
        manifest = _next_manifest(previous, (e for e in previous.site_views if e.name != name))
        store.publish(manifest, removes_site_views=True)
    return manifest.generation


@dataclass(frozen=True)
class Listed:
    name: str
    table: str
    resource: str
    hash: str
    source: str
    rows: int


def list_views(store: Store | Path | str) -> list[Listed]:
    """The site views of the current generation, with their tables' row counts."""
    store = store if isinstance(store, Store) else Store(store)
    with store.snapshot() as snapshot:
        return [
            Listed(
                entry.name,
                entry.table,
                entry.resource,
                entry.hash,
                entry.source,
                snapshot.connection.execute(f"SELECT count(*) FROM {entry.table}").fetchone()[0],
            )
            for entry in snapshot.manifest.site_views
        ]
