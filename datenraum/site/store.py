"""The site store: immutable Parquet segments, published atomically through numbered manifests.

Layout of a store folder:

    CURRENT                      name of the manifest in force, replaced atomically (os.replace)
    manifests/manifest-N.json    the segments (one Parquet file list per table) of generation N
    segments/<segment>/<table>.*.parquet
                                 a load's rows; never modified once written, only superseded by a
                                 rewrite without the rows a later load replaced or deleted
    staging/<load>/              a load in progress; whatever is here when no load runs is debris
    rejects/<load>.ndjson        what a load rejected, with where and why
    views/<name>.<hash>.json     a site-registered ViewDefinition, in canonical JSON (sorted keys), named
                                 by the SHA-256 of that text (its first 16 hex digits): immutable
    site/<name>.<hash>/g<N>-<i>.parquet
                                 the rows of a site view over one raw file of the `resource` table
                                 (written in generation N); immutable

Site views (site/views.py, `datenraum view add`): a manifest's `site_views` lists the views the site
registered, each with its name (table `site_<name>`), content hash, view file and `parts`, which map
every raw file of the generation to the Parquet file of that view's rows over it (null: no rows). The
table is the union of its parts. A raw file never changes, so a part stays valid as long as its raw
file is in the manifest: a load that adds or rewrites raw files builds the parts of those files only, in
the same generation as its own segments; a changed view has another hash and so other parts, built
whole. `publish` refuses a manifest that lacks a site view of the current one (unless it removes it),
so that no writer drops a site's tables by forgetting to carry them over.
Registering, changing and removing a view publish a generation like a load does, so a reader sees a site
table complete or not at all, and a killed build leaves unreferenced files, debris like a killed load's.

Why this shape: a reader opens one manifest and sees exactly the files it lists, so a query that runs
while an ingest commits sees the old state or the new one, never a mix; a load killed half-way has
written nothing a manifest points to, so the previous state stays readable and the next load sweeps the
debris. Readers hold a shared flock on their manifest; the writer deletes an old generation only when it
can take that lock exclusively, so no file disappears under a running query.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import duckdb
import orjson
import pyarrow as pa

from datenraum.fhir.viewdef.compile_json import standard_views

__all__ = [
    "RAW_SCHEMA",
    "RAW_TABLE",
    "ROW_GROUP_ROWS",
    "SORT_KEYS",
    "Manifest",
    "Segment",
    "SiteView",
    "Snapshot",
    "Store",
    "StoreError",
    "aligned_columns",
    "layout_connection",
    "parquet_listing",
    "table_schemas",
    "write_in_layout",
]

RAW_TABLE = "resource"
RAW_SCHEMA = pa.schema(
    [
        ("resource_type", pa.string()),
        ("id", pa.string()),
        ("patient_id", pa.string()),
        ("source_file", pa.string()),
        ("source_line", pa.int64()),
        ("_seq", pa.int64()),
        ("json", pa.string()),
    ]
)
SEQ_COLUMN = "_seq"


class StoreError(RuntimeError):
    pass


# How each table's rows are ordered on disk. Feasibility queries filter on codes (and patients on birth
# date): with rows sorted by the filtered columns, Parquet's per-row-group min/max statistics let DuckDB
# skip almost every row group of a big table instead of scanning it.
SORT_KEYS: dict[str, tuple[str, ...]] = {
    "patient": ("birth_date", "id"),
    "condition": ("code_system", "code", "patient_id"),
    "observation": ("code_system", "code", "patient_id"),
    "observation_component": ("code_system", "code", "patient_id"),
    "procedure": ("code_system", "code", "patient_id"),
    "diagnostic_report": ("code_system", "code", "patient_id"),
    "medication": ("code_system", "code", "id"),
    "medication_administration": ("medication_id", "code", "patient_id"),
    "medication_statement": ("medication_id", "code", "patient_id"),
    "medication_request": ("medication_id", "code", "patient_id"),
    "specimen": ("type_system", "type_code", "patient_id"),
    "specimen_processing": ("id",),
    "organization": ("id",),
    "substance": ("code_system", "code", "id"),
    "consent": ("provision_code", "patient_id"),
    "encounter": ("class_code", "patient_id"),
    "imaging_study": ("modality_code", "patient_id"),
    "patient_identifier": ("system", "value"),
}
ROW_GROUP_ROWS = 32_768


# What DuckDB may hold in memory while it sorts a table into that layout; beyond, it spills to disk. Its
# default (80% of RAM) let the commit of a million patients grow to 15 GB.
LAYOUT_MEMORY_LIMIT = "2GB"


def layout_connection(spill_directory: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for writing tables in the store's layout, in bounded memory whatever their size."""
    db = duckdb.connect()
    db.execute(f"SET temp_directory = '{spill_directory}'")
    db.execute(f"SET memory_limit = '{LAYOUT_MEMORY_LIMIT}'")
    db.execute("SET preserve_insertion_order = false")
    return db


