"""Benchmark of federated analysis in local mode (sites in-process, requests through JSON):
one round over 37 sites, a binomial GLM with 5 parameters over 37 sites x 100,000 rows, summary and
table over 37 sites. Run once: `.venv/bin/python bench/bench_analysis.py [--rows N] [--sites K]`.

Over the hub's long-poll channel each round adds the channel's latency (not measured here: the hub
orchestration is not built yet); DataSHIELD's published cost is 50-150 ms per round trip with three
co-located servers and three round trips for a mean (brief section 8).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa

from datenraum.analysis import Analysis
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.tables import AnalysisTable


def site_table(rows: int, seed: int) -> AnalysisTable:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, rows)
    bmi = rng.normal(27, 5, rows)
    sex = rng.choice(["f", "m"], rows)
    hba1c = rng.normal(5.8, 0.8, rows)
    eta = -9 + 0.06 * age + 0.12 * bmi + 0.3 * (sex == "m") + 0.2 * hba1c
    t2d = (rng.uniform(size=rows) < 1 / (1 + np.exp(-eta))).astype(float)
    table = pa.table({"age": age, "bmi": bmi, "sex": sex, "hba1c": hba1c, "t2d": t2d})
    return AnalysisTable(table, f"bench{seed}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=37)
    args = parser.parse_args()
    started = time.perf_counter()
    sites = LocalSites.from_tables({f"site{i:02d}": site_table(args.rows, i) for i in range(args.sites)})
    print(f"{args.sites} sites x {args.rows} rows generated in {time.perf_counter() - started:.1f} s")
    analysis = Analysis(sites, project="bench")

    rounds = []
    for _ in range(20):  # one summary = one round
        t = time.perf_counter()
        analysis.summary("age")
        rounds.append(time.perf_counter() - t)
    t = time.perf_counter()
    before = sites.critical_path
    fit = analysis.glm("t2d ~ age + bmi + factor(sex) + hba1c", "binomial")
    glm_seconds = time.perf_counter() - t
    glm_parallel = sites.critical_path - before
    t = time.perf_counter()
    analysis.summary(["age", "bmi", "hba1c"])
    summary_seconds = time.perf_counter() - t
    t = time.perf_counter()
    analysis.table(["sex", "t2d"])
    table_seconds = time.perf_counter() - t

    p50 = statistics.median(rounds)
    print(f"| what | {args.sites} sites x {args.rows:,} rows | target |")
    print("|---|---|---|")
    print(f"| one round (summary of 1 variable), p50 | {p50 * 1000:.1f} ms | < 100 ms |")
    print(
        f"| binomial GLM, 5 parameters, {fit.rounds} rounds, sites one after another | {glm_seconds:.2f} s | |"
    )
    print(
        f"| the same, sites in parallel (sum of the slowest site per round) | {glm_parallel:.2f} s | < 3 s |"
    )
    print(f"| summary of 3 variables | {summary_seconds * 1000:.0f} ms | < 1 s |")
    print(f"| 2-way table | {table_seconds * 1000:.0f} ms | < 1 s |")
    print(
        f"| DataSHIELD ds.mean (3 round trips x 50-150 ms) / ours | {0.15 / p50:.0f}x to {0.45 / p50:.0f}x | |"
    )


if __name__ == "__main__":
    main()
