"""The researcher's workspace in the API (`/api/v1`): saved queries, the history of asked queries, and
the search for criteria to build queries with. The portal's query builder uses exactly these endpoints."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.runtime import HubDep, QueryUser, RowId

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["workspace"])
_NO_NUL = r"^[^\x00]*$"  # PostgreSQL cannot store the character NUL in text


class SavedQueryBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: str = Field(description="A name for the researcher's own list", pattern=_NO_NUL)
    query: dict[str, Any] = Field(description="An MII structured query (CCDL JSON)")


class SavedQueryChange(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    name: str | None = Field(None, pattern=_NO_NUL)
    query: dict[str, Any] | None = None
    last_query_id: str | None = Field(None, description="Remember this run of the query as its latest")


@router.get("/saved-queries")
async def list_saved(hub: HubDep, user: QueryUser) -> dict[str, Any]:
    return {"saved_queries": [saved.to_json() for saved in await hub.run(hub.saved_queries.list, user)]}


@router.post("/saved-queries", status_code=201)
async def save(hub: HubDep, user: QueryUser, body: SavedQueryBody) -> dict[str, Any]:
    """Save (or import) a structured query; it is checked as a submitted query would be."""
    return (await hub.run(hub.saved_queries.save, user, body.name, body.query)).to_json()


@router.get("/saved-queries/{saved_id}")
async def get_saved(hub: HubDep, user: QueryUser, saved_id: RowId) -> dict[str, Any]:
    return (await hub.run(hub.saved_queries.get, user, saved_id)).to_json()


@router.get("/saved-queries/{saved_id}/export")
async def export_saved(hub: HubDep, user: QueryUser, saved_id: RowId) -> Response:
    """The structured query alone, as a file to import into the national portal."""
    saved = await hub.run(hub.saved_queries.get, user, saved_id)
    filename = "".join(c if c.isalnum() or c in "-_" else "-" for c in saved.name)[:80] or "query"
    # HTTP headers are Latin-1: the name itself goes in RFC 6266's filename*, with an ASCII fallback.
    fallback = "".join(c if c.isascii() else "-" for c in filename)
    disposition = f"attachment; filename=\"{fallback}.json\"; filename*=UTF-8''{quote(filename)}.json"
    return Response(
        orjson.dumps(saved.readable_query(), option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={"Content-Disposition": disposition},
    )


@router.patch("/saved-queries/{saved_id}")
async def change_saved(
    hub: HubDep, user: QueryUser, saved_id: RowId, body: SavedQueryChange
) -> dict[str, Any]:
    if body.name is not None or body.query is not None:
        await hub.run(hub.saved_queries.update, user, saved_id, body.name, body.query)
    if body.last_query_id is not None:
        await hub.run(hub.saved_queries.ran, user, saved_id, body.last_query_id)
    return (await hub.run(hub.saved_queries.get, user, saved_id)).to_json()


@router.post("/saved-queries/{saved_id}/duplicate", status_code=201)
async def duplicate_saved(hub: HubDep, user: QueryUser, saved_id: RowId) -> dict[str, Any]:
    return (await hub.run(hub.saved_queries.duplicate, user, saved_id)).to_json()


@router.delete("/saved-queries/{saved_id}", status_code=204)
async def delete_saved(hub: HubDep, user: QueryUser, saved_id: RowId) -> Response:
    await hub.run(hub.saved_queries.delete, user, saved_id)
    return Response(status_code=204)


@router.get("/history")
async def history(
    hub: HubDep, user: QueryUser, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> dict[str, Any]:
    """The queries the user asked, newest first."""
    return {"history": [entry.to_json() for entry in await hub.run(hub.saved_queries.history, user, limit)]}
