"""Sharded, parallel NDJSON output of a synthetic site.

Patients are cut into fixed ranges (shards) that worker processes generate independently, each into its
own files ``<ResourceType>.<shard:04d>.ndjson``. Because a patient's data depends only on the seed, the
site profile and its index, the files are byte-identical whatever the number of workers, and a shard
holds only a few hundred patients' resources in memory at a time, so the output size is bounded by the
disk, not by memory.
"""

from __future__ import annotations

import multiprocessing
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from . import biobank, codes
from . import resources as fhir
from .patient import PATIENT_RESOURCE_TYPES, Site

#: Patients per shard: large enough to amortise process start-up, small enough to balance two workers.
SHARD_SIZE = 20_000
#: Patients whose serialised resources are collected before one write per resource type.
_BATCH = 500
CATALOGUE_FILE = "Medication.ndjson"
BIOBANK_FILE = "Organization.biobanks.ndjson"
_SHARD_FILE = re.compile(rf"^(?:{'|'.join(PATIENT_RESOURCE_TYPES)})\.\d{{4,}}\.ndjson$")


@dataclass(frozen=True, slots=True)
class GenerationSummary:
    """What ``generate`` wrote."""

    patients: int
    seed: int
    site_profile: int
    #: Number of resources per resourceType, the catalogue's Medication included.
    resources: dict[str, int]
    #: Every file written, sorted by name.
    files: list[Path]
    bytes_written: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Shard:
    out_dir: Path
    seed: int
    site_profile: int
    number: int
    start: int
    stop: int
    waves: bool = False
    biobanks: bool = False


@dataclass(frozen=True, slots=True)
class _ShardResult:
    counts: dict[str, int]
    files: list[Path]
    bytes_written: int


def generate(
    out_dir: Path,
    patients: int,
    seed: int,
    *,
    site_profile: int = 0,
    workers: int = 2,
    shard_size: int = SHARD_SIZE,
    waves: bool = False,
    biobanks: bool = False,
) -> GenerationSummary:
    """Generate ``patients`` synthetic patients of one site as MII core data set NDJSON in ``out_dir``.

    The same (patients, seed, site_profile) always give byte-identical files, whatever ``workers`` is;
    ``shard_size`` only changes how the same lines are split into files. ``waves`` adds epidemic stays
    (COVID-19, influenza, RSV; see ``waves``) without changing anything else a patient has; ``biobanks`` makes
    the specimens a biobank's (``biobank``: primary samples, aliquot groups, aliquots, storage history) and
    writes the site's biobank Organizations to ``BIOBANK_FILE``. Shard files and the medication
    catalogue left in ``out_dir`` by an earlier run are removed first, so that a smaller run into the same
    directory does not leave stale shards behind; other files are not touched.
    """
    if patients < 0:
        raise ValueError(f"patients must not be negative, got {patients}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if shard_size < 1:
        raise ValueError(f"shard_size must be at least 1, got {shard_size}")
    Site(seed, site_profile)  # validates seed and profile before any work is started
    began = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.iterdir():
        if stale.name in (CATALOGUE_FILE, BIOBANK_FILE) or _SHARD_FILE.match(stale.name):
            stale.unlink()

    catalogue = out_dir / CATALOGUE_FILE
    lines = b"".join(
        orjson.dumps(fhir.medication(drug), option=orjson.OPT_APPEND_NEWLINE) for drug in codes.DRUGS.values()
    )
    catalogue.write_bytes(lines)
    counts = {"Medication": len(codes.DRUGS)}
    files = [catalogue]
    bytes_written = len(lines)
    if biobanks:
        prefix = Site(seed, site_profile).prefix
        organizations = biobank.organizations(prefix)
        lines = b"".join(orjson.dumps(org, option=orjson.OPT_APPEND_NEWLINE) for org in organizations)
        (out_dir / BIOBANK_FILE).write_bytes(lines)
        counts["Organization"] = len(organizations)
        files.append(out_dir / BIOBANK_FILE)
        bytes_written += len(lines)

    shards = [
        _Shard(out_dir, seed, site_profile, number, start, min(start + shard_size, patients), waves, biobanks)
        for number, start in enumerate(range(0, patients, shard_size))
    ]
    for result in _run(shards, workers):
        for resource_type, count in result.counts.items():
            counts[resource_type] = counts.get(resource_type, 0) + count
        files.extend(result.files)
        bytes_written += result.bytes_written
    order = ("Medication", "Organization", *PATIENT_RESOURCE_TYPES)
    return GenerationSummary(
        patients=patients,
        seed=seed,
        site_profile=site_profile,
        resources={t: counts[t] for t in order if t in counts},
        files=sorted(files),
        bytes_written=bytes_written,
        seconds=time.perf_counter() - began,
    )


def _run(shards: list[_Shard], workers: int) -> list[_ShardResult]:
    if workers == 1 or len(shards) <= 1:
        return [_write_shard(shard) for shard in shards]
    # "spawn" rather than "fork": the caller may hold threads (DuckDB, Arrow) that a fork would copy in an
    # undefined state.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(shards)), mp_context=context) as pool:
        return list(pool.map(_write_shard, shards))


def _write_shard(shard: _Shard) -> _ShardResult:
    site = Site(shard.seed, shard.site_profile, waves=shard.waves, biobanks=shard.biobanks)
    batches: dict[str, list[bytes]] = {t: [] for t in PATIENT_RESOURCE_TYPES}
    counts = dict.fromkeys(PATIENT_RESOURCE_TYPES, 0)
    paths: dict[str, Path] = {}
    bytes_written = 0
    emit = _emitter(batches)
    with ExitStack() as stack:
        handles: dict[str, BinaryIO] = {}
        for batch_start in range(shard.start, shard.stop, _BATCH):
            for index in range(batch_start, min(batch_start + _BATCH, shard.stop)):
                site.simulate(index, emit)
            for resource_type, lines in batches.items():
                if not lines:
                    continue
                handle = handles.get(resource_type)
                if handle is None:
                    # Files are opened on first use, so that no empty file marks a type a shard lacks.
                    path = shard.out_dir / f"{resource_type}.{shard.number:04d}.ndjson"
                    handle = handles[resource_type] = stack.enter_context(path.open("wb"))
                    paths[resource_type] = path
                chunk = b"".join(lines)
                handle.write(chunk)
                bytes_written += len(chunk)
                counts[resource_type] += len(lines)
                lines.clear()
    return _ShardResult({t: n for t, n in counts.items() if n}, list(paths.values()), bytes_written)


def _emitter(batches: dict[str, list[bytes]]) -> Callable[[str, fhir.Resource], None]:
    dumps, newline = orjson.dumps, orjson.OPT_APPEND_NEWLINE

    def emit(resource_type: str, resource: fhir.Resource) -> None:
        batches[resource_type].append(dumps(resource, option=newline))

    return emit
