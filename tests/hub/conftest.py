"""Fixtures for the hub's tests: every test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is a throwaway cluster (`datenraum.devtools.postgres`), started once per test session
without durability (it is thrown away), and stopped at the end (or, if the tests are killed, by its
watchdog). Each test gets an empty database: the PostgreSQL one truncated, or a copy of a migrated SQLite file
(much faster than migrating each time).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest
from sqlalchemy.orm import sessionmaker

from datenraum.devtools.postgres import LocalPostgres
from datenraum.hub.accounts import passwords
from datenraum.hub.accounts.service import Accounts
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Base, create_hub_engine, migrate

from .helpers import FakeClock, HubFixture
from .portal_helpers import People


@pytest.fixture(scope="session")
def postgres(postgres_server: LocalPostgres) -> str:
    """The URL of a migrated database on the PostgreSQL server, for this test session."""
    postgres_server.execute("CREATE DATABASE hub")
    engine = create_hub_engine(postgres_server.url("hub"))
    migrate(engine)
    engine.dispose()
    return postgres_server.url("hub")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "hub.db"
    engine = create_hub_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty hub database: a copy of a migrated SQLite file, or the PostgreSQL one emptied."""
    if request.param == "sqlite":
        path = tmp_path / "hub.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres")
    engine = create_hub_engine(url)
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        connection.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY")
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database without tables, as a new deployment starts with."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/new.db"
    server: LocalPostgres = request.getfixturevalue("postgres_server")
    name = f"new_{tmp_path.name.lower().replace('-', '_')}"
    server.execute(f"CREATE DATABASE {name}")
    return server.url(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> HubConfig:
    """Settings for tests: the contract's defaults, but sweeping often, so that timeouts show at once, and
    mail written to a folder of the test (what people would receive; see `People.messages`)."""
    return HubConfig(
        database_url=database_url,
        sweep_interval_seconds=0.02,
        mail_folder=str(tmp_path / "mail"),
        study_key_file=str(tmp_path / "study.key"),
    )


@pytest.fixture
def hub(config: HubConfig, clock: FakeClock) -> Iterator[HubFixture]:
    engine = create_hub_engine(config.database_url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    yield HubFixture(config, clock, engine, sessions, Accounts(sessions, clock))
    engine.dispose()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with the least work: the portal's tests sign in hundreds of times, and what they check is
    who may do what, not how slow a hash is (the production parameters are argon2's defaults)."""
    hasher = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(passwords, "_hasher", hasher)
    monkeypatch.setattr(passwords, "_NOBODY", hasher.hash("not a password of anyone"))


@pytest.fixture
def people(hub: HubFixture) -> People:
    return People(hub)
