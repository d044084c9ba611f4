"""The study API for scripts (`/api/v1/studies`): the same service calls as the portal's study pages.

GET    /studies                              the studies the caller has a role in
POST   /studies                              set one up (the caller becomes its study lead)
GET    /studies/{code}                       the study as the caller may see it
PUT    /studies/{code}                       title, acronym, registry id, ethics vote, eligibility
PUT    /studies/{code}/sites                 {"sites": [names]}
PUT    /studies/{code}/arms                  {"arms": [arms with visits and forms]}
POST   /studies/{code}/forms                 {"questionnaire": {...}}: publish its next version
GET    /studies/{code}/forms/{version}?url=  one published version's Questionnaire
POST   /studies/{code}/roles                 {"email", "role", "site"}
DELETE /studies/{code}/roles/{grant_id}
POST   /studies/{code}/status                {"status", "reason"}
GET    /studies/{code}/randomisation         the scheme and the allocations (the statistician)
PUT    /studies/{code}/randomisation         set the scheme and seed (the statistician)
POST   /studies/{code}/randomisation/sequence   {"seed", "length"}: the whole sequence, CSV
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.service import User
from datenraum.hub.runtime import CurrentUser, HubDep, RowId, client_ip
from datenraum.hub.studies.randomisation import MAX_SEQUENCE, AllocationEntry, SchemeView
from datenraum.hub.studies.service import StudySetUp, StudyView
from datenraum.protocol.studies import RecruitmentStatus, StudyRole

__all__ = ["router", "study_json"]

router = APIRouter(prefix="/api/v1/studies", tags=["studies"])


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class SetUp(_Strict):
    title: str = Field(max_length=500)
    acronym: str = Field(max_length=64)
    registry_id: str | None = Field(None, max_length=64)
    ethics_vote: str | None = Field(None, max_length=200)
    eligibility: dict[str, Any] | None = Field(None, description="a CCDL structured query")

    def values(self) -> StudySetUp:
        return StudySetUp(self.title, self.acronym, self.registry_id, self.ethics_vote, self.eligibility)


class NewStudy(SetUp):
    code: str = Field(max_length=64, description="lower-case letters, digits and '-'; the id sites know")


class Sites(_Strict):
    sites: list[str] = Field(max_length=500)


class Design(_Strict):
    arms: list[Any] = Field(max_length=500)


class NewForm(_Strict):
    questionnaire: dict[str, Any]


class Grant(_Strict):
    email: str = Field(max_length=320)
    role: StudyRole = Field(strict=False)  # from its JSON text
    site: str | None = Field(None, max_length=100)


class StatusChange(_Strict):
    status: RecruitmentStatus = Field(strict=False)
    reason: str = Field(max_length=2000)


class Factor(_Strict):
    name: str = Field(max_length=64)
    levels: list[str] = Field(max_length=50)


class Scheme(_Strict):
    block_sizes: list[int] = Field(min_length=1, max_length=10)
    ratio: dict[str, int] = Field(default_factory=dict, description="arm code -> share; 1 when left out")
    factors: list[Factor] = Field(default_factory=list, max_length=3)
    seed: str = Field("", max_length=1000, description="empty: the hub draws one and returns it once")


class Reproduction(_Strict):
    seed: str = Field(max_length=1000)
    length: int = Field(100, ge=1, le=MAX_SEQUENCE)


def actor(request: Request, user: User) -> AuditSource:
    return AuditSource(user.id, user.email, client_ip(request))


def study_json(view: StudyView) -> dict[str, Any]:
    return {
        "code": view.code,
        "title": view.set_up.title,
        "acronym": view.set_up.acronym,
        "registry_id": view.set_up.registry_id,
        "ethics_vote": view.set_up.ethics_vote,
        "eligibility": view.set_up.eligibility,
        "status": view.status.value,
        "definition_version": view.definition_version,
        "sites": list(view.sites),
        "arms": [arm.to_json() for arm in view.arms],
        "forms": [
            {"url": f.url, "version": f.version, "title": f.title, "published": f.published.isoformat()}
            for f in view.forms
        ],
        "roles": [{"id": g.id, "email": g.email, "role": g.role.value, "site": g.site} for g in view.roles],
        "history": [
            {
                "at": e.at.isoformat(),
                "by": e.by,
                "from": None if e.from_status is None else e.from_status.value,
                "to": e.to_status.value,
                "reason": e.reason,
            }
            for e in view.history
        ],
        "enrolment": {site: dict(counts) for site, counts in view.enrolment},
        "randomised": view.randomised,
    }


def _scheme_json(scheme: SchemeView | None, allocations: list[AllocationEntry]) -> dict[str, Any]:
    return {
        "scheme": None
        if scheme is None
        else {
            "block_sizes": list(scheme.block_sizes),
            "ratio": dict(scheme.ratio),
            "factors": [{"name": name, "levels": list(levels)} for name, levels in scheme.factors],
            "set_by": scheme.set_by,
            "set_at": scheme.set_at.isoformat(),
        },
        "allocations": [
            {
                "id": a.allocation_id,
                "site": a.site,
                "participant": a.participant,
                "stratum": a.stratum,
                "position": a.position,
                "arm": a.arm,
                "at": a.at.isoformat(),
                "by": a.by,
            }
            for a in allocations
        ],
    }


@router.get("")
async def my_studies(hub: HubDep, user: CurrentUser) -> dict[str, Any]:
    return {
        "studies": [
            {
                "code": s.code,
                "acronym": s.acronym,
                "title": s.title,
                "status": s.status.value,
                "roles": list(s.roles),
            }
            for s in await hub.read(hub.studies.visible, user)
        ]
    }


@router.post("", status_code=201)
async def create(hub: HubDep, user: CurrentUser, request: Request, body: NewStudy) -> dict[str, Any]:
    code = await hub.run(hub.studies.create, user, body.code, body.values(), actor(request, user))
    return {"code": code}


@router.get("/{code}")
async def study(hub: HubDep, user: CurrentUser, code: str) -> dict[str, Any]:
    return study_json(await hub.read(hub.studies.view, user, code))


@router.put("/{code}", status_code=204)
async def update(hub: HubDep, user: CurrentUser, request: Request, code: str, body: SetUp) -> Response:
    await hub.run(hub.studies.update, user, code, body.values(), actor(request, user))
    return Response(status_code=204)


@router.put("/{code}/sites", status_code=204)
async def set_sites(hub: HubDep, user: CurrentUser, request: Request, code: str, body: Sites) -> Response:
    await hub.run(hub.studies.set_sites, user, code, body.sites, actor(request, user))
    return Response(status_code=204)


@router.put("/{code}/arms", status_code=204)
async def set_arms(hub: HubDep, user: CurrentUser, request: Request, code: str, body: Design) -> Response:
    await hub.run(hub.studies.set_design, user, code, body.arms, actor(request, user))
    return Response(status_code=204)


@router.post("/{code}/forms", status_code=201)
async def publish(
    hub: HubDep, user: CurrentUser, request: Request, code: str, body: NewForm
) -> dict[str, Any]:
    form = await hub.run(hub.studies.publish_form, user, code, body.questionnaire, actor(request, user))
    return {"url": form.url, "version": form.version}


@router.get("/{code}/forms/{version}")
async def form(
    hub: HubDep, user: CurrentUser, code: str, version: str, url: Annotated[str, Query(max_length=1000)]
) -> dict[str, Any]:
    return (await hub.read(hub.studies.form_version, user, code, url, version)).questionnaire


@router.post("/{code}/roles", status_code=204)
async def grant(hub: HubDep, user: CurrentUser, request: Request, code: str, body: Grant) -> Response:
    await hub.run(hub.studies.grant, user, code, body.email, body.role, body.site, actor(request, user))
    return Response(status_code=204)


@router.delete("/{code}/roles/{grant_id}", status_code=204)
async def revoke(hub: HubDep, user: CurrentUser, request: Request, code: str, grant_id: RowId) -> Response:
    await hub.run(hub.studies.revoke, user, code, grant_id, actor(request, user))
    return Response(status_code=204)


@router.post("/{code}/status", status_code=204)
async def change_status(
    hub: HubDep, user: CurrentUser, request: Request, code: str, body: StatusChange
) -> Response:
    await hub.run(hub.studies.change_status, user, code, body.status, body.reason, actor(request, user))
    return Response(status_code=204)


@router.get("/{code}/randomisation")
async def randomisation(hub: HubDep, user: CurrentUser, code: str) -> dict[str, Any]:
    scheme = await hub.read(hub.randomisations.scheme, user, code)
    return _scheme_json(scheme, await hub.read(hub.randomisations.allocations, user, code))


@router.put("/{code}/randomisation")
async def set_scheme(
    hub: HubDep, user: CurrentUser, request: Request, code: str, body: Scheme
) -> dict[str, Any]:
    generated = await hub.run(
        hub.randomisations.set_scheme,
        user,
        code,
        body.block_sizes,
        body.ratio,
        [(f.name, f.levels) for f in body.factors],
        body.seed,
        actor(request, user),
    )
    return {"seed": generated}


@router.post("/{code}/randomisation/sequence")
async def sequence(
    hub: HubDep, user: CurrentUser, request: Request, code: str, body: Reproduction
) -> Response:
    text = await hub.run(
        hub.randomisations.reproduce, user, code, body.seed, body.length, actor(request, user)
    )
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{code}-randomisation.csv"'},
    )
