"""The catalogue's documents: `/catalog` (paged) and `/catalog/datasets/{id}`, `/catalog/public`,
`/catalog/harvested/{id}`, each in Turtle, JSON-LD or RDF/XML, by suffix (`/catalog.ttl`, `.jsonld`,
`.rdf`) or by `Accept`; a browser asking for HTML is sent to the page (`/catalogue`). As ckanext-dcat
serves them, so that its harvester (and GovData's, the European portals') read them. Public: no sign-in.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from rdflib import Graph
from starlette.concurrency import run_in_threadpool

from datenraum.catalogue.paging import MAX_PAGE_SIZE
from datenraum.catalogue.serialise import FORMATS, Format, by_suffix, negotiate, serialise
from datenraum.hub.catalogue.service import Catalogue, no_series
from datenraum.hub.db import utcnow
from datenraum.hub.errors import NotFound
from datenraum.hub.runtime import Hub

__all__ = ["catalogue_of", "router"]

router = APIRouter(tags=["catalogue"])

Page = Annotated[int, Query(ge=1, le=10**6)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Search = Annotated[str, Query(max_length=200)]


def catalogue_of(request: Request) -> tuple[Hub, Catalogue]:
    """The hub's catalogue service, made on first use from the hub's services. The dashboard provides
    its public series by setting `app.state.catalogue_series` (a function returning `PublicSeries`)."""
    state = request.app.state
    hub: Hub = state.hub
    catalogue = getattr(state, "catalogue", None)
    if catalogue is None:
        series = getattr(state, "catalogue_series", None) or no_series
        # The hub's clock (tests move it), as the federation has it.
        clock = getattr(hub.federation, "_clock", None) or utcnow
        catalogue = Catalogue(hub.sessions, hub.config, hub.directory, clock, series)
        state.catalogue = catalogue
    return hub, catalogue


def _format(request: Request, suffix: str | None) -> Format | None:
    if suffix is not None:
        chosen = by_suffix(suffix)
        if chosen is None:
            known = ", ".join(f".{fmt.suffix}" for fmt in FORMATS)
            raise NotFound(f"no format {suffix!r}; use {known}")
        return chosen
    return negotiate(request.headers.get("accept"))


def _document(graph: Graph, fmt: Format, link: str | None = None) -> Response:
    headers = {"Vary": "Accept", "Access-Control-Allow-Origin": "*"}
    if link:
        headers["Link"] = f'<{link}>; rel="alternate"; type="text/html"'
    return Response(serialise(graph, fmt), media_type=fmt.media_type, headers=headers)


async def _catalog(
    request: Request,
    suffix: str | None,
    page: int,
    page_size: int,
    q: str,
    modified_since: dt.datetime | None,
) -> Response:
    fmt = _format(request, suffix)
    if fmt is None:
        return RedirectResponse("/catalogue" + (f"?q={q}" if q else ""), status_code=303)
    hub, catalogue = catalogue_of(request)
    url = hub.config.public_url.rstrip("/") + "/catalog" + (f".{suffix}" if suffix else "")
    if modified_since is not None and modified_since.tzinfo is None:
        modified_since = modified_since.replace(tzinfo=dt.UTC)
    graph = await hub.run(
        lambda: catalogue.catalog(url, page=page, page_size=page_size, q=q, modified_since=modified_since)
    )
    return _document(graph, fmt, "/catalogue")


@router.get("/catalog")
async def catalog(
    request: Request,
    page: Page = 1,
    page_size: PageSize = MAX_PAGE_SIZE,
    q: Search = "",
    modified_since: dt.datetime | None = None,
) -> Response:
    """The catalog: the hub's `dcat:Catalog` with a page of its datasets (Hydra paging), its data
    services, and its sub-catalogues (the public series, harvested catalogues)."""
    return await _catalog(request, None, page, page_size, q, modified_since)


@router.get("/catalog.{suffix}")
async def catalog_as(
    request: Request,
    suffix: str,
    page: Page = 1,
    page_size: PageSize = MAX_PAGE_SIZE,
    q: Search = "",
    modified_since: dt.datetime | None = None,
) -> Response:
    return await _catalog(request, suffix, page, page_size, q, modified_since)


@router.get("/catalog/validation")
async def validation(request: Request) -> dict[str, Any]:
    """The latest SHACL report summary of the whole catalogue (R8 non-public; DCAT-AP 3.0.1 public)."""
    _hub, catalogue = catalogue_of(request)
    # Not in the hub's turn (`Hub.run`): validating takes seconds, and it only reads the database.
    return await run_in_threadpool(catalogue.validation)


def _split(name: str) -> tuple[str, str | None]:
    stem, dot, suffix = name.rpartition(".")
    if dot and by_suffix(suffix) is not None:
        return stem, suffix
    return name, None


@router.get("/catalog/public")
async def public_catalog(request: Request) -> Response:
    return await _public(request, None)


@router.get("/catalog/public.{suffix}")
async def public_catalog_as(request: Request, suffix: str) -> Response:
    return await _public(request, suffix)


async def _public(request: Request, suffix: str | None) -> Response:
    fmt = _format(request, suffix)
    if fmt is None:
        return RedirectResponse("/catalogue?type=series", status_code=303)
    hub, catalogue = catalogue_of(request)
    return _document(await hub.run(catalogue.public), fmt, "/catalogue?type=series")


@router.get("/catalog/datasets/{name}")
async def dataset(request: Request, name: str) -> Response:
    """One dataset with everything it refers to; `{id}.ttl`, `.jsonld`, `.rdf` choose the format."""
    dataset_id, suffix = _split(name)
    fmt = _format(request, suffix)
    if fmt is None:
        return RedirectResponse(f"/catalogue/datasets/{dataset_id}", status_code=303)
    hub, catalogue = catalogue_of(request)
    graph = await hub.run(catalogue.dataset, dataset_id)
    return _document(graph, fmt, f"/catalogue/datasets/{dataset_id}")


@router.get("/catalog/harvested/{name}")
async def harvested(request: Request, name: str) -> Response:
    """A catalogue harvested from elsewhere, as a sub-catalogue that names its source."""
    source, suffix = _split(name)
    if not source.isdigit() or len(source) > 9:
        raise NotFound(f"no harvested catalogue {source!r}")
    fmt = _format(request, suffix) or by_suffix("ttl")
    hub, catalogue = catalogue_of(request)
    return _document(await hub.run(catalogue.harvested, int(source)), fmt)