def write_in_layout(
    db: duckdb.DuckDBPyConnection, table: str, select: str, target: Path, alias: str = ""
) -> int:
    """Write `select` to `target` in the store's layout for `table`: sorted by its SORT_KEYS (columns
    qualified with `alias`), zstd-compressed, ROW_GROUP_ROWS to a row group. Returns the rows written."""
    keys = SORT_KEYS.get(table, ())
    schema = table_schemas()[table]
    order = []
    for index, key in enumerate(keys):
        column = alias + key
        if index < len(keys) - 1 and schema.field(key).type == pa.string():
            # DuckDB sorts by a normalized key of which only 32 bytes are compared directly: leading strings
            # such as a code system's URL fill them, and then nearly every comparison falls back to the
            # whole strings, which made the sort 4 times slower. An ENUM of the values in their order sorts
            # the same way in a byte or two.
            name = f"_sort_key_{index}"
            db.execute(
                f"CREATE OR REPLACE TYPE {name} AS ENUM "
                f"(SELECT DISTINCT {key} FROM ({select}) WHERE {key} IS NOT NULL ORDER BY 1)"
            )
            column = f"{column}::{name}"
        order.append(column)
    order_by = f" ORDER BY {', '.join(order)}" if order else ""
    # zstd's lowest level: the sorted columns compress about as well (the observations of 100k patients
    # took 25.1 MB against 25.5 at DuckDB's default), for a few percent less CPU in the commit.
    return db.execute(
        f"COPY ({select}{order_by}) TO '{target}' "
        f"(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
    ).fetchone()[0]


@functools.cache
def table_schemas() -> dict[str, pa.Schema]:
    """Every table of the store with its Parquet schema; flattened tables carry the load order `_seq`."""
    schemas = {RAW_TABLE: RAW_SCHEMA}
    for name, view in standard_views().items():
        schemas[name] = view.schema.append(pa.field(SEQ_COLUMN, pa.int64()))
    return schemas


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync(path.parent)


@dataclass(frozen=True)
class Segment:
    """The files of one segment (a load's rows, or a compaction's): by table, each a list of Parquet files
    relative to the store folder. In a manifest: `{"id": ..., "files": {table: [file, ...]}}`."""

    id: str
    files: Mapping[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        files = MappingProxyType({table: tuple(names) for table, names in self.files.items()})
        object.__setattr__(self, "files", files)

    def all_files(self) -> Iterator[str]:
        """Every file of the segment, table by table."""
        for names in self.files.values():
            yield from names

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "files": {table: list(names) for table, names in self.files.items()}}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Segment:
        return cls(body["id"], body["files"])


SITE_TABLE_PREFIX = "site_"


@dataclass(frozen=True)
class SiteView:
    """A ViewDefinition the site registered, and its table `site_<name>` as one part per raw file.

    In a manifest: `{"name", "hash", "resource", "view", "source", "parts": {raw file: part or null}}`,
    `view` the canonical JSON in `views/`, `source` the file it was registered from (for people)."""

    name: str
    hash: str
    resource: str
    view: str
    source: str
    parts: Mapping[str, str | None]

    def __post_init__(self) -> None:
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))

    @property
    def table(self) -> str:
        return SITE_TABLE_PREFIX + self.name

    def part_files(self) -> list[str]:
        return [part for part in self.parts.values() if part is not None]

    def all_files(self) -> Iterator[str]:
        yield self.view
        yield from self.part_files()

    def to_json(self) -> dict[str, Any]:
        body = {key: getattr(self, key) for key in ("name", "hash", "resource", "view", "source")}
        return {**body, "parts": dict(self.parts)}

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> SiteView:
        keys = ("name", "hash", "resource", "view", "source", "parts")
        return cls(*(body[key] for key in keys))


