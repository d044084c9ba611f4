"""Fixtures for the hub's tests: every test runs on SQLite and on a real PostgreSQL server.

The PostgreSQL server is Debian's (`scripts/setup` installs the package); the fixture installs nothing.
It creates a throwaway cluster in a temporary folder, starts it on a free loopback port with its socket
in that folder, once per test session, and stops it at the end (or, if the tests are killed, a watchdog
does). PostgreSQL refuses to run as root, so as root its programs run as the `postgres` system user.
Each test gets an empty database: the PostgreSQL one truncated, or a copy of a migrated SQLite file
(much faster than migrating each time).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import argon2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from datenraum.hub import passwords
from datenraum.hub.accounts import Accounts
from datenraum.hub.config import HubConfig
from datenraum.hub.db import Base, create_hub_engine, migrate

from .helpers import FakeClock, HubFixture
from .portal_helpers import People


class PostgresServer:
    """A PostgreSQL cluster of our own in a temporary folder, reachable on 127.0.0.1:`port`."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
        if not found:
            pytest.fail("PostgreSQL is not installed: run scripts/setup (Debian package postgresql)")
        self.bin = found[-1].parent
        # In memory where there is /dev/shm: the cluster is thrown away, and disks with discard are slow
        # to delete its thousands of files.
        shm = Path("/dev/shm")
        self.root = Path(tempfile.mkdtemp(prefix="datenraum-pg-", dir=shm if shm.is_dir() else None))
        self.data = self.root / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_owner, str(self.bin / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--wal-segsize=1",
        )
        # Durability off and a small WAL: a test cluster is thrown away, and so it is several times faster.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c wal_level=minimal -c max_wal_senders=0 -c min_wal_size=2MB -c max_wal_size=8MB"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
        # pg_ctl detaches the server; should this test process be killed before it can stop the server,
        # a watchdog of ours stops it and removes its folder.
        stop = shlex.join(
            [*self.as_owner, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        )
        watchdog = (
            f"while kill -0 {os.getpid()}; do sleep 1; done; {stop}; rm -rf {shlex.quote(str(self.root))}"
        )
        subprocess.Popen(
            ["sh", "-c", watchdog],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str) -> None:
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.exec_driver_sql(statement)
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres(postgres_server: PostgresServer) -> str:
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
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"new_{tmp_path.name.lower().replace('-', '_')}"
    server.execute(f"CREATE DATABASE {name}")
    return server.url(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config(database_url: str) -> HubConfig:
    """Settings for tests: the contract's defaults, but sweeping often, so that timeouts show at once."""
    return HubConfig(database_url=database_url, sweep_interval_seconds=0.02)


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
