"""The hub's HTTP API against the contract (docs/federation-api.md), on SQLite and PostgreSQL.

Each test runs the FastAPI app in-process (with its sweeper) and talks to it as sites and researchers
do. The hub's clock is a FakeClock, so deadlines and leases pass when a test says so; waits (long-polls)
are real but short.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from datenraum.hub.app import create_app
from datenraum.hub.config import HubConfig
from datenraum.hub.roles import Role

from .helpers import (
    RESEARCHER_API,
    SITE_API,
    HubFixture,
    Researcher,
    SiteClient,
    answered,
    bearer,
    older_than,
    serving,
)

pytestmark = pytest.mark.anyio

SITES = ("uk-a", "uk-b", "uk-c")


def _years(task: dict[str, Any]) -> int:
    """The age limit of a task's query (see helpers.older_than)."""
    return task["payload"]["query"]["inclusionCriteria"][0][0]["valueFilter"]["value"]


# -- authentication and isolation -------------------------------------------------------------------


async def test_requests_without_a_valid_credential_are_refused_with_401(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b")
    token = hub.user()
    hub.accounts.revoke_site("uk-b")
    async with serving(hub.app()) as client:
        for headers in ({}, bearer("drs_wrong"), bearer(token), bearer(credentials["uk-b"])):
            response = await client.get(f"{SITE_API}/tasks", params={"wait": 0}, headers=headers)
            assert response.status_code == 401, headers
            assert "error" in response.json()
            assert response.headers["WWW-Authenticate"] == "Bearer"
        for headers in ({}, bearer("dru_wrong"), bearer(credentials["uk-a"])):
            response = await client.get(f"{RESEARCHER_API}/sites", headers=headers)
            assert response.status_code == 401, headers
        assert (await client.get(f"{SITE_API}/tasks?wait=0", headers=bearer(credentials["uk-a"]))).is_success


async def test_rotating_a_credential_retires_the_old_one_at_once(hub: HubFixture) -> None:
    old = hub.sites("uk-a")["uk-a"]
    async with serving(hub.app()) as client:
        assert (await client.get(f"{SITE_API}/tasks?wait=0", headers=bearer(old))).status_code == 200
        new = hub.accounts.rotate_site("uk-a")
        assert (await client.get(f"{SITE_API}/tasks?wait=0", headers=bearer(old))).status_code == 401
        assert (await client.get(f"{SITE_API}/tasks?wait=0", headers=bearer(new))).status_code == 200


async def test_a_site_sees_and_answers_only_its_own_tasks(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b")
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        site_a, site_b = SiteClient(client, credentials["uk-a"]), SiteClient(client, credentials["uk-b"])
        await researcher.ask(older_than(50), sites=["uk-a"])
        assert await site_b.poll() == []
        [task] = await site_a.poll()
        response = await site_b.post(task["id"], answered(task["id"], 100))
        assert response.status_code == 404
        assert (await site_b.post("no-such-task", answered("no-such-task", 100))).status_code == 404
        await site_a.answer(task["id"], 100)


async def test_a_researcher_reads_only_own_queries_and_an_admin_reads_all(hub: HubFixture) -> None:
    hub.sites(*SITES)
    async with serving(hub.app()) as client:
        alice = Researcher(client, hub.user("alice@example.org"))
        bob = Researcher(client, hub.user("bob@example.org"))
        admin = Researcher(client, hub.user("admin@example.org", Role.ADMIN))
        query_id = await alice.ask(older_than(50))
        response = await client.get(f"{RESEARCHER_API}/queries/{query_id}", headers=bob.headers)
        assert response.status_code == 404
        assert (await admin.result(query_id))["id"] == query_id
        assert (await alice.result(query_id))["id"] == query_id


# -- delivering tasks and results -----------------------------------------------------------------------


async def test_a_waiting_site_gets_a_new_task_at_once(hub: HubFixture) -> None:
    credentials = hub.sites(*SITES)
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        site = SiteClient(client, credentials["uk-a"])
        started = time.monotonic()
        polling = asyncio.create_task(site.poll(wait=10))
        await asyncio.sleep(0.1)  # the poll is waiting now
        query_id = await researcher.ask(older_than(50))
        [task] = await polling
        assert time.monotonic() - started < 5
        assert task["type"] == "feasibility-count"
        assert task["payload"]["query"]["inclusionCriteria"][0][0]["valueFilter"]["value"] == 50
        # Fetched means running, and it is not handed out again while its lease lasts.
        assert await site.poll() == []
        states = {s["site"]: s["state"] for s in (await researcher.result(query_id))["sites"]}
        assert states == {"uk-a": "running", "uk-b": "pending", "uk-c": "pending"}


async def test_an_idle_poll_returns_no_tasks_after_its_wait(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app()) as client:
        started = time.monotonic()
        assert await SiteClient(client, credentials["uk-a"]).poll(wait=0.3) == []
        assert 0.25 < time.monotonic() - started < 3


async def test_results_show_per_site_as_they_arrive(hub: HubFixture) -> None:
    credentials = hub.sites(*SITES)
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        query_id = await researcher.ask(older_than(50))
        sites = {name: SiteClient(client, credential) for name, credential in credentials.items()}
        tasks = {name: (await site.poll())[0]["id"] for name, site in sites.items()}
        await sites["uk-a"].answer(tasks["uk-a"], 120)
        failure = {"task_id": tasks["uk-b"], "state": "failed", "reason": "store offline"}
        assert (await sites["uk-b"].post(tasks["uk-b"], failure)).json() == {"state": "failed"}
        result = await researcher.result(query_id)
        assert result["state"] == "running"
        assert result["sites"] == [
            {"site": "uk-a", "state": "answered", "count": {"obfuscated": 120}, "reason": None},
            {"site": "uk-b", "state": "failed", "count": None, "reason": "store offline"},
            {"site": "uk-c", "state": "running", "count": None, "reason": None},
        ]
        await sites["uk-c"].answer(tasks["uk-c"], None)
        result = await researcher.result(query_id)
        assert result["state"] == "complete"
        assert result["sites"][2]["count"] == {"below_threshold": True}


async def test_a_total_is_shown_only_with_min_sites_contributions(hub: HubFixture) -> None:
    credentials = hub.sites(*SITES)
    async with serving(hub.app(min_sites=3)) as client:
        researcher = Researcher(client, hub.user())
        full_id, partial_id = await researcher.ask(older_than(50)), await researcher.ask(older_than(60))
        totals = []
        for name, full, partial in (("uk-a", 120, 300), ("uk-b", None, 10), ("uk-c", 80, "failed")):
            site = SiteClient(client, credentials[name])
            for task in await site.poll():
                count = full if _years(task) == 50 else partial
                if count == "failed":
                    failure = {"task_id": task["id"], "state": "failed", "reason": "no store"}
                    assert (await site.post(task["id"], failure)).status_code == 200
                else:
                    await site.answer(task["id"], count)
            totals.append((await researcher.result(full_id))["total"])
        assert totals == [None, None, {"value": 200, "sites": 3, "at_least": True}]
        partial = await researcher.result(partial_id)
        assert partial["state"] == "complete"
        assert partial["total"] is None  # two counts and a failure: fewer than three contributions


async def test_a_long_poll_on_a_result_answers_as_soon_as_it_changes(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        site = SiteClient(client, credentials["uk-a"])
        query_id = await researcher.ask(older_than(50))
        first = await researcher.result(query_id)
        [task] = await site.poll()
        after_fetch = await researcher.result(query_id, wait=10, since=first["version"])
        assert after_fetch["version"] > first["version"]
        assert after_fetch["sites"][0]["state"] == "running"

        started = time.monotonic()
        waiting = asyncio.create_task(researcher.result(query_id, wait=10, since=after_fetch["version"]))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await site.answer(task["id"], 40)
        result = await waiting
        assert time.monotonic() - started < 5
        assert result["state"] == "complete"
        assert result["sites"][0]["count"] == {"obfuscated": 40}
        # Nothing newer than the current version: the wait runs out and the document comes unchanged.
        again = await researcher.result(query_id, wait=0.2, since=result["version"])
        assert again == result


async def _events(client: Any, query_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get(f"{RESEARCHER_API}/queries/{query_id}/events", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "data" in fields:
            events.append({"event_id": int(fields["id"]), **orjson.loads(fields["data"])})
    return events


async def test_server_sent_events_follow_a_query_until_it_is_complete(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b")
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        query_id = await researcher.ask(older_than(50))
        stream = asyncio.create_task(_events(client, query_id, researcher.headers))
        for name, credential in credentials.items():
            await asyncio.sleep(0.05)
            site = SiteClient(client, credential)
            [task] = await site.poll()
            await site.answer(task["id"], 70 if name == "uk-a" else 90)
        events = await asyncio.wait_for(stream, 10)
    versions = [event["event_id"] for event in events]
    assert versions == sorted(set(versions))
    assert all(event["version"] == event["event_id"] for event in events)
    assert events[0]["state"] == "running"
    assert events[-1]["state"] == "complete"
    assert {s["site"]: s["count"] for s in events[-1]["sites"]} == {
        "uk-a": {"obfuscated": 70},
        "uk-b": {"obfuscated": 90},
    }


async def test_server_sent_events_of_an_unknown_query_are_404(hub: HubFixture) -> None:
    async with serving(hub.app()) as client:
        response = await client.get(f"{RESEARCHER_API}/queries/nope/events", headers=bearer(hub.user()))
        assert response.status_code == 404
        assert response.json() == {"error": "no query 'nope'"}


# -- replays, conflicts, deadlines ---------------------------------------------------------------------


async def test_posting_the_same_result_again_is_a_no_op(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        site = SiteClient(client, credentials["uk-a"])
        query_id = await researcher.ask(older_than(50))
        [task] = await site.poll()
        first = await site.post(task["id"], answered(task["id"], 30))
        before = await researcher.result(query_id)
        again = await site.post(task["id"], answered(task["id"], 30))
        assert first.status_code == again.status_code == 200
        assert first.json() == again.json() == {"state": "answered"}
        assert await researcher.result(query_id) == before


async def test_a_different_result_for_an_answered_task_is_a_conflict(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        site = SiteClient(client, credentials["uk-a"])
        query_id = await researcher.ask(older_than(50))
        [task] = await site.poll()
        await site.answer(task["id"], 30)
        for different in (
            answered(task["id"], 40),
            answered(task["id"], None),
            {"task_id": task["id"], "state": "failed", "reason": "changed my mind"},
        ):
            response = await site.post(task["id"], different)
            assert response.status_code == 409
            assert "different result" in response.json()["error"]
        assert (await researcher.result(query_id))["sites"][0]["count"] == {"obfuscated": 30}


async def test_a_task_without_result_times_out_at_its_deadline(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b")
    async with serving(hub.app(task_deadline_seconds=30)) as client:
        researcher = Researcher(client, hub.user())
        query_id = await researcher.ask(older_than(50))
        site_a, site_b = SiteClient(client, credentials["uk-a"]), SiteClient(client, credentials["uk-b"])
        [task_a] = await site_a.poll()
        await site_a.answer(task_a["id"], 20)
        [task_b] = await site_b.poll()
        version = (await researcher.result(query_id))["version"]
        waiting = asyncio.create_task(researcher.result(query_id, wait=10, since=version))
        hub.clock.advance(30)
        result = await waiting  # woken by the sweeper
        assert result["state"] == "complete"
        by_site = {s["site"]: s for s in result["sites"]}
        assert by_site["uk-a"]["state"] == "answered"
        assert by_site["uk-b"]["state"] == "timed-out"
        assert by_site["uk-b"]["reason"] == "no result before the deadline"
        late = await site_b.post(task_b["id"], answered(task_b["id"], 20))
        assert late.status_code == 409
        assert late.json() == {"error": "deadline passed"}
        assert (await researcher.result(query_id))["sites"] == result["sites"]
        assert await site_b.poll() == []


async def test_a_result_after_the_deadline_is_refused_even_before_the_sweep(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app(sweep_interval_seconds=3600)) as client:
        researcher = Researcher(client, hub.user())
        site = SiteClient(client, credentials["uk-a"])
        query_id = await researcher.ask(older_than(50))
        [task] = await site.poll()
        hub.clock.advance(31)
        response = await site.post(task["id"], answered(task["id"], 20))
        assert response.status_code == 409
        assert response.json() == {"error": "deadline passed"}
        assert (await researcher.result(query_id))["sites"][0]["state"] == "timed-out"


# -- restarts ---------------------------------------------------------------------------------------


async def test_a_restarted_hub_delivers_pending_tasks_and_keeps_results(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b")
    token = hub.user()
    settings = {"task_deadline_seconds": 300, "lease_seconds": 60}
    async with serving(hub.app(**settings)) as client:
        query_id = await Researcher(client, token).ask(older_than(50))
        [fetched] = await SiteClient(client, credentials["uk-a"]).poll()
    async with serving(hub.app(**settings)) as client:  # a new hub process on the same database
        site_a, site_b = SiteClient(client, credentials["uk-a"]), SiteClient(client, credentials["uk-b"])
        [pending] = await site_b.poll()
        await site_b.answer(pending["id"], 60)
        # uk-a fetched its task from the old process and may have lost it: once the lease has run out,
        # the task is offered again, under the same id.
        assert await site_a.poll() == []
        hub.clock.advance(61)
        [offered_again] = await site_a.poll()
        assert offered_again["id"] == fetched["id"]
        await site_a.answer(fetched["id"], 30)
    async with serving(hub.app(**settings)) as client:
        result = await Researcher(client, token).result(query_id)
    assert result["state"] == "complete"
    assert [s["count"] for s in result["sites"]] == [{"obfuscated": 30}, {"obfuscated": 60}]


async def test_a_running_task_whose_lease_ran_out_is_offered_again(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    # A deadline longer than the lease, so that the lease runs out first.
    async with serving(hub.app(task_deadline_seconds=300, lease_seconds=60)) as client:
        researcher = Researcher(client, hub.user())
        site = SiteClient(client, credentials["uk-a"])
        await researcher.ask(older_than(50))
        [task] = await site.poll()
        polling = asyncio.create_task(site.poll(wait=10))
        await asyncio.sleep(0.1)
        hub.clock.advance(61)
        [again] = await polling  # woken by the sweeper when the lease ran out
        assert again["id"] == task["id"]
        await site.answer(task["id"], 10)
        hub.clock.advance(61)
        assert await site.poll() == []


# -- privacy rules ----------------------------------------------------------------------------------


async def test_an_identical_query_within_the_reuse_window_returns_the_stored_one(hub: HubFixture) -> None:
    credentials = hub.sites(*SITES)
    async with serving(hub.app()) as client:
        alice = Researcher(client, hub.user("alice@example.org"))
        bob = Researcher(client, hub.user("bob@example.org"))
        first = await alice.submit(older_than(50))
        assert first.status_code == 201
        assert first.json()["reused"] is False
        # The same question, other display texts, other key order, asked by someone else.
        same = orjson.loads(orjson.dumps(older_than(50, display="Über 50"), option=orjson.OPT_SORT_KEYS))
        second = await bob.submit(same)
        assert second.status_code == 200
        assert second.json() == {"id": first.json()["id"], "reused": True}
        assert (await bob.result(first.json()["id"]))["id"] == first.json()["id"]
        assert len(await SiteClient(client, credentials["uk-a"]).poll()) == 1
        # Other sites, or a later time, make it a new question.
        assert (await alice.submit(older_than(50), sites=["uk-a", "uk-b"])).json()["reused"] is False
        hub.clock.advance(hub.config.reuse_window_seconds + 1)
        assert (await bob.submit(same)).json()["reused"] is False


async def test_near_identical_queries_beyond_the_quota_are_refused_with_429(hub: HubFixture) -> None:
    hub.sites(*SITES)
    async with serving(hub.app(quota_per_minute=5)) as client:
        attacker = Researcher(client, hub.user())
        statuses = [(await attacker.submit(older_than(years))).status_code for years in range(40, 52)]
        assert statuses == [201] * 5 + [429] * 7
        refused = await attacker.submit(older_than(60))
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "quota" in refused.json()["error"]
        assert hub.count("queries") == 5
        assert hub.count("tasks") == 5 * len(SITES)
        # Other users are not affected, and the quota refills with time.
        assert (
            await Researcher(client, hub.user("other@example.org")).submit(older_than(40))
        ).status_code in (200, 201)
        hub.clock.advance(60)
        assert (await attacker.submit(older_than(60))).status_code == 201


# -- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b'{"query": ', 400, "malformed JSON"),
        (b"[]", 422, "body: Input should be a valid dictionary"),
        (b'{"query": 5}', 422, "query: Input should be a valid dictionary"),
        (b'{"query": {}, "sites": "uk-a"}', 422, "sites: Input should be a valid list"),
        (b'{"query": {}, "sites": [1]}', 422, "sites[0]: Input should be a valid string"),
        (b'{"query": {}, "extra": 1}', 422, "extra: Extra inputs are not permitted"),
        (b'{"sites": []}', 422, "query: Field required"),
        (b'{"query": {}}', 422, "$.inclusionCriteria: is required"),
        (
            b'{"query": {"inclusionCriteria": [[{"termCodes": []}]]}}',
            422,
            "$.inclusionCriteria[0][0].termCodes: must not be empty",
        ),
        (
            b'{"query": {"inclusionCriteria": [[{"context": {"system": "fdpg.mii.cds", "code": "Unbekannt"},'
            b' "termCodes": [{"system": "x", "code": "y"}]}]]}}',
            422,
            "$.inclusionCriteria[0][0].context",
        ),
    ],
)
async def test_a_malformed_query_is_refused_naming_the_field_and_nothing_is_stored(
    hub: HubFixture, body: bytes, status: int, error: str
) -> None:
    hub.sites(*SITES)
    async with serving(hub.app()) as client:
        headers = {**bearer(hub.user()), "Content-Type": "application/json"}
        response = await client.post(f"{RESEARCHER_API}/queries", content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"].startswith(error)
    assert hub.count("queries") == hub.count("tasks") == hub.count("query_requests") == 0


@pytest.mark.parametrize(
    ("sites", "error"),
    [
        (["uk-a", "uk-x"], "sites[1]: there is no active site 'uk-x'"),
        (["uk-a", "uk-a"], "sites[1]: 'uk-a' is named twice"),
        (["uk-revoked"], "sites[0]: there is no active site 'uk-revoked'"),
        ([], "sites: must not be empty"),
    ],
)
async def test_unknown_or_revoked_sites_are_refused_and_nothing_is_stored(
    hub: HubFixture, sites: list[str], error: str
) -> None:
    hub.sites("uk-a", "uk-revoked")
    hub.accounts.revoke_site("uk-revoked")
    async with serving(hub.app()) as client:
        response = await Researcher(client, hub.user()).submit(older_than(50), sites=sites)
    assert response.status_code == 422
    assert response.json()["error"].startswith(error)
    assert hub.count("queries") == hub.count("tasks") == 0


async def test_a_query_with_no_active_site_is_refused(hub: HubFixture) -> None:
    async with serving(hub.app()) as client:
        response = await Researcher(client, hub.user()).submit(older_than(50))
    assert response.status_code == 422
    assert response.json() == {"error": "sites: there is no active site to ask"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"task_id": "TASK", "state": "answered"}, "an answered task needs a count"),
        ({"task_id": "TASK", "state": "answered", "count": {"obfuscated": -1}}, "count.obfuscated"),
        ({"task_id": "TASK", "state": "answered", "count": {"obfuscated": "12"}}, "count.obfuscated"),
        ({"task_id": "TASK", "state": "answered", "count": 12}, "count: expected an object"),
        ({"task_id": "TASK", "state": "done", "count": {"obfuscated": 10}}, "result.state"),
        ({"task_id": "TASK", "state": "timed-out"}, "a site cannot report state 'timed-out'"),
        ({"task_id": "TASK", "state": "failed"}, "a failed task needs a reason"),
        ({"task_id": "TASK", "state": "failed", "reason": "x" * 2001}, "result.reason"),
        ({"task_id": "other", "state": "answered", "count": {"obfuscated": 10}}, "task_id"),
        ({"state": "answered", "count": {"obfuscated": 10}}, "task_id"),
        ([1, 2], "body: Input should be a valid dictionary"),
    ],
)
async def test_a_malformed_result_is_refused_naming_the_field(hub: HubFixture, body: Any, error: str) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app()) as client:
        await Researcher(client, hub.user()).ask(older_than(50))
        site = SiteClient(client, credentials["uk-a"])
        [task] = await site.poll()
        if isinstance(body, dict) and body.get("task_id") == "TASK":
            body = {**body, "task_id": task["id"]}
        response = await site.post(task["id"], body)
        assert response.status_code == 422
        assert error in response.json()["error"]
        assert hub.count("tasks WHERE state = 'running'") == 1


async def test_bodies_over_the_size_limit_are_refused_with_413(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app(max_body_bytes=1024)) as client:
        headers = {**bearer(hub.user()), "Content-Type": "application/json"}
        big = b'{"query": {"display": "' + b"x" * 2000 + b'"}}'
        announced = await client.post(f"{RESEARCHER_API}/queries", content=big, headers=headers)
        assert announced.status_code == 413

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 100):
                yield big[start : start + 100]

        streamed = await client.post(f"{RESEARCHER_API}/queries", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        assert "larger than 1024 bytes" in streamed.json()["error"]
        site_headers = {**bearer(credentials["uk-a"]), "Content-Type": "application/json"}
        result = await client.post(f"{SITE_API}/tasks/x/result", content=big, headers=site_headers)
        assert result.status_code == 413
    assert hub.count("queries") == 0


async def test_input_the_database_could_not_store_is_refused_not_crashed_on(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a")
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        nul_code = older_than(50)
        nul_code["inclusionCriteria"][0][0]["termCodes"][0]["code"] = "4241\x0044002"
        assert (await researcher.submit(nul_code)).status_code == 422
        diagnosis = {
            "inclusionCriteria": [
                [{"termCodes": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": "E1\x001"}]}]
            ]
        }
        # NUL in any string of a query, codes and display texts alike (issue 12 P-10).
        assert (await researcher.submit(diagnosis)).status_code == 422
        assert (await researcher.submit(older_than(50, display="\x00"))).status_code == 422
        await researcher.ask(older_than(50))
        await researcher.ask(older_than(60))
        assert (
            await client.get(f"{RESEARCHER_API}/queries/%00", headers=researcher.headers)
        ).status_code == 404
        site = SiteClient(client, credentials["uk-a"])
        task, _ = await site.poll()
        assert (await site.post("%00", answered("\x00", 10))).status_code == 404
        refused = {
            "count.obfuscated": answered(task["id"], 2**64),
            "reason": {"task_id": task["id"], "state": "failed", "reason": "a\x00b"},
        }
        for field, body in refused.items():
            response = await site.post(task["id"], body)
            assert response.status_code == 422
            assert response.json()["error"].startswith(field)
        for heartbeat in ({"version": "1", "generation": 2**64}, {"version": "\x00", "generation": 1}):
            response = await client.post(f"{SITE_API}/heartbeat", json=heartbeat, headers=site.headers)
            assert response.status_code == 422
        deep = b"[" * 100_000 + b"]" * 100_000
        headers = {**researcher.headers, "Content-Type": "application/json"}
        deep_query = b'{"query": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"
        for body in (deep, deep_query):
            response = await client.post(f"{RESEARCHER_API}/queries", content=body, headers=headers)
            assert 400 <= response.status_code < 500
            assert "error" in response.json()


@pytest.mark.parametrize(
    ("path", "error"),
    [
        (f"{SITE_API}/tasks?wait=61", "wait: "),
        (f"{SITE_API}/tasks?wait=soon", "wait: "),
        (f"{RESEARCHER_API}/queries/unknown", "no query 'unknown'"),
        (f"{RESEARCHER_API}/queries/unknown?since=-1", "since: "),
    ],
)
async def test_bad_parameters_get_a_4xx_naming_them(hub: HubFixture, path: str, error: str) -> None:
    credentials = hub.sites("uk-a")
    token = hub.user()
    async with serving(hub.app()) as client:
        headers = bearer(credentials["uk-a"] if path.startswith(SITE_API) else token)
        response = await client.get(path, headers=headers)
    assert 400 <= response.status_code < 500
    assert response.json()["error"].startswith(error)


# -- operations ---------------------------------------------------------------------------------------


async def test_heartbeats_show_when_each_site_was_last_seen(hub: HubFixture) -> None:
    credentials = hub.sites("uk-a", "uk-b", "uk-gone")
    hub.accounts.revoke_site("uk-gone")
    async with serving(hub.app()) as client:
        response = await client.post(
            f"{SITE_API}/heartbeat",
            json={"version": "0.1.0", "generation": 7},
            headers=bearer(credentials["uk-a"]),
        )
        assert response.status_code == 200
        bad = await client.post(
            f"{SITE_API}/heartbeat",
            json={"version": "0.1.0", "generation": "7"},
            headers=bearer(credentials["uk-a"]),
        )
        assert bad.status_code == 422
        assert bad.json()["error"].startswith("generation: ")
        response = await client.get(f"{RESEARCHER_API}/sites", headers=bearer(hub.user()))
    assert response.json() == {
        "sites": [
            {
                "name": "uk-a",
                "state": "active",
                "last_seen": hub.clock.now.isoformat(),
                "version": "0.1.0",
                "generation": 7,
            },
            {"name": "uk-b", "state": "active", "last_seen": None, "version": None, "generation": None},
            {"name": "uk-gone", "state": "revoked", "last_seen": None, "version": None, "generation": None},
        ]
    }


async def test_no_count_or_body_reaches_the_hub_log(
    hub: HubFixture, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = hub.sites("uk-a")
    caplog.set_level(logging.DEBUG)
    async with serving(hub.app()) as client:
        await Researcher(client, hub.user()).ask(older_than(50, display="secret-display-text"))
        site = SiteClient(client, credentials["uk-a"])
        [task] = await site.poll()
        await site.answer(task["id"], 987650)
        await site.post(task["id"], answered(task["id"], 123450))  # a conflict is not logged with its body
    assert "987650" not in caplog.text
    assert "123450" not in caplog.text
    assert "secret-display-text" not in caplog.text


async def test_the_openapi_document_describes_both_apis(hub: HubFixture) -> None:
    async with serving(hub.app()) as client:
        spec = (await client.get("/openapi.json")).json()
    assert {
        f"{SITE_API}/tasks",
        f"{SITE_API}/tasks/{{task_id}}/result",
        f"{SITE_API}/heartbeat",
        f"{RESEARCHER_API}/queries",
        f"{RESEARCHER_API}/queries/{{query_id}}",
        f"{RESEARCHER_API}/queries/{{query_id}}/events",
        f"{RESEARCHER_API}/sites",
    } <= set(spec["paths"])


async def test_a_database_outage_is_a_503_to_retry_later(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once the probe is closed
    app = create_app(HubConfig(database_url=f"postgresql://hub:secret@127.0.0.1:{port}/hub"))
    async with serving(app) as client:
        response = await client.get(f"{SITE_API}/tasks?wait=0", headers=bearer("drs_some-credential"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "database is unavailable" in response.json()["error"]
    assert "drs_some-credential" not in caplog.text
    assert "secret" not in caplog.text


@pytest.mark.parametrize(
    ("query", "error"),
    [
        (
            {"inclusionCriteria": [older_than(50)["inclusionCriteria"][0]] * 3000},
            "$.inclusionCriteria[100]: a query may have at most 100 groups (inclusion and exclusion)",
        ),
        (
            {"inclusionCriteria": [older_than(50)["inclusionCriteria"][0] * 900]},
            "$.inclusionCriteria[0][200]: a query may have at most 200 criteria",
        ),
    ],
)
async def test_a_query_over_the_size_limits_is_refused_with_422(
    hub: HubFixture, query: dict[str, Any], error: str
) -> None:
    hub.sites(*SITES)
    async with serving(hub.app()) as client:
        researcher = Researcher(client, hub.user())
        response = await researcher.submit(query)
        assert response.status_code == 422
        assert response.json()["error"] == error
        saved = await client.post(
            f"{RESEARCHER_API}/saved-queries",
            json={"name": "big", "query": query},
            headers=researcher.headers,
        )
        assert saved.status_code == 422
        assert saved.json()["error"] == "query" + error.removeprefix("$")
    assert hub.count("queries") == hub.count("saved_queries") == 0


def _diagnosis(code: str) -> dict[str, Any]:
    return {
        "context": {"system": "fdpg.mii.cds", "code": "Diagnose"},
        "termCodes": [{"system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm", "code": code}],
    }


async def test_a_question_written_differently_is_reused_and_costs_no_quota(
    hub: HubFixture,
) -> None:
    # issue 12, P-1: the probe's averaging variants of [[E11], [C00-C97]] are one question
    hub.sites(*SITES)
    e11, cancer = _diagnosis("E11"), _diagnosis("C00-C97")
    variants = [
        {"inclusionCriteria": [[e11], [cancer]]},
        {"inclusionCriteria": [[cancer], [e11]]},
        {"inclusionCriteria": [[e11, e11], [cancer, cancer, cancer]]},
        {"inclusionCriteria": [[cancer], [e11], [e11, cancer], [e11]]},
    ]
    async with serving(hub.app(quota_per_minute=1)) as client:
        researcher = Researcher(client, hub.user())
        first, *others = [await researcher.submit(q) for q in variants]
        assert first.status_code == 201
        assert [r.json() for r in others] == [{"id": first.json()["id"], "reused": True}] * 3
        assert hub.count("queries") == 1
        # the three rewrites asked no site, so they cost nothing: the quota of one a minute still
        # answers a fifth
        assert (await researcher.submit({"inclusionCriteria": [[cancer, cancer], [e11]]})).json()["reused"]


async def test_a_near_duplicate_of_an_own_recent_question_counts_twice(hub: HubFixture) -> None:
    # issue 12, P-1: a differencing pair (E11, and E11 without C00-C97) costs three submissions, not two
    hub.sites(*SITES)
    e11, cancer = _diagnosis("E11"), _diagnosis("C00-C97")
    async with serving(hub.app(quota_per_minute=3)) as client:
        researcher = Researcher(client, hub.user())
        assert (await researcher.submit({"inclusionCriteria": [[e11]]})).status_code == 201
        narrower = {"inclusionCriteria": [[e11]], "exclusionCriteria": [[cancer]]}
        assert (await researcher.submit(narrower)).status_code == 201
        refused = await researcher.submit({"inclusionCriteria": [[_diagnosis("I10")]]})
        assert refused.status_code == 429
        # after the hour the pair is no longer near: a new variant counts once again
        hub.clock.advance(3600)
        assert (await researcher.submit({"inclusionCriteria": [[e11], [cancer]]})).status_code == 201
        assert (await researcher.submit({"inclusionCriteria": [[_diagnosis("I10")]]})).status_code == 201
        assert (await researcher.submit({"inclusionCriteria": [[_diagnosis("I11")]]})).status_code == 201


# -- daily limits per site and per researcher (issue 12, P-2) ----------------------------------------


async def test_a_researcher_gets_at_most_a_share_of_a_sites_daily_tasks(hub: HubFixture) -> None:
    # a share of 1/10 of a site's 20 tasks a day: 2 per researcher and site (two accounts cannot exhaust it)
    hub.sites(*SITES)
    async with serving(hub.app(site_daily_tasks=20, researcher_site_share=0.1)) as client:
        alice = Researcher(client, hub.user())
        assert [(await alice.submit(older_than(y), ["uk-a"])).status_code for y in (40, 41)] == [201] * 2
        refused = await alice.submit(older_than(42), ["uk-a", "uk-b"])
        assert refused.status_code == 429
        assert "uk-a" in refused.json()["error"] and "uk-b" not in refused.json()["error"]
        assert "2 tasks a day" in refused.json()["error"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 24 * 3600
        assert hub.count("queries") == 2  # nothing stored for the refused one
        # a question asked before is reused: it asks no site and costs nothing
        assert (await alice.submit(older_than(40), ["uk-a"])).json()["reused"] is True
        # her other sites, and other researchers at uk-a, are not affected
        assert (await alice.submit(older_than(42), ["uk-b"])).status_code == 201
        bob = Researcher(client, hub.user("bob@example.org"))
        assert (await bob.submit(older_than(50), ["uk-a"])).status_code == 201
        # a day later her share is hers again
        hub.clock.advance(24 * 3600)
        assert (await alice.submit(older_than(43), ["uk-a"])).status_code == 201


async def test_a_site_at_its_daily_limit_gets_no_more_tasks_and_the_researcher_is_told(
    hub: HubFixture,
) -> None:
    hub.sites(*SITES)
    async with serving(hub.app(site_daily_tasks=4, researcher_site_share=0.5)) as client:
        for i, email in enumerate(("a@example.org", "b@example.org")):
            researcher = Researcher(client, hub.user(email))
            for years in (40 + 2 * i, 41 + 2 * i):
                assert (await researcher.submit(older_than(years), ["uk-a"])).status_code == 201
        carol = Researcher(client, hub.user("carol@example.org"))
        refused = await carol.submit(older_than(60))  # every site, uk-a among them
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert "uk-a" in error and "daily limit of 4 tasks" in error
        assert int(refused.headers["Retry-After"]) >= 1
        assert hub.count("tasks") == 4  # uk-a's four, nothing more was sent
        # the other sites still answer her
        assert (await carol.submit(older_than(60), ["uk-b", "uk-c"])).status_code == 201
        hub.clock.advance(24 * 3600)
        assert (await carol.submit(older_than(61))).status_code == 201


def test_the_share_of_a_site_is_a_fraction_of_at_most_one() -> None:
    assert HubConfig().researcher_site_share == 0.1
    assert HubConfig().site_daily_tasks == 1000
    with pytest.raises(ValueError, match="researcher_site_share: must be at most 1"):
        HubConfig(researcher_site_share=1.5)