@dataclass(frozen=True)
class Manifest:
    generation: int
    segments: tuple[Segment, ...]
    last_load: dict[str, Any] | None = None
    site_views: tuple[SiteView, ...] = ()

    def files(self, table: str) -> list[str]:
        if table.startswith(SITE_TABLE_PREFIX):
            return next((v.part_files() for v in self.site_views if v.table == table), [])
        return [file for segment in self.segments for file in segment.files.get(table, ())]

    def all_files(self) -> Iterator[str]:
        """Every file the generation needs: its segments', its site views' and their parts."""
        for segment in self.segments:
            yield from segment.all_files()
        for view in self.site_views:
            yield from view.all_files()

    def to_json(self) -> bytes:
        body = {
            "format": 1,
            "generation": self.generation,
            "segments": [segment.to_json() for segment in self.segments],
        }
        if self.last_load is not None:
            body["last_load"] = self.last_load
        if self.site_views:
            body["site_views"] = [view.to_json() for view in self.site_views]
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        body = orjson.loads(data)
        segments = tuple(Segment.from_json(segment) for segment in body["segments"])
        site_views = tuple(SiteView.from_json(view) for view in body.get("site_views", ()))
        return cls(body["generation"], segments, body.get("last_load"), site_views)


EMPTY_MANIFEST = Manifest(0, ())


