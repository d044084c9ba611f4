"""De-identification speed: resources/s on one core, beside plain copying of the same NDJSON (read,
parse, serialize, write: the floor) and the leak gate. Goal (brief R-PERF): 50,000 resources/s/core.
With `--baseline REV` the de-identification rows also run on the code of REV (exported with `git
archive`, in a subprocess with it first on the path) over the same job folder, side by side; the last
column is this tree's CPU time over REV's.

    .venv/bin/python bench/bench_deidentify.py [--patients 4000] [--baseline main]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from deidentify_fixtures import write_job

from datenraum.deidentify.engine import Deidentifier
from datenraum.deidentify.folder import _stream, bundle_files
from datenraum.deidentify.gate import leak_gate
from datenraum.deidentify.keys import ProjectKeys
from datenraum.deidentify.profile import load_profile
from datenraum.deidentify.pseudonyms import PseudonymService

SECRET = b"\x11" * 32
ROOT = Path(__file__).resolve().parents[1]


def copy(source: Path, target: Path) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        for line in reader:
            writer.write(orjson.dumps(orjson.loads(line)) + b"\n")


def deidentify_seconds(job: Path, out_root: Path) -> dict[str, float]:
    """CPU seconds of de-identifying `job` with each profile (into `out_root`/<profile>)."""
    files = bundle_files(job)
    seconds = {}
    for name in ("fdpg", "fts"):
        engine = Deidentifier(
            load_profile(name), ProjectKeys.derive(SECRET, "bench"), PseudonymService(SECRET)
        )
        out = out_root / name
        out.mkdir()
        started = time.process_time()
        engine.register_shared(orjson.loads((job / "core.ndjson").read_bytes()))
        _stream(engine, job / "core.ndjson", out / "core.ndjson", shared=True)
        for path in files:
            _stream(engine, path, out / path.name, shared=False)
        seconds[name] = time.process_time() - started
    return seconds


def baseline_seconds(rev: str, job: Path, work: Path) -> dict[str, float]:
    code = work / "baseline"
    code.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    (work / "baseline-out").mkdir()
    done = subprocess.run(
        [
            sys.executable,
            __file__,  # this bench, on the code of REV
            "--measure",
            str(job),
            str(work / "baseline-out"),
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(code)},
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=4000)
    parser.add_argument("--baseline", metavar="REV", help="also run the de-identification of REV")
    parser.add_argument(
        "--measure", nargs=2, type=Path, help=argparse.SUPPRESS
    )  # JOB OUT: the baseline's run
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(deidentify_seconds(*args.measure)))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-deid-"))
    try:
        job = write_job(work / "in", patients=args.patients, batch=1000, encounters=2, observations=4)
        files = bundle_files(job)
        total = 0
        for path in files:
            with open(path, "rb") as handle:
                total += sum(len(orjson.loads(line)["entry"]) for line in handle)
        rows: list[tuple[str, float, float | None]] = []
        started = time.process_time()
        for path in files:
            copy(path, work / f"copy-{path.name}")
        rows.append(("plain copy (parse + serialize)", time.process_time() - started, None))
        before = baseline_seconds(args.baseline, job, work) if args.baseline else {}
        for name, seconds in deidentify_seconds(job, work).items():
            if name in before:
                rows.append((f"de-identify, profile {name}, {args.baseline}", before[name], None))
            rows.append((f"de-identify, profile {name}", seconds, seconds / before[name] if before else None))
        started = time.process_time()
        verdict = leak_gate(job, work / "fdpg", load_profile("fdpg").keep_systems)
        label = f"leak gate (fdpg output, {'pass' if verdict.passed else 'blocked'})"
        rows.append((label, time.process_time() - started, None))
        print(
            f"{args.patients} patients, {total} resources in {len(files)} NDJSON files; CPU seconds of one core"
        )
        print(f"{'step':<48} {'seconds':>8} {'resources/s':>12} {'vs baseline':>12}")
        for label, seconds, ratio in rows:
            versus = f"{ratio:.2f}" if ratio is not None else ""
            print(f"{label:<48} {seconds:>8.2f} {total / seconds:>12,.0f} {versus:>12}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
