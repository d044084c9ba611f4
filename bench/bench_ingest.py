"""End-to-end ingest benchmark: synthetic NDJSON of N patients into an empty site store.

Each row generates the input with `datenraum.synth.generate` (not timed), runs `datenraum ingest` as a
child process, and measures it from outside: wall time, CPU time of the whole process tree (ingest and
its workers, from getrusage of waited-for children), peak memory of the tree (sum of RSS, sampled by a
thread), and the size of the store on disk.

Every size is loaded twice, side by side: as the ingest runs (the strict reader, with the row-by-row
reader for what it leaves) and with `--row-by-row` (every line by the row-by-row reader), which was
the whole ingest before the strict reader. "per worker" divides the rate by the worker processes;
"per CPU-s" divides the resources by the CPU seconds the tree used, which is the per-core rate and
stays meaningful on a machine that is busy with other work (the load average is printed for that
reason).

    python bench/bench_ingest.py            # 10k and 100k patients, both readers; 100k with one worker
    python bench/bench_ingest.py --full     # and 1M patients
    python bench/bench_ingest.py --against 5b8002b --patients 5000 --workers 1 --runs 3

`--against REV` runs every row in this tree and in REV side by side: REV is checked out into a temporary
git worktree and run from there with the same interpreter (PYTHONPATH puts it before the installed
package, as bench/bench_startup.py does), on the same input, alternating between the trees `--runs`
times so that the machine's noise hits both alike; the table then gives each tree's median run and the
ratio of their resources per CPU-second.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import psutil

from datenraum.synth import generate

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    patients: int
    workers: int
    reader: str  # "strict" (the ingest's fast path, with the row-by-row reader for the rest) or "row-by-row"
    tree: str = "this tree"
    resources: int = 0
    input_bytes: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss: int = 0
    store_bytes: int = 0
    rejected: int = 0
    load_average: float = 0.0  # over the last minute of the run: other work inflates CPU seconds too


class TreeMemory:
    """Peak of the summed RSS of a process and all its descendants, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                for process in [self.process, *self.process.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):  # a worker that just ended
                        total += process.memory_info().rss
            except psutil.NoSuchProcess:
                return
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def disk_usage(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def input_for(workdir: Path, patients: int, seed: int) -> Path:
    """Synthetic NDJSON of `patients` patients, generated once per size and seed."""
    folder = workdir / f"data-{patients}-s{seed}"
    marker = folder / ".complete"
    if not marker.exists():
        print(f"generating {patients:,} patients into {folder} ...", flush=True)
        summary = generate(folder, patients, seed, workers=os.cpu_count() or 2)
        print(
            f"  {sum(summary.resources.values()):,} resources, {summary.bytes_written / 1e9:.2f} GB "
            f"in {summary.seconds:.0f} s",
            flush=True,
        )
        marker.write_text("")
    return folder


def run(
    workdir: Path, patients: int, workers: int, reader: str, seed: int, tree: tuple[str, Path] | None = None
) -> Row:
    """One ingest; with `tree` (label, folder), of the package in that folder instead of this one."""
    data = input_for(workdir, patients, seed)
    store = workdir / f"store-{patients}-w{workers}"
    shutil.rmtree(store, ignore_errors=True)
    row = Row(patients, workers, reader, input_bytes=sum(f.stat().st_size for f in data.glob("*.ndjson")))
    label, folder = tree or ("this tree", ROOT)
    row.tree = label
    command = [
        sys.executable,
        "-m",
        "datenraum",
        "ingest",
        "--json",
        "--workers",
        str(workers),
        "--store",
        str(store),
        *(["--row-by-row"] if reader == "row-by-row" else []),
        str(data),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=folder,  # `-m` puts the working folder first on sys.path
        env={**os.environ, "PYTHONPATH": str(folder)},
    )
    with TreeMemory(process.pid) as memory:
        out, err = process.communicate()
    row.seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode not in (0, 1):
        raise SystemExit(f"ingest failed ({process.returncode}):\n{err.decode()[-2000:]}")
    report = orjson.loads(out)
    row.resources = report["resources_read"]
    row.rejected = sum(report["rejected"].values())
    row.cpu_seconds = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    row.peak_rss = memory.peak
    row.store_bytes = disk_usage(store)
    row.load_average = os.getloadavg()[0]
    shutil.rmtree(store, ignore_errors=True)
    return row


def median_row(runs: list[Row]) -> Row:
    """The run with the median resources per CPU-second (all runs read the same input)."""
    ordered = sorted(runs, key=lambda r: r.resources / r.cpu_seconds)
    return ordered[(len(ordered) - 1) // 2]


def print_table(rows: list[Row]) -> None:
    header = [
        "tree",
        "patients",
        "workers",
        "reader",
        "resources",
        "rejected",
        "input GB",
        "seconds",
        "resources/s",
        "per worker",
        "CPU s",
        "per CPU-s",
        "peak RSS GB",
        "store GB",
        "load",
    ]
    lines = [header]
    for r in rows:
        rate = r.resources / r.seconds
        lines.append(
            [
                r.tree,
                f"{r.patients:,}",
                str(r.workers),
                r.reader,
                f"{r.resources:,}",
                f"{r.rejected:,}",
                f"{r.input_bytes / 1e9:.2f}",
                f"{r.seconds:.1f}",
                f"{rate:,.0f}",
                f"{rate / r.workers:,.0f}",
                f"{r.cpu_seconds:.1f}",
                f"{r.resources / r.cpu_seconds:,.0f}",
                f"{r.peak_rss / 2**30:.2f}",
                f"{r.store_bytes / 1e9:.2f}",
                f"{r.load_average:.1f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also 1,000,000 patients (about 20 GB of input)")
    parser.add_argument("--patients", type=int, nargs="*", help="sizes to run instead of 10k and 100k")
    parser.add_argument("--workers", type=int, default=2, help="workers for every size (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workdir", type=Path, help="where input and stores go (default: a temporary folder)"
    )
    parser.add_argument("--keep-input", action="store_true", help="keep the generated input for the next run")
    parser.add_argument("--against", metavar="REV", help="also run every row in this earlier revision")
    parser.add_argument("--runs", type=int, default=1, help="runs of each row (the median is reported)")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="datenraum-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sizes = args.patients or [10_000, 100_000]
    # Each size with both readers side by side: the ingest as it runs, and every line row by row.
    plan = [(size, args.workers, reader) for size in sizes for reader in ("strict", "row-by-row")]
    if not args.patients:
        plan.append((100_000, 1, "strict"))  # scaling: the same input with one worker
    if args.full:
        plan.append((1_000_000, args.workers, "strict"))

    print(
        f"{os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB; "
        f"load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows: list[Row] = []
    trees: list[tuple[str, Path]] = [("this tree", ROOT)]
    if args.against:
        earlier = workdir / f"tree-{args.against}"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(earlier), args.against],
            check=True,
        )
        trees.insert(0, (args.against, earlier))
    try:
        for patients, workers, reader in plan:
            runs: dict[str, list[Row]] = {label: [] for label, _ in trees}
            for _ in range(args.runs):
                for tree in trees:  # alternating, so that the machine's noise hits every tree alike
                    runs[tree[0]].append(run(workdir, patients, workers, reader, args.seed, tree))
            medians = [median_row(runs[label]) for label, _ in trees]
            rows += medians
            print_table(medians)
            if args.against:
                old, new = (r.resources / r.cpu_seconds for r in medians)
                print(f"  per CPU-s, this tree / {args.against}: {new / old:.3f}", flush=True)
    finally:
        if args.against:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[0][1])], check=False
            )
        if not args.keep_input:
            for folder in workdir.glob("data-*"):  # only what this script made
                shutil.rmtree(folder, ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    print_table(rows)


if __name__ == "__main__":
    main()
