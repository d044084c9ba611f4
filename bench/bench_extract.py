"""Extraction benchmark: TORCH's two performance CRTDLs on the MII KDS test data inflated to N patients.

Inflation as TORCH's CI data set is made (the KDS bundles copied until there are N patients): every copy
`k` of the 726 KDS resources gets ids with the suffix `-k<k>` and its references rewritten to match, so
each copy is a closed world of its own (its Patients, their Conditions, Observations, Encounters, and its
own Medications and Organizations, which are core resources). The copies are written as NDJSON and
loaded with `datenraum ingest`; the store is kept in `--workdir`/N and reused by the next run.

Per store size and CRTDL: patients/s (cohort patients / wall s, and per CPU second: the machine may be
shared), resources/s (resources written), wall and CPU seconds, and the peak RSS of the extraction (each
run is a fresh subprocess, so the peak is its own; the modules a job imports on first use are imported
before the clock starts, as in a running service). With `--baseline REV` every row runs twice, side by
side: the code of REV (exported with `git archive` to a temporary folder, first on the subprocess's
path) and this working tree's, and the last column is this tree's CPU time over REV's. Then the
linearity check: one patient with R and one with 10×R matching Observations, alone.

    .venv/bin/python bench/bench_extract.py --patients 25000 250000 --baseline main --workdir /tmp/bench
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("/work/wt/shared/data")
if not SHARED.exists():
    SHARED = ROOT.parent / "shared/data"
KDS = SHARED / "mii-kds-testdata"
CASES = SHARED / "extraction/torch/cases/perf"
CRTDLS = ("crtdl-without-references", "crtdl-with-references")
TODAY = dt.date(2026, 11, 22)
MARK = "@@copy@@"  # never in the KDS data
_REF = re.compile(rb'"reference":"([A-Za-z]+)/([^"/]+)"')


def kds_resources() -> list[dict]:
    found: dict[str, dict] = {}
    for path in sorted(KDS.glob("Bundle-*.json")):
        for entry in orjson.loads(path.read_bytes())["entry"]:
            res = entry["resource"]
            found[f"{res['resourceType']}/{res['id']}"] = res
    return list(found.values())


def _short(ident: str) -> str:
    return ident.removeprefix("mii-exa-test-data-")  # room for the suffix within FHIR's 64 characters


def templates(resources: list[dict]) -> list[bytes]:
    """Each resource as NDJSON text with MARK where a copy's suffix goes (its id, its references)."""
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}
    out = []
    for res in resources:
        text = orjson.dumps({**res, "id": _short(res["id"]) + MARK})

        def suffix(match: re.Match) -> bytes:
            kind, ident = match[1].decode(), match[2].decode()
            if f"{kind}/{ident}" in known:
                return f'"reference":"{kind}/{_short(ident)}{MARK}"'.encode()
            return match[0]

        out.append(_REF.sub(suffix, text) + b"\n")
    return out


