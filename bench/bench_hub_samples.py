"""Sample search at the hub: what a sample search costs the hub beside a feasibility query, in one run.

Service level (no HTTP), on a fresh SQLite hub database, with S sites: one round is submit, every site
claims its task and posts its answer, and the researcher reads the complete result (with its totals).
A feasibility answer is one count; a sample answer is a `SampleResult` JSON document, checked when it
arrives and parsed and totalled on every read, so its size matters: the rows are answers of 10 cells
and of 500 cells per site (a large biobank network's category × temperature × collection table).
Median wall time and CPU seconds per round, and their ratio to the feasibility round.

    .venv/bin/python bench/bench_hub_samples.py
    .venv/bin/python bench/bench_hub_samples.py --sites 37 --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from datenraum.devtools.demo import DEMO_QUERY
from datenraum.hub.accounts.service import Accounts, Site, load_user
from datenraum.hub.config import HubConfig
from datenraum.hub.db import SiteRow, UserRow, create_hub_engine, migrate
from datenraum.hub.feasibility.service import Federation
from datenraum.hub.roles import Role
from datenraum.hub.samples.service import SampleSearches
from datenraum.protocol.messages import SiteCount, TaskResult, TaskState
from datenraum.query.biobank.terminology import CATEGORIES, TEMPERATURE_CLASSES
from datenraum.query.model import query_to_json

LIMITS = {"quota_per_minute": 10**6, "quota_per_hour": 10**6, "quota_per_day": 10**6}


def older_than(years: int) -> dict[str, Any]:
    age = {"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}
    criterion = {
        "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
        "termCodes": [age],
        "valueFilter": {
            "type": "quantity-comparator",
            "comparator": "gt",
            "value": years,
            "unit": {"code": "a", "display": "Jahre"},
        },
    }
    return {"inclusionCriteria": [[criterion]]}


def sample_answer(cells: int) -> dict[str, Any]:
    count = {"obfuscated": 40}
    pairs = [(c.code, t.code) for c in CATEGORIES for t in TEMPERATURE_CLASSES]
    rows = [
        {
            "biobank": f"collection-{index // len(pairs)}",
            "category": pairs[index % len(pairs)][0],
            "temperature": pairs[index % len(pairs)][1],
            **{name: count for name in ("patients", "samples", "specimens", "aliquots")},
        }
        for index in range(cells)
    ]
    banks = sorted({row["biobank"] for row in rows})
    return {
        "patients": count,
        "specimens": count,
        "samples": count,
        "biobanks": [{"biobank": bank, "name": bank, "patients": count} for bank in banks],
        "cells": rows,
    }


def measure(run: Callable[[], object], rounds: int) -> tuple[float, float]:
    run()  # warm
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'hub.db'}"
        engine = create_hub_engine(url)
        migrate(engine)
        sessions = sessionmaker(engine, expire_on_commit=False)
        config = HubConfig(database_url=url, site_daily_tasks=10**6, researcher_site_share=1.0, **LIMITS)
        accounts = Accounts(sessions)
        for index in range(args.sites):
            accounts.add_site(f"site-{index:02d}")
        accounts.create_user("bench@example.org", Role.RESEARCHER)
        with sessions() as session:
            user = load_user(session, session.scalars(sa.select(UserRow)).one())
            sites = [Site(row.id, row.name) for row in session.scalars(sa.select(SiteRow))]
        federation = Federation(sessions, config)
        searches = SampleSearches(sessions, config)
        query = query_to_json(DEMO_QUERY)
        asked = iter(range(10**9))

        def feasibility_round() -> None:
            # A query differing from the last (a fresh age limit), so the hub does not reuse its answer.
            submission = federation.submit(user, older_than(18 + next(asked)), None)
            assert not submission.reused
            for site in sites:
                for task in federation.claim(site).tasks:
                    federation.record(
                        site, task.id, TaskResult(task.id, TaskState.ANSWERED, count=SiteCount(40))
                    )
            assert federation.result(user, submission.query_id).complete

        def sample_round(answer: dict[str, Any]) -> Callable[[], None]:
            def run() -> None:
                search_id, _ = searches.submit(user, query, {"categories": ["blood"]})
                for site in sites:
                    for task in searches.claim(site):
                        searches.record(
                            site, task.id, TaskResult(task.id, TaskState.ANSWERED, samples=answer)
                        )
                assert searches.result(user, search_id).complete

            return run

        rows = [
            ("feasibility query (one count per site)", feasibility_round),
            ("sample search, 10 cells per site", sample_round(sample_answer(10))),
            ("sample search, 500 cells per site", sample_round(sample_answer(500))),
        ]
        results = [(name, *measure(run, args.rounds)) for name, run in rows]
        engine.dispose()
    base_wall, base_cpu = results[0][1], results[0][2]
    print(
        f"hub on SQLite, {args.sites} sites, median of {args.rounds} rounds (submit, claims, answers, result)"
    )
    print(f"| {'round':<40} | {'wall ms':>8} | {'CPU ms':>8} | {'wall ratio':>10} | {'CPU ratio':>9} |")
    print(f"|{'-' * 42}|{'-' * 9}:|{'-' * 9}:|{'-' * 11}:|{'-' * 10}:|")
    for name, wall, cpu in results:
        print(
            f"| {name:<40} | {wall * 1000:>8.1f} | {cpu * 1000:>8.1f} | {wall / base_wall:>10.2f} | {cpu / base_cpu:>9.2f} |"
        )


if __name__ == "__main__":
    main()
