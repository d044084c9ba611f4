"""Several hub worker processes on one PostgreSQL database, and graceful overload (issue 24).

Two apps in this process on one database are two workers as far as the hub can tell (each its own
notifier, broadcast, sweeper and connection pool; only the listening socket is not shared), so the
wake-ups across workers are pinned down request by request. `hub serve --workers 2` itself runs as real
processes at the end. Overload is shown by order, never by timing: a limit of one, one request held,
the next refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi import FastAPI

from datenraum.cli import main as datenraum_cli
from datenraum.devtools.federation import LocalFederation
from datenraum.devtools.postgres import LocalPostgres
from datenraum.hub.broadcast import channel_of, key_of
from datenraum.hub.db import create_hub_engine
from datenraum.hub.feasibility.notify import query_key, site_key
from datenraum.hub.overload import Capacity
from datenraum.hub.samples.api import search_key
from datenraum.hub.sweep import SweepTurn

from .helpers import RESEARCHER_API, HubFixture, Researcher, SiteClient, bearer, older_than, serving

pytestmark = pytest.mark.anyio

on_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


# -- wake-ups across workers ----------------------------------------------------------------------------


@on_postgresql
async def test_a_query_submitted_to_one_worker_completes_for_a_long_poll_held_on_another(
    hub: HubFixture,
) -> None:
    credential = hub.sites("uk-a")["uk-a"]
    token = hub.user()
    async with serving(hub.app()) as one, serving(hub.app()) as other:
        # The site waits at the other worker; the submission at the first must wake it.
        site = SiteClient(other, credential)
        polling = asyncio.create_task(site.poll(wait=60))
        await asyncio.sleep(0.1)
        researcher = Researcher(one, token)
        query_id = await researcher.ask(older_than(50))
        [task] = await polling  # well before its 60 s: the client gives up after 10
        # The researcher waits at the first worker; the answer at the other must wake it.
        first = await researcher.result(query_id)
        waiting = asyncio.create_task(researcher.result(query_id, wait=60, since=first["version"]))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await site.answer(task["id"], 40)
        result = await waiting
        while result["state"] != "complete":  # the start of the task may come first, as its own change
            result = await researcher.result(query_id, wait=60, since=result["version"])
    assert result["sites"][0]["count"] == {"obfuscated": 40}


def test_every_kind_of_wake_up_key_travels_on_its_own_channel_and_comes_back_the_same() -> None:
    for key in (query_key("7f0c"), site_key(12), search_key("a1b2")):
        for partial in (False, True):
            channel, payload = channel_of(key, partial)
            assert channel.startswith("datenraum_")
            assert key_of(channel, payload) == (key, partial)
    assert channel_of(site_key(3), False) != channel_of(query_key("3"), False)


def test_a_notification_that_is_not_a_wake_up_is_ignored_and_a_key_without_channel_is_refused() -> None:
    assert key_of("datenraum_site", "not a number") is None
    assert key_of("datenraum_unknown", "1") is None
    assert key_of("another_application", "1") is None
    with pytest.raises(ValueError, match="no channel for wake-up key"):
        channel_of(("invoice", 1), False)


# -- the sweep in one worker ------------------------------------------------------------------------------


@on_postgresql
def test_one_worker_sweeps_and_another_takes_over_when_it_stops(hub: HubFixture) -> None:
    engines = [create_hub_engine(hub.config.database_url) for _ in range(2)]
    first, second = (SweepTurn(engine) for engine in engines)
    try:
        assert first.mine()
        assert not second.mine()
        assert first.mine()  # it keeps its turn
        first.close()
        assert second.mine()
        assert not first.mine()
    finally:
        first.close()
        second.close()
        for engine in engines:
            engine.dispose()


def test_on_sqlite_the_one_process_always_sweeps(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    turns = SweepTurn(engine), SweepTurn(engine)
    assert all(turn.mine() for turn in turns)
    engine.dispose()


# -- graceful overload ----------------------------------------------------------------------------------


class _HeldBody:
    """A request body that stops half-way until released: its request holds a place meanwhile."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"query": '
        self.started.set()
        await self.release.wait()
        yield b"{}}"


@contextlib.asynccontextmanager
async def _held_request(client: httpx.AsyncClient, token: str) -> AsyncIterator[asyncio.Task]:
    body = _HeldBody()
    headers = {**bearer(token), "Content-Type": "application/json"}
    request = asyncio.create_task(client.post(f"{RESEARCHER_API}/queries", content=body, headers=headers))
    await body.started.wait()
    try:
        yield request
    finally:
        body.release.set()
        await request


async def test_beyond_the_concurrency_limit_a_request_is_refused_at_once_with_503_and_retry_after(
    hub: HubFixture,
) -> None:
    credential = hub.sites("uk-a")["uk-a"]
    token = hub.user()
    async with serving(hub.app(max_concurrent_requests=1)) as client:
        async with _held_request(client, token) as held:
            refused = await client.get(f"{RESEARCHER_API}/sites", headers=bearer(token))
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"
            assert "max_concurrent_requests" in refused.json()["error"]
            # The sites' API is exempt: a site's answer is never turned away by a researchers' crowd.
            assert await SiteClient(client, credential).poll() == []
            assert not held.done()
        assert held.result().status_code == 422  # the held request itself was served to the end
        assert (await client.get(f"{RESEARCHER_API}/sites", headers=bearer(token))).status_code == 200


