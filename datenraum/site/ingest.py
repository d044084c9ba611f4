"""`datenraum ingest`: load FHIR NDJSON and Bundles into a site store, all or nothing per load.

A load runs in three steps:
1. plan: split the input into tasks (byte ranges of NDJSON files, whole gzip and JSON files);
2. read: worker processes parse, validate and flatten each task into staging Parquet (see loader.py);
3. commit: with the whole load in view, settle what the workers could not know alone: which of two
   versions of a resource wins (the later one), which references point to no patient (rejected), which
   conditional references name which patient, and which rows of earlier loads are replaced or deleted.
   Then one manifest swap publishes it all (see store.py).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from datenraum.fhir.references import CONDITIONAL_PREFIX
from datenraum.fhir.viewdef import standard_views
from datenraum.site.loader import Reject, Task, TaskResult, run_task
from datenraum.site.store import RAW_TABLE, Manifest, Snapshot, Store, table_schemas

__all__ = ["IngestError", "LoadReport", "ingest"]

CHUNK_BYTES = 32 * 1024 * 1024
# Below this much input, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD_BYTES = 16 * 1024 * 1024
_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".json")


class IngestError(RuntimeError):
    pass


@dataclass
class LoadReport:
    load_id: str
    generation: int = 0
    added: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    rejects_file: str | None = None
    resources_read: int = 0
    seconds: float = 0.0

    def total(self, kind: str) -> int:
        return sum(getattr(self, kind).values())

    def to_dict(self) -> dict:
        return {
            "load_id": self.load_id,
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
            "resources_read": self.resources_read,
            "added": self.added,
            "replaced": self.replaced,
            "deleted": self.deleted,
            "rejected": self.rejected,
            "rejects_file": self.rejects_file,
            "rejects": [{"location": r.location, "reason": r.reason} for r in self.rejects],
        }


def _count(counter: dict[str, int], key: str, amount: int = 1) -> None:
    if amount:
        counter[key] = counter.get(key, 0) + amount


# --- plan ------------------------------------------------------------------------------------------


def discover(paths: Sequence[Path]) -> list[Path]:
    """The input files named by `paths` (files, or folders searched recursively), in a stable order."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
            if not found:
                raise IngestError(f"{path}: folder holds no .ndjson, .ndjson.gz or .json files")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise IngestError(f"{path}: no such file or folder")
    return files


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        return "ndjson.gz"
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "json"


def plan(files: Sequence[Path], staging: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Task]:
    """Tasks in input order; big NDJSON files are cut at line ends into chunks of about chunk_bytes."""
    index = 0
    for path in files:
        kind = _kind(path)
        if kind != "ndjson":
            index += 1
            yield Task(index, str(path), kind, staging=str(staging))
            continue
        size = path.stat().st_size
        offset, line = 0, 1
        with open(path, "rb") as handle:
            while offset < size:
                handle.seek(offset)
                block = handle.read(chunk_bytes)
                if offset + len(block) < size:
                    block += handle.readline()
                index += 1
                yield Task(index, str(path), kind, offset, len(block), line, str(staging))
                line += block.count(b"\n")
                offset += len(block)


def _read_all(tasks: Iterator[Task], workers: int) -> list[TaskResult]:
    if workers <= 1:
        return [run_task(task) for task in tasks]
    # spawn, not fork: the parent may hold DuckDB threads, which fork would copy in an unknown state
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(run_task, task) for task in tasks]
        return [future.result() for future in futures]


# --- commit ----------------------------------------------------------------------------------------


