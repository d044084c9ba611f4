"""De-identify an extraction job folder (TORCH's layout) into a new folder, then run the leak gate.

    IN_DIR  (datenraum extract)            OUT_DIR (datenraum deidentify)
    {batch}.ndjson                  ->     {batch}.ndjson           de-identified, line by line
    core.ndjson                     ->     core.ndjson              shared resources, project pseudonyms
    {batch}_consent.ndjson                 (not delivered: the consent decisions stay at the site)
    job.json                        ->     job.json                 without the cohort (patient ids)
    manifest.json                   ->     manifest.json            (file names only)
    reports/job-summary.json        ->     reports/job-summary.json (counts only)
    reports/*-exclusions.csv               (not delivered: they list patient and resource ids)
    reports/consent-explanations           reports/consent-summary.json (counts by decision)
    tables/                         ->     tables/                  rebuilt from the de-identified Bundles
                                           reports/deidentification.json   what was done, counted
                                           reports/leak-gate.json   the verdict and its findings

Everything streams (one Bundle in memory at a time); files are written under temporary names and
renamed. The tables are rebuilt by a callback (`tables(out_dir, job)`) that the site layer provides
(it needs the extraction plan and pyarrow); without one, no tables are delivered.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from datenraum.deidentify.engine import Deidentifier, Pseudonymizer
from datenraum.deidentify.gate import leak_gate
from datenraum.deidentify.keys import ProjectKeys
from datenraum.deidentify.profile import Profile

__all__ = ["DeidentifyError", "deidentify_folder"]

REPORT = "reports/deidentification.json"
GATE = "reports/leak-gate.json"


class DeidentifyError(ValueError):
    pass


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json(path: Path, data: Any) -> None:
    _write(path, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))


def bundle_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.glob("*.ndjson")
        if not p.name.endswith("_consent.ndjson") and p.name != "core.ndjson"
    )


def _stream(engine: Deidentifier, source: Path, target: Path, *, shared: bool) -> int:
    tmp = target.with_name(f".{target.name}.tmp")
    lines = 0
    loads, dumps, bundle = orjson.loads, orjson.dumps, engine.bundle
    with open(source, "rb") as reader, open(tmp, "wb") as writer:
        for line in reader:
            if line.strip():
                writer.write(dumps(bundle(loads(line), shared=shared)) + b"\n")
                lines += 1
    os.replace(tmp, target)
    return lines


def _consent_summary(path: Path) -> dict[str, Any]:
    excluded: Counter[str] = Counter()
    checked = dropped = 0
    if path.exists():
        with open(path, "rb") as handle:
            for line in handle:
                if not line.strip():
                    continue
                record = orjson.loads(line)
                checked += 1
                if record.get("excluded"):
                    excluded[str(record["excluded"]).split(":", 1)[0].split(" (", 1)[0]] += 1
                dropped += len(record.get("dropped") or ())
    return {
        "patientsChecked": checked,
        "patientsExcluded": sum(excluded.values()),
        "excludedBy": dict(sorted(excluded.items())),
        "resourcesDropped": dropped,
    }


def deidentify_folder(
    in_dir: Path | str,
    out_dir: Path | str,
    profile: Profile,
    keys: ProjectKeys,
    pseudonyms: Pseudonymizer,
    *,
    tables: Callable[[Path, dict[str, Any]], list[str]] | None = None,
) -> dict[str, Any]:
    """De-identify the job folder `in_dir` into `out_dir` (new or empty) and run the leak gate; the
    report (also in `reports/deidentification.json`) has the verdict under `leakGate`."""
    source, target = Path(in_dir), Path(out_dir)
    job_file = source / "job.json"
    if not job_file.is_file():
        raise DeidentifyError(f"{source} is not an extraction job folder (no job.json)")
    job = orjson.loads(job_file.read_bytes())
    if job.get("status") != "COMPLETED":
        raise DeidentifyError(f"the job in {source} has not completed (status {job.get('status')})")
    if target.exists() and any(target.iterdir()):
        raise DeidentifyError(f"{target} is not empty")
    if target.resolve() == source.resolve():
        raise DeidentifyError("the output folder must differ from the input folder")
    target.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    engine = Deidentifier(profile, keys, pseudonyms)
    core = source / "core.ndjson"
    if core.exists():
        with open(core, "rb") as handle:
            for line in handle:
                if line.strip():
                    engine.register_shared(orjson.loads(line))
        _stream(engine, core, target / "core.ndjson", shared=True)
    bundles = 0
    for path in bundle_files(source):
        bundles += _stream(engine, path, target / path.name, shared=False)
    flush = getattr(pseudonyms, "flush", None)
    if flush is not None:
        flush()
    seconds = time.perf_counter() - started
    delivered_job = {k: v for k, v in job.items() if k not in ("cohort", "warnings")}
    delivered_job["deidentified"] = {"profile": profile.name, "project": keys.project}
    _json(target / "job.json", delivered_job)
    for name in ("manifest.json", "reports/job-summary.json"):
        if (source / name).exists():
            _write(target / name, (source / name).read_bytes())
    _json(
        target / "reports/consent-summary.json",
        _consent_summary(source / "reports/consent-explanations.ndjson"),
    )
    table_note: Any = "not rebuilt (no table writer)"
    if tables is not None:
        try:
            table_note = tables(target, job)
        except Exception as error:
            shutil.rmtree(target / "tables", ignore_errors=True)
            table_note = f"not delivered: {type(error).__name__}: {error}"
    report: dict[str, Any] = {
        "project": keys.project,
        "keyFingerprint": keys.fingerprint(),
        "profile": profile.describe(),
        "job": job.get("id"),
        "bundles": bundles,
        "resourcesIn": dict(sorted(engine.resources_in.items())),
        "resourcesOut": dict(sorted(engine.resources_out.items())),
        "droppedNoModule": dict(sorted(engine.dropped.items())),
        "actions": dict(sorted(engine.stats.items())),
        "seconds": round(seconds, 3),
        "tables": table_note,
    }
    _json(target / REPORT, report)
    day = "15" if any(r.params.get("to") == "day-15" for m in profile.modules for r in m.rules) else None
    verdict = leak_gate(source, target, profile.keep_systems, generalized_day=day)
    _json(target / GATE, verdict.to_dict())
    report["leakGate"] = verdict.to_dict()
    return report