class Store:
    """A site store folder. Create it with `Store(path)`; it is initialised on first use."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # -- layout
    @property
    def manifests(self) -> Path:
        return self.path / "manifests"

    @property
    def segments(self) -> Path:
        return self.path / "segments"

    @property
    def staging(self) -> Path:
        return self.path / "staging"

    @property
    def rejects(self) -> Path:
        return self.path / "rejects"

    @property
    def views(self) -> Path:
        """Site-registered ViewDefinitions (site/views.py), one immutable file per version."""
        return self.path / "views"

    @property
    def site_tables(self) -> Path:
        """The parts of the site views' tables."""
        return self.path / "site"

    def initialise(self) -> None:
        try:
            for folder in (self.manifests, self.segments, self.staging, self.rejects):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(f"{self.path}: cannot be used as a site store ({error.strerror})") from None

    def _manifest_path(self, generation: int) -> Path:
        return self.manifests / f"manifest-{generation:08d}.json"

    def current_generation(self) -> int:
        try:
            name = (self.path / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return 0
        try:
            return int(name.removeprefix("manifest-").removesuffix(".json"))
        except ValueError:
            raise StoreError(f"{self.path}/CURRENT names no manifest: {name[:80]!r}") from None

    def read_manifest(self, generation: int) -> Manifest:
        if generation == 0:
            return EMPTY_MANIFEST
        return Manifest.from_json(self._manifest_path(generation).read_bytes())

    # -- reading
    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Snapshot]:
        """A consistent, read-only view of the store as of now, for as long as the block runs."""
        if not self.path.is_dir():
            raise StoreError(f"{self.path} is not a site store (no such folder)")
        for _attempt in range(50):
            generation = self.current_generation()
            if generation == 0:
                with contextlib.closing(Snapshot(self, EMPTY_MANIFEST)) as snapshot:
                    yield snapshot
                return
            handle = self._open_locked(self._manifest_path(generation))
            if handle is None:
                continue  # collected between reading CURRENT and locking it: read CURRENT again
            with handle:
                with contextlib.closing(Snapshot(self, Manifest.from_json(handle.read()))) as snapshot:
                    yield snapshot
                return
        raise StoreError(f"{self.path}: could not open a consistent snapshot")

    @staticmethod
    def _open_locked(path: Path) -> BinaryIO | None:
        """The manifest at `path`, open and share-locked; None if it was collected meanwhile.

        The collector unlinks a manifest while it holds the exclusive lock, so a manifest that is still
        linked once we hold the shared lock stays (with its files) until we let go.
        """
        try:
            handle = open(path, "rb")  # noqa: SIM115 - handed to the caller, who holds it for the snapshot
        except FileNotFoundError:
            return None
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        try:
            still_linked = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            still_linked = False
        if not still_linked:
            handle.close()
            return None
        return handle

    # -- writing (only ever under the writer lock)
    @contextlib.contextmanager
    def writer_lock(self, wait_seconds: float = 0) -> Iterator[None]:
        self.initialise()
        with open(self.path / ".writer.lock", "a+") as handle:
            deadline = time.monotonic() + wait_seconds
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StoreError(f"{self.path}: another load is running on this store") from None
                    time.sleep(0.2)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def sweep_debris(self) -> None:
        """Remove what a killed load left behind; call only under the writer lock.

        Debris is everything no published generation needs: staging folders, manifests newer than
        CURRENT (written, never published), temporary files of interrupted atomic writes, and segment
        files no manifest lists.
        """
        for leftover in self.staging.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        current = self.current_generation()
        for generation in self._live_generations():
            if generation > current:
                self._manifest_path(generation).unlink(missing_ok=True)
        for temporary in [*self.manifests.glob(".*.tmp"), *self.path.glob(".*.tmp")]:
            temporary.unlink(missing_ok=True)
        self._remove_unreferenced_files()

    def publish(self, manifest: Manifest, removes_site_views: bool = False) -> None:
        """Make `manifest` the current state (atomic), then collect generations nobody reads.

        The files it adds reach the disk first: after a power cut, CURRENT never names a manifest whose
        files were still only in the page cache. A manifest that lacks a site view of the current one is
        refused unless `removes_site_views`: a writer that forgot them (site/views.py `extend`) would
        drop a site's tables without a word.
        """
        previous = self.read_manifest(self.current_generation())
        dropped = {v.name for v in previous.site_views} - {v.name for v in manifest.site_views}
        if dropped and not removes_site_views:
            raise StoreError(
                f"{self.path}: generation {manifest.generation} would drop the site views "
                f"{sorted(dropped)}; carry them over with datenraum.site.views.extend"
            )
        new_files = {self.path / f for f in manifest.all_files()}
        new_files -= {self.path / f for f in previous.all_files()}
        for file in new_files:
            _fsync(file)
        for folder in {file.parent for file in new_files} | {file.parent.parent for file in new_files}:
            _fsync(folder)  # the new files' names, and the new segment (part) folders' names
        write_atomically(self._manifest_path(manifest.generation), manifest.to_json())
        write_atomically(self.path / "CURRENT", self._manifest_path(manifest.generation).name.encode())
        self._collect_old_generations(manifest.generation)

    def _live_generations(self) -> list[int]:
        return sorted(int(p.stem.removeprefix("manifest-")) for p in self.manifests.glob("manifest-*.json"))

    def _referenced_files(self, generations: list[int]) -> set[str]:
        referenced: set[str] = set()
        for generation in generations:
            with contextlib.suppress(FileNotFoundError):
                referenced.update(self.read_manifest(generation).all_files())
        return referenced

    def _collect_old_generations(self, current: int) -> None:
        for generation in self._live_generations():
            if generation >= current:
                continue
            path = self._manifest_path(generation)
            with open(path, "rb") as handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a reader still uses this generation; a later load collects it
                path.unlink()
        self._remove_unreferenced_files()

    def _remove_unreferenced_files(self) -> None:
        referenced = self._referenced_files(self._live_generations())
        for root in (self.segments, self.site_tables, self.views):
            for file in root.rglob("*"):
                if file.is_file() and str(file.relative_to(self.path)) not in referenced:
                    file.unlink(missing_ok=True)
            # Deepest first, so that a segment whose table folders empty out goes as well.
            for folder in sorted((f for f in root.rglob("*") if f.is_dir()), key=lambda f: -len(f.parts)):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # fails, as it should, while the folder holds anything


