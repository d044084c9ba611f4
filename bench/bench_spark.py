"""Spark against DuckDB on one synthetic site, side by side in one run (issue 14).

For one site size (`--patients`, 10k by default; 100k and 1M where the machine allows) it measures:

- ingest resources/s: `ingest` with DuckDB's worker processes (`--workers`, one per core) and with the
  read tasks as Spark tasks, local[1] and local[2] (the same reader code; the commit is DuckDB's in both);
- count latency warm (median of `--runs` after one warm-up) of the typical and the ten-criteria query of
  bench_query.py, on DuckDB and on Spark local[1] and local[2], and whether the counts agree;
- Spark's fixed overhead per query: the latency of a query that reads nothing (`WHERE false` on the
  patient table), i.e. parsing, planning, scheduling and collecting, which no executor count divides.

    .venv/bin/python bench/bench_spark.py --patients 10000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_query import QUERIES

from datenraum.site.engines import EngineSettings, feasibility_engine, open_engine
from datenraum.site.engines.spark import spark_session, stop_spark_session
from datenraum.site.ingest import ingest
from datenraum.site.store import Store
from datenraum.synth import generate

TODAY = dt.date(2024, 6, 15)
CONF = {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"}


def _median(run, runs: int) -> tuple[float, object]:
    result = run()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="datenraum-bench-spark-"))
    data = root / "ndjson"
    summary = generate(data, args.patients, 1, workers=args.workers)
    resources = sum(summary.resources.values())
    print(
        f"datenraum Spark benchmark: {os.cpu_count()} cores, {args.patients:,} patients, {resources:,} resources"
    )
    engines = {
        "duckdb": EngineSettings(),
        "spark local[1]": EngineSettings("spark", "local[1]", CONF),
        "spark local[2]": EngineSettings("spark", "local[2]", CONF),
    }
    rows = []
    for name, settings in engines.items():
        store = Store(root / name.replace(" ", "-").replace("[", "").replace("]", ""))
        if settings.name == "spark":  # the session starts before the clock does: a site keeps it running
            spark_session(settings)
        started = time.perf_counter()
        ingest(store, sorted(data.glob("*.ndjson")), workers=args.workers, engine=settings)
        seconds = time.perf_counter() - started
        row = {"engine": name, "ingest resources/s": resources / seconds}
        with store.snapshot() as snapshot, open_engine(snapshot, settings) as engine:
            feasibility = feasibility_engine(engine)
            for query_name, query in QUERIES.items():
                latency, count = _median(lambda q=query, f=feasibility: f.count(q, today=TODAY), args.runs)
                row[f"{query_name} s"] = latency
                row[f"{query_name} count"] = count
            overhead, _ = _median(
                lambda e=engine: e.sql("SELECT count(*) FROM patient WHERE false"), args.runs
            )
            row["fixed overhead s"] = overhead
        rows.append(row)
    stop_spark_session()
    columns = list(rows[0])
    print(" | ".join(f"{c:>16}" for c in columns))
    for row in rows:
        print(" | ".join(f"{v:>16.3f}" if isinstance(v, float) else f"{v!s:>16}" for v in row.values()))
    agree = all(r[c] == rows[0][c] for r in rows for c in columns if c.endswith("count"))
    print(f"counts agree on every engine: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
