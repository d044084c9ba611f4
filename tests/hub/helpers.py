"""Helpers for the hub's tests: a clock to move, the hub's database, queries to ask, the app served
in-process, and clients that talk to it as sites and researchers do."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from datenraum.hub.accounts.service import Accounts
from datenraum.hub.app import create_app
from datenraum.hub.config import HubConfig
from datenraum.hub.db import MIGRATIONS
from datenraum.hub.feasibility.service import Federation
from datenraum.hub.roles import Role
from datenraum.protocol.messages import API_PREFIX

START = dt.datetime(2025, 3, 4, 12, 0, tzinfo=dt.UTC)
SITE_API = API_PREFIX
RESEARCHER_API = "/api/v1"


class FakeClock:
    """The hub's clock in tests: stands still until a test moves it on."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@dataclass
class HubFixture:
    """Direct access to one test's hub database, for setting up and for looking behind the API."""

    config: HubConfig
    clock: FakeClock
    engine: sa.Engine
    sessions: sessionmaker[Session]
    accounts: Accounts

    def federation(self, **settings: Any) -> Federation:
        return Federation(self.sessions, dataclasses.replace(self.config, **settings), self.clock)

    def app(self, **settings: Any) -> FastAPI:
        """A new hub process on the same database (a restart, when the last one is closed)."""
        return create_app(dataclasses.replace(self.config, **settings), self.clock)

    def sites(self, *names: str) -> dict[str, str]:
        return {name: self.accounts.add_site(name) for name in names}

    def user(self, email: str = "researcher@example.org", role: Role = Role.RESEARCHER) -> str:
        return self.accounts.create_user(email, role)

    def count(self, table: str) -> int:
        with self.engine.connect() as connection:
            return connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()


def older_than(years: int, display: str = "Alter") -> dict[str, Any]:
    """Patients older than `years`: a family of near-identical queries, as a differencing attack uses."""
    return {
        "display": display,
        "inclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "424144002", "display": display}
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


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def answered(task_id: str, obfuscated: int | None) -> dict[str, Any]:
    """A site's result; None for a count below the site's threshold."""
    count = {"below_threshold": True} if obfuscated is None else {"obfuscated": obfuscated}
    return {"task_id": task_id, "state": "answered", "count": count}


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app running in-process (with its sweeper), and a client talking to it; closed like a shutdown."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=10) as client:
            yield client


class SiteClient:
    """A site agent's view of the hub API."""

    def __init__(self, client: httpx.AsyncClient, credential: str) -> None:
        self.client = client
        self.headers = bearer(credential)

    async def poll(self, wait: float = 0) -> list[dict[str, Any]]:
        response = await self.client.get(f"{SITE_API}/tasks", params={"wait": wait}, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()["tasks"]

    async def post(self, task_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.client.post(f"{SITE_API}/tasks/{task_id}/result", json=body, headers=self.headers)

    async def answer(self, task_id: str, obfuscated: int | None) -> None:
        response = await self.post(task_id, answered(task_id, obfuscated))
        assert response.status_code == 200, response.text


class Researcher:
    """A researcher's view of the hub API."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = bearer(token)

    async def submit(self, query: dict[str, Any], sites: list[str] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"query": query}
        if sites is not None:
            body["sites"] = sites
        return await self.client.post(f"{RESEARCHER_API}/queries", json=body, headers=self.headers)

    async def ask(self, query: dict[str, Any], sites: list[str] | None = None) -> str:
        response = await self.submit(query, sites)
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    async def result(self, query_id: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(
            f"{RESEARCHER_API}/queries/{query_id}", params=params, headers=self.headers
        )
        assert response.status_code == 200, response.text
        return response.json()


def newest_revision() -> str:
    """The schema revision that migrating to the newest migration ends at."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config).get_current_head()
