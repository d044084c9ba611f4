"""The directory's JSON API (`/api/v1/directory`): the same public data as the directory's pages.

Reading needs no sign-in, as for the pages (`portal/directory_pages.py`); changes are made through the
coordination office's forms there, not through this API.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from datenraum.hub.directory.service import Entry, EntryKind, Site
from datenraum.hub.runtime import HubDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/directory", tags=["directory"])


def _values(value: Site | Entry) -> dict[str, Any]:
    return {name: getattr(value, name) for name in vars(value)}


@router.get("")
async def whole_directory(hub: HubDep) -> dict[str, Any]:
    """Every site with its participations, and every infrastructure and project."""
    return await hub.run(hub.directory.to_json)


@router.get("/sites")
async def api_sites(hub: HubDep, q: str = "") -> dict[str, Any]:
    """Sites whose name, city, consortium or slug contain every word of `q` (case and umlauts folded)."""
    return {"sites": [_values(site) for site in await hub.run(hub.directory.sites, q)]}


@router.get("/sites/{slug}")
async def api_site(hub: HubDep, slug: str) -> dict[str, Any]:
    site, taking_part = await hub.run(hub.directory.site, slug)
    return {
        **_values(site),
        "participations": [{"entry": entry.slug, "role": role} for entry, role in taking_part],
    }


@router.get("/entries")
async def api_entries(hub: HubDep, kind: EntryKind | None = None, q: str = "") -> dict[str, Any]:
    entries = await hub.run(hub.directory.entries, kind, q)
    return {"entries": [{**_values(entry), "kind": entry.kind.value} for entry in entries]}


@router.get("/entries/{slug}")
async def api_entry(hub: HubDep, slug: str) -> dict[str, Any]:
    entry, participants = await hub.run(hub.directory.entry, slug)
    return {
        **_values(entry),
        "kind": entry.kind.value,
        "participants": [{"site": site.slug, "role": role} for site, role in participants],
    }
