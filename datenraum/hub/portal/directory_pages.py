"""The network directory in the portal: a public listing with search, a page per site (with what it
takes part in) and per infrastructure or project (with who takes part), and the forms with which the
coordination office maintains it. Its JSON form is `directory.api`.

Reading needs no sign-in: the directory is how the network is found. The forms are shown to the
coordination office only, and the directory service refuses changes by anyone else whatever a form
says; a refused or invalid change comes back as the page with the message.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from datenraum.hub.accounts.service import User
from datenraum.hub.directory.service import Entry, EntryKind, NotAdministrator, Participation, Site
from datenraum.hub.errors import Invalid, NotFound
from datenraum.hub.portal.web import (
    checked_form,
    form_text,
    hub_of,
    optional_user,
    redirect,
    render,
    require,
    workflow_actor,
)
from datenraum.hub.roles import Role

# The office enters infrastructures and projects; biobanks come from the sites' reports.
EDITABLE_KINDS = (EntryKind.INFRASTRUCTURE, EntryKind.PROJECT)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

MaybeUser = Annotated[User | None, Depends(optional_user)]
Admin = Annotated[User, Depends(require(Role.ADMIN))]

_SITE_FIELDS = ("slug", "name", "city", "consortium", "data_integration_centre", "contact")
_ENTRY_FIELDS = ("slug", "kind", "acronym", "name", "description")


# --- public pages ------------------------------------------------------------------------------------


@router.get("/directory", response_class=HTMLResponse)
async def directory_page(request: Request, user: MaybeUser, q: str = "") -> Response:
    return await _index(request, user, q)


async def _index(
    request: Request,
    user: User | None,
    search: str,
    status: int = 200,
    error: str | None = None,
    site_values: dict[str, str] | None = None,
    entry_values: dict[str, str] | None = None,
) -> Response:
    hub = hub_of(request)
    sites = await hub.read(hub.directory.sites, search)
    entries = await hub.read(hub.directory.entries, None, search)
    return render(
        request,
        "directory.html",
        user,
        status,
        search=search,
        sites=sites,
        infrastructures=[entry for entry in entries if entry.kind is EntryKind.INFRASTRUCTURE],
        projects=[entry for entry in entries if entry.kind is EntryKind.PROJECT],
        biobanks=[entry for entry in entries if entry.kind is EntryKind.BIOBANK],
        kinds=EDITABLE_KINDS,
        site_values=site_values or {},
        entry_values=entry_values or {},
        error=error,
    )


@router.get("/directory/sites/{slug}", response_class=HTMLResponse)
async def site_page(request: Request, user: MaybeUser, slug: str) -> Response:
    return await _site(request, user, slug)


async def _site(
    request: Request, user: User | None, slug: str, status: int = 200, error: str | None = None
) -> Response:
    hub = hub_of(request)
    site, taking_part = await hub.run(hub.directory.site, slug)
    entries = await hub.run(hub.directory.entries) if user and user.has(Role.ADMIN) else []
    return render(
        request,
        "directory_site.html",
        user,
        status,
        site=site,
        taking_part=taking_part,
        entries=entries,
        error=error,
    )


@router.get("/directory/entries/{slug}", response_class=HTMLResponse)
async def entry_page(request: Request, user: MaybeUser, slug: str) -> Response:
    return await _entry(request, user, slug)


async def _entry(
    request: Request, user: User | None, slug: str, status: int = 200, error: str | None = None
) -> Response:
    hub = hub_of(request)
    entry, participants = await hub.run(hub.directory.entry, slug)
    return render(
        request,
        "directory_entry.html",
        user,
        status,
        entry=entry,
        participants=participants,
        kinds=EDITABLE_KINDS,
        error=error,
    )


# --- the coordination office's forms ----------------------------------------------------------------


@router.post("/admin/directory/sites", response_class=HTMLResponse)
async def save_site(request: Request, user: Admin) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    values = {name: form_text(form, name).strip() for name in _SITE_FIELDS}
    site = Site(
        slug=values["slug"],
        name=values["name"],
        city=values["city"],
        consortium=values["consortium"] or None,
        data_integration_centre=values["data_integration_centre"] or None,
        contact=values["contact"],
    )
    try:
        await hub.run(hub.directory.save_site, workflow_actor(user), site)
    except (Invalid, NotAdministrator) as error:
        if form_text(form, "existing").strip():
            return await _site(request, user, values["slug"], 400, str(error))
        return await _index(request, user, "", 400, str(error), site_values=values)
    return redirect(f"/directory/sites/{site.slug}", "directory-saved")


@router.post("/admin/directory/sites/{slug}/delete", response_class=HTMLResponse)
async def delete_site(request: Request, user: Admin, slug: str) -> Response:
    await checked_form(request)
    hub = hub_of(request)
    try:
        await hub.run(hub.directory.delete_site, workflow_actor(user), slug)
    except NotAdministrator as error:
        return await _site(request, user, slug, 403, str(error))
    return redirect("/directory", "directory-deleted")


@router.post("/admin/directory/entries", response_class=HTMLResponse)
async def save_entry(request: Request, user: Admin) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    values = {name: form_text(form, name).strip() for name in _ENTRY_FIELDS}
    if values["kind"] not in {kind.value for kind in EDITABLE_KINDS}:
        error = f"kind: must be one of {', '.join(EDITABLE_KINDS)}"
        return await _index(request, user, "", 400, error, entry_values=values)
    entry = Entry(
        values["slug"], EntryKind(values["kind"]), values["acronym"], values["name"], values["description"]
    )
    try:
        await hub.run(hub.directory.save_entry, workflow_actor(user), entry)
    except (Invalid, NotAdministrator) as error:
        if form_text(form, "existing").strip():
            return await _entry(request, user, values["slug"], 400, str(error))
        return await _index(request, user, "", 400, str(error), entry_values=values)
    return redirect(f"/directory/entries/{entry.slug}", "directory-saved")


@router.post("/admin/directory/entries/{slug}/delete", response_class=HTMLResponse)
async def delete_entry(request: Request, user: Admin, slug: str) -> Response:
    await checked_form(request)
    hub = hub_of(request)
    try:
        await hub.run(hub.directory.delete_entry, workflow_actor(user), slug)
    except NotAdministrator as error:
        return await _entry(request, user, slug, 403, str(error))
    return redirect("/directory", "directory-deleted")


@router.post("/admin/directory/participations", response_class=HTMLResponse)
async def set_participation(request: Request, user: Admin) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    site, entry = form_text(form, "site").strip(), form_text(form, "entry").strip()
    change = Participation(site, entry, form_text(form, "role").strip() or None)
    try:
        if form_text(form, "remove").strip():
            await hub.run(hub.directory.remove_participation, workflow_actor(user), site, entry)
        else:
            await hub.run(hub.directory.set_participation, workflow_actor(user), change)
    except (Invalid, NotAdministrator, NotFound) as error:
        return await _site(request, user, site, 400, str(error))
    return redirect(f"/directory/sites/{site}", "directory-saved")
