"""Extraction benchmark: the two TORCH performance CRTDLs on a store of N synthetic MII KDS patients.

Stand-in for the issue's inflated KDS test data (not written yet): `datenraum synth` patients, which claim
the MII profiles the CRTDLs select (Patient, Diagnose, Kontakt, ObservationLab, Medikation). Prints per
CRTDL patients/s, resources/s (resources written), wall and CPU seconds, and the peak RSS of the process.

    .venv/bin/python bench/bench_extract.py --patients 2000
    .venv/bin/python bench/bench_extract.py --patients 25000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datenraum.site.extraction import JobOptions, run_extraction

CASES = Path(__file__).resolve().parents[2] / "shared/data/extraction/torch/cases/perf"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-extract-"))
    store = work / "store"
    if not (store / "CURRENT").exists():
        cli = [sys.executable, "-m", "datenraum"]
        subprocess.run(
            [*cli, "synth", "--patients", str(args.patients), "--out", str(work / "synth")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*cli, "ingest", "--store", str(store), str(work / "synth")], check=False, capture_output=True
        )
    print("| CRTDL | patients | resources out | wall s | CPU s | patients/s | resources/s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("crtdl-without-references", "crtdl-with-references"):
        out = work / f"out-{name}"
        shutil.rmtree(out, ignore_errors=True)
        cpu0, wall0 = time.process_time(), time.monotonic()
        summary = run_extraction(
            store,
            (CASES / f"{name}.json").read_bytes(),
            out,
            JobOptions(today=dt.date(2026, 11, 22), batch_size=args.batch_size, tables=True),
        )
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        written = sum(v for k, v in summary["Resource-Inclusions"].items() if k != "Provenance")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        patients = summary["Num-Final-Patients"]
        print(
            f"| {name} | {patients} | {written} | {wall:.1f} | {cpu:.1f} | {patients / wall:.0f} | {written / wall:.0f} | {rss:.0f} |"
        )
    json.dumps(summary)


if __name__ == "__main__":
    main()
