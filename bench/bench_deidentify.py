"""De-identification speed: resources/s on one core, beside plain copying of the same NDJSON (read,
parse, serialize, write: the floor) and the leak gate. Goal (brief R-PERF): 50,000 resources/s/core.

    .venv/bin/python bench/bench_deidentify.py [--patients 4000]
"""

from __future__ import annotations

import argparse
import shutil
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


def copy(source: Path, target: Path) -> None:
    with open(source, "rb") as reader, open(target, "wb") as writer:
        for line in reader:
            writer.write(orjson.dumps(orjson.loads(line)) + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=4000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-deid-"))
    try:
        job = write_job(work / "in", patients=args.patients, batch=1000, encounters=2, observations=4)
        files = bundle_files(job)
        total = 0
        for path in files:
            with open(path, "rb") as handle:
                total += sum(len(orjson.loads(line)["entry"]) for line in handle)
        rows = []
        started = time.process_time()
        for path in files:
            copy(path, work / f"copy-{path.name}")
        rows.append(("plain copy (parse + serialize)", time.process_time() - started))
        for name in ("fdpg", "fts"):
            engine = Deidentifier(
                load_profile(name), ProjectKeys.derive(SECRET, "bench"), PseudonymService(SECRET)
            )
            out = work / name
            out.mkdir()
            started = time.process_time()
            engine.register_shared(orjson.loads((job / "core.ndjson").read_bytes()))
            _stream(engine, job / "core.ndjson", out / "core.ndjson", shared=True)
            for path in files:
                _stream(engine, path, out / path.name, shared=False)
            rows.append((f"de-identify, profile {name}", time.process_time() - started))
        started = time.process_time()
        verdict = leak_gate(job, work / "fdpg", load_profile("fdpg").keep_systems)
        rows.append(
            (
                f"leak gate (fdpg output, {'pass' if verdict.passed else 'blocked'})",
                time.process_time() - started,
            )
        )
        print(
            f"{args.patients} patients, {total} resources in {len(files)} NDJSON files; CPU seconds of one core"
        )
        print(f"{'step':<42} {'seconds':>8} {'resources/s':>12}")
        for label, seconds in rows:
            print(f"{label:<42} {seconds:>8.2f} {total / seconds:>12,.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
