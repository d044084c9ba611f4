"""Benchmark of the Cox model's companions, side by side in one run:

1. one site's proportional-hazards answer (`cox.ph`, km transform) beside its `cox.step` answer at the
   same beta (JSON request in, answer out), CPU-seconds per answer and their ratio;
2. the pooled piecewise-exponential fit (Lexis split at 1-year bins, Poisson GLM) beside the pooled Cox
   fit (30-day bins, Efron) over three in-process sites, CPU-seconds and their ratio.

    .venv/bin/python bench/bench_survival_models.py [--rows 10000,100000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from datenraum.analysis import Analysis
from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.site.analysis.executor import SiteExecutor
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.tables import AnalysisTable

POLICY = AnalysisPolicy()
COVARIATES = ["age", "female", "bmi"]


def frame(rows: int, seed: int) -> pa.Table:
    """Exponential survival with a hazard from age and sex, censored uniformly up to 10 years."""
    rng = np.random.default_rng(seed)
    age = rng.normal(0, 10, rows)
    female = rng.integers(0, 2, rows).astype(float)
    bmi = rng.normal(0, 4, rows)
    hazard = np.exp(-7.5 + 0.03 * age - 0.3 * female)
    event_time = rng.exponential(1 / hazard)
    censor = rng.uniform(0, 3650, rows)
    days = np.minimum(event_time, censor)
    died = (event_time <= censor).astype(float)
    return pa.table({"days": days, "died": died, "age": age, "female": female, "bmi": bmi})


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
    parser.add_argument("--rows", default="10000,100000")
    sizes = [int(n) for n in parser.parse_args().rows.split(",")]
    print(
        f"{'rows/site':>9} | {'cox.step':>8} | {'cox.ph':>8} | {'ratio':>5} | "
        f"{'Cox fit':>8} | {'PWE fit':>8} | {'ratio':>5} | PWE split rows/site"
    )
    for rows in sizes:
        tables = {f"s{i}": AnalysisTable(frame(rows, 20 + i), f"alt{rows}-{i}") for i in range(3)}
        step_body = {
            "v": 1,
            "op": "cox.step",
            "project": "bench",
            "analyst": "a",
            "data": {"table": "data"},
            "where": [],
            "time": "days",
            "event": "died",
            "bin_width": 30.0,
            "covariates": COVARIATES,
            "beta": [0.03, -0.3, 0.0],
            "ties": "efron",
        }
        ph_body = {**step_body, "op": "cox.ph", "transform": "km"}
        executor = SiteExecutor({"data": tables["s0"]}, POLICY)
        repeat = 3 if rows < 1_000_000 else 1
        step = cpu(lambda executor=executor, body=step_body: executor.handle(body), repeat)
        ph = cpu(lambda executor=executor, body=ph_body: executor.handle(body), repeat)
        assert executor.handle(ph_body)["ok"]
        sites = LocalSites.from_tables(tables, POLICY)
        cox = cpu(lambda sites=sites: Analysis(sites, policy=POLICY).cox("days", "died", COVARIATES), 1)
        fit = Analysis(sites, policy=POLICY).pwe("days", "died", COVARIATES, bin_width=365.0)
        pwe = cpu(
            lambda sites=sites: Analysis(sites, policy=POLICY).pwe(
                "days", "died", COVARIATES, bin_width=365.0
            ),
            1,
        )
        print(
            f"{rows:>9} | {step:>8.4f} | {ph:>8.4f} | {ph / step:>5.2f} | "
            f"{cox:>8.3f} | {pwe:>8.3f} | {pwe / cox:>5.2f} | {fit.n // 3}"
        )


if __name__ == "__main__":
    main()
