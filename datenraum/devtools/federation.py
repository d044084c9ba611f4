"""A hub and its site agents as child processes on this machine (127.0.0.1): the demo, the federation
fault tests and the federation benchmark all run the real commands this way.

Each child is started in its own session, so that a Ctrl-C at the terminal reaches only the parent, which
then stops the agents before the hub (stopping the hub first would make every agent log an outage on its
way out). Output goes to one log file per child under `<workdir>/logs/`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from datenraum.devtools.ports import free_port

__all__ = ["ChildProcess", "FederationError", "LocalFederation", "Researcher"]


class FederationError(RuntimeError):
    """A child process did not start or a command failed; the text points to its log."""


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


@dataclass
class ChildProcess:
    name: str
    process: subprocess.Popen
    log: Path

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (or SIGKILL) and wait; a child that ignores SIGTERM is killed after `timeout`."""
        self.signal_stop(kill=kill)
        self.wait_stopped(timeout)

    def signal_stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is not None:
            return
        if kill:
            # The whole process group (the child leads its own session): a hub's worker processes die
            # with it, as they would with their machine, instead of living on with the port.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 10.0) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _datenraum(*args: str) -> list[str]:
    return [sys.executable, "-m", "datenraum", *args]


class LocalFederation:
    """Start, restart and stop a hub and agents; `close()` (or leaving the `with` block) stops them all."""

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        hub_env: dict[str, str] | None = None,
        port: int | None = None,
        workers: int = 1,
    ) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers  # hub worker processes (more than 1 needs PostgreSQL)
        self.hub_env = {
            "DATENRAUM_HUB_DATABASE_URL": database_url or f"sqlite:///{workdir / 'hub.db'}",
            # Links in the hub's messages lead to this hub; without SMTP, the messages are files here.
            "DATENRAUM_HUB_PUBLIC_URL": self.url,
            "DATENRAUM_HUB_MAIL_FOLDER": str(workdir / "mail"),
            **(hub_env or {}),
        }
        self.hub: ChildProcess | None = None
        self.agents: dict[str, ChildProcess] = {}
        self.edcs: dict[str, ChildProcess] = {}  # the sites' study EDCs (`datenraum studies serve`)

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- children
    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> ChildProcess:
        log = self.logs / f"{_slug(name)}.log"
        with open(log, "ab") as output:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
                start_new_session=True,
            )
        return ChildProcess(name, process, log)

    def _hub_commands(self, *commands: list[str]) -> None:
        """Run `datenraum hub` administration commands against this hub's database, a few side by side
        (each spends most of its time starting Python)."""
        failures = []
        batch = 2 * (os.cpu_count() or 1)
        for start in range(0, len(commands), batch):
            running = [
                (
                    args,
                    subprocess.Popen(
                        _datenraum("hub", *args),
                        env={**os.environ, **self.hub_env},
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                    ),
                )
                for args in commands[start : start + batch]
            ]
            for args, process in running:
                output, _ = process.communicate(timeout=120)
                if process.returncode != 0:
                    failures.append(f"datenraum hub {' '.join(args)} failed: {output.strip()}")
        if failures:
            raise FederationError("; ".join(failures))

    def start_hub(self, timeout: float = 30.0) -> None:
        """Start the hub (again, after stop_hub: same port, same database) and wait until it answers."""
        self.hub = self._spawn(
            "hub",
            _datenraum(
                "hub",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
            ),
            self.hub_env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.hub.process.poll() is not None:
                raise FederationError(
                    f"the hub exited at start (code {self.hub.process.returncode}); see {self.hub.log}"
                )
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/openapi.json", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise FederationError(f"the hub did not answer within {timeout:.0f} s; see {self.hub.log}")

    def stop_hub(self, *, kill: bool = False) -> None:
        if self.hub is not None:
            self.hub.stop(kill=kill)

    def _secret_file(self, name: str, suffix: str) -> Path:
        path = self.workdir / "credentials" / f"{_slug(name)}.{suffix}"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return path

    def register(
        self,
        sites: list[str] = (),
        users: list[tuple[str, str]] = (),
        passwords: dict[str, str] | None = None,
    ) -> dict[str, Path]:
        """Register sites and create users (email, role) at the hub, all at once, users with a portal
        password where `passwords` has one; the files holding their new credentials and API tokens, by
        site name and email."""
        files = {name: self._secret_file(name, "credential") for name in sites}
        files.update({email: self._secret_file(email, "token") for email, _role in users})
        password_files = {}
        for email, password in (passwords or {}).items():
            password_files[email] = self._secret_file(email, "password")
            password_files[email].write_text(password + "\n")
        self._hub_commands(
            *(["add-site", name, "--credential-file", str(files[name])] for name in sites),
            *(
                [
                    *("create-user", email, "--role", role, "--token-file", str(files[email])),
                    *(("--password-file", str(password_files[email])) if email in password_files else ()),
                ]
                for email, role in users
            ),
        )
        for path in password_files.values():
            path.unlink()
        return files

    def start_agent(
        self,
        name: str,
        store: Path,
        credential: Path,
        *,
        state: Path | None = None,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        delay: float = 0,
        analysis_delay: float = 0,
        analysis_delay_from: int = 1,
    ) -> ChildProcess:
        """Start the site agent of `name`. Its state folder (site secret, journal) is `state`, by default
        one per site in the workdir, so that several agents may share one store. With a `delay`, the
        agent pauses that many seconds before each count (devtools/slow_agent.py)."""
        state = state or self.workdir / "agents" / _slug(name)
        args = ["--store", str(store), "--hub", self.url, "--credential", str(credential)]
        args += ["--state", str(state)]
        if config is not None:
            args += ["--config", str(config)]
        if delay or analysis_delay:
            command = [sys.executable, "-m", "datenraum.devtools.slow_agent", "--delay", str(delay), *args]
            command += [
                "--analysis-delay",
                str(analysis_delay),
                "--analysis-delay-from",
                str(analysis_delay_from),
            ]
        else:
            command = _datenraum("site", "serve", *args)
        self.agents[name] = self._spawn(f"agent-{name}", command, env or {})
        return self.agents[name]

    def start_edc(self, name: str, config: Path, port: int) -> ChildProcess:
        """Serve the study EDC of site `name` (`datenraum studies serve`) on 127.0.0.1:`port`."""
        command = _datenraum("studies", "serve", "--config", str(config), "--host", "127.0.0.1")
        self.edcs[name] = self._spawn(f"edc-{name}", [*command, "--port", str(port)], {})
        return self.edcs[name]

    def close(self, *, kill: bool = False) -> None:
        """Stop the EDCs and agents, then the hub: with SIGTERM, so that each can finish what it does (the
        hub waits a few seconds for open long-polls), or with SIGKILL (`kill`, for tests)."""
        children = [*self.edcs.values(), *self.agents.values()]
        for child in children:  # signal all first, so that they stop in parallel
            child.signal_stop(kill=kill)
        for child in children:
            child.wait_stopped()
        self.stop_hub(kill=kill)


class Researcher:
    """The researcher API of a hub, as a client with a token."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=70)

    def submit(self, query: dict[str, Any], sites: list[str] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"query": query}
        if sites is not None:
            body["sites"] = sites
        return self.client.post("/api/v1/queries", json=body)

    def result(self, query_id: Any, *, timeout: float = 60.0) -> dict[str, Any]:
        """The query's result once complete, long-polling on its version (no polling loop at the hub)."""
        deadline = time.monotonic() + timeout
        params: dict[str, Any] = {}  # the first request answers at once, later ones when a version is newer
        while True:
            response = self.client.get(f"/api/v1/queries/{query_id}", params=params)
            response.raise_for_status()
            document = response.json()
            if document["state"] == "complete":
                return document
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"query {query_id} not complete after {timeout:.0f} s: {document}")
            params = {"wait": min(30.0, left), "since": document["version"]}

    def sample_search(
        self, samples: dict[str, Any], query: dict[str, Any] | None = None, *, timeout: float = 60.0
    ) -> dict[str, Any]:
        """A sample search's result once complete (long-polling)."""
        response = self.client.post("/api/v1/sample-searches", json={"query": query, "samples": samples})
        response.raise_for_status()
        search_id = response.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            response = self.client.get(
                f"/api/v1/sample-searches/{search_id}", params={"wait": max(0, min(30.0, left))}
            )
            response.raise_for_status()
            document = response.json()
            if document["state"] == "complete":
                return document
            if left <= 0:
                raise TimeoutError(
                    f"sample search {search_id} not complete after {timeout:.0f} s: {document}"
                )

    def wait_for_sites(self, names: list[str], timeout: float = 60.0) -> None:
        """Until the hub has heard from each of these sites' agents (they connect a moment after start)."""
        deadline = time.monotonic() + timeout
        while True:
            seen = {
                site["name"] for site in self.client.get("/api/v1/sites").json()["sites"] if site["last_seen"]
            }
            if seen >= set(names):
                return
            if time.monotonic() > deadline:
                raise FederationError(
                    f"no word from the agents of {sorted(set(names) - seen)} in {timeout:.0f} s"
                )
            time.sleep(0.1)

    def close(self) -> None:
        self.client.close()