async def _until_waiting(app: FastAPI, count: int, requests: list[asyncio.Task]) -> None:
    """Until the app holds `count` long-polls (the event loop turning meanwhile); a request that ended
    instead fails the test with its answer."""
    capacity: Capacity = app.state.capacity
    while capacity.waits < count:
        for request in requests:
            if request.done():
                request.result()
                pytest.fail("a long-poll ended before it was counted as waiting")
        await asyncio.sleep(0)


async def test_long_polls_are_bounded_per_user_with_429_and_take_no_place_of_a_working_request(
    hub: HubFixture,
) -> None:
    credential = hub.sites("uk-a")["uk-a"]
    erika, max_ = hub.user("erika@example.org"), hub.user("max@example.org")
    app = hub.app(max_concurrent_requests=1, max_waits_per_user=2)
    async with serving(app) as client:
        researcher = Researcher(client, erika)
        query_id = await researcher.ask(older_than(50))
        version = (await researcher.result(query_id))["version"]
        waits = []
        for count in (1, 2):  # one after the other: each takes the one working place until it waits
            waits.append(asyncio.create_task(researcher.result(query_id, wait=60, since=version)))
            await _until_waiting(app, count, waits)
        path = f"{RESEARCHER_API}/queries/{query_id}"
        refused = await client.get(path, params={"wait": 60, "since": version}, headers=bearer(erika))
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "1"
        assert "max_waits_per_user = 2" in refused.json()["error"]
        # The event stream counts among the same waits.
        stream = await client.get(f"{path}/events", headers=bearer(erika))
        assert stream.status_code == 429
        # Another account may wait, and a request that does not wait is served beside the long-polls.
        assert (await client.get(f"{RESEARCHER_API}/sites", headers=bearer(max_))).status_code == 200
        assert not any(wait.done() for wait in waits)
        await SiteClient(client, credential).poll()  # the task starts: news for the waiting
        for wait in waits:
            assert (await wait)["version"] > version
        # Once they ended, Erika may wait again.
        again = await client.get(path, params={"wait": 0.1, "since": version + 10}, headers=bearer(erika))
        assert again.status_code == 200


async def test_beyond_the_total_of_long_polls_a_worker_refuses_the_next_with_503(hub: HubFixture) -> None:
    credential = hub.sites("uk-a")["uk-a"]
    erika, max_ = hub.user("erika@example.org"), hub.user("max@example.org")
    app = hub.app(max_waits=1)
    async with serving(app) as client:
        first, second = Researcher(client, erika), Researcher(client, max_)
        erikas, maxs = await first.ask(older_than(50)), await second.ask(older_than(60))
        version = (await first.result(erikas))["version"]
        waiting = asyncio.create_task(first.result(erikas, wait=60, since=version))
        await _until_waiting(app, 1, [waiting])
        refused = await client.get(
            f"{RESEARCHER_API}/queries/{maxs}", params={"wait": 60, "since": version}, headers=bearer(max_)
        )
        assert refused.status_code == 503
        assert refused.headers["Retry-After"] == "1"
        assert "max_waits = 1" in refused.json()["error"]
        assert not waiting.done()
        await SiteClient(client, credential).poll()
        assert (await waiting)["version"] > version


# -- hub serve --workers ---------------------------------------------------------------------------------


def test_serving_sqlite_with_several_workers_is_refused_naming_the_option(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        datenraum_cli,
        ["hub", "serve", "--workers", "2", "--database-url", f"sqlite:///{tmp_path / 'hub.db'}"],
    )
    assert result.exit_code == 1
    assert "--workers 2: several hub workers need PostgreSQL" in result.output
    assert not (tmp_path / "hub.db").exists()  # refused before anything was made


def _workers(pid: int) -> int:
    """How many worker processes `hub serve` runs (uvicorn spawns them; multiprocessing's resource
    tracker is a child too, but no worker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes() for child in children)


async def test_hub_serve_with_two_workers_answers_long_polls_on_every_connection(
    postgres_server: LocalPostgres, tmp_path: Path
) -> None:
    """Real processes: long-polls held on many connections (spread by the kernel over both workers)
    all end with the site's answer, recorded by whichever worker the site reached."""
    with LocalFederation(tmp_path, database_url=postgres_server.new_database(), workers=2) as federation:
        files = federation.register(sites=["uk-a"], users=[("erika@example.org", "researcher")])
        federation.start_hub(timeout=60)
        assert federation.hub is not None
        assert _workers(federation.hub.process.pid) == 2
        token = files["erika@example.org"].read_text().strip()
        credential = files["uk-a"].read_text().strip()
        clients = [httpx.AsyncClient(base_url=federation.url, timeout=30) for _ in range(8)]
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            researcher = Researcher(clients[0], token)
            query_id = await researcher.ask(older_than(50))
            version = (await researcher.result(query_id))["version"]
            waits = [
                asyncio.create_task(Researcher(client, token).result(query_id, wait=60, since=version))
                for client in clients[1:]
            ]
            site = SiteClient(clients[0], credential)
            [task] = await site.poll(wait=30)
            await site.answer(task["id"], 40)
            for wait in waits:
                result = await wait  # each well before its 60 s: the clients give up after 30
                while result["state"] != "complete":
                    result = await researcher.result(query_id, wait=60, since=result["version"])
                assert result["sites"][0]["count"] == {"obfuscated": 40}
