"""The commit of a load: with the whole load in view, settle what the workers could not know alone.

Which of two versions of a resource wins (the later one), which references point to no patient
(rejected), which conditional references name which patient, and which rows of earlier loads are
replaced or deleted. The result is the manifest of the next generation (see store.py), which the caller
publishes in one swap.

How the commit counts: every resource read is added (its type and id were not in the store, or had
been deleted earlier in the load), replaced (they were, whether stored before or read earlier in this
load) or rejected; a DELETE counts every resource it removes, and deleting a Patient removes all of
that patient's resources (the store holds no resources of patients it does not hold).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from datenraum.fhir.references import CONDITIONAL_PREFIX, resolve_patient_references
from datenraum.fhir.viewdef.compile_json import standard_views
from datenraum.site.ingest.plan import ReadResult, kind_of
from datenraum.site.ingest.plan import location as input_location
from datenraum.site.ingest.report import MAX_REPORTED_REJECTS, LoadReport, Reject, reject_line
from datenraum.site.store import (
    RAW_SCHEMA,
    RAW_TABLE,
    ROW_GROUP_ROWS,
    Manifest,
    Segment,
    Snapshot,
    Store,
    layout_connection,
    parquet_listing,
    table_schemas,
    write_in_layout,
)

__all__ = ["Commit"]


def _count(counter: dict[str, int], key: str, amount: int = 1) -> None:
    if amount:
        counter[key] = counter.get(key, 0) + amount


def _from_parquet(files: Sequence[str | Path], columns: str, empty: str) -> str:
    """A relation over Parquet files, or an empty one of the same columns when there are none."""
    if files:
        return f"(SELECT {columns} FROM read_parquet({parquet_listing(files)}))"
    return f"(SELECT {empty} WHERE false)"


_KEY_COLUMNS = "resource_type, id, patient_id"
_NO_KEYS = "NULL::VARCHAR AS resource_type, NULL::VARCHAR AS id, NULL::VARCHAR AS patient_id"


def _resolved_json(text: str, ids: dict[str, str]) -> str:
    """The stored JSON of a resource with the references to patients that `ids` resolves, resolved; and a
    conditionally updated patient with the id of the patient it updates."""
    resource = orjson.loads(text)
    changed = resolve_patient_references(resource, ids)
    if resource["resourceType"] == "Patient" and resource["id"] in ids:
        resource["id"] = ids[resource["id"]]
        changed = True
    return orjson.dumps(resource).decode() if changed else text


class Commit:
    """Settles one load against the store's current state into the manifest that publishes it."""

    def __init__(self, store: Store, snapshot: Snapshot, load_id: str, results: list[ReadResult]) -> None:
        self.store = store
        self.snapshot = snapshot
        self.load_id = load_id
        self.results = results
        self.staging = store.staging / load_id
        self.report = LoadReport(load_id)
        self.db = layout_connection(self.staging / "duckdb.tmp")
        # One thread: a second makes the sorts cost about a fifth more CPU for a third less wall time,
        # and the ingest is measured in resources per CPU-second.
        self.db.execute("SET threads = 1")
        self.views_by_table = dict(standard_views())
        self.staged: dict[str, list[str]] = {}
        for result in results:
            for table, files in result.files.items():
                self.staged.setdefault(table, []).extend(files)
            for resource_type, n in result.rejected.items():
                _count(self.report.rejected, resource_type, n)
            self.report.rejects.extend(result.rejects)
            self.report.resources_read += sum(result.accepted.values()) + sum(result.rejected.values())
        self.extra_rejects: list[bytes] = []
        # Placeholders of patients named by identifier, and provisional ids of conditional updates: their ids.
        self.identifier_ids: dict[str, str] = {}
        self.refused: dict[int, tuple[str, str]] = {}  # seq of a conditional update -> location, reason

    def run(self) -> tuple[Manifest, LoadReport]:
        """The manifest of the store after this load (to publish once the snapshot is released), and the report."""
        try:
            mapping = self._resolve_identifiers(self._match_conditional_updates())
            self._stage_keys(mapping)
            self._reject_dangling()
            self._settle()
            new_segment = self._write_new_segment(mapping)
            segments = self._supersede_old(new_segment)
            self._write_rejects()
        finally:
            self.db.close()
        generation = self.snapshot.generation + 1
        report = self.report
        last_load = {
            "load_id": self.load_id,
            "added": report.added,
            "replaced": report.replaced,
            "deleted": report.deleted,
            "rejected": report.rejected,
        }
        report.generation = generation
        del report.rejects[MAX_REPORTED_REJECTS:]
        return Manifest(generation, tuple(segments), last_load), report

    def _reject(self, resource_type: str, location: str, reason: str, text: str = "") -> None:
        self.report.rejects.append(Reject(location, reason))
        _count(self.report.rejected, resource_type)
        self.extra_rejects.append(reject_line(location, reason, text))

    def _identifiers(self) -> str | None:
        """SQL for the patient identifiers of the store and of this load (`recent`), None if there are none."""
        stored = [str(f) for f in self.snapshot.files("patient_identifier")]
        loaded = self.staged.get("patient_identifier", [])
        if not (stored or loaded):
            return None
        columns = "system, value, id, _seq"
        empty = "NULL::VARCHAR AS system, NULL::VARCHAR AS value, NULL::VARCHAR AS id, NULL::BIGINT AS _seq"
        refused = f"_seq NOT IN ({', '.join(map(str, self.refused))})" if self.refused else "true"
        return f"""(
            SELECT *, false AS recent FROM {_from_parquet(stored, columns, empty)}
            UNION ALL SELECT *, true FROM {_from_parquet(loaded, columns, empty)} WHERE {refused}
        )"""

    def _register_queries(self, name: str, placeholders: Sequence[str], **columns: Sequence) -> None:
        """A table `name` of identifier placeholders with their system and value, and further columns."""
        queries = [query.removeprefix(CONDITIONAL_PREFIX).partition("|") for query in placeholders]
        table = {
            "placeholder": list(placeholders),
            "system": [q[0] for q in queries],
            "value": [q[2] for q in queries],
        }
        self.db.register(name, pa.table({**table, **{key: list(value) for key, value in columns.items()}}))

    # `identifier=value` matches the value in any system (an identifier without system first);
    # `identifier=system|value` only that system.
    _MATCHES = "p.value = w.value AND (w.system = '' OR p.system = w.system)"

    def _match_conditional_updates(self) -> dict[str, str]:
        """The ids of the patients that conditional updates update: provisional id -> the one patient matched.

        FHIR's conditional update: one match is updated, none makes a new patient (keeping the provisional
        id, which is the same for the same condition every time), several are refused.
        """
        updates = [update for result in self.results for update in result.conditional_updates]
        identifiers = self._identifiers()
        if not updates or identifiers is None:
            return {}
        provisional, placeholders, seqs, locations = zip(*updates, strict=True)
        self._register_queries("updates", placeholders, provisional=provisional, seq=seqs, location=locations)
        rows = self.db.execute(f"""
            SELECT w.provisional, w.seq, w.location, w.placeholder, list_sort(list_distinct(list(p.id)))
            FROM updates w JOIN {identifiers} p ON {self._MATCHES}
            WHERE NOT (p.recent AND p.id IN (SELECT provisional FROM updates))
            GROUP BY ALL
        """).fetchall()
        ids = {}
        for provisional_id, seq, location, placeholder, matches in rows:
            if len(matches) == 1:
                ids[provisional_id] = matches[0]
            else:
                listed = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
                self.refused[seq] = (
                    location,
                    f"conditional update Patient?identifier={placeholder.removeprefix(CONDITIONAL_PREFIX)} "
                    f"matches {len(matches)} patients ({listed}); it must match one at most",
                )
        return {key: value for key, value in ids.items() if key != value}

    def _resolve_identifiers(self, updates: dict[str, str]) -> dict[str, str]:
        """Conditional references and deletes name a patient by identifier: placeholder -> the patient's id,
        with `updates` (provisional ids of conditionally updated patients -> their ids) added."""
        wanted = {ref for r in self.results for ref in r.conditional_references}
        wanted |= {
            key for r in self.results for (_t, key, _s, _l) in r.deletes if key.startswith(CONDITIONAL_PREFIX)
        }
        identifiers = self._identifiers()
        if not wanted or identifiers is None:
            return updates
        self._register_queries("wanted", list(wanted))
        # A patient of this load wins over a stored one, and within the load the later one (load orders do
        # not compare across loads).
        rows = self.db.execute(f"""
            SELECT placeholder, id FROM (
                SELECT w.placeholder, p.id, row_number() OVER (
                    PARTITION BY w.placeholder
                    ORDER BY coalesce(p.system, '') = w.system DESC, p.recent DESC, p._seq DESC) AS rank
                FROM wanted w JOIN {identifiers} p ON {self._MATCHES}
            ) WHERE rank = 1
        """).fetchall()
        return {placeholder: updates.get(id_, id_) for placeholder, id_ in rows} | updates

    def _stage_keys(self, mapping: dict[str, str]) -> None:
        """Tables of this load's keys (`staged`), its deletes (`deletes`), and the store's keys (`stored`)."""
        raw_files = self.staged.get(RAW_TABLE, [])
        self.db.execute(
            f"CREATE TABLE staged AS SELECT {_KEY_COLUMNS}, _seq FROM "
            f"{_from_parquet(raw_files, '*', _NO_KEYS + ', NULL::BIGINT AS _seq')}"
        )
        self._refuse_conditional_updates()
        if mapping:
            self.identifier_ids = mapping
            self.db.register(
                "identifier_map", pa.table({"placeholder": list(mapping), "id": list(mapping.values())})
            )
            self.db.execute(
                "UPDATE staged SET patient_id = m.id FROM identifier_map m WHERE staged.patient_id = m.placeholder"
            )
            # A conditionally updated patient takes the id of the patient it matched.
            self.db.execute(
                "UPDATE staged SET id = patient_id WHERE resource_type = 'Patient' AND id <> patient_id"
            )
        deletes = []
        for result in self.results:
            for resource_type, key, seq, location in result.deletes:
                key = mapping.get(key, key)
                if key.startswith(CONDITIONAL_PREFIX):
                    self._reject(resource_type, location, f"DELETE names no known patient ({key[1:]})")
                else:
                    deletes.append((resource_type, key, seq))
        self.db.register(
            "delete_list",
            pa.table(
                {
                    "resource_type": pa.array([d[0] for d in deletes], pa.string()),
                    "id": pa.array([d[1] for d in deletes], pa.string()),
                    "_seq": pa.array([d[2] for d in deletes], pa.int64()),
                }
            ),
        )
        self.db.execute("CREATE TABLE deletes AS SELECT * FROM delete_list")
        stored_raw = self.snapshot.files(RAW_TABLE)
        self.db.execute(
            f"CREATE VIEW stored AS SELECT * FROM {_from_parquet(stored_raw, _KEY_COLUMNS, _NO_KEYS)}"
        )

    def _refuse_conditional_updates(self) -> None:
        """Reject the conditional updates that match several patients: table `refused` of their rows."""
        self.db.execute("CREATE TABLE refused (resource_type VARCHAR, id VARCHAR, _seq BIGINT)")
        if not self.refused:
            return
        listed = ", ".join(map(str, self.refused))
        self.db.execute(
            f"INSERT INTO refused SELECT resource_type, id, _seq FROM staged WHERE _seq IN ({listed})"
        )
        self.db.execute(f"DELETE FROM staged WHERE _seq IN ({listed})")
        raw_files = parquet_listing(self.staged[RAW_TABLE])
        for seq, text in self.db.execute(
            f"SELECT _seq, json FROM read_parquet({raw_files}) WHERE _seq IN ({listed}) ORDER BY _seq"
        ).fetchall():
            self._reject("Patient", *self.refused[seq], text)

    def _reject_dangling(self) -> None:
        """Reject resources whose patient is neither in the store nor in this load once it is done.

        A resource read before its patient's DELETE is not dangling: the delete removes it with its patient.
        """
        self.db.execute("""
            CREATE TABLE final_patients AS
            SELECT id FROM (
                SELECT id, -1 AS _seq, 'present' AS kind FROM stored WHERE resource_type = 'Patient'
                UNION ALL SELECT id, _seq, 'upsert' FROM staged WHERE resource_type = 'Patient'
                UNION ALL SELECT id, _seq, 'delete' FROM deletes WHERE resource_type = 'Patient'
            ) GROUP BY id HAVING arg_max(kind, _seq) <> 'delete'
        """)
        self.db.execute("""
            CREATE TABLE dangling AS
            SELECT s.resource_type, s.id, s.patient_id, s._seq FROM staged s
            WHERE s.patient_id IS NOT NULL AND s.resource_type <> 'Patient'
              AND NOT EXISTS (SELECT 1 FROM final_patients p WHERE p.id = s.patient_id)
              AND NOT EXISTS (SELECT 1 FROM deletes d WHERE d.resource_type = 'Patient' AND d.id = s.patient_id
                                                        AND d._seq > s._seq)
        """)
        if not self.db.execute("SELECT count(*) FROM dangling").fetchone()[0]:
            return
        raw_files = parquet_listing(self.staged[RAW_TABLE])
        seqs = [row[0] for row in self.db.execute("SELECT _seq FROM dangling ORDER BY _seq").fetchall()]
        found = []
        for start in range(0, len(seqs), 1000):
            # A constant list, so that the row groups without any are skipped rather than read.
            listed = ", ".join(map(str, seqs[start : start + 1000]))
            found += self.db.execute(f"""
                SELECT d.resource_type, d.patient_id, r.source_file, r.source_line, r.json
                FROM dangling d JOIN (SELECT * FROM read_parquet({raw_files}) WHERE _seq IN ({listed})) r
                  ON r._seq = d._seq ORDER BY d._seq
            """).fetchall()
        for resource_type, patient, file, line, text in found:
            where = input_location(file, kind_of(Path(file)), line)
            if patient.startswith(CONDITIONAL_PREFIX):
                reason = f"references a patient by identifier ({patient[1:]}) that is not in the store or this load"
            else:
                reason = f"references Patient/{patient}, which is neither in the store nor in this load"
            self._reject(resource_type, where, reason, text)
        self.db.execute("DELETE FROM staged WHERE _seq IN (SELECT _seq FROM dangling)")

    def _settle(self) -> None:
        """Order every event of every key touched, and derive what survives and what the report says.

        Events of a key: 'present' (in the store before), 'upsert' (read in this load), 'delete' (a DELETE,
        or the DELETE of its patient). The last event decides the key's fate; each event's predecessor
        decides whether it added, replaced or deleted something.
        """
        self.db.execute("""
            CREATE TABLE cascade AS
            SELECT DISTINCT k.resource_type, k.id, d._seq FROM (
                SELECT resource_type, id, patient_id, -1 AS _seq FROM stored
                UNION ALL SELECT resource_type, id, patient_id, _seq FROM staged
            ) k JOIN deletes d ON d.resource_type = 'Patient' AND k.patient_id = d.id AND k._seq < d._seq
            WHERE k.resource_type <> 'Patient'
        """)
        # A view: only the changes of contested keys are read from it, a few in a big load, and a table
        # would copy all of `staged` once more.
        self.db.execute("""
            CREATE VIEW changes AS
            SELECT resource_type, id, _seq, 'upsert' AS kind FROM staged
            UNION ALL SELECT resource_type, id, _seq, 'delete' FROM deletes
            UNION ALL SELECT resource_type, id, _seq, 'delete' FROM cascade
        """)
        # Contested keys need their events ordered: more than one change, a delete, or a stored row. The
        # others, a single upsert of something new, are the bulk of a big load and are simply added.
        # A key with a delete is contested anyway, so only the upserts need counting.
        self.db.execute("""
            CREATE TABLE contested AS
            SELECT resource_type, id FROM staged GROUP BY ALL HAVING count(*) > 1
            UNION SELECT resource_type, id FROM deletes
            UNION SELECT resource_type, id FROM cascade
            UNION SELECT s.resource_type, s.id FROM staged s SEMI JOIN stored USING (resource_type, id)
        """)
        self.db.execute("""
            CREATE TABLE history AS
            SELECT resource_type, id, _seq, kind,
                   lag(kind) OVER (PARTITION BY resource_type, id ORDER BY _seq) AS before,
                   _seq = max(_seq) OVER (PARTITION BY resource_type, id) AS last
            FROM (
                SELECT c.* FROM changes c SEMI JOIN contested USING (resource_type, id)
                UNION ALL
                SELECT s.resource_type, s.id, -1, 'present' FROM stored s SEMI JOIN contested USING (resource_type, id)
            )
        """)
        counts = self.db.execute("""
            SELECT resource_type,
                   count(*) FILTER (kind = 'upsert' AND (before IS NULL OR before = 'delete')),
                   count(*) FILTER (kind = 'upsert' AND before IN ('present', 'upsert')),
                   count(*) FILTER (kind = 'delete' AND before IN ('present', 'upsert'))
            FROM history GROUP BY 1
            UNION ALL
            SELECT resource_type, count(*), 0, 0 FROM staged ANTI JOIN contested USING (resource_type, id) GROUP BY 1
        """).fetchall()
        for resource_type, added, replaced, deleted in counts:
            _count(self.report.added, resource_type, added)
            _count(self.report.replaced, resource_type, replaced)
            _count(self.report.deleted, resource_type, deleted)
        # Rows of this load that do not survive, and keys whose stored rows go.
        self.db.execute("""
            CREATE TABLE drop_rows AS
            SELECT resource_type, id, _seq FROM history WHERE kind = 'upsert' AND NOT last
            UNION ALL SELECT resource_type, id, _seq FROM dangling
            UNION ALL SELECT resource_type, id, _seq FROM refused
        """)
        self.db.execute("""
            CREATE TABLE gone AS
            SELECT DISTINCT resource_type, id FROM history WHERE kind = 'present' AND NOT last
        """)

    def _write_new_segment(self, mapping: dict[str, str]) -> Segment | None:
        """This load's rows that survive, as a new segment: staging files moved as they are where possible."""
        if not self.staged:
            return None
        segment_dir = self.store.segments / self.load_id
        segment_dir.mkdir(parents=True)
        dropped = {
            row[0] for row in self.db.execute("SELECT DISTINCT resource_type FROM drop_rows").fetchall()
        }
        files: dict[str, list[str]] = {}
        for table, staged in self.staged.items():
            if table == RAW_TABLE:
                # Raw JSON is most of a load's bytes and is read by id, not scanned by code: its staging
                # files are moved as they are, but those holding rows to drop or to resolve.
                touched = self._touched_raw_files(staged, dropped, mapping)
                files[table] = []
                for file in staged:
                    if file not in touched:
                        target = segment_dir / Path(file).name
                        os.replace(file, target)
                        files[table].append(str(target.relative_to(self.store.path)))
                staged = [file for file in staged if file in touched]
                if not staged:
                    continue
            target = segment_dir / f"{table}.parquet"
            condition = (
                # By load order alone, which is unique per resource: a patient's id may have changed since.
                f"NOT EXISTS (SELECT 1 FROM drop_rows d WHERE d.resource_type = {self._type_of(table)} "
                "AND d._seq = t._seq)"
                if not self._untouched(table, dropped)
                else "true"
            )
            if self._copy_filtered(table, staged, target, condition, bool(mapping)):
                files.setdefault(table, []).append(str(target.relative_to(self.store.path)))
        files = {table: written for table, written in files.items() if written}
        return Segment(self.load_id, files) if files else None

    def _touched_raw_files(self, staged: list[str], dropped: set[str], mapping: dict[str, str]) -> set[str]:
        """The raw staging files with a row that does not survive or names a patient by placeholder."""
        if not (dropped or mapping):
            return set()
        resolved = "t.patient_id IN (SELECT placeholder FROM identifier_map)" if mapping else "false"
        return {
            row[0]
            for row in self.db.execute(f"""
                SELECT DISTINCT t.filename FROM read_parquet({parquet_listing(staged)}, filename = true) t
                WHERE {resolved} OR EXISTS (SELECT 1 FROM drop_rows d WHERE d._seq = t._seq)
            """).fetchall()
        }

    def _untouched(self, table: str, types: set[str]) -> bool:
        """Whether no row of `table` can be of one of `types`."""
        if table == RAW_TABLE:
            return not types
        return self.views_by_table[table].resource not in types

    @staticmethod
    def _has_patients(table: str) -> bool:
        return "patient_id" in table_schemas()[table].names

    def _type_of(self, table: str) -> str:
        """SQL for the resource type of a row `t` of `table`."""
        return "t.resource_type" if table == RAW_TABLE else f"'{self.views_by_table[table].resource}'"

    def _copy_filtered(
        self, table: str, sources: Sequence[str], target: Path, condition: str, map_patients: bool = False
    ) -> bool:
        """Copy the rows of `sources` meeting `condition` into `target`; False (and no file) if none do."""
        select, joined = "t.*", f"read_parquet({parquet_listing(sources)}) t"
        if map_patients and self._has_patients(table):
            # A patient's own rows name it in `id` as well as in `patient_id`.
            if table == RAW_TABLE:
                own_id = "CASE WHEN t.resource_type = 'Patient' THEN coalesce(m.id, t.id) ELSE t.id END"
            else:
                own_id = (
                    "coalesce(m.id, t.id)" if self.views_by_table[table].resource == "Patient" else "t.id"
                )
            select = f"t.* REPLACE (coalesce(m.id, t.patient_id) AS patient_id, {own_id} AS id)"
            joined += " LEFT JOIN identifier_map m ON t.patient_id = m.placeholder"
            if table == RAW_TABLE:
                return self._copy_resolved_json(
                    f"SELECT {select}, m.id IS NOT NULL AS _resolved FROM {joined} WHERE {condition}", target
                )
        written = write_in_layout(
            self.db, table, f"SELECT {select} FROM {joined} WHERE {condition}", target, alias="t."
        )
        if not written:
            target.unlink()
        return bool(written)

    def _copy_resolved_json(self, select: str, target: Path) -> bool:
        """Write the raw rows of `select` to `target`, the JSON of those flagged `_resolved` with the
        references to their patients resolved too; False (and no file) if there are none.

        In Python, batch by batch, because only a JSON parser can find a resource's references reliably.
        """
        writer = None
        for batch in self.db.sql(select).to_arrow_reader(ROW_GROUP_ROWS):
            if not batch.num_rows:
                continue
            texts, flags = batch.column("json"), batch.column("_resolved")
            if pc.any(flags).as_py():
                resolved = [
                    _resolved_json(text, self.identifier_ids) if flag else text
                    for text, flag in zip(texts.to_pylist(), flags.to_pylist(), strict=True)
                ]
                batch = batch.set_column(
                    batch.schema.get_field_index("json"), "json", pa.array(resolved, pa.string())
                )
            rows = pa.Table.from_batches([batch]).select(RAW_SCHEMA.names).cast(RAW_SCHEMA)
            if writer is None:
                writer = pq.ParquetWriter(
                    target,
                    RAW_SCHEMA,
                    compression="zstd",
                    use_dictionary=[name for name in RAW_SCHEMA.names if name not in ("id", "json")],
                    write_statistics=[name for name in RAW_SCHEMA.names if name != "json"],
                )
            writer.write_table(rows, row_group_size=ROW_GROUP_ROWS)
        if writer is not None:
            writer.close()
        return writer is not None

    def _supersede_old(self, new_segment: Segment | None) -> list[Segment]:
        """Rewrite the earlier segments that hold rows this load replaces or deletes."""
        old_segments = list(self.snapshot.manifest.segments)
        affected: set[str] = set()
        if old_segments and self.db.execute("SELECT count(*) FROM gone").fetchone()[0]:
            raw_files = [str(self.store.path / f) for s in old_segments for f in s.files.get(RAW_TABLE, ())]
            affected = {
                row[0]
                for row in self.db.execute(f"""
                SELECT DISTINCT o.filename FROM read_parquet({parquet_listing(raw_files)}, filename = true) o
                SEMI JOIN gone g USING (resource_type, id)
            """).fetchall()
            }
        segments = []
        for segment in old_segments:
            if affected & {str(self.store.path / f) for f in segment.files.get(RAW_TABLE, ())}:
                rewritten = self._rewrite_segment(segment, affected)
                if rewritten.files:
                    segments.append(rewritten)
            else:
                segments.append(segment)
        if new_segment:
            segments.append(new_segment)
        return segments

    def _rewrite_segment(self, segment: Segment, affected: set[str]) -> Segment:
        """The segment without the rows of `gone`: tables that cannot hold any keep their files, and so do
        the raw files not `affected` (most of a segment's bytes, where a load replaces a few resources)."""
        generation = self.snapshot.generation + 1
        gone_types = {row[0] for row in self.db.execute("SELECT DISTINCT resource_type FROM gone").fetchall()}
        files: dict[str, list[str]] = {}
        for table, sources in segment.files.items():
            if self._untouched(table, gone_types):
                files[table] = list(sources)
                continue
            paths = [str(self.store.path / f) for f in sources]
            if table == RAW_TABLE:
                files[table] = [f for f, path in zip(sources, paths, strict=True) if path not in affected]
                paths = [path for path in paths if path in affected]
            condition = f"NOT EXISTS (SELECT 1 FROM gone g WHERE g.resource_type = {self._type_of(table)} AND g.id = t.id)"
            target = self.store.segments / segment.id / f"{table}.g{generation:08d}.parquet"
            if self._copy_filtered(table, paths, target, condition):
                files.setdefault(table, []).append(str(target.relative_to(self.store.path)))
        return Segment(segment.id, {table: f for table, f in files.items() if f})

    def _write_rejects(self) -> None:
        parts = sorted(self.staging.glob("rejects.*.ndjson"))
        if not parts and not self.extra_rejects:
            return
        target = self.store.rejects / f"{self.load_id}.ndjson"
        with open(target, "wb") as out:
            for part in parts:
                with open(part, "rb") as source:
                    shutil.copyfileobj(source, out)
            for line in self.extra_rejects:
                out.write(line)
        self.report.rejects_file = str(target)
