"""Dashboard benchmark: the site's daily indicators job by store size, and the hub's release of every
public series from 37 sites' cubes, side by side in one run.

Site: `compute_cube` (every disease and indicator of the shipped registry, the full series from each
disease's start) over a synthetic store of each size (`bench/stores.py`, built once and kept), with
DuckDB's default threads; wall seconds, CPU-seconds of this process, and seconds per 100,000 patients,
which says how far the largest measured size is from the issue's goal (1,000,000 patients in under a
minute). Hub: pool and release (disclosure rules, region fallback) of every public series of one
disease over 37 copies of the largest store's cube, as the public page and its downloads need them; and
the hub's read of one public series as a page or download asks for it (`Dashboard.series` on a SQLite
hub holding the 37 deliveries): the first read after a delivery (pool, release against the stored
history, history and first-published values written) beside the reads that follow it (the kept release),
in CPU-seconds of this process.

    .venv/bin/python bench/bench_indicators.py                  # 10,000 and 100,000 patients
    .venv/bin/python bench/bench_indicators.py --patients 10000,1000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from typing import Any

from sqlalchemy.orm import sessionmaker
from stores import get_or_create

from datenraum.hub.config import HubConfig
from datenraum.hub.dashboard.service import Dashboard
from datenraum.hub.dashboard.tables import DeliveryRow
from datenraum.hub.db import SiteRow, create_hub_engine, migrate
from datenraum.indicators.registry import default_registry
from datenraum.indicators.release import Delivery, pool, release
from datenraum.site.indicators import compute_cube, open_snapshot_engine

AS_OF = dt.date(2026, 11, 30)
SITES = 37


def site_job(patients: int) -> tuple[float, float, dict[str, Any]]:
    store = get_or_create(patients, 1)
    registry = default_registry()
    with open_snapshot_engine(store.path) as engine:
        compute_cube(engine, registry, AS_OF)  # warm: DuckDB's first statements pay for its start
        began, cpu = time.perf_counter(), time.process_time()
        cube = compute_cube(engine, registry, AS_OF)
        return time.perf_counter() - began, time.process_time() - cpu, cube


def hub_release(cube: dict[str, Any]) -> tuple[float, int]:
    registry = default_registry()
    deliveries = [Delivery(f"site-{n:02d}", cube) for n in range(SITES)]
    disease = registry.diseases["covid19"]
    began, rows = time.perf_counter(), 0
    for indicator in registry.indicators.values():
        if indicator.public:
            rows += len(release(pool(deliveries, disease.id, indicator, disease.start), indicator))
    return time.perf_counter() - began, rows


def hub_reads(cube: dict[str, Any], reads: int = 50) -> tuple[float, float]:
    """CPU-seconds of the first read of the daily new cases after the deliveries, and of a read after it."""
    now = dt.datetime.combine(AS_OF + dt.timedelta(days=1), dt.time(6), dt.UTC)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/hub.db"
        engine = create_hub_engine(url)
        migrate(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        with sessions.begin() as session:
            for n in range(SITES):
                site = SiteRow(name=f"site-{n:02d}", credential_hash=f"{n:064d}", created=now)
                session.add(site)
                session.flush()
                session.add(
                    DeliveryRow(
                        site_id=site.id, task_id=f"{n:036d}", received=now, data_as_of=AS_OF.isoformat(),
                        definitions_version=cube["definitions_version"], accepted=True, cube=cube,
                    )
                )  # fmt: skip
        dashboard = Dashboard(sessions, HubConfig(database_url=url), lambda: now)
        cpu = time.process_time()
        dashboard.series("covid19", "new_inpatient_cases")
        first = time.process_time() - cpu
        cpu = time.process_time()
        for _ in range(reads):
            dashboard.series("covid19", "new_inpatient_cases")
        engine.dispose()
        return first, (time.process_time() - cpu) / reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", default="10000,100000", help="store sizes, comma-separated")
    args = parser.parse_args()
    sizes = [int(n) for n in args.patients.split(",")]
    results = [(patients, *site_job(patients)) for patients in sizes]
    print(
        f"\nSite job (every indicator of the shipped registry, as of {AS_OF}) over one store per size, "
        f"on this machine ({os.cpu_count()} cores, shared); warm, one run each. 'per 100k': wall seconds "
        "per 100,000 patients.\n"
    )
    print(f"{'patients':>10} {'wall s':>8} {'cpu s':>8} {'per 100k':>9} {'cube rows':>10}")
    for patients, wall, cpu, cube in results:
        cube_rows = sum(len(entry["rows"]) for entry in cube["series"])
        print(f"{patients:>10} {wall:>8.2f} {cpu:>8.2f} {wall / patients * 1e5:>9.2f} {cube_rows:>10}")
    largest = results[-1][3]
    seconds, rows = hub_release(largest)
    print(
        f"\nHub: pool and release of every public covid19 series over {SITES} copies of the "
        f"{results[-1][0]}-patient cube: {seconds:.2f} s for {rows} released rows."
    )
    first, kept = hub_reads(largest)
    print("\nHub: one public series read (daily new inpatient cases, 37 deliveries), CPU-seconds\n")
    print(f"{'read':<36} {'cpu s':>8}")
    print(f"{'first after a delivery':<36} {first:>8.3f}")
    print(f"{'every later read (mean of 50)':<36} {kept:>8.4f}")
    print(f"{'ratio':<36} {first / kept:>8.0f}x")


if __name__ == "__main__":
    main()
