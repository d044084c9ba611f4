"""Prospective studies in the portal: the study list, a study's set-up page (set-up, sites, study roles,
recruitment status with its history, the sites' enrolment), its design (arms, visits and their forms, the
form versions), the form designer, the randomisation page of the statistician, and "create a study from a
REDCap dictionary".

Every change goes through `hub.studies` / `hub.randomisations`, which decide who may do it (a form sent by
hand is refused as a missing button suggests); a refused change comes back as the page with the message.
The designer saves through the study API (`POST /api/v1/studies/{code}/forms`) with the page's CSRF token,
and shows the hub's error next to the item its JSON path names. Its preview renders with the vendored
lforms (`datenraum.studies.lforms`), served here under `/studies/lforms/`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from datenraum.hub.accounts.service import User
from datenraum.hub.errors import HubError, Invalid
from datenraum.hub.portal.i18n import texts_for
from datenraum.hub.portal.web import (
    actor,
    checked_form,
    form_text,
    hub_of,
    language,
    redirect,
    render,
    require,
)
from datenraum.hub.studies.randomisation import MAX_SEQUENCE
from datenraum.hub.studies.service import TRANSITIONS, StudySetUp, StudyView
from datenraum.protocol.studies import SITE_ROLES, RecruitmentStatus, StudyRole
from datenraum.studies import lforms

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

AnyUser = Annotated[User, Depends(require())]


def _set_up(form: Any) -> StudySetUp:
    eligibility = None
    text = form_text(form, "eligibility").strip()
    if text:
        try:
            eligibility = json.loads(text)
        except json.JSONDecodeError as error:
            raise Invalid(
                f"eligibility: not JSON (line {error.lineno}, column {error.colno}: {error.msg})"
            ) from None
        if not isinstance(eligibility, dict):
            raise Invalid("eligibility: a CCDL structured query is a JSON object")
    return StudySetUp(
        form_text(form, "title"),
        form_text(form, "acronym"),
        form_text(form, "registry_id") or None,
        form_text(form, "ethics_vote") or None,
        eligibility,
    )


def _whole(text: str, field: str, low: int = 0) -> int:
    stripped = text.strip()
    number = stripped.removeprefix("-")
    if not number.isascii() or not number.isdecimal() or len(number) > 6 or int(stripped) < low:
        raise Invalid(f"{field}: a whole number of at least {low}")
    return int(stripped)


# --- the list and a new study ------------------------------------------------------------------------


async def _list(
    request: Request, user: User, status: int = 200, error: str | None = None, **values: str
) -> Response:
    hub = hub_of(request)
    studies = await hub.read(hub.studies.visible, user)
    return render(request, "studies.html", user, status, studies=studies, error=error, values=values)


@router.get("/studies", response_class=HTMLResponse)
async def studies_page(request: Request, user: AnyUser) -> Response:
    return await _list(request, user)


@router.post("/studies", response_class=HTMLResponse)
async def create_study(request: Request, user: AnyUser) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    code = form_text(form, "code").strip()
    try:
        await hub.run(hub.studies.create, user, code, _set_up(form), actor(request, user))
    except HubError as error:
        values = {
            name: form_text(form, name) for name in ("code", "title", "acronym", "registry_id", "ethics_vote")
        }
        return await _list(request, user, error.status, str(error), **values)
    return redirect(f"/studies/{code}", "study_created")


# --- a REDCap dictionary -----------------------------------------------------------------------------

_REDCAP_FIELDS = ("code", "title", "acronym", "registry_id", "ethics_vote")


@router.get("/studies/redcap", response_class=HTMLResponse)
async def redcap_page(request: Request, user: AnyUser) -> Response:
    return render(request, "studies_redcap.html", user, values={}, conversion=None, code=None, error=None)


@router.post("/studies/redcap", response_class=HTMLResponse)
async def create_from_redcap(request: Request, user: AnyUser) -> Response:
    """A new study with one form per instrument of the uploaded dictionary, and the conversion report."""
    form = await checked_form(request)
    hub = hub_of(request)
    values = {name: form_text(form, name) for name in _REDCAP_FIELDS}
    upload = form.get("dictionary")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise Invalid("dictionary: choose the data dictionary's CSV file")
        try:
            text = (await upload.read()).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise Invalid(f"dictionary: {upload.filename} is not UTF-8 text (byte {error.start})") from None
        code = values["code"].strip()
        conversion = await hub.run(
            hub.studies.create_from_dictionary,
            user,
            code,
            _set_up(form),
            text,
            upload.filename,
            actor(request, user),
        )
    except HubError as error:
        return render(
            request,
            "studies_redcap.html",
            user,
            error.status,
            values=values,
            conversion=None,
            code=None,
            error=str(error),
        )
    statuses = Counter(field.status for field in conversion.report)
    return render(
        request,
        "studies_redcap.html",
        user,
        values=values,
        conversion=conversion,
        code=code,
        statuses=sorted(statuses.items()),
        error=None,
    )


# --- the vendored form renderer ----------------------------------------------------------------------


@router.get("/studies/lforms/{name:path}")
async def lforms_file(name: str) -> Response:
    try:
        body = lforms.asset(name)
    except lforms.UnknownAsset:
        return Response(status_code=404)
    return Response(
        body, media_type=lforms.media_type(name), headers={"Cache-Control": "public, max-age=86400"}
    )


# --- one study ---------------------------------------------------------------------------------------


async def _study(
    request: Request,
    user: User,
    code: str,
    status: int = 200,
    error: str | None = None,
    template: str = "study.html",
) -> Response:
    hub = hub_of(request)
    view: StudyView = await hub.read(hub.studies.view, user, code)
    sites = [site.name for site in await hub.read(hub.federation.sites) if site.active]
    return render(
        request,
        template,
        user,
        status,
        study=view,
        all_sites=sites,
        next_statuses=sorted(TRANSITIONS[view.status], key=list(RecruitmentStatus).index),
        roles=list(StudyRole),
        site_roles=SITE_ROLES,
        error=error,
    )


@router.get("/studies/{code}", response_class=HTMLResponse)
async def study_page(request: Request, user: AnyUser, code: str) -> Response:
    return await _study(request, user, code)


async def _change(
    request: Request, user: User, code: str, template: str, method: str, *args: Any
) -> Response:
    """Run one change of the study service with the reader as actor; on refusal, the page with why."""
    hub = hub_of(request)
    try:
        await hub.run(getattr(hub.studies, method), user, code, *args, actor(request, user))
    except HubError as error:
        return await _study(request, user, code, error.status, str(error), template)
    page = "" if template == "study.html" else "/design"
    return redirect(f"/studies/{code}{page}", "study_saved")


@router.post("/studies/{code}/setup", response_class=HTMLResponse)
async def save_set_up(request: Request, user: AnyUser, code: str) -> Response:
    form = await checked_form(request)
    try:
        set_up = _set_up(form)
    except Invalid as error:
        return await _study(request, user, code, error.status, str(error))
    return await _change(request, user, code, "study.html", "update", set_up)


@router.post("/studies/{code}/sites", response_class=HTMLResponse)
async def save_sites(request: Request, user: AnyUser, code: str) -> Response:
    form = await checked_form(request)
    names = [value for value in form.getlist("site") if isinstance(value, str)]
    return await _change(request, user, code, "study.html", "set_sites", names)


@router.post("/studies/{code}/roles", response_class=HTMLResponse)
async def grant_role(request: Request, user: AnyUser, code: str) -> Response:
    form = await checked_form(request)
    try:
        role = StudyRole(form_text(form, "role"))
    except ValueError:
        return await _study(request, user, code, 422, "role: choose one of the study roles")
    site = form_text(form, "site") or None
    return await _change(request, user, code, "study.html", "grant", form_text(form, "email"), role, site)


@router.post("/studies/{code}/roles/{grant_id}/revoke", response_class=HTMLResponse)
async def revoke_role(request: Request, user: AnyUser, code: str, grant_id: int) -> Response:
    await checked_form(request)
    return await _change(request, user, code, "study.html", "revoke", grant_id)


@router.post("/studies/{code}/status", response_class=HTMLResponse)
async def change_status(request: Request, user: AnyUser, code: str) -> Response:
    form = await checked_form(request)
    try:
        status = RecruitmentStatus(form_text(form, "status"))
    except ValueError:
        return await _study(request, user, code, 422, "status: choose one of the offered statuses")
    return await _change(
        request, user, code, "study.html", "change_status", status, form_text(form, "reason")
    )


# --- the design: arms, visits, forms -----------------------------------------------------------------


@router.get("/studies/{code}/design", response_class=HTMLResponse)
async def design_page(request: Request, user: AnyUser, code: str) -> Response:
    return await _study(request, user, code, template="study_design.html")


def _arms_json(view: StudyView) -> list[dict[str, Any]]:
    return [arm.to_json() for arm in view.arms]


@router.post("/studies/{code}/design", response_class=HTMLResponse)
async def change_design(request: Request, user: AnyUser, code: str) -> Response:
    """One step on the design (add an arm, add a visit to an arm, remove either); the service gets the
    whole new design and checks it (codes, windows, forms)."""
    form = await checked_form(request)
    hub = hub_of(request)
    view = await hub.read(hub.studies.view, user, code)
    design = _arms_json(view)
    step = form_text(form, "step")
    try:
        if step == "add-arm":
            design.append(
                {
                    "code": form_text(form, "code").strip(),
                    "name": form_text(form, "name").strip(),
                    "visits": [],
                }
            )
        elif step == "add-visit":
            arm = next((a for a in design if a["code"] == form_text(form, "arm")), None)
            if arm is None:
                raise Invalid("arm: choose one of the study's arms")
            repeating = {value for value in form.getlist("repeating") if isinstance(value, str)}
            arm["visits"].append(
                {
                    "code": form_text(form, "code").strip(),
                    "name": form_text(form, "name").strip(),
                    "day_offset": _whole(form_text(form, "day_offset"), "day_offset", -3650),
                    "window_before": _whole(form_text(form, "window_before") or "0", "window_before"),
                    "window_after": _whole(form_text(form, "window_after") or "0", "window_after"),
                    "forms": [
                        {"url": url, "repeating": url in repeating}
                        for url in form.getlist("form")
                        if isinstance(url, str)
                    ],
                }
            )
        elif step == "remove-arm":
            design = [a for a in design if a["code"] != form_text(form, "arm")]
        elif step == "remove-visit":
            for arm in design:
                if arm["code"] == form_text(form, "arm"):
                    arm["visits"] = [v for v in arm["visits"] if v["code"] != form_text(form, "visit")]
        else:
            raise Invalid("step: not a change of the design")
    except Invalid as error:
        return await _study(request, user, code, error.status, str(error), "study_design.html")
    return await _change(request, user, code, "study_design.html", "set_design", design)


@router.get("/studies/{code}/designer", response_class=HTMLResponse)
async def designer_page(request: Request, user: AnyUser, code: str, url: str = "") -> Response:
    """The form designer: a new form, or the next version of the form `url` (its latest version loaded)."""
    hub = hub_of(request)
    view = await hub.read(hub.studies.view, user, code)
    questionnaire = None
    if url:
        latest = next((f for f in reversed(view.forms) if f.url == url), None)
        if latest is None:
            raise Invalid(f"url: the study has no form {url!r}")
        questionnaire = (
            await hub.read(hub.studies.form_version, user, code, url, latest.version)
        ).questionnaire
    base = f"{hub.config.public_url.rstrip('/')}/fhir/Questionnaire/{code}-"
    return render(
        request,
        "study_designer.html",
        user,
        study=view,
        questionnaire=questionnaire,
        url_base=base,
        lforms_styles=lforms.STYLES,
        lforms_scripts=lforms.SCRIPTS,
        designer_texts={
            key.removeprefix("designer."): text
            for key, text in texts_for(language(request, user)).items()
            if key.startswith("designer.")
        },
    )


# --- randomisation (the statistician) ----------------------------------------------------------------


async def _randomisation(
    request: Request,
    user: User,
    code: str,
    status: int = 200,
    error: str | None = None,
    seed: str | None = None,
) -> Response:
    hub = hub_of(request)
    view = await hub.read(hub.studies.view, user, code)
    scheme = await hub.read(hub.randomisations.scheme, user, code)
    allocations = await hub.read(hub.randomisations.allocations, user, code)
    return render(
        request,
        "study_randomisation.html",
        user,
        status,
        study=view,
        scheme=scheme,
        allocations=allocations,
        error=error,
        seed=seed,
        max_sequence=MAX_SEQUENCE,
    )


@router.get("/studies/{code}/randomisation", response_class=HTMLResponse)
async def randomisation_page(request: Request, user: AnyUser, code: str) -> Response:
    return await _randomisation(request, user, code)


@router.post("/studies/{code}/randomisation", response_class=HTMLResponse)
async def set_scheme(request: Request, user: AnyUser, code: str) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        sizes = [
            _whole(part, "block_sizes", 1)
            for part in form_text(form, "block_sizes").split(",")
            if part.strip()
        ]
        ratio = {}
        for part in form_text(form, "ratio").split(","):
            if part.strip():
                arm, _, share = part.partition(":")
                ratio[arm.strip()] = _whole(share, f"ratio.{arm.strip()}", 1)
        factors = []
        for number, line in enumerate(form_text(form, "factors").splitlines()):
            if line.strip():
                name, _, levels = line.partition(":")
                if not levels.strip():
                    raise Invalid(f"factors[{number}]: write a factor as 'name: level, level'")
                factors.append(
                    (name.strip(), [level.strip() for level in levels.split(",") if level.strip()])
                )
        generated = await hub.run(
            hub.randomisations.set_scheme,
            user,
            code,
            sizes,
            ratio,
            factors,
            form_text(form, "seed"),
            actor(request, user),
        )
    except HubError as error:
        return await _randomisation(request, user, code, error.status, str(error))
    return await _randomisation(request, user, code, seed=generated)


@router.post("/studies/{code}/randomisation/sequence", response_class=HTMLResponse)
async def reproduce(request: Request, user: AnyUser, code: str) -> Response:
    form = await checked_form(request)
    hub = hub_of(request)
    try:
        length = _whole(form_text(form, "length") or "100", "length", 1)
        text = await hub.run(
            hub.randomisations.reproduce, user, code, form_text(form, "seed"), length, actor(request, user)
        )
    except HubError as error:
        return await _randomisation(request, user, code, error.status, str(error))
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{code}-randomisation.csv"'},
    )
