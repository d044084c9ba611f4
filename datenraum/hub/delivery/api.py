"""The people's side of a data delivery (`/api/v1/deliveries`); the portal's pages do the same.

POST /api/v1/deliveries                          start: {"proposal", "crtdl", "recipient_key", "profile"}
GET  /api/v1/deliveries/{proposal_id}            the delivery and each site's part
POST /api/v1/deliveries/parts/{task_id}/release  the site's custodian lets the package leave
POST /api/v1/deliveries/parts/{task_id}/reject   ... or keeps it: {"reason"}
GET  /api/v1/deliveries/{proposal_id}/download   the merged delivery (tar), for the project's team
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.delivery.service import Delivery, Part
from datenraum.hub.delivery.site_api import task_id_or_404
from datenraum.hub.runtime import CurrentUser, HubDep, RowId

__all__ = ["delivery_json", "router"]

router = APIRouter(prefix="/api/v1/deliveries", tags=["delivery"])


class Start(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposal: int = Field(ge=1, le=2**31 - 1)
    crtdl: Any
    recipient_key: str = Field(max_length=20_000)
    profile: str = Field(default="fdpg", max_length=20)


class Rejection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=2000)


def part_json(part: Part) -> dict[str, Any]:
    return {
        "task_id": part.task_id,
        "site": part.site,
        "state": part.state.value,
        "summary": part.summary,
        "reason": part.reason,
        "received": part.received,
        "bytes": part.package_bytes,
        "sha256": part.package_sha256,
        "updated": part.updated.isoformat(),
    }


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "proposal": delivery.proposal_id,
        "title": delivery.title,
        "state": delivery.state.value,
        "crtdl_sha256": delivery.crtdl_sha256,
        "profile": delivery.profile,
        "created": delivery.created.isoformat(),
        "deadline": delivery.deadline.isoformat(),
        "sites": [part_json(part) for part in delivery.parts],
    }


@router.post("")
async def start(hub: HubDep, user: CurrentUser, body: Start) -> dict[str, Any]:
    delivery = await hub.run(
        hub.deliveries.start, user, body.proposal, body.crtdl, body.recipient_key, body.profile
    )
    return delivery_json(delivery)


@router.get("/{proposal_id}")
async def get(hub: HubDep, user: CurrentUser, proposal_id: RowId) -> dict[str, Any]:
    return delivery_json(await hub.run(hub.deliveries.get, user, proposal_id))


@router.post("/parts/{task_id}/release")
async def release(hub: HubDep, user: CurrentUser, task_id: str) -> dict[str, Any]:
    return part_json(await hub.run(hub.deliveries.release, user, task_id_or_404(task_id)))


@router.post("/parts/{task_id}/reject")
async def reject(hub: HubDep, user: CurrentUser, task_id: str, body: Rejection) -> dict[str, Any]:
    return part_json(await hub.run(hub.deliveries.reject, user, task_id_or_404(task_id), body.reason))


@router.get("/{proposal_id}/download")
async def download(hub: HubDep, user: CurrentUser, proposal_id: RowId) -> StreamingResponse:
    delivery, stream = await hub.run(hub.deliveries.download, user, proposal_id)
    name = f"delivery-proposal-{delivery.proposal_id}.tar"
    return StreamingResponse(
        stream,
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
