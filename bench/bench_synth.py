"""Benchmark of the synthetic data generator: throughput, output size and peak memory.

    python bench/bench_synth.py            # 10k and 100k patients
    python bench/bench_synth.py --full     # and 1M patients (writes about 20 GB; needs ~5-10 minutes)

Each size is generated into a fresh temporary directory that is deleted afterwards (unless ``--keep``).
Peak memory is the largest sum of resident set sizes over this process and its worker processes,
sampled every 50 ms, because workers are separate processes whose memory ``ru_maxrss`` would not add up.
CPU time (user + system, this process and its workers) is reported besides wall-clock time because it
does not depend on what else the machine is running.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import psutil

from datenraum.synth import generate


class PeakMemory:
    """Samples the resident memory of this process tree in a background thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak = 0

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for process in (me, *me.children(recursive=True)):
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue  # a worker that just finished
            self.peak = max(self.peak, total)
            self._stop.wait(self._interval)


def cpu_seconds() -> float:
    """User and system CPU time of this process and of its finished worker processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="also generate 1,000,000 patients")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="patient counts")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--site-profile", type=int, default=0)
    parser.add_argument("--tmp", type=Path, default=None, help="parent of the temporary output directories")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    sizes = [*args.sizes, 1_000_000] if args.full else args.sizes

    print(f"# datenraum synth: workers={args.workers}, seed={args.seed}, site_profile={args.site_profile}")
    print(f"# {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print()
    print(
        "| patients | seconds | patients/s | resources | resources/s | MB written | peak RSS (MB) "
        "| CPU s | patients/CPU-s |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for patients in sizes:
        out_dir = Path(tempfile.mkdtemp(prefix=f"bench-synth-{patients}-", dir=args.tmp))
        try:
            cpu_before = cpu_seconds()
            with PeakMemory() as memory:
                summary = generate(
                    out_dir, patients, args.seed, site_profile=args.site_profile, workers=args.workers
                )
            cpu = cpu_seconds() - cpu_before
            resources = sum(summary.resources.values())
            print(
                f"| {patients:,} | {summary.seconds:.1f} | {patients / summary.seconds:,.0f} | {resources:,} "
                f"| {resources / summary.seconds:,.0f} | {summary.bytes_written / 1e6:,.0f} "
                f"| {memory.peak / 1e6:,.0f} | {cpu:.1f} | {patients / cpu:,.0f} |",
                flush=True,
            )
        finally:
            if args.keep:
                print(f"# kept {out_dir}")
            else:
                shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