def parquet_listing(files: list[Path] | list[str]) -> str:
    """A DuckDB list literal of file paths, quoted safely."""
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def aligned_columns(schema: pa.Schema, stored: set[str]) -> str:
    """The select list that gives a table its current columns, whatever version of Datenraum wrote it.

    A store written before a view gained a column still opens: the column reads as NULL (and a reload
    fills it), instead of every query failing on a missing column."""
    duck_types = {
        pa.string(): "VARCHAR",
        pa.bool_(): "BOOLEAN",
        pa.float64(): "DOUBLE",
        pa.int64(): "BIGINT",
        pa.date32(): "DATE",
        pa.timestamp("us"): "TIMESTAMP",
    }
    columns = []
    for field in schema:
        if field.name in stored:
            columns.append(f'"{field.name}"')
        else:
            columns.append(f'CAST(NULL AS {duck_types[field.type]}) AS "{field.name}"')
    return ", ".join(columns)


@functools.lru_cache(maxsize=64)
def _site_schema(view_file: str) -> pa.Schema:
    """The schema of the view stored in `view_file` (immutable, so cached by its name)."""
    from datenraum.fhir.viewdef.compile_json import arrow_type
    from datenraum.fhir.viewdef.model import load_view

    view = load_view(orjson.loads(Path(view_file).read_bytes()), view_file)
    return pa.schema([pa.field(column.name, arrow_type(column)) for column in view.columns])


class Snapshot:
    """One generation of the store, with a DuckDB connection whose views are the store's tables."""

    def __init__(self, store: Store, manifest: Manifest) -> None:
        self.store = store
        self.manifest = manifest
        self.generation = manifest.generation
        self._connection: duckdb.DuckDBPyConnection | None = None

    def files(self, table: str) -> list[Path]:
        return [self.store.path / file for file in self.manifest.files(table)]

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection with one view per table (lazily created, closed with the snapshot)."""
        if self._connection is None:
            connection = duckdb.connect()
            # Parquet footers are read once per connection, not once per query: a feasibility query
            # touches a handful of tables, each possibly many files.
            connection.execute("SET parquet_metadata_cache = true")
            for table, schema in table_schemas().items():
                files = self.files(table)
                if files:
                    source = f"read_parquet({parquet_listing(files)}, union_by_name = true)"
                    stored = {
                        row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
                    }
                    visible = schema.remove(schema.get_field_index(SEQ_COLUMN))
                    connection.execute(
                        f"CREATE VIEW {table} AS SELECT {aligned_columns(visible, stored)} FROM {source}"
                    )
                else:
                    # A table, not a view of the registered Arrow table: what is registered is seen only
                    # by this connection, not by its cursors (`cursor`).
                    empty = schema.empty_table().drop_columns([SEQ_COLUMN])
                    connection.register(f"_empty_{table}", empty)
                    connection.execute(f"CREATE TABLE {table} AS SELECT * FROM _empty_{table}")
                    connection.unregister(f"_empty_{table}")
            for view in self.manifest.site_views:
                files = self.files(view.table)
                if files:
                    source = f"read_parquet({parquet_listing(files)}, union_by_name = true)"
                    connection.execute(f"CREATE VIEW {view.table} AS SELECT * FROM {source}")
                else:
                    empty = self.site_schema(view).empty_table()
                    connection.register(f"_empty_{view.table}", empty)
                    connection.execute(f"CREATE TABLE {view.table} AS SELECT * FROM _empty_{view.table}")
                    connection.unregister(f"_empty_{view.table}")
            self._connection = connection
        return self._connection

    def site_schema(self, view: SiteView) -> pa.Schema:
        """The Arrow schema of a site view's table, from its stored ViewDefinition."""
        return _site_schema(str(self.store.path / view.view))

    def tables(self) -> list[str]:
        """Every table of this generation: ours, then the site views'."""
        return [*table_schemas(), *(view.table for view in self.manifest.site_views)]

    def cursor(self) -> Snapshot:
        """The same generation on a cursor of this snapshot's connection, for one thread: a DuckDB
        connection must not be used by several threads at once, its cursors may (one each). Closing it
        closes only the cursor; this snapshot must stay open while it is used."""
        view = Snapshot(self.store, self.manifest)
        view._connection = self.connection.cursor()
        return view

    def row_counts(self) -> dict[str, int]:
        return {
            table: self.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in self.tables()
        }

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
