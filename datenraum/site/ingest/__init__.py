"""`datenraum ingest`: load FHIR NDJSON and Bundles into a site store, all or nothing per load.

A load runs in three steps, each in a module of its own:

1. plan (`plan.py`): find the input files and split them into read tasks (byte ranges of NDJSON files,
   whole gzip and JSON files);
2. read (`worker.py`, in worker processes): parse, validate and flatten each task into staging Parquet.
   NDJSON goes first to the strict reader (`strict.py`, msgspec into exact shapes, the fast path), and
   what it cannot vouch for to the row-by-row reader (`rows.py`, the reference, which also reads
   Bundles). What both readers check, and how they batch, is defined once (`rules.py`). The workers'
   allocator settings are in `allocation.py`;
3. commit (`commit.py`): with the whole load in view, settle versions, dangling references, conditional
   references and updates, and replacements and deletes of earlier loads; the site-registered views'
   tables are extended from the raw files the commit wrote (site/views.py, `extend`); then one manifest
   swap publishes it all (see site/store.py).

What a load reports, and the one record a reject leaves in the rejects file: `report.py`; what it warns
about after the commit (stored, but doubtful: a specimen's diagnosis of another patient): `checks.py`.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

from datenraum.site import views as site_views
from datenraum.site.ingest.allocation import worker_environment
from datenraum.site.ingest.checks import cross_patient_diagnoses
from datenraum.site.ingest.commit import Commit
from datenraum.site.ingest.plan import CHUNK_BYTES, ReadResult, ReadTask, discover, plan
from datenraum.site.ingest.report import IngestError, LoadReport, LoadWarning, Reject
from datenraum.site.ingest.rules import MAX_RESOURCE_BYTES
from datenraum.site.ingest.worker import run_task
from datenraum.site.store import Store

if TYPE_CHECKING:
    from datenraum.site.engines.base import EngineSettings

__all__ = [
    "CHUNK_BYTES",
    "MAX_RESOURCE_BYTES",
    "IngestError",
    "LoadReport",
    "LoadWarning",
    "Reject",
    "ingest",
]

# Below this much input, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD_BYTES = 16 * 1024 * 1024


def _read_all(tasks: Iterator[ReadTask], workers: int) -> list[ReadResult]:
    if workers <= 1:
        return [run_task(task) for task in tasks]
    # spawn, not fork: the parent may hold DuckDB threads, which fork would copy in an unknown state
    context = multiprocessing.get_context("spawn")
    try:
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            with worker_environment():  # the workers start as the tasks are submitted
                futures = [pool.submit(run_task, task) for task in tasks]
            return [future.result() for future in futures]
    except BrokenProcessPool:
        raise IngestError("a worker process died (out of memory?); nothing was loaded") from None


def ingest(
    store: Store | Path | str,
    paths: Sequence[Path | str],
    *,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    max_resource_bytes: int = MAX_RESOURCE_BYTES,
    wait_seconds: float = 0,
    strict_reader: bool = True,
    engine: EngineSettings | None = None,
) -> LoadReport:
    """Load FHIR input into the store as one atomic load and report what changed.

    `workers` defaults to one per core for big input, `chunk_bytes` is how much NDJSON one task reads,
    `max_resource_bytes` the longest NDJSON line accepted, and `wait_seconds` how long to wait for a
    load that is already running on the same store. Without `strict_reader`, every NDJSON line is read
    by the row-by-row reader: the same result, more slowly (to compare, or to rule the strict reader out).
    `engine` (`[engine]` of the site's settings): on Spark, the read tasks run as Spark tasks
    (`datenraum.site.engines.spark_ingest`) and `workers` does not apply; the store is the same.
    """
    store = store if isinstance(store, Store) else Store(store)
    started = time.perf_counter()
    files = discover([Path(p) for p in paths])
    total_bytes = sum(f.stat().st_size for f in files)
    if workers is None:
        workers = 1 if total_bytes < PARALLEL_THRESHOLD_BYTES else os.cpu_count() or 1
    with store.writer_lock(wait_seconds):
        store.sweep_debris()
        load_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        staging = store.staging / load_id
        staging.mkdir(parents=True)
        try:
            tasks = plan(files, staging, chunk_bytes, max_resource_bytes, strict_reader)
            if engine is not None and engine.name == "spark":
                from datenraum.site.engines.spark_ingest import read_on_spark

                results = read_on_spark(tasks, engine)
            else:
                results = _read_all(tasks, workers)
            with store.snapshot() as snapshot:
                manifest, report = Commit(store, snapshot, load_id, results).run()
                previous = snapshot.manifest
            # The site's own views, from the raw files this load wrote, into the same generation.
            manifest = site_views.extend(store, previous, manifest, report.site_view_notes)
            # Published after the snapshot is released, so that the generation it read can be collected;
            # its files stay put meanwhile, because only a load (and this one holds the lock) deletes files.
            store.publish(manifest)
            with store.snapshot() as published:
                report.warned, report.warnings = cross_patient_diagnoses(published, load_id)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report
