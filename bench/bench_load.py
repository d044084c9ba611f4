"""Load benchmark: the hub under the traffic of a national portal, at 20 to 400 clients at once.

A hub (`datenraum hub serve`, one process or `--workers N`) runs on SQLite and on PostgreSQL (a throwaway cluster,
`devtools.postgres`) over a database seeded like a national portal's: accounts, saved queries and their
history, proposals with documents, timelines and notifications, the 37 directory sites. Then, for each
concurrency level, that many clients (async httpx, each signed in as its own researcher with a session
cookie or an API token) send a mix of requests back to back for a fixed time: the start page, the
query builder and saved-queries pages, the criteria search, a proposal page, the notifications, the
directory, the site list of the API and feasibility submissions (spread over many accounts, within the
quotas). Beside them a tenth of the clients hold long-polls open on a query's result, as researchers'
pages do; those are not counted in the table.

It prints, per database, level and request kind: requests per second, p50, p95, p99 and the slowest
latency, and the non-2xx answers; per level the hub's CPU-seconds (also per second of wall time: the share of
a core it got), the load generator's CPU-seconds and the hub's peak memory (VmHWM, for the
whole run so far).

    .venv/bin/python bench/bench_load.py                      # the issue's sizes: 4,000 accounts, ...
    .venv/bin/python bench/bench_load.py --small --levels 20,100 --seconds 5
    .venv/bin/python bench/bench_load.py --small --against HEAD~1 --database sqlite
    .venv/bin/python bench/bench_load.py --small --against a3a250b --database postgresql --workers 2

`--workers N` runs this tree's hub with N worker processes (its CPU and memory are the whole process
tree's). A request the hub refuses over its capacity (503 with Retry-After) is counted apart, with how
fast it came, and its client waits as told before its next request.

`--against REV` runs every level also with the hub of REV (checked out into a temporary git worktree,
imported through PYTHONPATH) on an identically seeded database, row beside row. The load generator
runs on the same machine and takes CPU from the hub: compare rows of one run, not across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import resource
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

from datenraum.devtools.federation import LocalFederation
from datenraum.devtools.postgres import LocalPostgres
from datenraum.hub.accounts.passwords import hash_password
from datenraum.hub.accounts.secrets import hash_secret
from datenraum.hub.db import (
    QueryRequest,
    QueryRow,
    SavedQueryRow,
    SiteRow,
    UserRoleRow,
    UserRow,
    WebSessionRow,
    create_hub_engine,
    migrate,
)
from datenraum.hub.directory.service import SEED
from datenraum.hub.proposals.tables import (
    DocumentRow,
    EventRow,
    NotificationRow,
    ProposalRow,
    TeamMemberRow,
)
from datenraum.hub.runtime import SESSION_COOKIE

ROOT = Path(__file__).resolve().parents[1]
SEARCHES = ["diab", "E11", "Krebs", "HbA1c", "Kreatinin", "Alter", "consent", "Metformin", "I50", "COVID"]
# (kind, weight): what a portal's crowd does, pages and search most, submissions least.
MIX = [
    ("start page", 15),
    ("builder page", 10),
    ("criteria search", 25),
    ("saved queries page", 10),
    ("proposal page", 10),
    ("notifications", 8),
    ("directory", 7),
    ("API site list", 8),
    ("API submission", 7),
]
LONG_POLL_SHARE = 0.1
NOW = dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Scale:
    accounts: int
    saved_queries: int  # and as many history entries (a query and its submission)
    proposals: int


FULL = Scale(accounts=4000, saved_queries=25_000, proposals=2000)
SMALL = Scale(accounts=400, saved_queries=2500, proposals=200)


@dataclass(frozen=True)
class Account:
    user_id: int
    session: str
    token: str
    saved_ids: tuple[int, ...]
    proposal_ids: tuple[int, ...]


def age_query(years: int) -> dict:
    return {
        "display": f"older than {years}",
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
                        "value": years,
                        "unit": {"code": "a", "display": "Jahre"},
                    },
                }
            ]
        ],
    }


def _batches(rows: list[dict], size: int = 2000) -> Iterator[list[dict]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _insert(connection: sa.Connection, table: sa.Table, rows: list[dict]) -> None:
    for batch in _batches(rows):
        connection.execute(sa.insert(table), batch)


def seed(url: str, scale: Scale, rng: random.Random) -> list[Account]:
    """Migrate the database at `url` and fill it; returns every account with its secrets."""
    engine = create_hub_engine(url)
    try:
        migrate(engine)
        password_hash = hash_password("bench-load-password")  # one hash: argon2 is slow on purpose
        with engine.begin() as connection:
            _insert(
                connection,
                SiteRow.__table__,
                [
                    {"id": index + 1, "name": site["slug"], "credential_hash": hash_secret(secrets.token_hex(16)),
                     "active": True, "created": NOW, "last_seen": NOW}
                    for index, site in enumerate(json.loads(SEED.read_text(encoding="utf-8"))["sites"])
                ],
            )  # fmt: skip
            users, roles, sessions = [], [], []
            tokens = {}
            for user_id in range(1, scale.accounts + 1):
                session, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
                tokens[user_id] = (session, token)
                users.append(
                    {"id": user_id, "email": f"researcher{user_id}@uni{user_id % 37}.example",
                     "name": f"Researcher {user_id}", "institution": f"Universität {user_id % 37}",
                     "status": "approved", "password_hash": password_hash, "token_hash": hash_secret(token),
                     "token_expires": NOW + dt.timedelta(days=30), "created": NOW}
                )  # fmt: skip
                roles.append({"user_id": user_id, "role": "researcher", "site_id": None})
                sessions.append(
                    {"token_hash": hash_secret(session), "user_id": user_id, "created": NOW,
                     "expires": NOW + dt.timedelta(days=1)}
                )  # fmt: skip
            _insert(connection, UserRow.__table__, users)
            _insert(connection, UserRoleRow.__table__, roles)
            _insert(connection, WebSessionRow.__table__, sessions)

            saved: dict[int, list[int]] = defaultdict(list)
            saved_rows, query_rows, requests = [], [], []
            for index in range(scale.saved_queries):
                owner = rng.randint(1, scale.accounts)
                query_id = str(uuid.uuid4())
                years = rng.randint(1, 99)
                query_rows.append(
                    {"id": query_id, "fingerprint": hash_secret(query_id), "query": age_query(years),
                     "created": NOW - dt.timedelta(days=rng.randint(1, 400)), "version": 1}
                )  # fmt: skip
                requests.append({"query_id": query_id, "user_id": owner, "created": NOW, "reused": False})
                saved_rows.append(
                    {"id": index + 1, "user_id": owner, "name": f"Kohorte {index}", "query": age_query(years),
                     "created": NOW, "updated": NOW, "last_query_id": query_id}
                )  # fmt: skip
                saved[owner].append(index + 1)
            _insert(connection, QueryRow.__table__, query_rows)
            _insert(connection, QueryRequest.__table__, requests)
            _insert(connection, SavedQueryRow.__table__, saved_rows)

            proposals: dict[int, list[int]] = defaultdict(list)
            proposal_rows, team, events, documents, notifications = [], [], [], [], []
            for proposal_id in range(1, scale.proposals + 1):
                owner = rng.randint(1, scale.accounts)
                proposals[owner].append(proposal_id)
                proposal_rows.append(
                    {"id": proposal_id, "owner_id": owner, "state": "submitted",
                     "title": f"Studie {proposal_id}: Verlauf nach Diagnose", "abstract": "Hintergrund. " * 40,
                     "questions": ["Wie viele?", "Wie lange?"], "modules": ["Person", "Diagnose", "Labor"],
                     "data_from": dt.date(2018, 1, 1), "data_to": dt.date(2025, 12, 31), "biosamples": "",
                     "analysis": None, "start": None, "end": None, "created": NOW, "updated": NOW,
                     "submitted": NOW}
                )  # fmt: skip
                team.append(
                    {"proposal_id": proposal_id, "user_id": owner, "project_role": "principal-investigator"}
                )
                for step in range(6):
                    events.append(
                        {"proposal_id": proposal_id, "actor_id": owner, "kind": "comment",
                         "from_state": "submitted", "to_state": "submitted", "text": f"Kommentar {step}",
                         "site_id": None, "created": NOW}
                    )  # fmt: skip
                for kind in ("ethics-vote", "data-use-agreement"):
                    documents.append(
                        {"proposal_id": proposal_id, "uploaded_by": owner, "kind": kind,
                         "file_name": f"{kind}.pdf", "media_type": "application/pdf", "size": 120_000,
                         "storage_id": hash_secret(f"{proposal_id}{kind}"), "created": NOW}
                    )  # fmt: skip
                notifications.append(
                    {"user_id": owner, "proposal_id": proposal_id, "text": "Neuer Kommentar", "created": NOW,
                     "read": None}
                )  # fmt: skip
            _insert(connection, ProposalRow.__table__, proposal_rows)
            _insert(connection, TeamMemberRow.__table__, team)
            _insert(connection, EventRow.__table__, events)
            _insert(connection, DocumentRow.__table__, documents)
            _insert(connection, NotificationRow.__table__, notifications)
    finally:
        engine.dispose()
    return [
        Account(user_id, *tokens[user_id], tuple(saved[user_id]), tuple(proposals[user_id]))
        for user_id in range(1, scale.accounts + 1)
    ]


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    # kind -> status code (or transport error) -> how many
    failures: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    # How long the hub took to refuse a request (503: over its capacity), of every kind.
    refused: list[float] = field(default_factory=list)


def _request(
    kind: str, account: Account, accounts: list[Account], rng: random.Random
) -> tuple[str, str, dict]:
    """The method, path and httpx arguments of one request of `kind` by `account`."""
    # A header, not httpx's per-request cookies: every client of the level shares one connection pool.
    cookie = {"Cookie": f"{SESSION_COOKIE}={account.session}"}
    if kind == "start page":
        return "GET", "/", {"headers": cookie}
    if kind == "builder page":
        return "GET", "/queries/new", {"headers": cookie}
    if kind == "criteria search":
        return "GET", "/api/v1/concepts", {"headers": cookie, "params": {"q": rng.choice(SEARCHES)}}
    if kind == "saved queries page":
        return "GET", "/queries", {"headers": cookie}
    if kind == "proposal page":
        owner = account if account.proposal_ids else rng.choice([a for a in accounts if a.proposal_ids])
        return (
            "GET",
            f"/proposals/{rng.choice(owner.proposal_ids)}",
            {"headers": {"Cookie": f"{SESSION_COOKIE}={owner.session}"}},
        )
    if kind == "notifications":
        return "GET", "/notifications", {"headers": cookie}
    if kind == "directory":
        return "GET", "/directory", {"headers": cookie}
    if kind == "API site list":
        return "GET", "/api/v1/sites", {"headers": {"Authorization": f"Bearer {account.token}"}}
    # A submission by any of the accounts: one account alone would meet its quota within seconds.
    submitter = rng.choice(accounts)
    body = {"query": age_query(rng.randint(1, 120))}
    return (
        "POST",
        "/api/v1/queries",
        {"headers": {"Authorization": f"Bearer {submitter.token}"}, "json": body},
    )


async def _client(
    client: httpx.AsyncClient,
    account: Account,
    accounts: list[Account],
    until: float,
    samples: Samples,
    seed: int,
) -> None:
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    while time.perf_counter() < until:
        kind = rng.choices(kinds, weights)[0]
        method, path, kwargs = _request(kind, account, accounts, rng)
        started = time.perf_counter()
        try:
            response = await client.request(method, path, **kwargs)
            failure = str(response.status_code) if response.status_code >= 400 else None
        except httpx.HTTPError as error:
            failure = type(error).__name__
            response = None
        took = time.perf_counter() - started
        if response is not None and response.status_code == 503 and "Retry-After" in response.headers:
            # Over the hub's capacity: counted apart, and the client waits as told, as a browser's
            # script or a well-behaved API client does.
            samples.refused.append(took)
            await asyncio.sleep(float(response.headers["Retry-After"]))
            continue
        samples.latencies[kind].append(took)
        if failure:
            samples.failures[kind][failure] += 1


async def _long_poll(client: httpx.AsyncClient, account: Account, until: float, counter: list[int]) -> None:
    """Hold a long-poll open on a fresh query's result until the level ends, as a result page does."""
    headers = {"Authorization": f"Bearer {account.token}"}
    with contextlib.suppress(httpx.HTTPError):
        submitted = await client.post("/api/v1/queries", json={"query": age_query(150)}, headers=headers)
        query_id = submitted.json()["id"]
        while time.perf_counter() < until:
            document = (await client.get(f"/api/v1/queries/{query_id}", headers=headers)).json()
            wait = max(0.5, min(20.0, until - time.perf_counter()))
            await client.get(
                f"/api/v1/queries/{query_id}",
                params={"wait": wait, "since": document["version"]},
                headers=headers,
                timeout=wait + 10,
            )
            counter[0] += 1


