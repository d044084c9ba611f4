"""Sample search benchmark: `datenraum.site.samples.sample_counts` beside the feasibility count of the same
cohort, on synthetic sites with biobanks (`synth --biobanks`; 10k patients, 100k with --full), in one run.

For each site it measures, warm (one run first), the median wall time and CPU seconds of several runs of:
- feasibility: `feasibility.count` of "patients with a serum specimen" (the CCDL Specimen criterion);
- samples, same query: `sample_counts` of that query (the cohort, then its serum specimens per cell);
- samples, whole store: `sample_counts` without a query (every specimen of the site);
- samples, filtered: the whole store filtered to blood categories at -60to-85 or unknown temperature;
and prints one table with each variant's ratio to the feasibility count. Stores: bench/stores.py.

    .venv/bin/python bench/bench_samples.py
    .venv/bin/python bench/bench_samples.py --full
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from stores import get_or_create

from datenraum.query.biobank.search import parse_sample_filter
from datenraum.query.model import Criterion, StructuredQuery, TermCode
from datenraum.site import feasibility
from datenraum.site.samples import sample_counts

SERUM = StructuredQuery(
    inclusion=(
        (
            Criterion(
                TermCode("fdpg.mii.cds", "Specimen", "Bioprobe"),
                (TermCode("http://snomed.info/sct", "119364003", "Serum specimen"),),
            ),
        ),
    )
)
BLOOD_COLD = parse_sample_filter({"categories": ["blood"], "temperatures": ["-60to-85", "Unknown"]})


def measure(run: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    result = run()  # warm
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the 100k site")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.full else [10_000]
    print(f"{'site':>8}  {'variant':<24} {'wall ms':>9} {'CPU s':>8} {'× count':>8}  result")
    for patients in sizes:
        store = get_or_create(patients, seed=1, biobanks=True)
        with store.snapshot() as snapshot:
            variants = {
                "feasibility count": lambda: feasibility.count(snapshot, SERUM),
                "samples, same query": lambda: sample_counts(snapshot, SERUM),
                "samples, whole store": lambda: sample_counts(snapshot),
                "samples, filtered": lambda: sample_counts(snapshot, sample_filter=BLOOD_COLD),
            }
            base = None
            for name, run in variants.items():
                wall, cpu, result = measure(run, args.repeats)
                base = base or wall
                shown = (
                    result
                    if isinstance(result, int)
                    else (
                        f"{result.patients} patients, {result.specimens} specimens, {len(result.cells)} cells"
                    )
                )
                print(
                    f"{patients:>8}  {name:<24} {wall * 1000:>9.1f} {cpu:>8.3f} {wall / base:>8.1f}  {shown}"
                )


if __name__ == "__main__":
    main()
