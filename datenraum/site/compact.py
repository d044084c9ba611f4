"""`datenraum compact`: merge a store's segments into one, each table sorted for fast queries.

Every load adds a segment, and a store written by an older version may hold its tables unsorted in many
small files. Queries are fastest on one file per table, sorted by the columns they filter on
(`store.SORT_KEYS`), so that DuckDB can skip row groups by their statistics. Compaction writes that
layout as a new generation; like a load, it is atomic, and readers keep their snapshot meanwhile. The raw
JSON table is merged too, unsorted: it is read by id, not scanned by code.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from datenraum.site import views as site_views
from datenraum.site.store import (
    Manifest,
    Segment,
    Store,
    StoreError,
    aligned_columns,
    layout_connection,
    parquet_listing,
    table_schemas,
    write_in_layout,
)

__all__ = ["CompactReport", "compact"]


@dataclass(frozen=True)
class CompactReport:
    generation: int
    segments_before: int
    files_before: int
    seconds: float


def compact(store: Store | Path | str) -> CompactReport:
    store = store if isinstance(store, Store) else Store(store)
    started = time.perf_counter()
    if store.current_generation() == 0:
        raise StoreError(f"{store.path}: not a site store with data (nothing to compact)")
    with store.writer_lock():
        store.sweep_debris()
        with store.snapshot() as snapshot:
            manifest = snapshot.manifest
            segment_id = time.strftime("%Y%m%dT%H%M%S") + "-compact-" + uuid.uuid4().hex[:8]
            folder = store.segments / segment_id
            folder.mkdir(parents=True)
            files: dict[str, list[str]] = {}
            spill = store.staging / segment_id  # swept as debris if compaction is killed
            with layout_connection(spill) as db:
                for table, schema in table_schemas().items():
                    sources = snapshot.files(table)
                    if not sources:
                        continue
                    target = folder / f"{table}.parquet"
                    source = f"read_parquet({parquet_listing(sources)}, union_by_name = true)"
                    stored = {row[0] for row in db.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
                    write_in_layout(
                        db, table, f"SELECT {aligned_columns(schema, stored)} FROM {source}", target
                    )
                    files[table] = [str(target.relative_to(store.path))]
            shutil.rmtree(spill, ignore_errors=True)
            before = (
                len(manifest.segments),
                sum(len(f) for s in manifest.segments for f in s.files.values()),
            )
            generation = manifest.generation + 1
            segments = (Segment(segment_id, files),) if files else ()
            new_manifest = Manifest(generation, segments, manifest.last_load)
        # The raw table is rewritten: the site views' tables are built again from it.
        store.publish(site_views.extend(store, manifest, new_manifest))
    return CompactReport(generation, before[0], before[1], time.perf_counter() - started)
