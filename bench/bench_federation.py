"""Federation benchmark: time from submitting a query to its complete aggregated result.

A hub (`datenraum hub serve`) and N site agents (`datenraum site serve`) run as processes on this
machine, as in production; the researcher submits queries one after another through the API and
long-polls each result until every site has answered. The table compares the hub on SQLite and on
PostgreSQL with 3, 10 and 37 sites (Germany has 37 university hospitals). Target: p50 under 1 s.

To save time, a few synthetic stores (`--distinct-stores`, each `--patients` patients of a different
seed and site profile) are generated once (kept in the workdir) and several agents share each one
read-only; every agent still has its own state, secret and noise, and runs every query itself.

    .venv/bin/python bench/bench_federation.py                       # the full table
    .venv/bin/python bench/bench_federation.py --sites 3 --queries 10 --databases sqlite   # a quick look
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from datenraum.devtools.demo import DEMO_QUERY, DemoSite, prepare_sites
from datenraum.devtools.federation import ChildProcess, LocalFederation, Researcher
from datenraum.devtools.postgres import LocalPostgres
from datenraum.query.model import query_to_json

HUB_SETTINGS = {
    "DATENRAUM_HUB_QUOTA_PER_MINUTE": "100000",
    "DATENRAUM_HUB_QUOTA_PER_HOUR": "100000",
    "DATENRAUM_HUB_QUOTA_PER_DAY": "100000",
    "DATENRAUM_HUB_SITE_DAILY_TASKS": "1000000",
}
# One DuckDB thread per agent: dozens of agents share this machine's few cores, where a real site has its own.
AGENT_CONFIG = "[tasks]\ndaily_limit = 100000\n[store]\nthreads = 1\n"
TASK_TIME = re.compile(r"task \S+: answered .* in ([0-9.]+) s$", re.MULTILINE)
WARM_UP = 3  # queries before the measured ones: each agent's first query pays for DuckDB's start


@dataclass(frozen=True)
class Run:
    database: str
    sites: int
    seconds: list[float]
    site_seconds: list[float]  # each site's time for its count, from the agents' logs
    incomplete: int  # queries in which some site did not answer
    hub_cpu: float  # CPU-seconds (user + system) of the hub process per measured query
    agents_cpu: float  # CPU-seconds of all agent processes together per measured query
    load: float  # the 1-minute load average at the end of the measured queries
    others: float  # cores busy with other work meanwhile (the PostgreSQL server counts as other work)


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy so far, over all cores."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def cpu_seconds(children: list[ChildProcess]) -> float:
    """User and system CPU time the processes have used so far: unlike wall time, it hardly changes
    when other work shares the machine."""
    total = 0.0
    for child in children:
        times = psutil.Process(child.process.pid).cpu_times()
        total += times.user + times.system
    return total


def query_with_age(years: int) -> dict:
    """The demo query with another age threshold: every query differs, so none is answered from reuse."""
    query = query_to_json(DEMO_QUERY)
    for group in query["inclusionCriteria"]:
        for criterion in group:
            if criterion["termCodes"][0]["code"] == "424144002":
                criterion["valueFilter"]["value"] = years
    return query


def measure(
    workdir: Path, database: str, url: str | None, sites: int, stores: list[Path], queries: int
) -> Run:
    folder = workdir / f"run-{database}-{sites}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "agent.toml"
    config.write_text(AGENT_CONFIG)
    with LocalFederation(folder, database_url=url, hub_env=HUB_SETTINGS) as fed:
        fed.start_hub()
        names = [f"site-{index + 1:02d}" for index in range(sites)]
        secrets = fed.register(sites=names, users=[("bench@example.org", "researcher")])
        for index, name in enumerate(names):
            fed.start_agent(name, stores[index % len(stores)], secrets[name], config=config)
        token = secrets["bench@example.org"].read_text().strip()
        researcher = Researcher(fed.url, token)
        researcher.wait_for_sites(names, timeout=120)
        seconds, incomplete = [], 0
        agents = list(fed.agents.values())
        for number in range(WARM_UP + queries):
            if number == WARM_UP:
                hub_before, agents_before = cpu_seconds([fed.hub]), cpu_seconds(agents)
                machine_before, own_before, measured_from = (
                    busy_seconds(),
                    time.process_time(),
                    time.perf_counter(),
                )
            started = time.perf_counter()
            response = researcher.submit(query_with_age(20 + number))
            response.raise_for_status()
            result = researcher.result(response.json()["id"])
            if number >= WARM_UP:
                seconds.append(time.perf_counter() - started)
                incomplete += any(site["state"] != "answered" for site in result["sites"])
        hub_cpu = (cpu_seconds([fed.hub]) - hub_before) / queries
        agents_cpu = (cpu_seconds(agents) - agents_before) / queries
        load = os.getloadavg()[0]
        ours = (hub_cpu + agents_cpu) * queries + time.process_time() - own_before
        others = (busy_seconds() - machine_before - ours) / (time.perf_counter() - measured_from)
        researcher.close()
    site_seconds = [
        float(taken)
        for agent in fed.agents.values()
        for taken in TASK_TIME.findall(agent.log.read_text())[WARM_UP:]
    ]
    return Run(database, sites, seconds, site_seconds, incomplete, hub_cpu, agents_cpu, load, others)


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", default="3,10,37", help="numbers of site agents, comma-separated")
    parser.add_argument("--patients", type=int, default=20_000, help="patients per store")
    parser.add_argument("--distinct-stores", type=int, default=3, help="stores the agents share")
    parser.add_argument("--queries", type=int, default=50, help="measured queries per configuration")
    parser.add_argument("--databases", default="sqlite,postgresql", help="hub databases, comma-separated")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench-federation"))
    args = parser.parse_args()
    site_counts = [int(n) for n in args.sites.split(",")]
    databases = args.databases.split(",")

    recipes = tuple(
        DemoSite(f"store-{i + 1}", f"store {i + 1}", args.patients, 100 + i, i % 4)
        for i in range(args.distinct_stores)
    )
    stores = list(prepare_sites(args.workdir / "stores", recipes).values())

    print(
        f"\nEnd-to-end time from submit to the complete result, {args.queries} queries each (after {WARM_UP} "
        f"warm-up); {args.distinct_stores} distinct stores of {args.patients} patients shared read-only by "
        f"the agents; hub and agents on this machine ({os.cpu_count()} cores). 'site s': the time one site "
        "took for its count (from the agents' logs), median over all sites and queries. 'hub cpu', 'agents cpu': "
        "CPU-seconds per query of the hub process and of all agents together. 'load': the 1-minute load "
        "average after the run (with this run's own processes). 'others': cores busy meanwhile with anything "
        "but the hub, the agents and this benchmark (other users; for postgresql also its server).\n"
    )
    print(
        f"{'hub database':<12} {'sites':>5} {'p50 s':>7} {'p95 s':>7} {'mean s':>7} {'max s':>7} "
        f"{'site s':>7} {'hub cpu':>8} {'agents cpu':>10} {'load':>5} {'others':>6} {'incomplete':>10}",
        flush=True,
    )
    for database in databases:
        with LocalPostgres() if database == "postgresql" else contextlib.nullcontext() as server:
            for sites in site_counts:
                url = server.new_database() if server else None
                run = measure(args.workdir, database, url, sites, stores, args.queries)
                print(
                    f"{run.database:<12} {run.sites:>5} {percentile(run.seconds, 0.5):>7.3f} "
                    f"{percentile(run.seconds, 0.95):>7.3f} {statistics.mean(run.seconds):>7.3f} "
                    f"{max(run.seconds):>7.3f} {statistics.median(run.site_seconds):>7.3f} {run.hub_cpu:>8.3f} "
                    f"{run.agents_cpu:>10.3f} {run.load:>5.2f} {run.others:>6.2f} {run.incomplete:>10}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
