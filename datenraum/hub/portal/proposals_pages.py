"""The Use & Access pages: proposals from draft to delivered, what waits for whom, documents,
notifications and export.

Every page goes through the proposals service, and the service through the workflow: a page offers
the actions `Proposal.allowed` lists, and a posted action is decided again by the service, so a form
sent by hand is refused exactly as a hidden button would have been. Refusals and bad input come back
as the page they came from with the reason (400 bad input, 403 not this person, 409 not now); a
proposal the person may not see is "not found", like one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from collections.abc import Iterable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import FormData, UploadFile

from datenraum.hub.accounts.service import User
from datenraum.hub.errors import Conflict, Invalid, NotFound
from datenraum.hub.portal.web import (
    checked_form,
    form_text,
    hub_of,
    redirect,
    render,
    require,
    workflow_actor,
)
from datenraum.hub.proposals.uploads import UploadRejected
from datenraum.hub.proposals.values import (
    KDS_MODULES,
    Analysis,
    CohortQuery,
    DocumentKind,
    Draft,
    ProjectRole,
    Proposal,
    Summary,
    TeamMember,
)
from datenraum.hub.proposals.workflow import TRANSITIONS, Action, State, TransitionError
from datenraum.hub.roles import Role
from datenraum.hub.runtime import Hub, RowId, row_id

__all__ = ["UPLOAD_PATHS", "router"]

router = APIRouter(include_in_schema=False)

# The forms that carry a document: the body size limit lets them be as large as an upload may be.
UPLOAD_PATHS = re.compile(r"/proposals/(new|\d+/edit|\d+/documents)")

AnyUser = Annotated[User, Depends(require())]
Researcher = Annotated[User, Depends(require(Role.RESEARCHER))]

REASON_REQUIRED = frozenset(t.action for t in TRANSITIONS if t.reason_required)
# Taken with forms of their own (the draft form, the publication form), not with the action buttons.
_OWN_FORMS = frozenset({Action.EDIT, Action.ADD_PUBLICATION})
_SITE_ACTIONS = frozenset({Action.SITE_AGREE, Action.SITE_DECLINE})
_BLANK_TEAM_ROWS = 2
# Browsers send a file's own name. One with folders or ".." in it was written to reach a place on the
# hub; it is refused, so that nobody believes it worked (the store never uses names as paths anyway).
_PATH_TRICK = re.compile(r"[/\\]|^\.\.|\x00")


def _texts(form: FormData, name: str) -> list[str]:
    return [value for value in form.getlist(name) if isinstance(value, str)]


# --- lists -------------------------------------------------------------------------------------------


@router.get("/proposals", response_class=HTMLResponse)
async def list_page(request: Request, user: AnyUser, state: str = "") -> Response:
    hub = hub_of(request)
    chosen = State(state) if state in {s.value for s in State} else None
    summaries = await hub.run(hub.proposals.visible, workflow_actor(user), chosen)
    return await _summaries_page(request, user, summaries, chosen, waiting=False)


@router.get("/proposals/waiting", response_class=HTMLResponse)
async def waiting_page(request: Request, user: AnyUser) -> Response:
    """The dashboard of every role: the proposals whose next step is this person's."""
    hub = hub_of(request)
    summaries = await hub.run(hub.proposals.waiting_for, workflow_actor(user))
    return await _summaries_page(request, user, summaries, None, waiting=True)


async def _summaries_page(
    request: Request, user: User, summaries: list[Summary], chosen: State | None, *, waiting: bool
) -> Response:
    hub = hub_of(request)
    owners = await hub.run(hub.users.emails, [summary.owner_id for summary in summaries])
    return render(
        request,
        "proposals.html",
        user,
        summaries=summaries,
        owners=owners,
        chosen=chosen,
        states=State,
        waiting=waiting,
    )


# --- writing a draft ---------------------------------------------------------------------------------


@router.get("/proposals/new", response_class=HTMLResponse)
async def new_page(request: Request, user: Researcher) -> Response:
    return await _form_page(request, user, None, Draft())