def _listing(files: Sequence[str | Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


class _Commit:
    """Settles one load against the store's current state and publishes it."""

    def __init__(self, store: Store, snapshot: Snapshot, load_id: str, results: list[TaskResult]) -> None:
        self.store = store
        self.snapshot = snapshot
        self.load_id = load_id
        self.results = results
        self.staging = store.staging / load_id
        self.report = LoadReport(load_id)
        self.db = duckdb.connect()
        self.views_by_table = {name: view for name, view in standard_views().items()}
        self.staged: dict[str, list[str]] = {}
        for result in results:
            for table, files in result.files.items():
                self.staged.setdefault(table, []).extend(files)
            for resource_type, n in result.rejected.items():
                _count(self.report.rejected, resource_type, n)
            self.report.rejects.extend(result.rejects)
            self.report.resources_read += sum(result.accepted.values()) + sum(result.rejected.values())
        self.extra_rejects: list[bytes] = []

    def run(self) -> LoadReport:
        mapping = self._resolve_identifiers()
        drops, deleted_keys, deleted_patients = self._settle_staged(mapping)
        new_segment = self._write_new_segment(drops, mapping)
        segments = self._supersede_old(new_segment, deleted_keys, deleted_patients)
        self._write_rejects()
        generation = self.snapshot.generation + 1
        report = self.report
        last_load = {"load_id": self.load_id, "added": report.added, "replaced": report.replaced,
                     "deleted": report.deleted, "rejected": report.rejected}
        self.store.publish(Manifest(generation, tuple(segments), last_load))
        report.generation = generation
        self.db.close()
        return report

    # Conditional references and deletes name a patient by identifier; find the patient's id.
    def _resolve_identifiers(self) -> dict[str, str]:
        wanted = {ref for r in self.results for ref in r.patient_references if ref.startswith(CONDITIONAL_PREFIX)}
        wanted |= {key for r in self.results for (_t, key, _s, _l) in r.deletes if key.startswith(CONDITIONAL_PREFIX)}
        if not wanted:
            return {}
        files = [str(f) for f in self.snapshot.files("patient_identifier")] + self.staged.get("patient_identifier", [])
        if not files:
            return {}
        rows = self.db.execute(
            f"SELECT system, value, id FROM read_parquet({_listing(files)}) ORDER BY _seq"
        ).fetchall()
        by_system_value = {f"{CONDITIONAL_PREFIX}{s or ''}|{v}": i for s, v, i in rows}
        by_value = {f"{CONDITIONAL_PREFIX}|{v}": i for _s, v, i in rows}
        mapping = {}
        for query in wanted:
            found = by_system_value.get(query) or by_value.get(query)
            if found is not None:
                mapping[query] = found
        return mapping

    def _settle_staged(self, mapping: dict[str, str]) -> tuple[pa.Table, pa.Table, set[str]]:
        """Rows of this load that do not survive, keys it deletes, and patients it deletes."""
        deletes = [(t, mapping.get(k, k), s, loc) for r in self.results for (t, k, s, loc) in r.deletes]
        for resource_type, key, _seq, location in deletes:
            if key.startswith(CONDITIONAL_PREFIX):
                self.report.rejects.append(Reject(location, f"DELETE names no known patient ({key[1:]})"))
                _count(self.report.rejected, resource_type)
        deletes = [d for d in deletes if not d[1].startswith(CONDITIONAL_PREFIX)]
        self.db.register("deletes", pa.table({
            "resource_type": [d[0] for d in deletes], "id": [d[1] for d in deletes],
            "_seq": pa.array([d[2] for d in deletes], pa.int64()),
        }))
        raw_files = self.staged.get(RAW_TABLE, [])
        if raw_files:
            self.db.execute(
                f"CREATE TABLE staged AS SELECT resource_type, id, patient_id, _seq, source_file, source_line, "
                f"json FROM read_parquet({_listing(raw_files)})"
            )
        else:
            self.db.execute(
                "CREATE TABLE staged (resource_type VARCHAR, id VARCHAR, patient_id VARCHAR, _seq BIGINT, "
                "source_file VARCHAR, source_line BIGINT, json VARCHAR)"
            )
        if mapping:
            self.db.register("identifier_map", pa.table({"placeholder": list(mapping), "id": list(mapping.values())}))
            self.db.execute(
                "UPDATE staged SET patient_id = m.id FROM identifier_map m WHERE staged.patient_id = m.placeholder"
            )
        # A later DELETE removes the patient's earlier rows in this load, and everything of theirs before.
        self.db.execute("""
            CREATE TABLE drops AS
            SELECT s.resource_type, s.id, s._seq, 'superseded' AS why FROM staged s
              JOIN (SELECT resource_type, id, max(_seq) AS last FROM staged GROUP BY ALL HAVING count(*) > 1) d
                ON s.resource_type = d.resource_type AND s.id = d.id AND s._seq < d.last
            UNION ALL
            SELECT s.resource_type, s.id, s._seq, 'deleted' FROM staged s JOIN deletes d
                ON s.resource_type = d.resource_type AND s.id = d.id AND s._seq < d._seq
            UNION ALL
            SELECT s.resource_type, s.id, s._seq, 'deleted' FROM staged s JOIN deletes d
                ON d.resource_type = 'Patient' AND s.patient_id = d.id AND s._seq < d._seq
        """)
        for resource_type, n in self.db.execute(
            "SELECT resource_type, count(DISTINCT (id, _seq)) FROM drops WHERE why = 'superseded' GROUP BY 1"
        ).fetchall():
            _count(self.report.replaced, resource_type, n)
        # Patients that exist after this load: those already stored and those loaded, less deleted ones.
        surviving = "(SELECT * FROM staged s WHERE NOT EXISTS (SELECT 1 FROM drops d WHERE d.resource_type = " \
                    "s.resource_type AND d.id = s.id AND d._seq = s._seq))"
        deleted_patients = {
            row[0] for row in self.db.execute(
                f"SELECT d.id FROM deletes d WHERE d.resource_type = 'Patient' AND NOT EXISTS (SELECT 1 FROM "
                f"{surviving} s WHERE s.resource_type = 'Patient' AND s.id = d.id AND s._seq > d._seq)"
            ).fetchall()
        }
        self.db.register("deleted_patients", pa.table({"id": pa.array(sorted(deleted_patients), pa.string())}))
        stored_patients = self.snapshot.files("patient")
        stored = (
            f"SELECT id FROM read_parquet({_listing(stored_patients)}) "
            "WHERE id NOT IN (SELECT id FROM deleted_patients)"
            if stored_patients else "SELECT NULL::VARCHAR AS id WHERE false"
        )
        self.db.execute(f"""
            CREATE TABLE dangling AS
            SELECT s.resource_type, s.id, s._seq, s.patient_id, s.source_file, s.source_line, s.json
            FROM {surviving} s
            WHERE s.patient_id IS NOT NULL AND s.resource_type <> 'Patient'
              AND s.patient_id NOT IN (SELECT id FROM ({stored}))
              AND s.patient_id NOT IN (SELECT id FROM {surviving} p WHERE p.resource_type = 'Patient')
        """)
        for resource_type, id_, _seq, patient, file, line, text in self.db.execute(
            "SELECT * FROM dangling ORDER BY _seq"
        ).fetchall():
            where = f"{file}:{line}" if not file.endswith(".json") else f"{file}: Bundle.entry[{line - 1}]"
            if patient.startswith(CONDITIONAL_PREFIX):
                reason = f"references a patient by identifier ({patient[1:]}) that is not in the store or this load"
            else:
                reason = f"references Patient/{patient}, which is neither in the store nor in this load"
            self.report.rejects.append(Reject(where, reason))
            _count(self.report.rejected, resource_type)
            self.extra_rejects.append(orjson.dumps({"location": where, "reason": reason, "resource": text}))
        self.db.execute("INSERT INTO drops SELECT resource_type, id, _seq, 'dangling' FROM dangling")
        drops = self.db.sql("SELECT resource_type, id, _seq FROM drops").to_arrow_table()
        deleted_keys = self.db.sql("SELECT DISTINCT resource_type, id FROM deletes").to_arrow_table()
        return drops, deleted_keys, deleted_patients

    def _write_new_segment(self, drops: pa.Table, mapping: dict[str, str]) -> dict | None:
        if not self.staged:
            return None
        segment_dir = self.store.segments / self.load_id
        segment_dir.mkdir(parents=True)
        files: dict[str, list[str]] = {}
        if drops.num_rows == 0 and not mapping:
            # The usual case: nothing to settle, so the staging files become the segment as they are.
            for table, staged in self.staged.items():
                (segment_dir / table).mkdir()
                files[table] = []
                for file in staged:
                    target = segment_dir / table / Path(file).name
                    os.replace(file, target)
                    files[table].append(str(target.relative_to(self.store.path)))
        else:
            self.db.register("drop_rows", drops)
            for table, staged in self.staged.items():
                target = segment_dir / f"{table}.parquet"
                if self._copy_filtered(table, staged, target, self._staged_filter(table), mapping):
                    files[table] = [str(target.relative_to(self.store.path))]
        keys = self._segment_keys(files.get(RAW_TABLE, []))
        for resource_type, n in keys.items():
            _count(self.report.added, resource_type, n)
        return {"id": self.load_id, "files": files} if files else None

    def _staged_filter(self, table: str) -> str:
        if table == RAW_TABLE:
            return ("NOT EXISTS (SELECT 1 FROM drop_rows d WHERE d.resource_type = t.resource_type "
                    "AND d.id = t.id AND d._seq = t._seq)")
        resource_type = self.views_by_table[table].resource
        return (f"NOT EXISTS (SELECT 1 FROM drop_rows d WHERE d.resource_type = '{resource_type}' "
                "AND d.id = t.id AND d._seq = t._seq)")

    def _copy_filtered(self, table: str, sources: Sequence[str], target: Path, condition: str,
                       mapping: dict[str, str] | None = None) -> bool:
        """Copy the rows of `sources` meeting `condition` into `target`; False (and no file) if none do."""
        has_patient = "patient_id" in table_schemas()[table].names
        select = "t.*"
        if mapping and has_patient:
            select = "t.* REPLACE (coalesce(m.id, t.patient_id) AS patient_id)"
            joined = f"read_parquet({_listing(sources)}) t LEFT JOIN identifier_map m ON t.patient_id = m.placeholder"
        else:
            joined = f"read_parquet({_listing(sources)}) t"
        count = self.db.execute(f"SELECT count(*) FROM {joined} WHERE {condition}").fetchone()[0]
        if count == 0:
            return False
        self.db.execute(
            f"COPY (SELECT {select} FROM {joined} WHERE {condition}) TO '{target}' "
            "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)"
        )
        return True

    def _segment_keys(self, raw_files: list[str]) -> dict[str, int]:
        if not raw_files:
            self.db.execute("CREATE TABLE new_keys (resource_type VARCHAR, id VARCHAR)")
            return {}
        paths = [self.store.path / f for f in raw_files]
        self.db.execute(f"CREATE TABLE new_keys AS SELECT resource_type, id FROM read_parquet({_listing(paths)})")
        return dict(self.db.execute("SELECT resource_type, count(*) FROM new_keys GROUP BY 1").fetchall())

    def _supersede_old(self, new_segment: dict | None, deleted_keys: pa.Table,
                       deleted_patients: set[str]) -> list[dict]:
        """Rewrite the earlier segments that hold rows this load replaces or deletes."""
        old_segments = list(self.snapshot.manifest.segments)
        if not old_segments:
            return [new_segment] if new_segment else []
        self.db.register("deleted_keys", deleted_keys)
        self.db.execute("""
            CREATE TABLE gone AS
            SELECT resource_type, id, 'replaced' AS why FROM new_keys
            UNION ALL SELECT resource_type, id, 'deleted' FROM deleted_keys
        """)
        raw_files = [str(self.snapshot.store.path / f) for s in old_segments for f in s["files"].get(RAW_TABLE, [])]
        hits = self.db.execute(f"""
            SELECT o.filename, o.resource_type, coalesce(g.why, 'deleted') AS why, count(*)
            FROM read_parquet({_listing(raw_files)}, filename = true) o
            LEFT JOIN (SELECT resource_type, id, min(why) AS why FROM gone GROUP BY ALL) g
              ON o.resource_type = g.resource_type AND o.id = g.id
            WHERE g.id IS NOT NULL OR o.patient_id IN (SELECT id FROM deleted_patients)
            GROUP BY ALL
        """).fetchall()
        affected_files = set()
        for filename, resource_type, why, n in hits:
            affected_files.add(filename)
            _count(self.report.replaced if why == "replaced" else self.report.deleted, resource_type, n)
            if why == "replaced":
                _count(self.report.added, resource_type, -n)
        segments = []
        for segment in old_segments:
            raw = {str(self.store.path / f) for f in segment["files"].get(RAW_TABLE, [])}
            if raw & affected_files:
                rewritten = self._rewrite_segment(segment)
                if rewritten["files"]:
                    segments.append(rewritten)
            else:
                segments.append(segment)
        if new_segment:
            segments.append(new_segment)
        return segments

    def _rewrite_segment(self, segment: dict) -> dict:
        generation = self.snapshot.generation + 1
        files: dict[str, list[str]] = {}
        for table, sources in segment["files"].items():
            paths = [str(self.store.path / f) for f in sources]
            if table == RAW_TABLE:
                condition = "NOT EXISTS (SELECT 1 FROM gone g WHERE g.resource_type = t.resource_type AND g.id = t.id)"
            else:
                resource_type = self.views_by_table[table].resource
                condition = f"NOT EXISTS (SELECT 1 FROM gone g WHERE g.resource_type = '{resource_type}' AND g.id = t.id)"
            if "patient_id" in table_schemas()[table].names:
                condition += " AND (t.patient_id IS NULL OR t.patient_id NOT IN (SELECT id FROM deleted_patients))"
            target = self.store.segments / segment["id"] / f"{table}.g{generation:08d}.parquet"
            if self._copy_filtered(table, paths, target, condition):
                files[table] = [str(target.relative_to(self.store.path))]
        return {"id": segment["id"], "files": files}

    def _write_rejects(self) -> None:
        parts = sorted((self.staging / "rejects").glob("*.ndjson")) if (self.staging / "rejects").exists() else []
        if not parts and not self.extra_rejects:
            return
        target = self.store.rejects / f"{self.load_id}.ndjson"
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out)
            for line in self.extra_rejects:
                out.write(line + b"\n")
        self.report.rejects_file = str(target)


def ingest(
    store: Store | Path | str,
    paths: Sequence[Path | str],
    *,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    wait_seconds: float = 0,
) -> LoadReport:
    """Load FHIR input into the store as one atomic load and report what changed."""
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
            results = _read_all(plan(files, staging, chunk_bytes), workers)
            with store.snapshot() as snapshot:
                report = _Commit(store, snapshot, load_id, results).run()
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report
