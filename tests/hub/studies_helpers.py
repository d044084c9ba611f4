"""A study to test with: set up through the study API by its lead, with two sites, two arms, a visit and
its form, and people in every study role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .helpers import HubFixture, bearer

STUDIES = "/api/v1/studies"
FORM_URL = "https://datenraum.example/fhir/Questionnaire/baseline"
SEED = "0123456789abcdef0123456789abcdef-statistician"
SMALL_DICTIONARY = (
    b'Variable / Field Name,Form Name,Section Header,Field Type,Field Label,"Choices, Calculations, OR Slider Labels",'
    b"Field Note,Text Validation Type OR Show Slider Number,Text Validation Min,Text Validation Max,Identifier?,"
    b"Branching Logic (Show field only if...),Required Field?,Custom Alignment,Question Number (surveys only),"
    b"Matrix Group Name,Matrix Ranking?,Field Annotation\n"
    b"record_id,baseline,,text,Teilnehmer-ID,,,,,,,,y,,,,,\n"
    b"age,baseline,,text,Alter,,,integer,0,120,,,,,,,,\n"
)
PEOPLE = {
    "lead": "lead@example.org",
    "statistician": "stat@example.org",
    "investigator": "inv-a@example.org",
    "data entry": "entry-a@example.org",
    "monitor": "monitor-b@example.org",
    "outsider": "outsider@example.org",
}


def baseline_form(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Questionnaire",
        "url": FORM_URL,
        "title": "Baseline",
        "status": "active",
        "item": [
            {"linkId": "age", "text": "Alter (Jahre)", "type": "integer", "required": True},
            {"linkId": "smoker", "text": "Raucher", "type": "boolean"},
            *extra,
        ],
    }


def arms(*codes: str) -> list[dict[str, Any]]:
    visit = {
        "code": "baseline",
        "name": "Baseline",
        "day_offset": 0,
        "window_before": 0,
        "window_after": 3,
        "forms": [{"url": FORM_URL, "repeating": False}],
    }
    return [{"code": code, "name": f"Arm {code}", "visits": [visit]} for code in codes]


@dataclass
class StudyWorld:
    hub: HubFixture
    tokens: dict[str, str]  # who -> API token
    sites: dict[str, str]  # site name -> agent credential
    code: str = "cocos"

    def as_(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who])

    def site(self, name: str) -> dict[str, str]:
        return bearer(self.sites[name])


def study_world(hub: HubFixture) -> StudyWorld:
    sites = hub.sites("uk-a", "uk-b", "uk-c")
    return StudyWorld(hub, {who: hub.user(email) for who, email in PEOPLE.items()}, sites)


async def call(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
    expected: int = 204,
) -> httpx.Response:
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == expected, f"{method} {path}: {response.status_code} {response.text}"
    return response


async def set_up_study(client: httpx.AsyncClient, world: StudyWorld, *, recruiting: bool = True) -> None:
    """The lead sets the study up; the statistician sets the scheme; the lead opens recruitment."""
    lead = world.as_("lead")
    base = f"{STUDIES}/{world.code}"
    body = {
        "code": world.code,
        "title": "COVID-19 Kohorte",
        "acronym": "CoCoS",
        "registry_id": "DRKS00012345",
    }
    await call(client, "POST", STUDIES, lead, body, 201)
    await call(client, "PUT", f"{base}/sites", lead, {"sites": ["uk-a", "uk-b"]})
    await call(client, "POST", f"{base}/forms", lead, {"questionnaire": baseline_form()}, 201)
    await call(client, "PUT", f"{base}/arms", lead, {"arms": arms("A", "B")})
    for who, role, site in (
        ("statistician", "statistician", None),
        ("investigator", "site-investigator", "uk-a"),
        ("data entry", "data-entry", "uk-a"),
        ("monitor", "monitor", "uk-b"),
    ):
        await call(client, "POST", f"{base}/roles", lead, {"email": PEOPLE[who], "role": role, "site": site})
    scheme = {"block_sizes": [2, 4], "factors": [{"name": "sex", "levels": ["female", "male"]}], "seed": SEED}
    await call(client, "PUT", f"{base}/randomisation", world.as_("statistician"), scheme, 200)
    if recruiting:
        await call(
            client, "POST", f"{base}/status", lead, {"status": "recruiting", "reason": "Ethikvotum liegt vor"}
        )


def allocation_request(world: StudyWorld, site: str, participant: str, sex: str = "female") -> dict[str, Any]:
    return {"study_id": world.code, "site": site, "participant": participant, "factors": {"sex": sex}}
