"""Crisis-mode benchmark: time from the coordination office defining a new disease in the portal to its
pooled series from every site.

A hub (`datenraum hub serve`, on PostgreSQL or SQLite) and N site agents (`datenraum site serve`) run as
processes on this machine, as in production. The office signs in to the portal and posts a new disease
(the form of `/admin/dashboard`); the hub stores it, gives every active site an indicators task and
wakes the agents' long-polls; each agent computes its cube over its store (every disease of the
registry, the new one included) and posts it; the public API (`/api/v1/dashboard/<disease>/...json`)
shows how many sites' deliveries the pooled series uses. The table gives, per number of agents, the time
until the first site, the third (the first pooled point may be released: at least 3 sites) and the last
site count in the series, the site's own computing time (from the agents' logs), and CPU-seconds of the
hub and of all agents together for the roll-out. Goal (issue 19): under a minute with 37 agents.

Light agents: a few small synthetic stores (`--distinct-stores` of `--patients` patients, the demo's
recipe with another seed) shared read-only; every agent has its own state and computes its own cube, one
DuckDB thread each.

    .venv/bin/python bench/bench_crisis.py                            # 3, 10 and 37 agents on PostgreSQL
    .venv/bin/python bench/bench_crisis.py --sites 3 --databases sqlite  # a quick look
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

import httpx
from bench_federation import cpu_seconds

from datenraum.devtools.demo import DemoSite, prepare_sites
from datenraum.devtools.federation import LocalFederation, Researcher
from datenraum.devtools.postgres import LocalPostgres

AGENT_CONFIG = "[tasks]\ndaily_limit = 100000\n[store]\nthreads = 1\n"
OFFICE = "office@bench.example"
PASSWORD = "a long enough bench passphrase"
COMPUTED = re.compile(r"task \S+: indicators computed in ([0-9.]+) s$", re.MULTILINE)
# A new disease as the office would define it in a crisis: pneumonia by ICD-10-GM, which the synthetic
# stores have, so that the pooled series has values.
NEW_DISEASE = (
    '{"id": "pneumonia", "title": "Pneumonia", "start": "2024-01-01", '
    '"marker": {"icd10gm": ["J18.1", "J18.9", "J12.8"], "excluded_certainty": ["A"]}, '
    '"window": {"before_days": 7}}'
)
SERIES = "/api/v1/dashboard/pneumonia/new_inpatient_cases.json"


@dataclass(frozen=True)
class Run:
    database: str
    sites: int
    first: float  # seconds from the definition's POST until the series uses one site's delivery
    third: float  # ... three sites (the first pooled value may be shown)
    last: float  # ... every site
    site_seconds: list[float]  # each agent's computing time for its cube
    hub_cpu: float
    agents_cpu: float


def sign_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    client.get("/login").raise_for_status()
    response = client.post(
        "/login", data={"email": OFFICE, "password": PASSWORD, "csrf": client.cookies["dr_csrf"]}
    )
    if response.status_code != 303:
        raise RuntimeError(f"the office could not sign in: {response.status_code} {response.text[:300]}")
    return client


def measure(workdir: Path, database: str, url: str | None, sites: int, stores: list[Path]) -> Run:
    folder = workdir / f"run-{database}-{sites}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = folder / "agent.toml"
    config.write_text(AGENT_CONFIG)
    with LocalFederation(folder, database_url=url) as fed:
        fed.start_hub()
        names = [f"site-{index + 1:02d}" for index in range(sites)]
        secrets = fed.register(
            sites=names,
            users=[(OFFICE, "admin"), ("watcher@bench.example", "researcher")],
            passwords={OFFICE: PASSWORD},
        )
        for index, name in enumerate(names):
            fed.start_agent(name, stores[index % len(stores)], secrets[name], config=config)
        watcher = Researcher(fed.url, secrets["watcher@bench.example"].read_text().strip())
        watcher.wait_for_sites(names, timeout=180)
        office = sign_in(fed.url)
        public = httpx.Client(base_url=fed.url, timeout=30)
        agents = list(fed.agents.values())
        hub_before, agents_before = cpu_seconds([fed.hub]), cpu_seconds(agents)
        started = time.perf_counter()
        response = office.post(
            "/admin/dashboard/definitions",
            data={"kind": "disease", "body": NEW_DISEASE, "csrf": office.cookies["dr_csrf"]},
        )
        if response.status_code != 303:
            raise RuntimeError(f"the definition was refused: {response.status_code} {response.text[:500]}")
        reached: dict[int, float] = {}
        deadline = started + 600
        while sites not in reached:
            answer = public.get(SERIES)
            counted = answer.json()["sites"] if answer.status_code == 200 else 0
            now = time.perf_counter() - started
            for mark in (1, min(3, sites), sites):
                if counted >= mark and mark not in reached:
                    reached[mark] = now
            if time.perf_counter() > deadline:
                raise RuntimeError(f"only {counted} of {sites} sites delivered within 600 s")
            time.sleep(0.1)  # a watcher polling the public page, as a browser would reload it
        hub_cpu, agents_cpu = cpu_seconds([fed.hub]) - hub_before, cpu_seconds(agents) - agents_before
        office.close()
        public.close()
        watcher.close()
    site_seconds = [
        float(t) for agent in fed.agents.values() for t in COMPUTED.findall(agent.log.read_text())
    ]
    return Run(
        database, sites, reached[1], reached[min(3, sites)], reached[sites], site_seconds, hub_cpu, agents_cpu
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", default="3,10,37", help="numbers of site agents, comma-separated")
    parser.add_argument("--patients", type=int, default=1000, help="patients per store")
    parser.add_argument("--distinct-stores", type=int, default=3, help="stores the agents share")
    parser.add_argument("--databases", default="postgresql", help="hub databases, comma-separated")
    parser.add_argument("--workdir", type=Path, default=Path("var/bench-crisis"))
    args = parser.parse_args()
    recipes = tuple(
        DemoSite(f"store-{i + 1}", f"store {i + 1}", args.patients, 300 + i, i % 4)
        for i in range(args.distinct_stores)
    )
    stores = list(prepare_sites(args.workdir / "stores", recipes).values())
    print(
        f"\nCrisis mode: from posting a new disease in the portal to its pooled series counting every site; "
        f"{args.distinct_stores} distinct stores of {args.patients} patients shared read-only; hub and agents "
        f"on this machine ({os.cpu_count()} cores). 'first', 'third', 'all': seconds until the public series "
        "uses that many sites' deliveries (from 3 on a pooled value may be shown). 'site s': one agent's time "
        "for its cube (median, max). 'hub cpu', 'agents cpu': CPU-seconds of the roll-out.\n"
    )
    print(
        f"{'hub database':<12} {'sites':>5} {'first s':>8} {'third s':>8} {'all s':>8} "
        f"{'site s p50':>10} {'site s max':>10} {'hub cpu':>8} {'agents cpu':>10}",
        flush=True,
    )
    for database in args.databases.split(","):
        with LocalPostgres() if database == "postgresql" else contextlib.nullcontext() as server:
            for sites in [int(n) for n in args.sites.split(",")]:
                url = server.new_database() if server else None
                run = measure(args.workdir, database, url, sites, stores)
                print(
                    f"{run.database:<12} {run.sites:>5} {run.first:>8.2f} {run.third:>8.2f} {run.last:>8.2f} "
                    f"{statistics.median(run.site_seconds):>10.2f} {max(run.site_seconds):>10.2f} "
                    f"{run.hub_cpu:>8.1f} {run.agents_cpu:>10.1f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
