"""Record-linkage speed, side by side in one run: CLK encoding (records/s on one core, cold cache) and
Dice comparisons/s (matrix-product kernel, popcount kernel, and the full thresholded candidate search),
plus a blocked three-site linkage. Goals (issue 23): ≥ 2,000 records/s/core (clkhash here: 2,179) and
≥ 30 M Dice comparisons/s (anonlink here: 37–54 M; figures from the brief, section C6). With
`--reference-python` (a Python with clkhash 0.18.3 and anonlink 0.15.3) clkhash encodes the same trimmed
Febrl records and anonlink searches the same random filters in the same run (`linkage_reference.py`).

    .venv/bin/python bench/bench_linkage.py [--records 10000] [--compare 4000] [--reference-python PY]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import tempfile
import time
from importlib.resources import files
from pathlib import Path

import numpy as np

from datenraum.linkage import compare, synthetic
from datenraum.linkage.encoder import Encoder
from datenraum.linkage.estimate import estimate_distinct
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import load_schema, parse_schema

SECRET = b"\x22" * 32
FEBRL = Path(os.environ.get("DATENRAUM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FEBRL = FEBRL / "pprl" / "clkhash-febrl"


def _rate(n: int, fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return n / (time.perf_counter() - start), out


def _cpu_rate(n: int, fn) -> tuple[float, float]:
    """Comparisons per wall second and per CPU-second (the machine is shared: both are shown)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return n / (time.perf_counter() - start), n / (time.process_time() - cpu)


def _previous_candidate_search(a: np.ndarray, b: np.ndarray, threshold: float) -> None:
    """The dense candidate search before issue 23's kernel: a full Dice matrix per 4096 rows, divided."""
    fb = np.unpackbits(b, axis=1).astype(np.float32)
    pb = fb.sum(axis=1)
    for s in range(0, len(a), 4096):
        fa = np.unpackbits(a[s : s + 4096], axis=1).astype(np.float32)
        sim = 2.0 * (fa @ fb.T) / np.maximum(fa.sum(axis=1)[:, None] + pb[None, :], 1)
        ra, rb = np.nonzero(sim >= threshold)
        sim[ra, rb]


def _reference(python: str, schema: dict, records: list[dict], n: int) -> dict:
    """clkhash and anonlink on the same work, in their own interpreter."""
    with tempfile.TemporaryDirectory() as folder:
        schema_path, records_path = Path(folder) / "schema.json", Path(folder) / "records.json"
        schema_path.write_text(json.dumps(schema))
        records_path.write_text(json.dumps([{k: v.strip() for k, v in r.items()} for r in records]))
        script = Path(__file__).with_name("linkage_reference.py")
        out = subprocess.run(
            [python, str(script), str(schema_path), str(records_path), str(n)],
            check=True,
            capture_output=True,
        )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--compare", type=int, default=4_000)
    parser.add_argument("--reference-python", help="a Python with clkhash 0.18.3 and anonlink 0.15.3")
    args = parser.parse_args()
    rows = []

    de = load_schema(files("datenraum.linkage") / "schemas" / "de-patient-v3.json")
    sites, truth = synthetic.sites(args.records, 1, presence=1.0, seed=1)
    rate, _ = _rate(len(sites[0]), lambda: Encoder(de, project_secret(SECRET, "bench")).encode(sites[0]))
    rows.append(("encode, German schema (2048 bits balanced+permuted), cold cache", f"{rate:,.0f} records/s"))
    if FEBRL.is_dir():
        raw = json.loads((FEBRL / "febrl_schema_v3_final.json").read_text())
        for f in raw["features"]:
            if f["identifier"] == "postcode":
                f["hashing"]["missingValue"] = {"sentinel": ""}
        febrl = list(csv.DictReader((FEBRL / "dirty_1000_50_1.csv").open()))
        enc = Encoder(parse_schema(raw), project_secret(SECRET, "bench"))
        rate, _ = _rate(len(febrl), lambda: enc.encode(febrl))
        rows.append(
            ("encode, Febrl schema (1024 bits), cold cache [clkhash 2,179]", f"{rate:,.0f} records/s")
        )
        if args.reference_python:
            reference = _reference(args.reference_python, raw, febrl, args.compare)
            trimmed = [{k: v.strip() for k, v in r.items()} for r in febrl]
            enc = Encoder(parse_schema(raw), b"bench secret")
            rate, _ = _rate(len(trimmed), lambda: enc.encode(trimmed))
            ref = reference["clk_per_s"]
            rows.append(("encode, Febrl trimmed, ours, cold cache", f"{rate:,.0f} records/s"))
            rows.append(
                (
                    "encode, Febrl trimmed, clkhash 0.18.3, same run",
                    f"{ref:,.0f} records/s ({rate / ref:.2f}x)",
                )
            )

    rng = np.random.default_rng(0)
    n = args.compare
    a = rng.integers(0, 256, (n, 128), dtype=np.uint8)
    b = rng.integers(0, 256, (n, 128), dtype=np.uint8)
    compare.dice_matmul(a[:10], b[:10])
    rate, _ = _rate(n * n, lambda: compare.dice_matmul(a, b))
    rows.append((f"Dice matrix {n}x{n}, 1024 bits, float32 matmul", f"{rate / 1e6:,.1f} M cmp/s"))
    m = min(n, 2000)
    rate, _ = _rate(m * m, lambda: compare.dice_popcount(a[:m], b[:m]))
    rows.append((f"Dice matrix {m}x{m}, 1024 bits, np.bitwise_count", f"{rate / 1e6:,.1f} M cmp/s"))
    compare.candidate_pairs([a[:300], b[:300]], 0.7)  # BLAS starts its threads in the first call
    before, before_cpu = _cpu_rate(n * n, lambda: _previous_candidate_search(a, b, 0.7))
    rows.append(
        (
            f"candidate pairs ≥ 0.7, {n}x{n}, before (full matrix, divided)",
            f"{before / 1e6:,.1f} M cmp/s, {before_cpu / 1e6:,.1f} M per CPU-s",
        )
    )
    rate, cpu = _cpu_rate(n * n, lambda: compare.candidate_pairs([a, b], 0.7))
    rows.append(
        (
            f"candidate pairs ≥ 0.7, {n}x{n}, folded bound [anonlink 37-54 M]",
            f"{rate / 1e6:,.1f} M cmp/s ({rate / before:.2f}x), {cpu / 1e6:,.1f} M per CPU-s "
            f"({cpu / before_cpu:.2f}x)",
        )
    )
    if args.reference_python and FEBRL.is_dir():
        ref = reference["cmp_per_s"]
        rows.append(
            (
                f"candidate pairs ≥ 0.7, {n}x{n}, anonlink 0.15.3, same run",
                f"{ref / 1e6:,.1f} M cmp/s ({rate / ref:.2f}x)",
            )
        )

    three, truth = synthetic.sites(args.records, 3, seed=2)
    enc = Encoder(de, project_secret(SECRET, "bench"))
    encoded = [enc.encode(s) for s in three]
    start = time.perf_counter()
    est = estimate_distinct(encoded, 0.85, blocking=(24, 12))
    seconds = time.perf_counter() - start
    rows.append(
        (
            f"3 sites x ~{len(three[0]):,} blocked (24 bands x 12 bits), estimate",
            f"{seconds:.1f} s; {est.distinct} ({est.interval[0]}-{est.interval[1]}) vs true {truth}",
        )
    )
    rows.append(
        ("peak memory (max RSS)", f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
