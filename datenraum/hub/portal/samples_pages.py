"""The sample locator in the portal, and the sample request items inside a proposal.

`/samples`: the search form (sample type tree, storage temperature, diagnoses, a saved query as the
cohort); `/samples/{id}`: each site's answer per biobank as it arrives (the page reloads itself while
sites are still counting) with the network's totals, and "request these samples", which adds one
request item per chosen (site, biobank) to one of the researcher's draft proposals.
`/proposals/{id}/samples`: the proposal's request items with their state, history and messages, and
the steps the reader may take (the service decides; a refused step comes back as the page with why).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from datenraum.hub.accounts.service import User
from datenraum.hub.errors import HubError, Invalid
from datenraum.hub.portal.web import (
    checked_form,
    form_text,
    hub_of,
    redirect,
    render,
    require,
    workflow_actor,
)
from datenraum.hub.proposals.sample_requests import Collection, SampleRequestForm
from datenraum.hub.proposals.sample_workflow import TRANSITIONS, ItemEvent
from datenraum.hub.proposals.workflow import State
from datenraum.hub.roles import Role
from datenraum.hub.runtime import RowId
from datenraum.hub.samples.api import next_result, start_search
from datenraum.hub.samples.service import SearchResult
from datenraum.privacy.aggregation import QuotaExceeded
from datenraum.query.biobank.terminology import CATEGORIES, TEMPERATURE_CLASSES

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

QueryingUser = Annotated[User, Depends(require(Role.RESEARCHER, Role.ADMIN))]
AnyUser = Annotated[User, Depends(require())]

_DRAFTS = (State.DRAFT, State.REVISION_REQUESTED)
_ROLE_OF_EVENT = {transition.event: transition.role for transition in TRANSITIONS}


def _groups() -> list[tuple[str, list]]:
    """The sample type tree: each group with its categories, in the terminology's order."""
    groups: dict[str, list] = {}
    for category in CATEGORIES:
        groups.setdefault(category.group, []).append(category)
    return list(groups.items())


async def _search_form(request: Request, user: User, status: int = 200, error: str | None = None) -> Response:
    hub = hub_of(request)
    saved = await hub.run(hub.saved_queries.list, user)
    sites = [site.name for site in await hub.run(hub.federation.sites) if site.active]
    return render(
        request,
        "samples.html",
        user,
        status,
        groups=_groups(),
        temperatures=TEMPERATURE_CLASSES,
        saved=saved,
        sites=sites,
        error=error,
    )


@router.get("/samples", response_class=HTMLResponse)
async def samples_page(request: Request, user: QueryingUser) -> Response:
    return await _search_form(request, user)


@router.post("/samples", response_class=HTMLResponse)
async def search_samples(request: Request, user: QueryingUser) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    diagnoses = [code.strip().upper() for code in form_text(form, "diagnoses").replace(";", ",").split(",")]
    sample_filter = {
        "categories": [value for value in form.getlist("category") if isinstance(value, str)],
        "temperatures": [value for value in form.getlist("temperature") if isinstance(value, str)],
        "diagnoses": [code for code in diagnoses if code],
    }
    if form_text(form, "biobank").strip():
        sample_filter["biobanks"] = [form_text(form, "biobank").strip()]
    sites = [value for value in form.getlist("site") if isinstance(value, str)] or None
    query = None
    try:
        cohort = form_text(form, "cohort")
        if cohort:
            if not cohort.isdigit():
                raise Invalid("cohort: choose one of your saved queries")
            query = (await hub.run(hub.saved_queries.get, user, int(cohort))).query
        search_id = await start_search(hub, user, query, sample_filter, sites)
    except QuotaExceeded as error:
        return await _search_form(request, user, 429, str(error))
    except HubError as error:
        return await _search_form(request, user, error.status, str(error))
    return redirect(f"/samples/{search_id}")


async def _result_page(
    request: Request, user: User, search_id: str, status: int = 200, error: str | None = None
) -> Response:
    hub = hub_of(request)
    result: SearchResult = await next_result(hub, user, search_id, 0)
    actor = workflow_actor(user)
    drafts = [p for p in await hub.run(hub.proposals.visible, actor) if p.state in _DRAFTS]
    labels = {category.code: category for category in CATEGORIES}
    return render(
        request,
        "samples_result.html",
        user,
        status,
        result=result,
        drafts=drafts,
        labels=labels,
        temperatures={temperature.code: temperature.label_en for temperature in TEMPERATURE_CLASSES},
        collections=Collection,
        error=error,
    )


