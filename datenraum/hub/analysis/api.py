"""The researcher's federated analysis API (`/api/v1/analysis`), used by `datenraum.analysis.Client`.

    GET  /api/v1/analysis/projects                     the caller's approved federated-analysis projects
    GET  /api/v1/analysis/projects/{project_id}        one of them: its sites and operations
    POST /api/v1/analysis/projects/{project_id}/{op}   run an operation; the pooled result

An operation's body names its parameters as the local `Analysis` method does (`formula`, `family`,
`variables`, `where`, `sites`, ...) plus `data: {variables: {name: definition}}`. The answer is
`{"ok": true, "result": ...}`; a call without a pooled result answers `{"ok": false, "error": text,
"errors": [{code, rule, threshold, site, message_en, message_de}]}` with 422 (refused at a site, or by
the hub's rules) or 504 (a site did not answer in time, named); a malformed body is a 422 naming the
field. Nothing here is evaluated: formulas are parsed into a model spec, variables into typed
definitions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from datenraum.hub.analysis.service import AnalysisFailed
from datenraum.hub.errors import Invalid
from datenraum.hub.runtime import CurrentUser, HubDep, RowId

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/analysis", tags=["analysis"])

Operation = Annotated[str, Path(max_length=40, pattern=r"^[a-z_]+$")]


@router.get("/projects")
async def list_projects(hub: HubDep, user: CurrentUser) -> dict[str, Any]:
    projects = await hub.run(hub.analysis.projects, user)
    return {"projects": [p.to_json() for p in projects]}


@router.get("/projects/{project_id}")
async def get_project(hub: HubDep, user: CurrentUser, project_id: RowId) -> dict[str, Any]:
    project = await hub.run(hub.analysis.project, user, project_id)
    return project.to_json()


@router.post("/projects/{project_id}/{operation}")
async def run_operation(
    hub: HubDep,
    user: CurrentUser,
    project_id: RowId,
    operation: Operation,
    body: Annotated[Any, Body()] = None,
) -> Any:
    project = await hub.run(hub.analysis.project, user, project_id)
    # The rounds wait for the sites: not in the database's turn (hub.run), which the sites need to poll.
    try:
        result, log = await run_in_threadpool(hub.analysis.run, user, project, operation, body)
    except AnalysisFailed as failed:
        if failed.log is not None:
            await hub.run(hub.analysis.record, user, project, failed.log)
        first = failed.errors[0] if failed.errors else {}
        return JSONResponse(
            {"ok": False, "error": first.get("message_en", "analysis failed"), "errors": failed.errors},
            status_code=failed.status,
        )
    except Invalid as invalid:
        return JSONResponse(
            {
                "ok": False,
                "error": str(invalid),
                "errors": [
                    {
                        "code": "bad_request",
                        "rule": None,
                        "threshold": None,
                        "site": None,
                        "message_en": f"invalid request: {invalid}",
                        "message_de": f"ungültige Anfrage: {invalid}",
                    }
                ],
            },
            status_code=422,
        )
    await hub.run(hub.analysis.record, user, project, log)
    return {"ok": True, "result": result}
