"""The FAIR catalogue in the portal: a public, searchable list of the datasets with facets (site, theme,
health category, type) and a page per dataset that leads to a feasibility query and to a proposal. Both
name their machine-readable forms (`<link rel="alternate">`: Turtle, JSON-LD, RDF/XML, `catalogue.api`).

`/catalogue/harvest` is the page for other catalogues: public, what they harvest from us (the documents,
their paging and filters, the validation summary); for the coordination office also the form that
harvests another catalogue and the list of catalogues harvested so far.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from datenraum.catalogue.paging import MAX_PAGE_SIZE, matches
from datenraum.catalogue.serialise import FORMATS
from datenraum.hub.accounts.service import User
from datenraum.hub.catalogue.api import catalogue_of
from datenraum.hub.errors import Conflict, Invalid
from datenraum.hub.portal.web import (
    actor,
    checked_form,
    form_text,
    optional_user,
    render,
    require,
    workflow_actor,
)
from datenraum.hub.roles import Role

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

MaybeUser = Annotated[User | None, Depends(optional_user)]
Admin = Annotated[User, Depends(require(Role.ADMIN))]
Facet = Annotated[str, Query(max_length=100)]
_FACETS = ("site", "theme", "category", "type")


def _facets(record) -> dict[str, str]:
    return {
        "site": record.site or "",
        "theme": record.theme,
        "category": record.health_category or "",
        "type": record.kind.value,
    }


@router.get("/catalogue", response_class=HTMLResponse)
async def catalogue_page(
    request: Request,
    user: MaybeUser,
    q: Annotated[str, Query(max_length=200)] = "",
    site: Facet = "",
    theme: Facet = "",
    category: Facet = "",
    type: Facet = "",
) -> Response:
    hub, catalogue = catalogue_of(request)
    _network, records = await hub.run(catalogue.records)
    chosen = {"site": site, "theme": theme, "category": category, "type": type}
    searched = [record for record in records if matches(record, q)]
    shown = [
        record
        for record in searched
        if all(not value or _facets(record)[name] == value for name, value in chosen.items())
    ]
    counts = {name: Counter(_facets(r)[name] for r in searched if _facets(r)[name]) for name in _FACETS}
    return render(
        request,
        "catalogue.html",
        user,
        search=q,
        chosen=chosen,
        records=shown,
        facets={name: sorted(counts[name].items()) for name in _FACETS},
        alternates=[(fmt.media_type, f"/catalog.{fmt.suffix}") for fmt in FORMATS],
    )


@router.get("/catalogue/datasets/{dataset_id}", response_class=HTMLResponse)
async def dataset_page(request: Request, user: MaybeUser, dataset_id: str) -> Response:
    hub, catalogue = catalogue_of(request)
    _network, record = await hub.run(catalogue.find, dataset_id)
    return render(
        request,
        "catalogue_dataset.html",
        user,
        record=record,
        figures=record.source if record.kind.value == "site" else None,
        alternates=[(fmt.media_type, f"/catalog/datasets/{record.id}.{fmt.suffix}") for fmt in FORMATS],
    )


async def _harvest_page(
    request: Request, user: User | None, status: int = 200, **context: object
) -> Response:
    hub, catalogue = catalogue_of(request)
    office = user is not None and user.has(Role.ADMIN)
    return render(
        request,
        "catalogue_harvest.html",
        user,
        status,
        documents=[(fmt.media_type, f"/catalog.{fmt.suffix}") for fmt in FORMATS],
        max_page_size=MAX_PAGE_SIZE,
        sources=await hub.run(catalogue.sources) if office else [],
        office=office,
        **context,
    )


@router.get("/catalogue/harvest", response_class=HTMLResponse)
async def harvest_page(request: Request, user: MaybeUser) -> Response:
    return await _harvest_page(request, user)


@router.post("/catalogue/harvest", response_class=HTMLResponse)
async def harvest(request: Request, user: Admin) -> Response:
    """Harvest another catalogue now; the page shows what came of it (a failed fetch too: the office
    learns why; the audit log keeps the attempt, and nothing else of a failed harvest is stored)."""
    form = await checked_form(request)
    hub, catalogue = catalogue_of(request)
    url, title = form_text(form, "url").strip(), form_text(form, "title").strip()[:300]
    source = actor(request, user)
    try:
        # Outside the hub's turns: the catalogue may be this hub's own, which answers in its turn.
        harvested = await run_in_threadpool(catalogue.fetch, workflow_actor(user), url)
    except Invalid as error:
        return await _harvest_page(request, user, 422, error=str(error), url=url, title=title)
    except Conflict as error:
        await hub.run(catalogue.note_failure, url, str(error), source)
        return await _harvest_page(request, user, error=str(error), url=url, title=title)
    summary = await hub.run(catalogue.keep, url, harvested, title, source)
    return await _harvest_page(request, user, summary=summary)
