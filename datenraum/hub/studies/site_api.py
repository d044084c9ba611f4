"""The agents' side of prospective studies (`/api/site/v1/studies`, see `datenraum.protocol.studies`):

    GET  /studies                            {"studies": [StudyDefinition...]} of this site
    POST /studies/{study_id}/allocations     AllocationRequest -> Allocation (the same one when asked again)
    POST /studies/{study_id}/enrolment       EnrolmentReport -> 204

A site sees only the studies it takes part in; any other study id is answered 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from datenraum.hub.errors import Invalid
from datenraum.hub.runtime import CurrentSite, HubDep
from datenraum.protocol.messages import ProtocolError
from datenraum.protocol.studies import STUDIES_PATH, AllocationRequest, EnrolmentReport

__all__ = ["router"]

router = APIRouter(prefix=STUDIES_PATH, tags=["site"])
JsonBody = Annotated[dict[str, Any], Body()]


@router.get("")
async def definitions(hub: HubDep, site: CurrentSite) -> dict[str, Any]:
    return {"studies": [d.to_json() for d in await hub.read(hub.studies.definitions_for, site)]}


@router.post("/{study_id}/allocations")
async def allocate(hub: HubDep, site: CurrentSite, study_id: str, body: JsonBody) -> dict[str, Any]:
    try:
        request = AllocationRequest.from_json(body)
    except ProtocolError as error:
        raise Invalid(str(error)) from None
    return (await hub.run(hub.randomisations.allocate, site, study_id, request)).to_json()


@router.post("/{study_id}/enrolment", status_code=204)
async def report_enrolment(hub: HubDep, site: CurrentSite, study_id: str, body: JsonBody) -> Response:
    try:
        report = EnrolmentReport.from_json(body)
    except ProtocolError as error:
        raise Invalid(str(error)) from None
    await hub.run(hub.studies.report_enrolment, site, study_id, report)
    return Response(status_code=204)
