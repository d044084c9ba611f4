"""The EDC's side of the hub's study routes (`datenraum.protocol.studies`), with the site agent's credential.

The EDC connects out, like the agent: it pulls the study definitions of this site, asks for a participant's
allocation, and reports its enrolment counts. `StudyHub` is what the rest of the EDC needs of the hub;
`HubClient` is it over HTTP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import httpx

from datenraum.protocol.messages import ProtocolError
from datenraum.protocol.studies import (
    STUDIES_PATH,
    Allocation,
    AllocationRequest,
    EnrolmentReport,
    StudyDefinition,
    allocations_path,
    enrolment_path,
)

__all__ = ["HubClient", "HubUnavailable", "StudyHub"]


class HubUnavailable(RuntimeError):
    """The hub could not be reached or refused the request; the text says which and why."""


class StudyHub(Protocol):
    def definitions(self) -> list[StudyDefinition]: ...

    def allocate(self, request: AllocationRequest) -> Allocation: ...

    def report_enrolment(self, report: EnrolmentReport) -> None: ...


class HubClient:
    def __init__(self, url: str, credential_file: Path, transport: httpx.BaseTransport | None = None) -> None:
        self._credential_file = credential_file
        self._client = httpx.Client(base_url=url, timeout=httpx.Timeout(15.0), transport=transport)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            credential = self._credential_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise HubUnavailable(
                f"cannot read the credential file {self._credential_file}: {error.strerror}"
            ) from None
        try:
            response = self._client.request(
                method, path, json=body, headers={"Authorization": f"Bearer {credential}"}
            )
        except httpx.HTTPError as error:
            raise HubUnavailable(f"the hub cannot be reached ({error.__class__.__name__}: {error})") from None
        if response.status_code == 401:
            raise HubUnavailable(f"the hub rejected this site's credential (from {self._credential_file})")
        if response.status_code >= 400:
            raise HubUnavailable(f"the hub answered {response.status_code}: {_detail(response)}")
        return response

    def definitions(self) -> list[StudyDefinition]:
        body = self._request("GET", STUDIES_PATH).json()
        studies = body.get("studies") if isinstance(body, dict) else None
        if not isinstance(studies, list):
            raise HubUnavailable("the hub's study list is not {'studies': [...]}")
        try:
            return [StudyDefinition.from_json(study, f"studies[{i}]") for i, study in enumerate(studies)]
        except ProtocolError as error:
            raise HubUnavailable(f"the hub sent an unusable study definition: {error}") from None

    def allocate(self, request: AllocationRequest) -> Allocation:
        body = self._request("POST", allocations_path(request.study_id), request.to_json()).json()
        try:
            return Allocation.from_json(body)
        except ProtocolError as error:
            raise HubUnavailable(f"the hub sent an unusable allocation: {error}") from None

    def report_enrolment(self, report: EnrolmentReport) -> None:
        self._request("POST", enrolment_path(report.study_id), report.to_json())

    def close(self) -> None:
        self._client.close()


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail if detail is not None else body)[:300]