def inflate(target: Path, patients: int) -> int:
    """NDJSON files with at least `patients` Patients (whole copies of the KDS data); returns the copies."""
    resources = kds_resources()
    per_copy = sum(r["resourceType"] == "Patient" for r in resources)
    copies = -(-patients // per_copy)
    lines = templates(resources)
    target.mkdir(parents=True, exist_ok=True)
    per_file = 2000
    for start in range(0, copies, per_file):
        with open(target / f"kds-{start:07d}.ndjson", "wb") as handle:
            for k in range(start, min(copies, start + per_file)):
                mark = f"-k{k}".encode()
                handle.write(b"".join(lines).replace(MARK.encode(), mark))
    return copies


MEDIKATION = "https://www.medizininformatik-initiative.de/fhir/core/modul-medikation/StructureDefinition/"


def big_patient(target: Path, name: str, observations: int) -> None:
    """One female patient with `observations` hemoglobin Observations (selected by a group of both
    CRTDLs, each linked to one of 10 encounters) and a MedicationRequest (the with-references CRTDL's
    mustHave group) of a Medication."""
    patient = {
        "resourceType": "Patient",
        "id": name,
        "meta": {
            "profile": [
                "https://www.medizininformatik-initiative.de/fhir/core/modul-person/StructureDefinition/PatientPseudonymisiert"
            ]
        },
        "gender": "female",
        "birthDate": "1970-01-01",
    }
    lab = (
        "https://www.medizininformatik-initiative.de/fhir/core/modul-labor/StructureDefinition/ObservationLab"
    )
    kontakt = "https://www.medizininformatik-initiative.de/fhir/core/modul-fall/StructureDefinition/KontaktGesundheitseinrichtung"
    with open(target, "wb") as handle:
        handle.write(orjson.dumps(patient) + b"\n")
        for e in range(10):
            handle.write(
                orjson.dumps(
                    {
                        "resourceType": "Encounter",
                        "id": f"{name}-enc-{e}",
                        "meta": {"profile": [kontakt]},
                        "status": "finished",
                        "class": {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                            "code": "IMP",
                        },
                        "subject": {"reference": f"Patient/{name}"},
                        "period": {"start": "2020-01-01", "end": "2020-02-01"},
                    }
                )
                + b"\n"
            )
        medication = f"{name}-med"
        handle.write(
            orjson.dumps(
                {
                    "resourceType": "Medication",
                    "id": medication,
                    "meta": {"profile": [MEDIKATION + "Medication"]},
                    "code": {
                        "coding": [{"system": "http://fhir.de/CodeSystem/bfarm/atc", "code": "B01AC06"}]
                    },
                }
            )
            + b"\n"
        )
        handle.write(
            orjson.dumps(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"{name}-medreq",
                    "meta": {"profile": [MEDIKATION + "MedicationRequest"]},
                    "status": "active",
                    "intent": "order",
                    "medicationReference": {"reference": f"Medication/{medication}"},
                    "subject": {"reference": f"Patient/{name}"},
                    "encounter": {"reference": f"Encounter/{name}-enc-0"},
                    "authoredOn": "2020-01-10",
                }
            )
            + b"\n"
        )
        for i in range(observations):
            handle.write(
                orjson.dumps(
                    {
                        "resourceType": "Observation",
                        "id": f"{name}-obs-{i}",
                        "meta": {"profile": [lab]},
                        "status": "final",
                        "category": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                        "code": "laboratory",
                                    }
                                ]
                            }
                        ],
                        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                        "subject": {"reference": f"Patient/{name}"},
                        "encounter": {"reference": f"Encounter/{name}-enc-{i % 10}"},
                        "effectiveDateTime": "2020-01-15",
                        "valueQuantity": {
                            "value": 13.5,
                            "unit": "g/dL",
                            "system": "http://unitsofmeasure.org",
                            "code": "g/dL",
                        },
                    }
                )
                + b"\n"
            )


def ingest(store: Path, inputs: list[Path]) -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "datenraum", "ingest", "--store", str(store), *map(str, inputs)],
        check=True,
        capture_output=True,
    )
    return time.monotonic() - started


