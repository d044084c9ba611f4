"""The agents' side of a data delivery (`/api/site/v1/deliveries`): the released packages to upload,
and the resumable upload itself. The extraction tasks travel on the ordinary task channel (`/tasks`).

    GET  /deliveries                           released parts of this site: [{task_id, project, received}]
    GET  /deliveries/{task_id}/upload          {"received": bytes acknowledged}: where to continue
    PUT  /deliveries/{task_id}/upload?offset=N one chunk (at most CHUNK_MAX bytes), header X-Chunk-SHA256
    POST /deliveries/{task_id}/complete        {"bytes", "sha256"} of the whole sealed package

A site sees only its own parts; another's task id is answered 404. A chunk at another offset than the
acknowledged one is 409 with that offset, a chunk whose digest does not match is 422: neither is kept.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.delivery.service import CHUNK_MAX
from datenraum.hub.errors import NotFound
from datenraum.hub.feasibility.service import is_id
from datenraum.hub.runtime import CurrentSite, HubDep
from datenraum.protocol.messages import API_PREFIX

__all__ = ["UPLOAD_PATHS", "router", "task_id_or_404"]

router = APIRouter(prefix=f"{API_PREFIX}/deliveries", tags=["site"])
UPLOAD_PATHS = re.compile(re.escape(API_PREFIX) + r"/deliveries/[0-9a-f-]{36}/upload")
SHA256 = r"^[0-9a-fA-F]{64}$"


class Completion(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    bytes: int = Field(ge=1, le=2**62)
    sha256: str = Field(pattern=SHA256)


def task_id_or_404(task_id: str) -> str:
    if not is_id(task_id):
        raise NotFound(f"no task {task_id!r}")
    return task_id


@router.get("")
async def released(hub: HubDep, site: CurrentSite) -> dict[str, Any]:
    return {"uploads": [upload.to_json() for upload in await hub.run(hub.deliveries.uploads, site)]}


@router.get("/{task_id}/upload")
async def upload_offset(hub: HubDep, site: CurrentSite, task_id: str) -> dict[str, Any]:
    return {
        "received": await hub.run(hub.deliveries.upload_offset, site, task_id_or_404(task_id)),
        "chunk": CHUNK_MAX,
    }


@router.put("/{task_id}/upload")
async def upload_chunk(
    hub: HubDep,
    site: CurrentSite,
    task_id: str,
    request: Request,
    offset: Annotated[int, Query(ge=0, le=2**62)],
    chunk_sha256: Annotated[str, Header(alias="X-Chunk-SHA256", pattern=SHA256)],
) -> dict[str, Any]:
    data = await request.body()
    received = await hub.run(
        hub.deliveries.receive, site, task_id_or_404(task_id), offset, data, chunk_sha256
    )
    return {"received": received}


@router.post("/{task_id}/complete")
async def complete(hub: HubDep, site: CurrentSite, task_id: str, body: Completion) -> dict[str, Any]:
    part = await hub.run(
        hub.deliveries.complete, site, task_id_or_404(task_id), body.bytes, body.sha256.lower()
    )
    return {"state": part.state.value, "sha256": part.package_sha256}
