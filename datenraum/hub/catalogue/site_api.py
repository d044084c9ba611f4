"""Where site agents fetch their site-metadata tasks and answer them (`/api/site/v1/metadata-tasks`).

Beside the feasibility tasks' long-poll rather than in it: the agent asks every few minutes
(`site.agent.loop.METADATA_EVERY`), and the hub answers at once with a task when the site's figures are
due (daily, or after a new load), else with none. A site sees only its own task.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from datenraum.hub.catalogue.api import catalogue_of
from datenraum.hub.errors import Invalid
from datenraum.hub.runtime import CurrentSite
from datenraum.protocol.messages import API_PREFIX, ProtocolError, TaskResult

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["site"])


@router.get("/metadata-tasks")
async def metadata_tasks(request: Request, site: CurrentSite) -> dict[str, Any]:
    """This site's site-metadata task, if its figures are due."""
    hub, catalogue = catalogue_of(request)
    return {"tasks": [task.to_json() for task in await hub.run(catalogue.issue, site)]}


@router.post("/metadata-tasks/{task_id}/result")
async def metadata_result(
    request: Request, site: CurrentSite, task_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """The site's answer (TaskResult JSON with `metadata`); the same answer again is a no-op."""
    try:
        result = TaskResult.from_json(body)
    except ProtocolError as error:
        raise Invalid(str(error)) from None
    hub, catalogue = catalogue_of(request)
    return {"state": await hub.run(catalogue.record, site, task_id, result)}
