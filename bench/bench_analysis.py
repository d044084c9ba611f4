"""Benchmark of federated analysis, in two parts side by side, run once:

1. in-process (local mode: sites in-process, requests through JSON): one round over 37 sites, a
   binomial GLM with 5 parameters over 37 sites x 100,000 rows, summary and table over 37 sites;
2. end to end: a real hub and 37 real site agents on loopback (child processes, `LocalFederation`),
   the researcher's `Client`, the rows from the agents' stores by variable definitions. The agents
   share one synthetic store of `--patients` patients (building 37 stores of 100,000 patients each would
   take hours here), so the GLM runs over 37 x (adults of that store) rows.

    .venv/bin/python bench/bench_analysis.py [--rows N] [--sites K] [--agents K] [--patients N] [--against REV]
        [--database sqlite|postgresql]

`--against REV` runs the end-to-end part also with the hub and agents of REV (checked out into a
temporary git worktree; the child processes import it through PYTHONPATH), over the same store, in the
same run, and prints both side by side with CPU-seconds of the hub and of all agents.

DataSHIELD's published cost is 50-150 ms per round trip with three co-located servers and three round
trips for a mean (brief section 8).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

from datenraum.analysis import Analysis
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.tables import AnalysisTable

ROOT = Path(__file__).resolve().parent.parent


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


ADULTS = {
    "inclusionCriteria": [
        [
            {
                "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                "termCodes": [{"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}],
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
VARIABLES = {
    "t2d": {"kind": "condition", "codes": ["E11"], "value": "any"},
    "age": {"kind": "age", "at": "2024-01-01"},
    "sex": {"kind": "sex"},
    "htn": {"kind": "condition", "codes": ["I10"], "value": "any"},
    "ckd": {"kind": "condition", "codes": ["N18"], "value": "any"},
}
BINARY_SEX = [{"variable": "sex", "comparator": "in", "value": ["female", "male"]}]


@dataclass(frozen=True)
class EndToEnd:
    tree: str
    rows: int
    rounds: list[float]  # seconds of each one-round summary
    round_cpu: tuple[float, float]  # CPU-seconds per round: hub, all agents
    glm_seconds: float
    glm_rounds: int
    glm_cpu: tuple[float, float]
    summary_seconds: float
    table_seconds: float

    @property
    def p50(self) -> float:
        return statistics.median(self.rounds)

    @property
    def p95(self) -> float:
        return sorted(self.rounds)[int(0.95 * len(self.rounds)) - 1]


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def end_to_end(
    work: Path, store: Path, agents: int, tree: tuple[str, Path], database_url: str | None = None
) -> EndToEnd:
    """One federation of this tree's (or an earlier tree's) hub and agents, over the shared store; the
    hub's database is SQLite in its folder unless `database_url`."""
    import datetime as dt

    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker

    from datenraum.analysis import Client
    from datenraum.devtools.federation import LocalFederation, Researcher
    from datenraum.hub.accounts.service import Accounts
    from datenraum.hub.db import SiteRow, UserRow, create_hub_engine
    from datenraum.hub.proposals.tables import CohortRow, ProposalRow, ProposalSiteRow
    from datenraum.hub.roles import Role

    label, root = tree
    # The children import datenraum from the tree's folder (PYTHONPATH comes before the editable install).
    code = {"PYTHONPATH": str(root)}
    env = {"DATENRAUM_HUB_ANALYSIS_ROUND_SECONDS": "30", "DATENRAUM_HUB_SITE_DAILY_TASKS": "1000000", **code}
    folder = work / f"federation-{label.replace(' ', '-')}"
    federation = LocalFederation(folder, database_url=database_url, hub_env=env)
    try:
        federation.start_hub()
        engine = create_hub_engine(federation.hub_env["DATENRAUM_HUB_DATABASE_URL"])
        accounts = Accounts(sessionmaker(engine))
        token = accounts.create_user("bench@example.org", Role.RESEARCHER)
        config = folder / "agent.toml"
        config.write_text(
            '[tasks]\nallowed = ["feasibility-count", "analysis"]\nconcurrency = 1\n[hub]\nwait = 25\n'
        )
        names = [f"site{i:02d}" for i in range(agents)]
        for name in names:
            credential = folder / "credentials" / name
            credential.parent.mkdir(parents=True, exist_ok=True)
            credential.write_text(accounts.add_site(name) + "\n")
            credential.chmod(0o600)
            federation.start_agent(name, store, credential, config=config, env=code)
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
                    proposal_id=project, position=0, name="adults", query=ADULTS, site_counts={}
                )
            )
            for site_id in connection.scalars(sa.select(SiteRow.id)).all():
                connection.execute(
                    sa.insert(ProposalSiteRow.__table__).values(
                        proposal_id=project, site_id=site_id, agreed=True
                    )
                )
        engine.dispose()
        hub = [psutil.Process(federation.hub.process.pid)]
        sites = [psutil.Process(agent.process.pid) for agent in federation.agents.values()]
        with Client(federation.url, token, project=project, variables=VARIABLES) as client:
            client.summary("age")  # warm: every agent builds its analysis table once
            rounds = []
            hub_cpu, sites_cpu = _cpu(hub), _cpu(sites)
            for _ in range(20):
                t = time.perf_counter()
                client.summary("age")
                rounds.append(time.perf_counter() - t)
            round_cpu = ((_cpu(hub) - hub_cpu) / 20, (_cpu(sites) - sites_cpu) / 20)
            hub_cpu, sites_cpu = _cpu(hub), _cpu(sites)
            t = time.perf_counter()
            fit = client.glm("t2d ~ age + factor(sex) + htn + ckd", "binomial", where=BINARY_SEX)
            glm_seconds = time.perf_counter() - t
            glm_cpu = (_cpu(hub) - hub_cpu, _cpu(sites) - sites_cpu)
            t = time.perf_counter()
            client.summary(["age", "htn", "ckd"])
            summary_seconds = time.perf_counter() - t
            t = time.perf_counter()
            client.table(["sex", "t2d"])
            table_seconds = time.perf_counter() - t
    finally:
        federation.close(kill=True)
    return EndToEnd(
        label, fit.n, rounds, round_cpu, glm_seconds, fit.rounds, glm_cpu, summary_seconds, table_seconds
    )