def export_code(revision: str, target: Path) -> Path:
    """The `datenraum` package as of `revision`, in `target` (a folder to put first on the path)."""
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "datenraum"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def run_one(
    store: Path,
    crtdl: Path,
    out: Path,
    batch_size: int,
    patients: Path | None = None,
    code: Path | None = None,
) -> dict:
    """One extraction in a fresh process (with the package in `code`, else this tree's): its summary,
    wall s, CPU s, peak RSS MB."""
    program = f"""
import datetime as dt, json, resource, time, sys
from pathlib import Path
import datenraum
assert {str(code) if code else None!r} is None or datenraum.__file__.startswith({str(code)!r}), datenraum.__file__
from datenraum.site.extraction import JobOptions, run_extraction
# what a job imports on first use (the cohort compiler, DuckDB, pyarrow): loaded in a running service
import datenraum.query.model, datenraum.site.feasibility, datenraum.site.extraction.output, pyarrow.parquet
patients = {str(patients) if patients else None!r}
options = JobOptions(today=dt.date.fromisoformat({TODAY.isoformat()!r}), batch_size={batch_size},
    patients=Path(patients).read_text().split() if patients else None)
cpu0, wall0 = time.process_time(), time.monotonic()
summary = run_extraction({str(store)!r}, Path({str(crtdl)!r}).read_bytes(), {str(out)!r}, options)
wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"summary": summary, "wall": wall, "cpu": cpu, "rss": rss}}))
"""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    # The working directory comes first on the path: the exported package's folder, or this tree.
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=env, cwd=code or ROOT
    )
    if done.returncode != 0:
        sys.exit(f"the extraction failed ({code or ROOT}):\n{done.stderr}")
    return json.loads(next(x for x in reversed(done.stdout.splitlines()) if x.startswith("{")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, nargs="+", default=[25000], help="store sizes")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--baseline", help="a git revision to run side by side with this tree")
    parser.add_argument("--linearity", type=int, default=10000, help="R: Observations of the small patient")
    parser.add_argument("--no-linearity", action="store_true")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-extract-"))
    codes: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.baseline:
        exported = export_code(args.baseline, Path(tempfile.mkdtemp(prefix="bench-extract-code-")))
        codes.insert(0, (args.baseline, exported))
    rows = []
    for size in args.patients:
        store = work / str(size) / "store"
        if not (store / "CURRENT").exists():
            started = time.monotonic()
            copies = inflate(work / str(size) / "input", size)
            print(
                f"{size}: inflated {copies} copies of the KDS test data in {time.monotonic() - started:.0f} s"
            )
            print(f"{size}: ingested in {ingest(store, [work / str(size) / 'input']):.0f} s")
        for name in CRTDLS:
            cpu = {}
            for label, code in codes:
                out = work / str(size) / f"out-{name}-{time.time_ns()}"
                r = run_one(store, CASES / f"{name}.json", out, args.batch_size, code=code)
                cpu[label] = r["cpu"]
                summary = r["summary"]
                written = sum(v for k, v in summary["Resource-Inclusions"].items() if k != "Provenance")
                cohort = summary["Num-Cohort-Patients"]
                ratio = f"{r['cpu'] / cpu[codes[0][0]]:.2f}" if len(codes) > 1 else ""
                rows.append(
                    f"| {size} | {name} | {label} | {cohort} | {summary['Num-Final-Patients']} | {written} |"
                    f" {r['wall']:.1f} | {r['cpu']:.1f} | {cohort / r['wall']:.0f} | {cohort / r['cpu']:.0f} |"
                    f" {written / r['wall']:.0f} | {r['rss']:.0f} | {ratio} |"
                )
                print(rows[-1], file=sys.stderr, flush=True)  # progress: the 250,000 rows take minutes
    print()
    print(
        "| store patients | CRTDL | code | cohort patients | final patients | resources out | wall s | CPU s |"
        " patients/s | patients/CPU-s | resources/s | peak RSS MB | CPU vs baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.no_linearity:
        return
    print()
    small, large = args.linearity, args.linearity * 10
    lin = work / "linearity"
    if not (lin / "store" / "CURRENT").exists():
        lin.mkdir(parents=True, exist_ok=True)
        big_patient(lin / "small.ndjson", "small", small)
        big_patient(lin / "large.ndjson", "large", large)
        ingest(lin / "store", [lin / "small.ndjson", lin / "large.ndjson"])
    print("| patient | Observations | resources out | wall s | CPU s | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    times = {}
    for name, count in (("small", small), ("large", large)):
        (lin / f"{name}.txt").write_text(name + "\n")
        out = lin / f"out-{name}-{time.time_ns()}"
        r = run_one(
            lin / "store", CASES / "crtdl-with-references.json", out, args.batch_size, lin / f"{name}.txt"
        )
        written = sum(v for k, v in r["summary"]["Resource-Inclusions"].items() if k != "Provenance")
        times[name] = r["cpu"]
        print(f"| {name} | {count} | {written} | {r['wall']:.2f} | {r['cpu']:.2f} | {r['rss']:.0f} |")
    print(f"\nlarge / small CPU time: {times['large'] / times['small']:.1f} (10x the resources)")


if __name__ == "__main__":
    main()
