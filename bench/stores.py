"""Benchmark site stores: one synthetic site per (patients, seed), generated and ingested once, kept.

Generating and ingesting a million patients takes a long while, so a store is built once under
`/var/tmp/datenraum-bench/` (or `$DATENRAUM_BENCH_ROOT`) and reused by every later run. A store counts
as built only when its `READY` marker exists: a run killed half-way leaves no marker, and the next run
starts that store again from scratch rather than measuring a partial site.

    python bench/stores.py 10000 100000          # build (or find) these stores and print where they are
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import orjson

from datenraum.site.ingest import ingest
from datenraum.site.store import Store
from datenraum.synth import generate

ROOT = Path(os.environ.get("DATENRAUM_BENCH_ROOT", "/var/tmp/datenraum-bench"))
READY = "READY"
GENERATED = "GENERATED"  # in the NDJSON folder: generation finished (a .ndjson-free name, so ingest skips it)


def store_path(patients: int, seed: int, root: Path = ROOT, biobanks: bool = False) -> Path:
    return root / (f"site-{patients}-seed{seed}" + ("-biobanks" if biobanks else ""))


def get_or_create(
    patients: int,
    seed: int,
    *,
    root: Path = ROOT,
    workers: int | None = None,
    keep_ndjson: bool = False,
    biobanks: bool = False,
    log=print,
) -> Store:
    """The store of a synthetic site of `patients` patients (seed `seed`; with `biobanks`, its specimens a
    biobank's: `datenraum synth --biobanks`), built if it is not there yet."""
    folder = store_path(patients, seed, root, biobanks)
    marker = folder / READY
    if marker.exists():
        return Store(folder / "store")
    data = folder / "ndjson"
    generated_marker = data / GENERATED
    if generated_marker.exists():
        # Generation finished in an earlier run, the ingest did not: keep the NDJSON, load it again.
        log(f"{folder}: generated earlier but not ingested, ingesting again")
        shutil.rmtree(folder / "store", ignore_errors=True)
        generated = orjson.loads(generated_marker.read_bytes())
    else:
        if folder.exists():
            log(f"{folder}: incomplete from an earlier run, starting again")
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        started = time.perf_counter()
        summary = generate(data, patients, seed, workers=workers or os.cpu_count() or 1, biobanks=biobanks)
        generated = {"resources": summary.resources, "seconds": time.perf_counter() - started}
        generated_marker.write_bytes(orjson.dumps(generated))
        log(
            f"generated {patients:,} patients ({sum(summary.resources.values()):,} resources, "
            f"{summary.bytes_written / 1e9:.1f} GB NDJSON) in {generated['seconds']:.0f} s"
        )
    workers = workers or os.cpu_count() or 1
    store = Store(folder / "store")
    started = time.perf_counter()
    report = ingest(store, sorted(data.glob("*.ndjson")), workers=workers)
    ingested = time.perf_counter() - started
    log(
        f"ingested in {ingested:.0f} s ({report.total('added'):,} resources added, "
        f"{report.total('rejected'):,} rejected)"
    )
    if not keep_ndjson:
        shutil.rmtree(data)  # the store holds every resource's JSON; the input is not needed again
    marker.write_bytes(orjson.dumps({
        "patients": patients, "seed": seed, "resources": generated["resources"],
        "generate_seconds": generated["seconds"],
        "ingest_seconds": ingested, "rejected": report.total("rejected"),
    }, option=orjson.OPT_INDENT_2))  # fmt: skip
    return store


def build_info(patients: int, seed: int, root: Path = ROOT) -> dict:
    """What the READY marker recorded about building the store (sizes and times)."""
    return orjson.loads((store_path(patients, seed, root) / READY).read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patients", type=int, nargs="+", help="site sizes to build")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--keep-ndjson", action="store_true", help="keep the generated NDJSON next to the store"
    )
    args = parser.parse_args(argv)
    for patients in args.patients:
        store = get_or_create(
            patients, args.seed, root=args.root, workers=args.workers, keep_ndjson=args.keep_ndjson
        )
        print(f"{patients:>10,} patients: {store.path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
