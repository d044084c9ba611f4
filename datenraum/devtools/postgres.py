"""A throwaway PostgreSQL cluster on this machine (127.0.0.1), for the hub's tests and the federation
benchmark, which both need a real server without touching any installed one.

It uses Debian's PostgreSQL programs (`scripts/setup` installs the package) and installs nothing: `initdb`
makes a cluster in a temporary folder, which is served on a free loopback port with its socket in that
folder, and removed when the cluster stops. PostgreSQL refuses to run as root, so as root its programs run
as the `postgres` system user. Should the process that started the server be killed before it can stop it,
a watchdog stops the server and removes its folder.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import sqlalchemy as sa

from datenraum.devtools.ports import free_port

__all__ = ["LocalPostgres", "PostgresUnavailable"]


class PostgresUnavailable(RuntimeError):
    """PostgreSQL is not installed, or a program of it failed; the text says which and why."""


def _newest_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise PostgresUnavailable(
            "PostgreSQL is not installed: run scripts/setup (Debian package postgresql)"
        )
    return found[-1].parent


class LocalPostgres:
    """A cluster of our own, reachable on 127.0.0.1:`port`; `with LocalPostgres() as server:`.

    `durable=False` turns off what protects against a machine crash (fsync, full page writes): several
    times faster, right for tests, whose cluster is thrown away. A benchmark keeps it on, as in production.
    """

    def __init__(self, *, durable: bool = True) -> None:
        self.bin = _newest_bin()
        self.durable = durable
        # In memory where there is /dev/shm, unless durable: disks with discard are slow to delete the
        # cluster's thousands of files.
        shm = Path("/dev/shm")
        in_memory = not durable and shm.is_dir()
        self.root = Path(tempfile.mkdtemp(prefix="datenraum-pg-", dir=shm if in_memory else None))
        self.data = self.root / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.port = free_port()
        self._databases = 0

    def _run(self, program: str, *args: str) -> None:
        command = [*self.as_owner, str(self.bin / program), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr or result.stdout}"
            )

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
            "--wal-segsize=1",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
            "-c min_wal_size=2MB -c max_wal_size=64MB"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            options += " -c wal_level=minimal -c max_wal_senders=0"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")
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

    def restart(self) -> None:
        """Stop the server (closing every connection) and start it again with the same settings."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-m", "fast", "-w", "restart")

    def stop(self) -> None:
        with contextlib.suppress(PostgresUnavailable, subprocess.SubprocessError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str) -> None:
        """One statement outside a transaction (CREATE DATABASE must be)."""
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(statement)
        finally:
            engine.dispose()

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        self._databases += 1
        name = f"db{self._databases}"
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)