async def drive(
    url: str, accounts: list[Account], clients: int, seconds: float, seed: int
) -> tuple[Samples, float]:
    """`clients` clients for `seconds`; returns their samples and the wall time until the last of them
    has its answer (the requests in flight at the end are waited for and counted: dropping them would
    leave out the slowest)."""
    samples = Samples()
    rng = random.Random(seed)
    chosen = rng.sample(accounts, min(clients, len(accounts)))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits, follow_redirects=False) as client:
        started = time.perf_counter()
        until = started + seconds
        polls = [0]
        pollers = [
            _long_poll(client, chosen[index % len(chosen)], until, polls)
            for index in range(max(1, int(clients * LONG_POLL_SHARE)))
        ]
        polling = asyncio.gather(*pollers)
        await asyncio.gather(
            *(
                _client(client, chosen[index % len(chosen)], accounts, until, samples, seed * 1000 + index)
                for index in range(clients)
            )
        )
        wall = time.perf_counter() - started
        await polling
    return samples, wall


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (a hub's worker processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(descendant for child in children for descendant in process_tree(int(child)))]


def cpu_seconds(pid: int) -> float:
    """CPU time of the process and its running descendants."""
    total = 0.0
    for process in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_memory_mb(pid: int) -> float:
    """The peak resident memory (VmHWM) of the process and its descendants, summed."""
    total = 0.0
    for process in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{process}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024
    return total


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Level:
    tree: str
    database: str
    clients: int
    samples: Samples
    seconds: float
    cpu: float
    client_cpu: float  # the load generator's own: it shares the machine's cores with the hub
    memory_mb: float


@dataclass(frozen=True)
class RunningHub:
    tree: str
    url: str
    pid: int
    accounts: list[Account]


def start_hub(
    stack: contextlib.ExitStack,
    tree: str,
    code: Path | None,
    database: str,
    scale: Scale,
    work: Path,
    workers: int,
) -> RunningHub:
    """A seeded database and a hub of `tree` on it (with `workers` processes), until `stack` closes."""
    folder = work / f"{tree}-{database}"
    folder.mkdir()
    if database == "postgresql":
        server = stack.enter_context(LocalPostgres(durable=True))
        url = server.new_database()
    else:
        url = f"sqlite:///{folder / 'hub.db'}"
    accounts = seed(url, scale, random.Random(7))
    env = {
        # The benchmark's crowd submits more than the default budget of a site allows in a day.
        "DATENRAUM_HUB_SITE_DAILY_TASKS": "100000000",
        "DATENRAUM_HUB_UPLOAD_FOLDER": str(folder / "uploads"),
    }
    if code is not None:
        env["PYTHONPATH"] = str(code)
    federation = stack.enter_context(LocalFederation(folder, database_url=url, hub_env=env, workers=workers))
    federation.start_hub(timeout=120)
    asyncio.run(drive(federation.url, accounts, 5, 1.0, seed=1))  # warm-up: imports, caches, pools
    return RunningHub(tree, federation.url, federation.hub.process.pid, accounts)


def run_database(
    trees: list[tuple[str, Path | None]],
    database: str,
    scale: Scale,
    levels: list[int],
    seconds: float,
    work: Path,
    workers: int,
) -> list[Level]:
    """Every level against the hub of each tree in turn, level by level: the machine's other load then
    falls on the trees alike, rather than on whichever ran while it was heavy."""
    rows = []
    with contextlib.ExitStack() as stack:
        # The tree of --against may predate --workers: it runs with one process, as it did then.
        hubs = [
            start_hub(stack, tree, code, database, scale, work, 1 if code is not None else workers)
            for tree, code in trees
        ]
        for clients in levels:
            for hub in hubs:
                cpu_before, client_before = cpu_seconds(hub.pid), own_cpu_seconds()
                samples, wall = asyncio.run(drive(hub.url, hub.accounts, clients, seconds, seed=clients))
                cpu, client_cpu = cpu_seconds(hub.pid) - cpu_before, own_cpu_seconds() - client_before
                rows.append(
                    Level(
                        hub.tree, database, clients, samples, wall, cpu, client_cpu, peak_memory_mb(hub.pid)
                    )
                )
                print(f"  {hub.tree} {database} {clients} clients: done", flush=True)
    return rows


def _failures(counts: dict[str, int]) -> str:
    return ", ".join(f"{count}× {failure}" for failure, count in sorted(counts.items())) or "0"


def print_table(rows: list[Level]) -> None:
    print(f"\nHub under load on 127.0.0.1 (load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores)\n")
    print("| tree | database | clients | request | req/s | p50 ms | p95 ms | p99 ms | max ms | failed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for level in rows:
        every = sorted(t for samples in level.samples.latencies.values() for t in samples)
        kinds = [(kind, sorted(level.samples.latencies.get(kind, []))) for kind, _ in MIX]
        total: dict[str, int] = defaultdict(int)
        for counts in level.samples.failures.values():
            for failure, count in counts.items():
                total[failure] += count
        for name, ordered, failed in [("all", every, total)] + [
            (kind, ordered, level.samples.failures.get(kind, {})) for kind, ordered in kinds
        ]:
            if not ordered:
                continue
            print(
                f"| {level.tree} | {level.database} | {level.clients} | {name} | {len(ordered) / level.seconds:.1f} "
                f"| {percentile(ordered, 0.5) * 1000:.0f} | {percentile(ordered, 0.95) * 1000:.0f} "
                f"| {percentile(ordered, 0.99) * 1000:.0f} | {ordered[-1] * 1000:.0f} | {_failures(failed)} |"
            )
    print(
        "\n| tree | database | clients | req/s | refused 503 | 503 p99 ms | hub CPU-s | hub CPU-s per wall s "
        "| requests per hub CPU-s | load generator CPU-s | hub peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for level in rows:
        count = sum(len(samples) for samples in level.samples.latencies.values())
        per_cpu = count / level.cpu if level.cpu else float("nan")
        refused = sorted(level.samples.refused)
        refused_p99 = f"{percentile(refused, 0.99) * 1000:.0f}" if refused else "-"
        print(
            f"| {level.tree} | {level.database} | {level.clients} | {count / level.seconds:.1f} "
            f"| {len(refused)} | {refused_p99} | {level.cpu:.1f} "
            f"| {level.cpu / level.seconds:.2f} | {per_cpu:.0f} | {level.client_cpu:.1f} | {level.memory_mb:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--small", action="store_true", help="a tenth of the issue's database (while developing)"
    )
    parser.add_argument("--accounts", type=int, help="accounts (default 4000, --small 400)")
    parser.add_argument("--saved-queries", type=int, help="saved queries, and as many history entries")
    parser.add_argument("--proposals", type=int, help="proposals with documents and timelines")
    parser.add_argument("--levels", default="20,50,100,200,400", help="concurrent clients, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each level")
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--against", metavar="REV", help="also run every level with the hub of REV")
    parser.add_argument(
        "--workers", type=int, default=1, help="hub worker processes of this tree (more than 1: PostgreSQL)"
    )
    args = parser.parse_args()
    base = SMALL if args.small else FULL
    scale = Scale(
        accounts=args.accounts or base.accounts,
        saved_queries=args.saved_queries or base.saved_queries,
        proposals=args.proposals or base.proposals,
    )
    levels = [int(level) for level in args.levels.split(",")]
    databases = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    print(f"seeding {scale} per run; levels {levels}, {args.seconds:.0f} s each", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as folder:
        work = Path(folder)
        trees: list[tuple[str, Path | None]] = [("this", None)]
        if args.against:
            earlier = work / "tree"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(earlier), args.against],
                check=True,
            )
            trees.insert(0, (args.against, earlier))
        try:
            rows = [
                level
                for database in databases
                for level in run_database(trees, database, scale, levels, args.seconds, work, args.workers)
            ]
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(earlier)], check=False
                )
                shutil.rmtree(earlier, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()
