"""The researcher API (`/api/v1`, docs/federation-api.md): submit queries, follow their results."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.accounts.service import User
from datenraum.hub.feasibility.notify import query_key, site_key, wait_for
from datenraum.hub.feasibility.service import QueryResult
from datenraum.hub.overload import hold_wait
from datenraum.hub.runtime import CurrentUser, Hub, HubDep, QueryUser

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["researcher"])

# An idle event stream sends a comment this often, so proxies do not take it for dead.
KEEPALIVE_SECONDS = 15.0
# How long a long-poll may hold back a newer, unfinished result to gather further changes into it.
GATHER_SECONDS = 0.2


class QuerySubmission(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    query: dict[str, Any] = Field(description="An MII structured query (CCDL JSON)")
    sites: list[str] | None = Field(None, description="Site names; every active site when left out")
    distinct_persons: bool = Field(
        False, description="Also count distinct persons across the sites (through the linkage unit)"
    )


async def _next_result(hub: Hub, user: User, query_id: str, since: int | None, wait: float) -> QueryResult:
    """The query's result once its version exceeds `since` (or it is complete, or `wait` s passed).

    A newer result that is not complete yet is held back for up to GATHER_SECONDS, sleeping through
    partial changes (see `notify`): the sites of a query start and answer within moments of each other,
    and reading and sending the whole result once per site and change would cost the hub more than the
    sites' answers. The complete result goes out at once. A call that may wait counts as one of the
    user's waits from the start (see `overload`), and is refused beyond their bound before any work.
    """
    if since is not None and wait > 0:
        hold_wait(user.id)
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    gathering = False
    while True:
        with hub.notifier.listen(query_key(query_id)) as signal:
            result = await hub.run(hub.federation.result, user, query_id)
            if since is None or result.complete or loop.time() >= until or hub.notifier.closed:
                return result
            if result.version > since and not gathering:
                gathering = True
                until = min(until, loop.time() + GATHER_SECONDS)
            await wait_for(signal.decisive if gathering else signal.changed, until - loop.time())


@router.post("/queries", status_code=201)
async def submit_query(
    hub: HubDep, user: QueryUser, body: QuerySubmission, response: Response
) -> dict[str, Any]:
    """Ask the sites; 201 with a new query id, or 200 with an identical recent query's id (`reused`)."""
    submission = await hub.run(hub.federation.submit, user, body.query, body.sites, body.distinct_persons)
    hub.notifier.notify(site_key(site_id) for site_id in submission.site_ids)
    if submission.reused:
        response.status_code = 200
    return {"id": submission.query_id, "reused": submission.reused}


@router.get("/queries/{query_id}")
async def query_result(
    hub: HubDep,
    user: QueryUser,
    query_id: str,
    wait: Annotated[float, Query(ge=0, le=60)] = 0,
    since: Annotated[int | None, Query(ge=0)] = None,
) -> dict[str, Any]:
    """Per-site answers and the total; with `wait` and `since`, once there is something newer than `since`."""
    result = await _next_result(hub, user, query_id, since, wait)
    return result.to_json()


@router.get("/queries/{query_id}/events", response_class=StreamingResponse)
async def query_events(
    hub: HubDep,
    user: QueryUser,
    query_id: str,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> StreamingResponse:
    """The result as server-sent events (`id` = version), one per change, closing when complete."""
    first = await hub.run(hub.federation.result, user, query_id)  # 404 before the stream starts
    if not first.complete:
        hold_wait(user.id)  # refused before the stream starts, too; held until it ends

    async def events() -> AsyncIterator[bytes]:
        result, sent = first, last_event_id
        while True:
            if sent is None or result.version > sent:
                yield b"id: %d\ndata: %s\n\n" % (result.version, orjson.dumps(result.to_json()))
                sent = result.version
            elif not result.complete:
                yield b": keep-alive\n\n"
            if result.complete or hub.notifier.closed:
                return
            result = await _next_result(hub, user, query_id, sent, KEEPALIVE_SECONDS)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("/sites")
async def list_sites(hub: HubDep, user: CurrentUser) -> dict[str, Any]:
    """Every registered site, active or revoked, with when it was last seen."""
    return {"sites": [site.to_json() for site in await hub.read(hub.federation.sites)]}