@router.post("/proposals/new", response_class=HTMLResponse)
async def create(request: Request, user: Researcher) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    draft, problem, invited = await _read_draft(hub, user, form, Draft())
    again = {"stored": Draft(), "chosen": _texts(form, "cohort"), "invited": invited}
    if problem:
        return await _form_page(request, user, None, draft, 400, problem, **again)
    try:
        proposal_id = await hub.run(hub.proposals.create, workflow_actor(user), draft)
    except (Invalid, TransitionError) as error:
        return await _form_page(request, user, None, draft, 400, str(error), **again)
    await hub.run(hub.invitations.replace, proposal_id, invited)
    problem = await _upload_ethics_vote(hub, user, proposal_id, form)
    if problem:
        return await _form_page(request, user, proposal_id, draft, 400, problem)
    return redirect(f"/proposals/{proposal_id}", "proposal-created")


@router.get("/proposals/{proposal_id}/edit", response_class=HTMLResponse)
async def edit_page(request: Request, user: Researcher, proposal_id: RowId) -> Response:
    hub = hub_of(request)
    proposal = await hub.run(hub.proposals.get, workflow_actor(user), proposal_id)
    if Action.EDIT not in proposal.allowed:
        return await _proposal_page(
            request, user, proposal_id, 409, f"edit: not possible now ({proposal.state})"
        )
    return await _form_page(request, user, proposal_id, proposal.draft)


