"""A hub and site agents as real processes on 127.0.0.1, with short deadlines so that faults resolve fast.

Most tests share one hub per module (`fed`; each test uses its own site names and names them in its
queries) because starting a hub costs seconds; tests that stop or restart the hub start their own
(`start_federation`). Sites and users are registered through the hub's accounts module directly, which
the `datenraum hub` commands wrap; the demo's test runs those commands. Every process a test starts is
stopped when the test ends, also when it fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from datenraum.devtools.demo import DEMO_QUERY
from datenraum.devtools.federation import LocalFederation, Researcher
from datenraum.hub.accounts.service import Accounts
from datenraum.hub.db import create_hub_engine
from datenraum.hub.roles import Role
from datenraum.query.model import query_to_json
from datenraum.site.ingest import ingest
from datenraum.synth import generate

# Short times for the hub; high quotas, so that no test is refused for asking often.
HUB_SETTINGS = {
    "DATENRAUM_HUB_TASK_DEADLINE_SECONDS": "4",
    "DATENRAUM_HUB_SWEEP_INTERVAL_SECONDS": "0.2",
    "DATENRAUM_HUB_MIN_SITES": "1",
    "DATENRAUM_HUB_QUOTA_PER_MINUTE": "1000",
    "DATENRAUM_HUB_QUOTA_PER_HOUR": "10000",
    "DATENRAUM_HUB_QUOTA_PER_DAY": "100000",
    "DATENRAUM_HUB_SITE_DAILY_TASKS": "1000000",
}
# Agents that come back quickly after an outage and notice a revocation soon.
AGENT_CONFIG = "[hub]\nwait = 2\nbackoff_initial = 0.1\nbackoff_cap = 0.5\n"


@pytest.fixture(scope="session")
def site_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small synthetic site store; every agent of these tests reads it (read-only)."""
    folder = tmp_path_factory.mktemp("site")
    generate(folder / "data", 300, 7, workers=1)
    ingest(folder / "store", [folder / "data"])
    return folder / "store"


def _write_secret(path: Path, secret: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    os.chmod(path, 0o600)
    return path


class Federation:
    """A running hub with helpers to add sites, start their agents and ask as a researcher."""

    def __init__(self, processes: LocalFederation, store: Path) -> None:
        self.processes = processes
        self.store = store
        self.url = processes.url
        self.engine: sa.Engine = create_hub_engine(processes.hub_env["DATENRAUM_HUB_DATABASE_URL"])
        self.accounts = Accounts(sessionmaker(self.engine))
        self.credentials: dict[str, Path] = {}
        self.agent_config = _write_secret(processes.workdir / "agent.toml", AGENT_CONFIG)
        token = self.accounts.create_user(f"researcher-{id(self)}@test.example", Role.RESEARCHER)
        self.researcher = Researcher(self.url, token)

    def close(self) -> None:
        self.researcher.close()
        self.engine.dispose()

    def add_site(self, name: str) -> Path:
        secret = self.accounts.add_site(name)
        self.credentials[name] = _write_secret(self.processes.workdir / "credentials" / name, secret)
        return self.credentials[name]

    def start_agent(self, name: str, *, delay: float = 0, credential: Path | None = None) -> None:
        self.processes.start_agent(
            name, self.store, credential or self.credentials[name], config=self.agent_config, delay=delay
        )

    def add_sites_with_agents(self, *names: str, delays: dict[str, float] | None = None) -> None:
        """Register the sites, start their agents and wait until each has reported to the hub."""
        for name in names:
            self.add_site(name)
            self.start_agent(name, delay=(delays or {}).get(name, 0))
        self.researcher.wait_for_sites(list(names))

    def submit(self, *sites: str) -> str:
        """Ask the demo query of these sites (named, so that other tests' sites on a shared hub stay out)."""
        response = self.researcher.submit(query_to_json(DEMO_QUERY), sites=list(sites))
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def site_client(self, name: str) -> httpx.Client:
        """The site API as the site `name` sees it (for tests that play a site by hand)."""
        token = self.credentials[name].read_text().strip()
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    def agent_log(self, name: str) -> str:
        return self.processes.agents[name].log.read_text()

    def agent_running(self, name: str) -> bool:
        return self.processes.agents[name].process.poll() is None

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def site_states(self, query_id: str) -> dict[str, str]:
        document = self.researcher.client.get(f"/api/v1/queries/{query_id}").json()
        return {site["site"]: site["state"] for site in document["sites"]}


def _start(workdir: Path, store: Path, database_url: str | None, settings: dict[str, str]) -> Federation:
    env = {**HUB_SETTINGS, **{f"DATENRAUM_HUB_{k.upper()}": v for k, v in settings.items()}}
    processes = LocalFederation(workdir, database_url=database_url, hub_env=env)
    try:
        processes.start_hub()
        return Federation(processes, store)
    except BaseException:
        processes.close()
        raise


@pytest.fixture(scope="module")
def shared_hub(tmp_path_factory: pytest.TempPathFactory, site_store: Path) -> Iterator[Federation]:
    federation = _start(tmp_path_factory.mktemp("hub"), site_store, None, {})
    yield federation
    federation.close()
    federation.processes.close(kill=True)


@pytest.fixture
def fed(shared_hub: Federation) -> Iterator[Federation]:
    """The module's hub; the agents a test starts are stopped when it ends."""
    before = set(shared_hub.processes.agents)
    yield shared_hub
    for name in set(shared_hub.processes.agents) - before:
        shared_hub.processes.agents.pop(name).stop(kill=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_database(request: pytest.FixtureRequest) -> str | None:
    """The URL of an empty hub database: None for SQLite in the test's folder, or a new PostgreSQL one."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres_server").new_database()


@pytest.fixture
def start_federation(tmp_path: Path, site_store: Path) -> Iterator[Callable[..., Federation]]:
    """Start a hub of the test's own (settings: HUB_SETTINGS, overridden by keyword, e.g.
    task_deadline_seconds="10"; database_url: SQLite in the test's folder unless given)."""
    started: list[Federation] = []

    def start(database_url: str | None = None, **settings: str) -> Federation:
        started.append(_start(tmp_path / f"federation-{len(started)}", site_store, database_url, settings))
        return started[-1]

    yield start
    for federation in started:
        federation.close()
        federation.processes.close(kill=True)
