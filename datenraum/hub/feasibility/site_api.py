"""The site API (`/api/site/v1`, docs/federation-api.md): sites fetch their tasks and post results.

A site only ever sees its own tasks: every query here is restricted to the authenticated site, and
another site's task id is answered as if it did not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.accounts.service import Site
from datenraum.hub.errors import Conflict, Invalid, NotFound
from datenraum.hub.feasibility.notify import query_key, site_key, wait_for
from datenraum.hub.feasibility.service import Claim, is_id
from datenraum.hub.runtime import CurrentSite, Hub, HubDep
from datenraum.hub.samples.api import search_key
from datenraum.protocol.messages import API_PREFIX, ProtocolError, Task, TaskResult, TaskState

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["site"])


class Heartbeat(BaseModel):
    # Unknown fields are ignored: newer agents may report more than this hub knows.
    model_config = ConfigDict(strict=True)

    version: str = Field(max_length=100, pattern=r"^[^\x00]*$")
    generation: int = Field(ge=0, le=2**63 - 1)  # a BIGINT column
    instance: str | None = Field(default=None, max_length=64)  # this run of the agent (analysis)


@router.get("/tasks")
async def fetch_tasks(
    hub: HubDep, site: CurrentSite, wait: Annotated[float, Query(ge=0, le=60)] = 25
) -> dict[str, Any]:
    """Long-poll: this site's pending tasks (now running), as soon as there is one, else none after `wait` s."""
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    while True:
        with hub.notifier.listen(site_key(site.id)) as signal:
            analysis_tasks = hub.analysis.rounds.claim(site.id)  # in memory; waiting analyses first
            if analysis_tasks:
                return {"tasks": [task.to_json() for task in analysis_tasks]}
            # The crisis dashboard's indicators tasks (hub/dashboard), a data delivery's extraction tasks
            # (hub/delivery) and the sample locator's searches (hub/samples) travel on the same channel; all
            # claims in one turn of the database, as every agent asks again after each answer.
            claim, others = await hub.run(_claim_all, hub, site)
            # A task that starts running is news to a researcher, but never the end of the query.
            hub.notifier.notify((query_key(query_id) for query_id in claim.query_ids), partial=True)
            tasks = [*claim.tasks, *others]
            if tasks or loop.time() >= until or hub.notifier.closed:
                return {"tasks": [task.to_json() for task in tasks]}
            await wait_for(signal.changed, until - loop.time())


def _claim_all(hub: Hub, site: Site) -> tuple[Claim, list[Task]]:
    others = [*hub.dashboard.claim(site), *hub.deliveries.claim(site), *hub.samples.claim(site)]
    return hub.federation.claim(site), others


@router.post("/tasks/{task_id}/result")
async def post_result(hub: HubDep, site: CurrentSite, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """The site's result for one of its tasks (TaskResult JSON); the same result again is a no-op."""
    if not is_id(task_id):  # every task's id is a UUID: another is unknown without asking any database
        raise NotFound(f"no task {task_id!r}")
    try:
        result = TaskResult.from_json(body)
    except ProtocolError as error:
        raise Invalid(str(error)) from None
    # Analysis tasks first: they live in memory, and a round waits for every site's answer.
    if hub.analysis.rounds.record(site.id, task_id, result):
        return {"state": result.state.value}
    if await hub.run(hub.dashboard.owns, task_id):
        delivered = await hub.run(hub.dashboard.record, site, task_id, result)
        return {
            "state": delivered.state.value,
            "accepted": delivered.accepted,
            "problems": list(delivered.problems),
        }
    if await hub.run(hub.deliveries.owns, task_id):
        return {"state": (await hub.run(hub.deliveries.record, site, task_id, result)).value}
    if result.analysis is not None:
        raise Invalid("analysis: an analysis answer for a task that is not an open analysis task")
    # After the in-memory analysis rounds, which must not wait for a database look-up.
    if await hub.run(hub.samples.owns, task_id):
        search_id, state = await hub.run(hub.samples.record, site, task_id, result)
        hub.notifier.notify([search_key(search_id)])
        return {"state": state.value}
    recorded = await hub.run(hub.federation.record, site, task_id, result)
    if recorded.changed:
        hub.notifier.notify([query_key(recorded.query_id)], partial=not recorded.query_complete)
    if recorded.state == TaskState.TIMED_OUT:
        raise Conflict("deadline passed")
    return {"state": recorded.state.value}


@router.post("/heartbeat")
async def heartbeat(hub: HubDep, site: CurrentSite, body: Heartbeat) -> dict[str, Any]:
    """The site is alive, runs this agent version and has this store generation."""
    await hub.run(hub.federation.heartbeat, site, body.version, body.generation)
    hub.analysis.rounds.site_seen(site.id, body.instance)
    return {"ok": True}
