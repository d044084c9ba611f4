"""The sample locator at the hub: a sample search becomes one `sample-search` task per site, the sites'
released answers are checked and kept, a site that does not answer such tasks shows its reason, and the
network's totals follow the feasibility rule for totals (`privacy.sample_totals`)."""

from __future__ import annotations

from typing import Any

import pytest

from datenraum.query.biobank.terminology import CATEGORIES

from .helpers import RESEARCHER_API, HubFixture, SiteClient, bearer, serving

pytestmark = pytest.mark.anyio

SITES = ("site-a", "site-b", "site-c")
BLOOD = {category.code for category in CATEGORIES if category.group == "blood"}


def _count(value: int | None) -> dict[str, Any]:
    return {"below_threshold": True} if value is None else {"obfuscated": value}


def sample_answer(task_id: str, patients: int | None, samples: int | None, biobank: str) -> dict[str, Any]:
    """A site's released answer: one biobank with plasma at -80 °C."""
    cell = {
        "biobank": biobank,
        "category": "blood-plasma",
        "temperature": "-60to-85",
        "patients": _count(patients),
        "samples": _count(samples),
        "specimens": _count(samples),
        "aliquots": _count(None if samples is None else samples * 3),
    }
    return {
        "task_id": task_id,
        "state": "answered",
        "samples": {
            "patients": _count(patients),
            "specimens": _count(samples),
            "samples": _count(samples),
            "biobanks": [{"biobank": biobank, "name": f"Biobank {biobank}", "patients": _count(patients)}],
            "cells": [cell],
        },
    }


async def _search(client, token: str, body: dict[str, Any]) -> str:
    response = await client.post(f"{RESEARCHER_API}/sample-searches", json=body, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _result(client, token: str, search_id: str) -> dict[str, Any]:
    response = await client.get(f"{RESEARCHER_API}/sample-searches/{search_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_search_asks_every_site_with_its_filter_and_totals_its_answers(hub: HubFixture) -> None:
    credentials = hub.sites(*SITES)
    token = hub.user()
    async with serving(hub.app()) as client:
        search_id = await _search(
            client, token, {"samples": {"categories": ["blood"], "temperatures": ["-60to-85"]}}
        )
        for index, name in enumerate(SITES):
            site = SiteClient(client, credentials[name])
            [task] = await site.poll()
            assert task["type"] == "sample-search"
            assert task["payload"]["query"] is None
            assert task["payload"]["samples"]["temperatures"] == ["-60to-85"]
            # the type tree's group stands for its categories
            assert set(task["payload"]["samples"]["categories"]) == BLOOD
            response = await site.post(
                task["id"], sample_answer(task["id"], 20 + index * 10, 100, f"bb-{index}")
            )
            assert response.status_code == 200, response.text
        result = await _result(client, token, search_id)
    assert result["state"] == "complete"
    assert [site["site"] for site in result["sites"]] == list(SITES)
    assert result["sites"][1]["result"]["biobanks"][0]["name"] == "Biobank bb-1"
    assert result["totals"]["patients"] == {"value": 90, "sites": 3, "at_least": False}
    [cell] = result["totals"]["cells"]
    assert (cell["category"], cell["temperature"]) == ("blood-plasma", "-60to-85")
    assert cell["samples"] == {"value": 300, "sites": 3, "at_least": False}


async def test_a_site_that_does_not_answer_sample_searches_shows_its_reason_and_hides_the_totals(
    hub: HubFixture,
) -> None:
    credentials = hub.sites(*SITES)
    token = hub.user()
    async with serving(hub.app()) as client:
        search_id = await _search(client, token, {})
        for index, name in enumerate(SITES):
            site = SiteClient(client, credentials[name])
            [task] = await site.poll()
            if name == "site-c":
                body = {
                    "task_id": task["id"],
                    "state": "failed",
                    "reason": "this site does not answer sample-search tasks",
                }
            else:
                body = sample_answer(task["id"], 30, 90, f"bb-{index}")
            assert (await site.post(task["id"], body)).status_code == 200
        result = await _result(client, token, search_id)
    by_site = {site["site"]: site for site in result["sites"]}
    assert by_site["site-c"]["state"] == "failed"
    assert by_site["site-c"]["reason"] == "this site does not answer sample-search tasks"
    # Two sites' totals would be one site's figure to anyone who knows the other's: not shown.
    assert result["totals"]["patients"] is None
    assert result["totals"]["cells"][0]["patients"] is None


async def test_a_below_threshold_site_makes_the_total_a_lower_bound(hub: HubFixture) -> None:
    credentials = hub.sites(*SITES)
    token = hub.user()
    async with serving(hub.app()) as client:
        search_id = await _search(client, token, {})
        for name in SITES:
            site = SiteClient(client, credentials[name])
            [task] = await site.poll()
            patients = None if name == "site-b" else 40
            await site.post(
                task["id"], sample_answer(task["id"], patients, None if patients is None else 80, "bb")
            )
        result = await _result(client, token, search_id)
    assert result["totals"]["patients"] == {"value": 80, "sites": 3, "at_least": True}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"samples": {"categories": ["plutonium"]}}, "samples.categories[0]"),
        ({"samples": {"diagnoses": ["'; DROP TABLE specimen; --"]}}, "samples.diagnoses[0]"),
        ({"samples": {"colour": ["red"]}}, "samples.colour"),
        ({"samples": {"temperatures": "LN"}}, "samples.temperatures"),
        ({"query": {"inclusionCriteria": "everyone"}}, "query"),
    ],
)
async def test_a_bad_search_is_refused_naming_its_field_and_nothing_is_stored(
    hub: HubFixture, body: dict[str, Any], field: str
) -> None:
    hub.sites(*SITES)
    token = hub.user()
    async with serving(hub.app()) as client:
        response = await client.post(f"{RESEARCHER_API}/sample-searches", json=body, headers=bearer(token))
    assert response.status_code == 422, response.text
    assert response.json()["error"].startswith(field)
    assert hub.count("sample_searches") == 0
    assert hub.count("sample_search_tasks") == 0