def print_end_to_end(results: list[EndToEnd], agents: int) -> None:
    head = " | ".join(r.tree for r in results)
    print(
        f"| end to end: hub + {agents} agents on loopback, {results[0].rows:,} rows in all | {head} | target |"
    )
    print("|---|" + "---|" * len(results) + "---|")

    def row(what: str, cells: list[str], target: str = "") -> None:
        print(f"| {what} | {' | '.join(cells)} | {target} |")

    row(
        "one round (summary of 1 variable), p50 / p95",
        [f"{r.p50 * 1000:.0f} / {r.p95 * 1000:.0f} ms" for r in results],
        "< 100 / 300 ms",
    )
    row(
        "CPU-s per round: hub / all agents", [f"{r.round_cpu[0]:.3f} / {r.round_cpu[1]:.3f}" for r in results]
    )
    row(
        "binomial GLM, 5 parameters",
        [f"{r.glm_seconds:.2f} s ({r.glm_rounds} rounds)" for r in results],
        "< 3 s",
    )
    row("CPU-s of the GLM: hub / all agents", [f"{r.glm_cpu[0]:.2f} / {r.glm_cpu[1]:.2f}" for r in results])
    row("summary of 3 variables", [f"{r.summary_seconds * 1000:.0f} ms" for r in results], "< 1 s")
    row("2-way table", [f"{r.table_seconds * 1000:.0f} ms" for r in results], "< 1 s")
    row(
        "DataSHIELD ds.mean (3 round trips x 50-150 ms) / ours",
        [f"{0.15 / r.p50:.1f}x to {0.45 / r.p50:.1f}x" for r in results],
    )
    if len(results) == 2:
        old, new = results
        print(
            f"this tree / {old.tree}: round p50 {new.p50 / old.p50:.2f}, GLM {new.glm_seconds / old.glm_seconds:.2f}, "
            f"hub CPU per round {new.round_cpu[0] / old.round_cpu[0]:.2f}"
        )


def run_end_to_end(agents: int, patients: int, against: str | None, database: str) -> None:
    """Build the agents' store once, then run each tree's federation over it, the earlier tree first
    (with `database` "postgresql": each hub on a new database of one throwaway PostgreSQL server)."""
    import contextlib

    from datenraum.devtools.postgres import LocalPostgres
    from datenraum.site.ingest import ingest
    from datenraum.synth import generate

    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as folder:
        work = Path(folder)
        started = time.perf_counter()
        generate(work / "data", patients, 5, workers=2)
        ingest(work / "store", [work / "data"])
        print(f"one store of {patients} patients built in {time.perf_counter() - started:.0f} s", flush=True)
        trees = [("this tree", ROOT)]
        if against:
            earlier = work / f"tree-{against}"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(earlier), against],
                check=True,
            )
            trees.insert(0, (against, earlier))
        try:
            with LocalPostgres() if database == "postgresql" else contextlib.nullcontext() as server:
                results = [
                    end_to_end(work, work / "store", agents, tree, server and server.new_database())
                    for tree in trees
                ]
        finally:
            if against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[0][1])], check=False
                )
    print(f"hub database: {database}")
    print_end_to_end(results, agents)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sites", type=int, default=37)
    parser.add_argument("--agents", type=int, default=37, help="real agents end to end (0: skip)")
    parser.add_argument("--patients", type=int, default=3000, help="patients of the agents' store")
    parser.add_argument("--against", metavar="REV", help="also run end to end with the hub and agents of REV")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite", help="the hub's")
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
        run_end_to_end(args.agents, args.patients, args.against, args.database)


if __name__ == "__main__":
    main()