@router.get("/samples/{search_id}", response_class=HTMLResponse)
async def search_result_page(request: Request, user: QueryingUser, search_id: str) -> Response:
    return await _result_page(request, user, search_id)


@router.post("/samples/{search_id}/request", response_class=HTMLResponse)
async def request_samples(request: Request, user: QueryingUser, search_id: str) -> Response:
    """One request item per chosen (site, biobank) of the search, with the form's access fields."""
    form = await checked_form(request)
    hub = hub_of(request)
    result = await next_result(hub, user, search_id, 0)
    answered = {
        f"{site.site_id}|{biobank.biobank}": (site, biobank)
        for site in result.sites
        if site.result is not None
        for biobank in site.result.biobanks
        if biobank.biobank is not None
    }
    chosen = [value for value in form.getlist("item") if isinstance(value, str)]
    try:
        proposal = form_text(form, "proposal")
        if not proposal.isdigit():
            raise Invalid("proposal: choose one of your draft proposals")
        if not chosen:
            raise Invalid("item: choose at least one biobank")
        forms = []
        for index, key in enumerate(chosen):
            if key not in answered:
                raise Invalid(f"item[{index}]: not a biobank of this search's answers")
            site, biobank = answered[key]
            types = sorted(
                {cell.category for cell in site.result.cells if cell.biobank == biobank.biobank}
                & {category.code for category in CATEGORIES}
            )
            forms.append(
                SampleRequestForm(
                    site_id=site.site_id,
                    biobank=biobank.name or biobank.biobank,
                    donors=_whole(form_text(form, "donors"), "donors"),
                    samples_per_donor=_whole(form_text(form, "samples_per_donor"), "samples_per_donor"),
                    sample_types=tuple(types),
                    volume=form_text(form, "volume"),
                    collection=_collection(form_text(form, "collection")),
                    storage=form_text(form, "storage"),
                )
            )
        # One item after the other: the service checks each against the proposal (its sites, its state).
        for item in forms:
            await hub.run(hub.sample_requests.add, workflow_actor(user), int(proposal), item)
    except HubError as error:
        return await _result_page(request, user, search_id, error.status, str(error))
    return redirect(f"/proposals/{proposal}/samples")


def _collection(text: str) -> Collection:
    try:
        return Collection(text)
    except ValueError:
        raise Invalid("collection: retrospective or prospective") from None


def _whole(text: str, field: str) -> int:
    if not text.strip().isdigit():
        raise Invalid(f"{field}: a whole number")
    return int(text)


# --- the request items inside a proposal ---------------------------------------------------------------


def _may_take(user: User, event: ItemEvent, site_id: int) -> bool:
    """Whether to offer the step to this reader (the service decides whether it is taken)."""
    role = _ROLE_OF_EVENT[event]
    if role is Role.SITE_ADMIN:
        return user.has(Role.SITE_ADMIN) and site_id in user.site_ids
    if role is Role.ADMIN:
        return user.has(Role.ADMIN)
    return user.has(Role.RESEARCHER)


async def _items_page(
    request: Request, user: User, proposal_id: int, status: int = 200, error: str | None = None
) -> Response:
    hub = hub_of(request)
    actor = workflow_actor(user)
    proposal = await hub.run(hub.proposals.get, actor, proposal_id)
    items = await hub.run(hub.sample_requests.items, actor, proposal_id)
    histories = {
        item.id: await hub.run(hub.sample_requests.history, actor, proposal_id, item.id) for item in items
    }
    names = {site.site_id: site.site_name for site in proposal.sites}
    steps = {
        item.id: [e for e in item.next_events if _may_take(user, e, item.form.site_id)] for item in items
    }
    return render(
        request,
        "proposal_samples.html",
        user,
        status,
        proposal=proposal,
        items=items,
        histories=histories,
        site_names=names,
        steps=steps,
        error=error,
    )


@router.get("/proposals/{proposal_id}/samples", response_class=HTMLResponse)
async def proposal_samples(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    return await _items_page(request, user, proposal_id)


@router.post("/proposals/{proposal_id}/samples/{item_id}", response_class=HTMLResponse)
async def move_item(request: Request, user: AnyUser, proposal_id: RowId, item_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        event = ItemEvent(form_text(form, "event"))
    except ValueError:
        return await _items_page(request, user, proposal_id, 400, "event: not a step of a sample request")
    try:
        await hub.run(
            hub.sample_requests.move,
            workflow_actor(user),
            proposal_id,
            item_id,
            event,
            form_text(form, "message"),
        )
    except HubError as error:
        return await _items_page(request, user, proposal_id, error.status, str(error))
    return redirect(f"/proposals/{proposal_id}/samples")
