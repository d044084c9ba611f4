"""Benchmark of federated analysis, in two parts side by side, run once:

1. in-process (local mode: sites in-process, requests through JSON): one round over 37 sites, a
   binomial GLM with 5 parameters over 37 sites x 100,000 rows, summary and table over 37 sites;
2. end to end: a real hub and 37 real site agents on loopback (child processes, `LocalFederation`),
   the researcher's `Client`, the rows from the agents' stores by variable definitions. The agents
   share one synthetic store of `--patients` patients (building 37 stores of 100,000 patients each would
   take hours here), so the GLM runs over 37 x (adults of that store) rows.

    .venv/bin/python bench/bench_analysis.py [--rows N] [--sites K] [--agents K] [--patients N]

DataSHIELD's published cost is 50-150 ms per round trip with three co-located servers and three round
trips for a mean (brief section 8).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa

from datenraum.analysis import Analysis
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.tables import AnalysisTable


def site_table(rows: int, seed: int) -> AnalysisTable:
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, rows)
    bmi = rng.normal(27, 5, rows)
    sex = rng.choice(["f", "m"], rows)
    hba1c = rng.normal(5.8, 0.8, rows)
    eta = -9 + 0.06 * age + 0.12 * bmi + 0.3 * (sex == "m") + 0.2 * hba1c
    t2d = (rng.uniform(size=rows) < 1 / (1 + np.exp(-eta))).astype(float)
    table = pa.table({"age": age, "bmi": bmi, "sex": sex, "hba1c": hba1c, "t2d": t2d})
    return AnalysisTable(table, f"bench{seed}")


def end_to_end(agents: int, patients: int) -> None:
    import datetime as dt
    import tempfile
    from pathlib import Path

    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker

    from datenraum.analysis import Client
    from datenraum.devtools.federation import LocalFederation, Researcher
    from datenraum.hub.accounts.service import Accounts
    from datenraum.hub.db import SiteRow, UserRow, create_hub_engine
    from datenraum.hub.proposals.tables import CohortRow, ProposalRow, ProposalSiteRow
    from datenraum.hub.roles import Role
    from datenraum.site.ingest import ingest
    from datenraum.synth import generate

    adults = {
        "inclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}
                    ],
                    "valueFilter": {
                        "type": "quantity-comparator",
                        "comparator": "gt",
                        "value": 18,
                        "unit": {"code": "a", "display": "Jahre"},
                    },
                }
            ]
        ]
    }
    variables = {
        "t2d": {"kind": "condition", "codes": ["E11"], "value": "any"},
        "age": {"kind": "age", "at": "2024-01-01"},
        "sex": {"kind": "sex"},
        "htn": {"kind": "condition", "codes": ["I10"], "value": "any"},
        "ckd": {"kind": "condition", "codes": ["N18"], "value": "any"},
    }
    binary_sex = [{"variable": "sex", "comparator": "in", "value": ["female", "male"]}]
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as folder:
        work = Path(folder)
        started = time.perf_counter()
        generate(work / "data", patients, 5, workers=2)
        ingest(work / "store", [work / "data"])
        print(f"one store of {patients} patients built in {time.perf_counter() - started:.0f} s")
        env = {
            "DATENRAUM_HUB_ANALYSIS_ROUND_SECONDS": "30",
            "DATENRAUM_HUB_SITE_DAILY_TASKS": "1000000",
        }
        federation = LocalFederation(work / "federation", hub_env=env)
        try:
            federation.start_hub()
            engine = create_hub_engine(federation.hub_env["DATENRAUM_HUB_DATABASE_URL"])
            accounts = Accounts(sessionmaker(engine))
            token = accounts.create_user("bench@example.org", Role.RESEARCHER)
            config = work / "agent.toml"
            config.write_text(
                '[tasks]\nallowed = ["feasibility-count", "analysis"]\nconcurrency = 1\n[hub]\nwait = 25\n'
            )
            names = [f"site{i:02d}" for i in range(agents)]
            for name in names:
                credential = work / "credentials" / name
                credential.parent.mkdir(parents=True, exist_ok=True)
                credential.write_text(accounts.add_site(name) + "\n")
                credential.chmod(0o600)
                federation.start_agent(name, work / "store", credential, config=config)
            Researcher(federation.url, token).wait_for_sites(names, timeout=300)
            now = dt.datetime.now(dt.UTC)
            with engine.begin() as connection:
                user_id = connection.scalar(sa.select(UserRow.id).where(UserRow.email == "bench@example.org"))
                project = connection.execute(
                    sa.insert(ProposalRow.__table__).values(
                        owner_id=user_id,
                        state="ready-for-delivery",
                        title="bench",
                        abstract="",
                        questions=[],
                        modules=[],
                        biosamples="",
                        analysis="federated-analysis",
                        created=now,
                        updated=now,
                    )
                ).inserted_primary_key[0]
                connection.execute(
                    sa.insert(CohortRow.__table__).values(
                        proposal_id=project, position=0, name="adults", query=adults, site_counts={}
                    )
                )
                for site_id in connection.scalars(sa.select(SiteRow.id)).all():
                    connection.execute(
                        sa.insert(ProposalSiteRow.__table__).values(
                            proposal_id=project, site_id=site_id, agreed=True
                        )
                    )
            with Client(federation.url, token, project=project, variables=variables) as client:
                client.summary("age")  # warm: every agent builds its analysis table once
                rounds = []
                for _ in range(20):
                    t = time.perf_counter()
                    client.summary("age")
                    rounds.append(time.perf_counter() - t)
                t = time.perf_counter()
                fit = client.glm("t2d ~ age + factor(sex) + htn + ckd", "binomial", where=binary_sex)
                glm_seconds = time.perf_counter() - t
                t = time.perf_counter()
                client.summary(["age", "htn", "ckd"])
                summary_seconds = time.perf_counter() - t
                t = time.perf_counter()
                client.table(["sex", "t2d"])
                table_seconds = time.perf_counter() - t
            engine.dispose()
        finally:
            federation.close(kill=True)
    p50 = statistics.median(rounds)
    p95 = sorted(rounds)[int(0.95 * len(rounds)) - 1]
    print(f"| end to end: hub + {agents} agents on loopback, {fit.n:,} rows in all | | target |")
    print("|---|---|---|")
    print(
        f"| one round (summary of 1 variable), p50 / p95 | {p50 * 1000:.0f} / {p95 * 1000:.0f} ms | < 100 / 300 ms |"
    )
    print(f"| binomial GLM, 5 parameters, {fit.rounds} rounds | {glm_seconds:.2f} s | < 3 s |")
    print(f"| summary of 3 variables | {summary_seconds * 1000:.0f} ms | < 1 s |")
    print(f"| 2-way table | {table_seconds * 1000:.0f} ms | < 1 s |")
    print(
        f"| DataSHIELD ds.mean (3 round trips x 50-150 ms) / ours | {0.15 / p50:.1f}x to {0.45 / p50:.1f}x | |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=37)
    parser.add_argument("--agents", type=int, default=37, help="real agents end to end (0: skip)")
    parser.add_argument("--patients", type=int, default=3000, help="patients of the agents' store")
    args = parser.parse_args()
    started = time.perf_counter()
    sites = LocalSites.from_tables({f"site{i:02d}": site_table(args.rows, i) for i in range(args.sites)})
    print(f"{args.sites} sites x {args.rows} rows generated in {time.perf_counter() - started:.1f} s")
    analysis = Analysis(sites, project="bench")

    rounds = []
    for _ in range(20):  # one summary = one round
        t = time.perf_counter()
        analysis.summary("age")
        rounds.append(time.perf_counter() - t)
    t = time.perf_counter()
    before = sites.critical_path
    fit = analysis.glm("t2d ~ age + bmi + factor(sex) + hba1c", "binomial")
    glm_seconds = time.perf_counter() - t
    glm_parallel = sites.critical_path - before
    t = time.perf_counter()
    analysis.summary(["age", "bmi", "hba1c"])
    summary_seconds = time.perf_counter() - t
    t = time.perf_counter()
    analysis.table(["sex", "t2d"])
    table_seconds = time.perf_counter() - t

    p50 = statistics.median(rounds)
    print(f"| what | {args.sites} sites x {args.rows:,} rows | target |")
    print("|---|---|---|")
    print(f"| one round (summary of 1 variable), p50 | {p50 * 1000:.1f} ms | < 100 ms |")
    print(
        f"| binomial GLM, 5 parameters, {fit.rounds} rounds, sites one after another | {glm_seconds:.2f} s | |"
    )
    print(
        f"| the same, sites in parallel (sum of the slowest site per round) | {glm_parallel:.2f} s | < 3 s |"
    )
    print(f"| summary of 3 variables | {summary_seconds * 1000:.0f} ms | < 1 s |")
    print(f"| 2-way table | {table_seconds * 1000:.0f} ms | < 1 s |")
    print(
        f"| DataSHIELD ds.mean (3 round trips x 50-150 ms) / ours | {0.15 / p50:.0f}x to {0.45 / p50:.0f}x | |"
    )
    if args.agents:
        print()
        end_to_end(args.agents, args.patients)


if __name__ == "__main__":
    main()
