"""The researchers' sample locator API (`/api/v1/sample-searches`): start a search, follow its answers."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.accounts.service import User
from datenraum.hub.feasibility.notify import site_key, wait_for
from datenraum.hub.overload import hold_wait
from datenraum.hub.runtime import Hub, HubDep, QueryUser
from datenraum.hub.samples.service import SearchResult

__all__ = ["router", "search_key"]

router = APIRouter(prefix="/api/v1", tags=["researcher"])


def search_key(search_id: str) -> Hashable:
    return ("sample-search", search_id)


class SearchSubmission(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    query: dict[str, Any] | None = Field(None, description="An MII structured query (CCDL JSON), or none")
    samples: dict[str, Any] = Field(
        default_factory=dict, description="categories, temperatures, biobanks, diagnoses (lists)"
    )
    sites: list[str] | None = Field(None, description="Site names; every active site when left out")


async def start_search(hub: Hub, user: User, query: Any, samples: Any, sites: list[str] | None) -> str:
    """Store the search and wake the sites asked (shared with the portal's page)."""
    search_id, site_ids = await hub.run(hub.samples.submit, user, query, samples, sites)
    hub.notifier.notify(site_key(site_id) for site_id in site_ids)
    return search_id


async def next_result(hub: Hub, user: User, search_id: str, wait: float) -> SearchResult:
    """The search's result, once it is complete or `wait` s passed (woken by every site's answer); with
    `wait`, one of the user's waits (see `overload`)."""
    if wait > 0:
        hold_wait(user.id)
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    while True:
        with hub.notifier.listen(search_key(search_id)) as signal:
            result = await hub.run(hub.samples.result, user, search_id)
            if result.complete or loop.time() >= until or hub.notifier.closed:
                return result
            await wait_for(signal.changed, until - loop.time())


@router.post("/sample-searches", status_code=201)
async def submit_search(hub: HubDep, user: QueryUser, body: SearchSubmission) -> dict[str, Any]:
    """Ask the sites for their samples of a cohort; 201 with the search's id."""
    return {"id": await start_search(hub, user, body.query, body.samples, body.sites)}


@router.get("/sample-searches/{search_id}")
async def search_result(
    hub: HubDep, user: QueryUser, search_id: str, wait: Annotated[float, Query(ge=0, le=60)] = 0
) -> dict[str, Any]:
    """Per-site answers and the totals; with `wait`, once complete (or after `wait` s)."""
    return (await next_result(hub, user, search_id, wait)).to_json()