async def test_a_hostile_site_answer_is_refused_naming_its_path_and_the_task_stays_open(
    hub: HubFixture,
) -> None:
    credentials = hub.sites(*SITES)
    token = hub.user()
    async with serving(hub.app()) as client:
        search_id = await _search(client, token, {})
        site = SiteClient(client, credentials["site-a"])
        [task] = await site.poll()
        broken = sample_answer(task["id"], 30, 90, "bb")
        broken["samples"]["cells"][0]["patients"] = {"obfuscated": -5}
        response = await site.post(task["id"], broken)
        assert response.status_code == 422
        assert "samples.cells[0].patients" in response.text
        counted = {"task_id": task["id"], "state": "answered", "count": {"obfuscated": 30}}
        response = await site.post(task["id"], counted)
        assert response.status_code == 422
        assert "samples" in response.text
        other = SiteClient(client, credentials["site-b"])
        assert (await other.post(task["id"], sample_answer(task["id"], 30, 90, "bb"))).status_code == 404
        result = await _result(client, token, search_id)
    assert {site["site"]: site["state"] for site in result["sites"]}["site-a"] == "running"


async def test_a_researcher_cannot_read_another_researchers_search(hub: HubFixture) -> None:
    hub.sites(*SITES)
    owner, other = hub.user(), hub.user("other@example.org")
    async with serving(hub.app()) as client:
        search_id = await _search(client, owner, {})
        response = await client.get(f"{RESEARCHER_API}/sample-searches/{search_id}", headers=bearer(other))
    assert response.status_code == 404


async def test_searches_count_against_the_query_quota_so_they_cannot_be_asked_without_end(
    hub: HubFixture,
) -> None:
    hub.sites(*SITES)
    token = hub.user()
    async with serving(hub.app(quota_per_minute=2)) as client:
        for _ in range(2):
            await _search(client, token, {})
        response = await client.post(f"{RESEARCHER_API}/sample-searches", json={}, headers=bearer(token))
    assert response.status_code == 429
    assert "quota" in response.json()["error"]
    assert hub.count("sample_searches") == 2
