"""The data delivery's pages: the custodian's release page and the delivery page of a proposal.

- `/deliveries/release`: for a site's custodian (site administrator), every package of their sites
  that awaits release, with what would leave (resources per type after de-identification, dropped
  resources, the leak gate's findings, the sealed size) and a release and a reject (with reason) form.
- `/deliveries/{proposal_id}`: the delivery's state and each site's part, for the team, the
  coordination office and the custodians of its sites; the team also gets the download
  (`/deliveries/{proposal_id}/download`: the merged delivery, one tar stream; anyone else 404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from datenraum.hub.accounts.service import User
from datenraum.hub.delivery.site_api import task_id_or_404
from datenraum.hub.errors import HubError
from datenraum.hub.portal.web import checked_form, form_text, hub_of, redirect, render, require
from datenraum.hub.roles import Role
from datenraum.hub.runtime import RowId

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Member = Annotated[User, Depends(require())]
Custodian = Annotated[User, Depends(require(Role.SITE_ADMIN))]


async def _release_page(
    request: Request, user: User, status: int = 200, error: str | None = None
) -> Response:
    hub = hub_of(request)
    deliveries = await hub.run(hub.deliveries.awaiting_release, user)
    return render(request, "delivery_release.html", user, status, deliveries=deliveries, error=error)


@router.get("/deliveries/release", response_class=HTMLResponse)
async def release_page(request: Request, user: Custodian) -> Response:
    return await _release_page(request, user)


@router.post("/deliveries/parts/{task_id}/decision")
async def decide(request: Request, user: Custodian, task_id: str) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        if form_text(form, "decision") == "release":
            await hub.run(hub.deliveries.release, user, task_id_or_404(task_id))
        else:
            await hub.run(hub.deliveries.reject, user, task_id_or_404(task_id), form_text(form, "reason"))
    except HubError as error:
        return await _release_page(request, user, error.status, str(error))
    return redirect("/deliveries/release")


@router.get("/deliveries/{proposal_id}", response_class=HTMLResponse)
async def delivery_page(request: Request, user: Member, proposal_id: RowId) -> Response:
    hub = hub_of(request)
    delivery = await hub.run(hub.deliveries.get, user, proposal_id)
    team = await hub.run(hub.deliveries.on_team, user, proposal_id)
    return render(request, "delivery.html", user, delivery=delivery, team=team)


@router.get("/deliveries/{proposal_id}/download")
async def download(request: Request, user: Member, proposal_id: RowId) -> StreamingResponse:
    hub = hub_of(request)
    delivery, stream = await hub.run(hub.deliveries.download, user, proposal_id)
    name = f"delivery-proposal-{delivery.proposal_id}.tar"
    return StreamingResponse(
        stream,
        media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
