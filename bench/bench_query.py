"""Feasibility query benchmark: the SQL engine against the plain baseline, on synthetic sites of growing size.

For each site size (10k and 100k patients; 1M with --full) and each query (a typical one and one of ten
criteria) it measures:

- SQL: `datenraum.site.feasibility.patient_ids` on a store snapshot, warm (after one run to warm the
  caches), median and range of several runs;
- baseline: what a site without the SQL engine would do: read every resource's JSON from the store
  (`SELECT json FROM resource`), parse it and answer the query with the reference evaluator. To keep
  memory bounded the patients are taken in slices (by a hash of the patient id, plus the patientless
  resources such as the Medication catalogue in every slice); this is exact, because every criterion is
  about one patient's own resources. One run: it is slow, which is the point.

and prints one table, side by side, with the ratio baseline/SQL and whether both found the same
patients. Stores are built on first use and kept (bench/stores.py).

    .venv/bin/python bench/bench_query.py              # 10k and 100k
    .venv/bin/python bench/bench_query.py --full       # and 1M (builds it the first time: long)
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass

import orjson
from stores import ROOT, build_info, get_or_create

from datenraum.query.engines import reference
from datenraum.query.model import (
    AttributeFilter,
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    Unit,
)
from datenraum.site import feasibility

ICD10GM = "http://fhir.de/CodeSystem/bfarm/icd-10-gm"
LOINC = "http://loinc.org"
ATC = "http://fhir.de/CodeSystem/bfarm/atc"
SNOMED = "http://snomed.info/sct"
PROVISION = "urn:oid:2.16.840.1.113883.3.1937.777.24.5.3"
PATIENTS_PER_SLICE = 25_000


def _context(name: str) -> TermCode:
    return TermCode("fdpg.mii.cds", name, name)


def _criterion(context: str, system: str, *codes: str, **options) -> Criterion:
    return Criterion(_context(context), tuple(TermCode(system, c) for c in codes), **options)


AGE = TermCode(SNOMED, "424144002")
GENDER = TermCode(SNOMED, "263495000")
FEMALE = ConceptFilter((TermCode("http://hl7.org/fhir/administrative-gender", "female"),))
CANCER = _criterion("Diagnose", ICD10GM, "C50", "C00-C97")

# (a) typical: type 2 diabetes, HbA1c above 6.5 %, women over 50, no breast or other cancer
TYPICAL = StructuredQuery(
    inclusion=(
        (_criterion("Diagnose", ICD10GM, "E11"),),
        (
            _criterion(
                "Laboruntersuchung", LOINC, "4548-4", value_filter=ComparatorFilter("gt", 6.5, Unit("%"))
            ),
        ),
        (Criterion(_context("Patient"), (AGE,), ComparatorFilter("gt", 50, Unit("a"))),),
        (Criterion(_context("Patient"), (GENDER,), FEMALE),),
    ),
    exclusion=((CANCER,),),
)

# (b) ten criteria over eight contexts, with hierarchies, a range, time restrictions, an attribute,
# consent and an exclusion group of two
TEN = StructuredQuery(
    inclusion=(
        (
            _criterion(
                "Diagnose", ICD10GM, "E11", "E10-E14", time_restriction=TimeRestriction(dt.date(2015, 1, 1))
            ),
        ),
        (_criterion("Laboruntersuchung", LOINC, "4548-4", value_filter=RangeFilter(6.5, 15, Unit("%"))),),
        (Criterion(_context("Patient"), (AGE,), RangeFilter(40, 80, Unit("a"))),),
        (Criterion(_context("Patient"), (GENDER,), FEMALE),),
        (
            _criterion("Medikamentenverabreichung", ATC, "A10"),
            _criterion("Medikamentenverordnung", ATC, "A10"),
        ),
        (_criterion("Einwilligung", PROVISION, "2.16.840.1.113883.3.1937.777.24.5.3.8"),),  # MDAT nutzen
        (
            _criterion(
                "Fall",
                "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "IMP",
                attribute_filters=(
                    AttributeFilter(
                        TermCode("mii.abide", "Kontaktebene"),
                        ConceptFilter(
                            (TermCode("http://fhir.de/CodeSystem/Kontaktebene", "einrichtungskontakt"),)
                        ),
                    ),
                ),
                time_restriction=TimeRestriction(dt.date(2018, 1, 1), dt.date(2024, 12, 31)),
            ),
        ),
    ),
    exclusion=(
        (CANCER,),
        (
            _criterion("Diagnose", ICD10GM, "N18"),
            _criterion(
                "Laboruntersuchung",
                LOINC,
                "62238-1",
                value_filter=ComparatorFilter("lt", 30, Unit("mL/min/{1.73_m2}")),
            ),
        ),
    ),
)
QUERIES = {"typical": TYPICAL, "ten criteria": TEN}


@dataclass
class Row:
    patients: int
    query: str
    sql_ms: list[float]
    baseline_s: float | None
    cohort: int
    agree: bool | None


def _time_sql(snapshot, query: StructuredQuery, today: dt.date, runs: int) -> tuple[list[float], list[str]]:
    ids = feasibility.patient_ids(snapshot, query, today=today)  # warm-up: caches, file metadata
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        ids = feasibility.patient_ids(snapshot, query, today=today)
        times.append((time.perf_counter() - started) * 1000)
    return times, ids


def _baseline(snapshot, query: StructuredQuery, today: dt.date, patients: int) -> tuple[float, set[str]]:
    slices = max(1, math.ceil(patients / PATIENTS_PER_SLICE))
    connection = snapshot.connection
    started = time.perf_counter()
    cohort: set[str] = set()
    for index in range(slices):
        rows = connection.execute(
            "SELECT json FROM resource WHERE patient_id IS NULL OR hash(patient_id) % ? = ?", [slices, index]
        ).fetchall()
        resources = [orjson.loads(row[0]) for row in rows]
        del rows
        cohort |= reference.patient_ids(resources, query, today=today)
        del resources
    return time.perf_counter() - started, cohort


def _format(rows: list[Row]) -> str:
    header = (
        f"{'patients':>10}  {'query':<13} {'SQL median':>11} {'(min-max)':>17} "
        f"{'baseline':>10} {'baseline/SQL':>12} {'cohort':>8}  agree"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        median = statistics.median(row.sql_ms)
        spread = f"({min(row.sql_ms):.0f}-{max(row.sql_ms):.0f} ms)"
        if row.baseline_s is None:
            baseline, ratio, agree = "-", "-", "-"
        else:
            baseline = f"{row.baseline_s:.1f} s"
            ratio = f"{row.baseline_s * 1000 / median:,.0f}x"
            agree = "yes" if row.agree else "NO"
        lines.append(
            f"{row.patients:>10,}  {row.query:<13} {median:>8.1f} ms {spread:>17} "
            f"{baseline:>10} {ratio:>12} {row.cohort:>8,}  {agree}"
        )
    return "\n".join(lines)


def _growth(rows: list[Row]) -> str:
    lines = []
    for name in QUERIES:
        series = [(r.patients, statistics.median(r.sql_ms)) for r in rows if r.query == name]
        steps = [
            f"{b[0] // a[0]}x patients -> {b[1] / a[1]:.1f}x time" for a, b in itertools.pairwise(series)
        ]
        if steps:
            lines.append(f"SQL growth, {name}: " + "; ".join(steps))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[10_000, 100_000], help="site sizes in patients"
    )
    parser.add_argument("--full", action="store_true", help="add the 1,000,000-patient site")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=7, help="timed SQL runs per query (after one warm-up)")
    parser.add_argument("--today", type=dt.date.fromisoformat, default=dt.date(2025, 1, 1))
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=1_000_000,
        help="run the baseline only on sites up to this many patients (it is slow: about 1 min per 100k)",
    )
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes + ([1_000_000] if args.full else [])))
    print(
        f"datenraum query benchmark: {os.cpu_count()} cores, today={args.today}, stores under {ROOT}",
        flush=True,
    )
    rows: list[Row] = []
    for patients in sizes:
        store = get_or_create(
            patients, args.seed, log=lambda m, n=patients: print(f"  [{n:,}] {m}", flush=True)
        )
        info = build_info(patients, args.seed)
        print(f"site of {patients:,} patients: {sum(info['resources'].values()):,} resources", flush=True)
        with store.snapshot() as snapshot:
            for name, query in QUERIES.items():
                sql_ms, ids = _time_sql(snapshot, query, args.today, args.runs)
                baseline_s, agree = None, None
                if patients <= args.baseline_max:
                    baseline_s, expected = _baseline(snapshot, query, args.today, patients)
                    agree = expected == set(ids)
                rows.append(Row(patients, name, sql_ms, baseline_s, len(ids), agree))
                print(
                    f"  {name}: SQL {statistics.median(sql_ms):.1f} ms, baseline {baseline_s} s", flush=True
                )
    print()
    print(_format(rows))
    print()
    print(_growth(rows))
    return 0 if all(row.agree is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
