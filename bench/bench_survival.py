"""Benchmark of survival at the site, side by side in one run:

1. the time rule of a Cox answer: the risk-set grouping (`coarsen_risk_sets`, every group 0 or >= k
   events and censored) against plain binning with the tail cut (`bin_survival`, what Kaplan–Meier uses
   and Cox used before), CPU-seconds per call and their ratio;
2. one site's whole `cox.step` answer (JSON request in, per-bin sums out), and a pooled Cox fit over
   three in-process sites, with its rounds;
3. the differencing ledger: a row set over the table itself against one over every patient of the
   store (`RowUniverse`, so that two cohorts are compared), CPU-seconds per check.

    .venv/bin/python bench/bench_survival.py [--rows 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from datenraum.analysis import Analysis
from datenraum.privacy.analysis import AnalysisPolicy, bin_survival
from datenraum.privacy.risk_sets import coarsen_risk_sets
from datenraum.site.analysis.executor import SiteExecutor
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.releases import ReleaseLog
from datenraum.site.analysis.tables import AnalysisTable

POLICY = AnalysisPolicy()
NOW = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)


def _release(releases: ReleaseLog, source: str, mask: np.ndarray) -> None:
    releases.release(
        project="p",
        analyst="a",
        operation="bench",
        source=source,
        masks=[mask],
        result={},
        policy=POLICY,
        now=NOW,
    )


def frame(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, rows)
    female = (rng.uniform(size=rows) < 0.5).astype(float)
    bmi = rng.normal(27, 5, rows)
    hazard = np.exp(-7.5 + 0.03 * age - 0.2 * female + 0.02 * bmi)
    event_time = rng.exponential(1 / hazard)
    follow_up = rng.uniform(30, 3650, rows)
    return pa.table(
        {
            "days": np.minimum(event_time, follow_up),
            "died": (event_time <= follow_up).astype(float),
            "age": age,
            "female": female,
            "bmi": bmi,
        }
    )


def cpu(call: Callable[[], object], repeat: int) -> float:
    """CPU-seconds per call, the best of `repeat`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="10000,100000,1000000")
    sizes = [int(n) for n in parser.parse_args().rows.split(",")]

    print("1. time rule of one answer (CPU-seconds per call)")
    print(f"{'rows':>9} | {'bin_survival':>12} | {'coarsen_risk_sets':>17} | {'ratio':>5} | groups")
    for rows in sizes:
        table = frame(rows, 1)
        t, e = table.column("days").to_numpy(), table.column("died").to_numpy()
        repeat = 5 if rows < 1_000_000 else 2
        plain = cpu(lambda t=t, e=e: bin_survival(t, e, 30.0, POLICY, "bench"), repeat)
        grouped = cpu(lambda t=t, e=e: coarsen_risk_sets(t, e, POLICY, "bench"), repeat)
        cells = len(np.unique(np.floor(t / 30.0)))
        groups = len(np.unique(coarsen_risk_sets(t, e, POLICY, "bench")[0]))
        print(
            f"{rows:>9} | {plain:>12.4f} | {grouped:>17.4f} | {grouped / plain:>5.2f} | {groups} of {cells} cells"
        )

    print("\n2. one site's cox.step answer and a pooled fit (3 covariates, Efron)")
    print(f"{'rows/site':>9} | {'cox.step CPU-s':>14} | {'fit wall-s':>10} | {'fit CPU-s':>9} | rounds")
    for rows in sizes:
        tables = {f"s{i}": AnalysisTable(frame(rows, 10 + i), f"bench{rows}-{i}") for i in range(3)}
        body = {
            "v": 1,
            "op": "cox.step",
            "project": "bench",
            "analyst": "a",
            "data": {"table": "data"},
            "where": [],
            "time": "days",
            "event": "died",
            "bin_width": 30.0,
            "covariates": ["age", "female", "bmi"],
            "beta": [0.0, 0.0, 0.0],
            "ties": "efron",
        }
        executor = SiteExecutor({"data": tables["s0"]}, POLICY)
        step = cpu(lambda executor=executor, body=body: executor.handle(body), 3 if rows < 1_000_000 else 1)
        sites = LocalSites.from_tables(tables, POLICY)
        started_wall, started_cpu = time.perf_counter(), time.process_time()
        fit = Analysis(sites, policy=POLICY).cox("days", "died", ["age", "female", "bmi"])
        wall, used = time.perf_counter() - started_wall, time.process_time() - started_cpu
        print(f"{rows:>9} | {step:>14.4f} | {wall:>10.3f} | {used:>9.3f} | {fit.iterations}")

    print("\n3. differencing ledger check (CPU-seconds per new row set)")
    print(f"{'cohort':>9} | {'store':>9} | {'table rows':>10} | {'store rows':>10} | ratio")
    rng = np.random.default_rng(3)
    for rows in sizes:
        store = rows * 4
        positions = np.sort(rng.choice(store, rows, replace=False))

        def table_check(rows: int = rows) -> None:
            releases = ReleaseLog()  # in memory: the check's cost, not the disk's
            for drop in range(0, 50, 10):
                mask = np.ones(rows, dtype=bool)
                mask[:drop] = False
                _release(releases, "t", mask)

        def store_check(rows: int = rows, store: int = store, positions: np.ndarray = positions) -> None:
            releases = ReleaseLog()
            for drop in range(0, 50, 10):
                universal = np.zeros(store, dtype=bool)
                universal[positions[drop:]] = True
                _release(releases, "store", universal)

        small = cpu(table_check, 3) / 5
        large = cpu(store_check, 3) / 5
        print(f"{rows:>9} | {store:>9} | {small:>10.5f} | {large:>10.5f} | {large / small:.2f}")


if __name__ == "__main__":
    main()
