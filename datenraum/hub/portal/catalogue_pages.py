"""The FAIR catalogue in the portal: a public, searchable list of the datasets with facets (site, theme,
health category, type) and a page per dataset that leads to a feasibility query and to a proposal. Both
name their machine-readable forms (`<link rel="alternate">`: Turtle, JSON-LD, RDF/XML, `catalogue.api`).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from datenraum.catalogue.paging import matches
from datenraum.catalogue.serialise import FORMATS
from datenraum.hub.accounts.service import User
from datenraum.hub.catalogue.api import catalogue_of
from datenraum.hub.portal.web import optional_user, render

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

MaybeUser = Annotated[User | None, Depends(optional_user)]
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
