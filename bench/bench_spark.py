"""Spark against DuckDB on one synthetic site, side by side in one run (issue 14).

For one site size (`--patients`, 10k by default; 100k and 1M where the machine allows) and each engine
(DuckDB with one worker process per core, Spark local[1], Spark local[2]) it measures, wall and
CPU-seconds (of this process and every process under it: DuckDB's workers, Spark's JVM and its Python
workers):

- ingest: the whole `ingest` (resources/s), and its read step alone (plan and read tasks, the part that
  runs as parallel tasks); the rest, the commit, is serial on every engine (DuckDB, one writer);
- count latency warm (median of `--runs` after one warm-up) of the typical and the ten-criteria query of
  bench_query.py, and whether the counts agree;
- Spark's fixed overhead per query: the latency of a query that reads nothing (`WHERE false` on the
  patient table), i.e. parsing, planning, scheduling and collecting, which no executor count divides;
- the per-partition work: how many read tasks an ingest has and how many partitions (Spark tasks) the
  scan of the biggest table is cut into, so that it is clear what more executors would share.

A second table gives the ratios: local[1] over local[2] (the speed-up from a second core) and Spark
local[2] over DuckDB.

    .venv/bin/python bench/bench_spark.py --patients 10000
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
from bench_query import QUERIES

from datenraum.site.engines import EngineSettings, feasibility_engine, open_engine
from datenraum.site.engines.spark import SparkEngine, spark_session, stop_spark_session
from datenraum.site.engines.spark_ingest import read_on_spark
from datenraum.site.ingest import ingest
from datenraum.site.ingest.plan import CHUNK_BYTES, discover, plan
from datenraum.site.ingest.rules import MAX_RESOURCE_BYTES
from datenraum.site.store import Store
from datenraum.synth import generate

TODAY = dt.date(2024, 6, 15)
# As a site would run it: Spark's adaptive execution fits the shuffle partitions to the data.
CONF = {"spark.driver.memory": "3g"}
BIGGEST_TABLE = "observation"


@dataclass(frozen=True)
class Measured:
    wall: float
    cpu: float


def tree_cpu_seconds() -> float:
    """CPU-seconds (user + system) of this process and all its descendants, those still running and those
    already waited for (which their parents' children times hold)."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def measure(run: Callable[[], object]) -> tuple[Measured, object]:
    cpu, started = tree_cpu_seconds(), time.perf_counter()
    result = run()
    return Measured(time.perf_counter() - started, tree_cpu_seconds() - cpu), result


def warm(run: Callable[[], object], runs: int) -> tuple[Measured, object]:
    """The median wall time and CPU-seconds of `runs` runs after one warm-up."""
    result = run()
    measured = []
    for _ in range(runs):
        one, result = measure(run)
        measured.append(one)
    return Measured(
        statistics.median(m.wall for m in measured), statistics.median(m.cpu for m in measured)
    ), result


def read_step(store: Store, inputs: list[Path], settings: EngineSettings, workers: int) -> int:
    """The read step of an ingest alone (what runs as parallel tasks), into a staging folder that is
    thrown away; the number of read tasks."""
    from datenraum.site.ingest import _read_all

    staging = store.path.parent / f"{store.path.name}-read-step"
    staging.mkdir(parents=True)
    try:
        tasks = list(plan(discover(inputs), staging, CHUNK_BYTES, MAX_RESOURCE_BYTES, True))
        if settings.name == "spark":
            read_on_spark(tasks, settings)
        else:
            _read_all(iter(tasks), workers)
        return len(tasks)
    finally:
        shutil.rmtree(staging)


def bench_engine(
    name: str, settings: EngineSettings, root: Path, inputs: list[Path], resources: int, args
) -> dict[str, object]:
    store = Store(root / name.replace(" ", "-").replace("[", "").replace("]", ""))
    if settings.name == "spark":  # the session starts before the clock does: a site keeps it running
        spark_session(settings)
    loaded, _ = measure(lambda: ingest(store, inputs, workers=args.workers, engine=settings))
    # After the ingest, so that both pay the same start-up (worker processes, Python imports in them).
    read, tasks = measure(lambda: read_step(store, inputs, settings, args.workers))
    row: dict[str, object] = {
        "engine": name,
        "ingest s": loaded.wall,
        "ingest CPU s": loaded.cpu,
        "ingest res/s": resources / loaded.wall,
        "read step s": read.wall,
        "read CPU s": read.cpu,
        # Busy cores during the parallel part: up to the worker (or Spark core) count on an idle machine.
        "read cores used": read.cpu / read.wall,
        # The serial rest (the commit, DuckDB's on every engine), in CPU-seconds: wall time minus wall
        # time would mostly measure the other users of a shared machine.
        "commit CPU s": loaded.cpu - read.cpu,
        "read tasks": tasks,
    }
    with store.snapshot() as snapshot, open_engine(snapshot, settings) as engine:
        feasibility = feasibility_engine(engine)
        for query_name, query in QUERIES.items():
            latency, count = warm(lambda q=query, f=feasibility: f.count(q, today=TODAY), args.runs)
            row[f"{query_name} s"] = latency.wall
            row[f"{query_name} CPU s"] = latency.cpu
            row[f"{query_name} count"] = count
        overhead, _ = warm(lambda e=engine: e.sql("SELECT count(*) FROM patient WHERE false"), args.runs)
        row["fixed overhead s"] = overhead.wall
        if isinstance(engine, SparkEngine):
            row[f"{BIGGEST_TABLE} partitions"] = engine.frame(BIGGEST_TABLE).rdd.getNumPartitions()
        else:
            row[f"{BIGGEST_TABLE} partitions"] = len(snapshot.files(BIGGEST_TABLE))
    return row


def print_side_by_side(rows: list[dict[str, object]]) -> None:
    columns = [c for c in rows[0] if c != "engine"]
    print(f"\n{'':<24}" + "".join(f"{row['engine']:>16}" for row in rows))
    for column in columns:
        cells = []
        for row in rows:
            value = row.get(column, "")
            cells.append(f"{value:>16,.3f}" if isinstance(value, float) else f"{value!s:>16}")
        print(f"{column:<24}" + "".join(cells))


def print_ratios(by_engine: dict[str, dict[str, object]]) -> None:
    one, two, duck = by_engine["spark local[1]"], by_engine["spark local[2]"], by_engine["duckdb"]
    timed = [c for c, v in duck.items() if c.endswith(" s")]
    print(f"\n{'ratio':<24}{'local[1]/local[2]':>20}{'local[2]/duckdb':>20}")
    for column in timed:
        print(f"{column:<24}{one[column] / two[column]:>20.2f}{two[column] / duck[column]:>20.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="datenraum-bench-spark-"))
    try:
        data = root / "ndjson"
        summary = generate(data, args.patients, 1, workers=args.workers)
        inputs = sorted(data.glob("*.ndjson"))
        resources = sum(summary.resources.values())
        print(
            f"datenraum Spark benchmark: {os.cpu_count()} cores, {args.patients:,} patients, "
            f"{resources:,} resources, {summary.bytes_written / 1e9:.2f} GB NDJSON; "
            f"load average {os.getloadavg()[0]:.1f} at the start"
        )
        engines = {
            "duckdb": EngineSettings(),
            "spark local[1]": EngineSettings("spark", "local[1]", CONF),
            "spark local[2]": EngineSettings("spark", "local[2]", CONF),
        }
        by_engine = {}
        for name, settings in engines.items():
            by_engine[name] = bench_engine(name, settings, root, inputs, resources, args)
            print(f"{name}: done", flush=True)
        stop_spark_session()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    rows = list(by_engine.values())
    print_side_by_side(rows)
    print_ratios(by_engine)
    agree = all(r[c] == rows[0][c] for r in rows for c in rows[0] if c.endswith("count"))
    print(f"\ncounts agree on every engine: {agree}; load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