@router.post("/proposals/{proposal_id}/edit", response_class=HTMLResponse)
async def edit(request: Request, user: Researcher, proposal_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    current = await hub.run(hub.proposals.get, workflow_actor(user), proposal_id)
    draft, problem, invited = await _read_draft(hub, user, form, current.draft)
    again = {"stored": current.draft, "chosen": _texts(form, "cohort"), "invited": invited}
    if problem:
        return await _form_page(request, user, proposal_id, draft, 400, problem, **again)
    try:
        await hub.run(hub.proposals.edit, workflow_actor(user), proposal_id, draft)
    except Invalid as error:
        return await _form_page(request, user, proposal_id, draft, 400, str(error), **again)
    except TransitionError as error:
        return await _proposal_page(request, user, proposal_id, error.status, str(error))
    await hub.run(hub.invitations.replace, proposal_id, invited)
    problem = await _upload_ethics_vote(hub, user, proposal_id, form)
    if problem:
        return await _form_page(request, user, proposal_id, draft, 400, problem)
    return redirect(f"/proposals/{proposal_id}", "proposal-saved")


async def _form_page(
    request: Request,
    user: User,
    proposal_id: int | None,
    draft: Draft,
    status: int = 200,
    error: str | None = None,
    *,
    stored: Draft | None = None,
    invited: list[tuple[str, str]] | None = None,
    chosen: Iterable[str] | None = None,
) -> Response:
    """The draft form. Its cohort lists the entries the proposal has now (`stored`, by position) and the
    saved queries not among them; `chosen` are the boxes to tick (the form's own, when it comes back)."""
    hub = hub_of(request)
    stored = draft if stored is None else stored
    chosen = {f"kept:{i}" for i in range(len(stored.cohort))} if chosen is None else set(chosen)
    saved = await hub.run(hub.saved_queries.list, user)
    present = {(entry.name, _canonical(entry.query)) for entry in stored.cohort}
    offered = [
        query
        for query in saved
        if query.query is not None and (query.name, _canonical(query.query)) not in present
    ]
    sites = await hub.run(hub.sites.sites)
    if invited is None:
        invited = [] if proposal_id is None else await hub.read(hub.invitations.of, proposal_id)
    team = await _team_rows(hub, draft, invited)
    return render(
        request,
        "proposal_form.html",
        user,
        status,
        proposal_id=proposal_id,
        draft=draft,
        kept=stored.cohort,
        chosen=chosen,
        offered=offered,
        sites=sites,
        modules=sorted(KDS_MODULES),
        analyses=Analysis,
        project_roles=ProjectRole,
        team=team + [("", ProjectRole.DATA_SCIENTIST.value)] * _BLANK_TEAM_ROWS,
        max_upload=hub.config.upload_max_bytes,
        error=error,
    )


async def _team_rows(hub: Hub, draft: Draft, invited: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The team as (address, project role), members and invitations alike, by address (see `invitations`)."""
    members = await hub.run(hub.users.emails, [member.user_id for member in draft.team])
    rows = [(members.get(member.user_id, ""), member.project_role.value) for member in draft.team]
    return sorted(rows + list(invited))


async def _read_draft(
    hub: Hub, user: User, form: FormData, current: Draft
) -> tuple[Draft, str | None, list[tuple[str, str]]]:
    """The draft the form describes, what is wrong with it (one message naming each field), so that the
    form can come back with everything entered still in it, and the addresses invited to the team."""
    problems: list[str] = []
    invited: list[tuple[str, str]] = []
    cohort = await _cohort(hub, user, _texts(form, "cohort"), current, problems)
    analysis = form_text(form, "analysis")
    if analysis and analysis not in {a.value for a in Analysis}:
        problems.append(f"analysis: must be one of {', '.join(Analysis)}")
    site_ids = []
    for value in _texts(form, "site_ids"):
        site_id = row_id(value)
        if site_id is not None:
            site_ids.append(site_id)
        else:
            problems.append(f"site_ids: {value!r} is not a site")
    draft = Draft(
        title=form_text(form, "title").strip(),
        abstract=form_text(form, "abstract").strip(),
        questions=tuple(line.strip() for line in form_text(form, "questions").splitlines() if line.strip()),
        cohort=tuple(cohort),
        modules=tuple(_texts(form, "modules")),
        data_from=_date(form, "data_from", problems),
        data_to=_date(form, "data_to", problems),
        biosamples=form_text(form, "biosamples").strip(),
        analysis=Analysis(analysis) if analysis in {a.value for a in Analysis} else None,
        site_ids=tuple(site_ids),
        start=_date(form, "start", problems),
        end=_date(form, "end", problems),
        team=tuple(
            await _team(hub, _texts(form, "team_email"), _texts(form, "team_role"), problems, invited)
        ),
    )
    return draft, "; ".join(problems) or None, invited


async def _cohort(
    hub: Hub, user: User, chosen: Iterable[str], current: Draft, problems: list[str]
) -> list[CohortQuery]:
    """The cohort entries kept from the draft, and the researcher's saved queries newly chosen, each with
    the counts of its latest run (frozen into the proposal when it is submitted)."""
    cohort = []
    for value in chosen:
        kind, _, number = value.partition(":")
        position = _position(number)
        if kind == "kept" and position is not None and position < len(current.cohort):
            cohort.append(current.cohort[position])
        elif kind == "saved" and (saved_id := row_id(number)) is not None:
            try:
                saved = await hub.run(hub.saved_queries.get, user, saved_id)
                query = saved.readable_query()
            except (NotFound, Conflict) as error:
                problems.append(f"cohort: {error}")
                continue
            total, site_counts = await _latest_counts(hub, user, saved.last_query_id)
            cohort.append(CohortQuery(saved.name, query, total, site_counts))
        else:
            problems.append(f"cohort: {value!r} is not a saved query")
    return cohort


def _position(text: str) -> int | None:
    """A position in a list (0, 1, ...), written in ASCII digits; None for anything else."""
    return int(text) if text.isascii() and text.isdecimal() and len(text) <= 6 else None


async def _latest_counts(
    hub: Hub, user: User, query_id: str | None
) -> tuple[int | None, dict[str, int | None]]:
    """The total and per-site counts of a run as the researcher saw them (obfuscated; None for a site below
    its threshold, no total where too few sites answered); nothing for a query never run."""
    if query_id is None:
        return None, {}
    try:
        result = await hub.run(hub.federation.result, user, query_id)
    except NotFound:
        return None, {}
    site_counts = {
        answer.site: answer.count.obfuscated for answer in result.sites if answer.count is not None
    }
    return (None if result.total is None else result.total.value), site_counts


_TEAM_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]+")


async def _team(
    hub: Hub,
    emails: list[str],
    roles: list[str],
    problems: list[str],
    invited: list[tuple[str, str]],
) -> list[TeamMember]:
    """The members among the addresses entered (those with approved accounts); the others are added to
    `invited`. Nothing said here depends on whether an address has an account (see `invitations`)."""
    rows = [
        (email.strip().lower(), role) for email, role in zip(emails, roles, strict=False) if email.strip()
    ]
    known = await hub.run(hub.users.approved_ids, [email for email, _ in rows])
    team = []
    for index, (email, role) in enumerate(rows):
        if len(email) > 320 or not _TEAM_EMAIL.fullmatch(email) or not email.isprintable():
            problems.append(f"team[{index}]: not an e-mail address")
        elif role not in {r.value for r in ProjectRole}:
            problems.append(f"team[{index}].project_role: must be one of {', '.join(ProjectRole)}")
        elif email in known:
            team.append(TeamMember(known[email], ProjectRole(role)))
        else:
            invited.append((email, role))
    return team


def _date(form: FormData, name: str, problems: list[str]) -> dt.date | None:
    value = form_text(form, name).strip()
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        problems.append(f"{name}: {value!r} is not a date (YYYY-MM-DD)")
        return None


def _canonical(query: object) -> str:
    """A query's identity whatever the order of its keys (PostgreSQL's JSONB does not keep it)."""
    return json.dumps(query, sort_keys=True)


async def _upload_ethics_vote(hub: Hub, user: User, proposal_id: int, form: FormData) -> str | None:
    """Store the ethics vote sent with the draft form, if one was; the refusal's text, if refused."""
    upload = form.get("ethics_vote")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return None
    return await _store_document(hub, user, proposal_id, DocumentKind.ETHICS_VOTE.value, upload)


async def _store_document(
    hub: Hub, user: User, proposal_id: int, kind: str, upload: UploadFile
) -> str | None:
    """Check and store an uploaded document; the refusal's text, naming the file, if refused."""
    name = upload.filename or ""
    if _PATH_TRICK.search(name):
        return f"{name}: a file name must not contain folders or '..'; upload the file under its own name"
    content = await upload.read()
    store = functools.partial(hub.proposals.upload, workflow_actor(user), proposal_id, kind, name, content)
    try:
        await hub.run(store)
    except (UploadRejected, Invalid) as error:
        return str(error)
    return None


# --- the proposal page and its actions ---------------------------------------------------------------


@router.get("/proposals/{proposal_id}", response_class=HTMLResponse)
async def proposal_page(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    return await _proposal_page(request, user, proposal_id)


async def _proposal_page(
    request: Request, user: User, proposal_id: int, status: int = 200, error: str | None = None
) -> Response:
    hub = hub_of(request)
    acting = workflow_actor(user)
    proposal = await hub.read(hub.proposals.get, acting, proposal_id)
    timeline = await hub.read(hub.proposals.timeline, acting, proposal_id)
    people = await hub.read(hub.users.emails, _people(proposal))
    team = await _team_rows(hub, proposal.draft, await hub.read(hub.invitations.of, proposal_id))
    decidable = [site for site in proposal.sites if site.site_id in user.site_ids and site.agreed is None]
    return render(
        request,
        "proposal.html",
        user,
        status,
        proposal=proposal,
        draft=proposal.draft,
        timeline=timeline,
        people=people,
        team=team,
        actions=[action for action in proposal.allowed if action not in _OWN_FORMS],
        may_edit=Action.EDIT in proposal.allowed,
        may_publish=Action.ADD_PUBLICATION in proposal.allowed,
        reason_required=REASON_REQUIRED,
        site_actions=_SITE_ACTIONS,
        decidable=decidable,
        sites_by_id={site.site_id: site.site_name for site in proposal.sites},
        document_kinds=DocumentKind,
        max_upload=hub.config.upload_max_bytes,
        error=error,
    )


def _people(proposal: Proposal) -> set[int]:
    return {
        proposal.owner_id,
        *(member.user_id for member in proposal.draft.team),
        *(vote.user_id for vote in proposal.votes),
        *(site.decided_by for site in proposal.sites if site.decided_by is not None),
        *(document.uploaded_by for document in proposal.documents),
        *(publication.added_by for publication in proposal.publications),
    }


@router.post("/proposals/{proposal_id}/actions/{name}", response_class=HTMLResponse)
async def take_action(request: Request, user: AnyUser, proposal_id: RowId, name: str) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    if name not in {action.value for action in Action} or Action(name) in _OWN_FORMS:
        return await _proposal_page(request, user, proposal_id, 404, f"action: no action {name!r} here")
    action = Action(name)
    site = form_text(form, "site_id")
    site_id = row_id(site) if site else None
    if site and site_id is None:
        return await _proposal_page(request, user, proposal_id, 400, f"site_id: {site!r} is not a site")
    apply = functools.partial(
        hub.proposals.apply,
        workflow_actor(user),
        proposal_id,
        action,
        reason=form_text(form, "reason").strip() or None,
        site_id=site_id,
    )
    try:
        await hub.run(apply)
    except TransitionError as error:
        return await _proposal_page(request, user, proposal_id, error.status, str(error))
    except Invalid as error:
        return await _proposal_page(request, user, proposal_id, 400, str(error))
    return redirect(f"/proposals/{proposal_id}", "proposal-action-done")


@router.post("/proposals/{proposal_id}/comments", response_class=HTMLResponse)
async def comment(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        await hub.run(
            hub.proposals.comment, workflow_actor(user), proposal_id, form_text(form, "text").strip()
        )
    except Invalid as error:
        return await _proposal_page(request, user, proposal_id, 400, str(error))
    return redirect(f"/proposals/{proposal_id}", "proposal-commented")


@router.post("/proposals/{proposal_id}/documents", response_class=HTMLResponse)
async def upload(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        problem: str | None = "file: choose a file to upload"
    else:
        problem = await _store_document(hub, user, proposal_id, form_text(form, "kind"), file)
    if problem:
        return await _proposal_page(request, user, proposal_id, 400, problem)
    return redirect(f"/proposals/{proposal_id}", "proposal-uploaded")


@router.get("/proposals/{proposal_id}/documents/{document_id}")
async def download(request: Request, user: AnyUser, proposal_id: RowId, document_id: RowId) -> Response:
    hub = hub_of(request)
    document, content = await hub.run(hub.proposals.document, workflow_actor(user), proposal_id, document_id)
    media_type = f"{document.media_type}; charset=utf-8" if document.media_type == "text/plain" else None
    return Response(
        content,
        media_type=media_type or document.media_type,
        headers={"Content-Disposition": _attachment(document.file_name)},
    )


def _attachment(file_name: str) -> str:
    """A Content-Disposition that always downloads (never shows the file in the portal's origin), with
    the name in UTF-8 for browsers and an ASCII stand-in, without quotes or backslashes, for the rest."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in file_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


@router.post("/proposals/{proposal_id}/publications", response_class=HTMLResponse)
async def add_publication(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    add = functools.partial(
        hub.proposals.add_publication,
        workflow_actor(user),
        proposal_id,
        form_text(form, "title").strip(),
        form_text(form, "reference").strip(),
    )
    try:
        await hub.run(add)
    except TransitionError as error:
        return await _proposal_page(request, user, proposal_id, error.status, str(error))
    except Invalid as error:
        return await _proposal_page(request, user, proposal_id, 400, str(error))
    return redirect(f"/proposals/{proposal_id}", "proposal-published")


@router.get("/proposals/{proposal_id}/export.json")
async def export_json(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    hub = hub_of(request)
    document = await hub.run(hub.proposals.export_json, workflow_actor(user), proposal_id)
    return JSONResponse(
        document, headers={"Content-Disposition": _attachment(f"proposal-{proposal_id}.json")}
    )


@router.get("/proposals/{proposal_id}/export.pdf")
async def export_pdf(request: Request, user: AnyUser, proposal_id: RowId) -> Response:
    hub = hub_of(request)
    content = await hub.run(hub.proposals.export_pdf, workflow_actor(user), proposal_id)
    return Response(
        content,
        media_type="application/pdf",
        headers={"Content-Disposition": _attachment(f"proposal-{proposal_id}.pdf")},
    )


# --- notifications -----------------------------------------------------------------------------------


@router.get("/notifications", response_class=HTMLResponse)
async def notifications_page(request: Request, user: AnyUser) -> Response:
    hub = hub_of(request)
    notifications = await hub.read(hub.proposals.notifications, workflow_actor(user))
    return render(request, "notifications.html", user, notifications=notifications)


@router.post("/notifications/read")
async def mark_read(request: Request, user: AnyUser) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    acting = workflow_actor(user)
    if form_text(form, "all"):
        ids = [
            n.id
            for n in await hub.run(functools.partial(hub.proposals.notifications, acting, unread_only=True))
        ]
    else:
        values = _texts(form, "id")
        ids = [number for number in map(row_id, values) if number is not None]
        if len(ids) < len(values):
            raise HTTPException(400, "id: not the id of a notification")
    await hub.run(hub.proposals.mark_read, acting, ids)
    return redirect("/notifications", "notifications-read")
