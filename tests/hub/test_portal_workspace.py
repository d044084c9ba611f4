"""A researcher's workspace in the API (`/api/v1/saved-queries`, `/api/v1/history`), which the portal's
pages use: saved queries and their import and export, what bad input gets, who sees what, and the
history of asked queries.

Every test runs on SQLite and PostgreSQL, with the hub in-process and a FakeClock.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest
from shared_data import SHARED_DATA

from datenraum.hub.roles import Role
from datenraum.query.model import canonical_json, parse_query, query_to_json

from .helpers import RESEARCHER_API, HubFixture, Researcher, bearer, older_than, serving
from .portal_helpers import People, browser, database_contents

pytestmark = pytest.mark.anyio

SAVED = f"{RESEARCHER_API}/saved-queries"
# The national portal's example queries, as its query translator sq2cql tests them: in the shared data
# next to the repository (../shared/data), read-only.
SQ2CQL = SHARED_DATA / "sq2cql-testdata"


def _sq2cql_examples() -> list[str]:
    if not SQ2CQL.is_dir():
        return []
    names = []
    for path in sorted(SQ2CQL.rglob("*.json")):
        document = json.loads(path.read_bytes())
        if isinstance(document, dict) and "inclusionCriteria" in document:
            names.append(str(path.relative_to(SQ2CQL)))
    return names


def _stored(query: dict[str, Any]) -> dict[str, Any]:
    """A query as the hub stores it: written back from the parsed query, not exactly as given."""
    return query_to_json(parse_query(query))


def _women() -> dict[str, Any]:
    return {
        "version": "http://to_be_decided.com/draft-1/schema#",
        "display": "Frauen",
        "inclusionCriteria": [
            [
                {
                    "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                    "termCodes": [
                        {"system": "http://snomed.info/sct", "code": "263495000", "display": "Geschlecht"}
                    ],
                    "valueFilter": {
                        "type": "concept",
                        "selectedConcepts": [
                            {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}
                        ],
                    },
                }
            ]
        ],
    }


async def _save(client: httpx.AsyncClient, token: str, name: str, query: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(SAVED, json={"name": name, "query": query}, headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()


async def _names(client: httpx.AsyncClient, token: str) -> list[str]:
    response = await client.get(SAVED, headers=bearer(token))
    assert response.status_code == 200
    return [saved["name"] for saved in response.json()["saved_queries"]]


# --- saving, changing, copying, exporting, deleting ----------------------------------------------------


async def test_a_saved_query_is_listed_read_changed_duplicated_exported_and_deleted(hub: HubFixture) -> None:
    token = hub.user()
    async with serving(hub.app()) as client:
        saved = await _save(client, token, "  Ältere   Patienten ", older_than(50))
        assert saved["name"] == "Ältere Patienten"
        assert saved["query"] == _stored(older_than(50))
        assert saved["last_query_id"] is None
        assert saved["created"] == saved["updated"] == hub.clock.now.isoformat()
        path = f"{SAVED}/{saved['id']}"
        assert (await client.get(path, headers=bearer(token))).json() == saved

        hub.clock.advance(60)
        await _save(client, token, "Frauen", _women())
        assert await _names(client, token) == ["Frauen", "Ältere Patienten"]  # the newest change first

        hub.clock.advance(60)
        response = await client.patch(
            path, json={"name": "Über 60", "query": older_than(60)}, headers=bearer(token)
        )
        assert response.status_code == 200
        changed = response.json()
        assert (changed["name"], changed["query"]) == ("Über 60", _stored(older_than(60)))
        assert changed["created"] == saved["created"]
        assert changed["updated"] == hub.clock.now.isoformat()
        assert await _names(client, token) == ["Über 60", "Frauen"]

        response = await client.post(f"{path}/duplicate", headers=bearer(token))
        assert response.status_code == 201
        copied = response.json()
        assert copied["id"] != saved["id"]
        assert (copied["name"], copied["query"]) == ("Über 60 (copy)", _stored(older_than(60)))

        response = await client.get(f"{path}/export", headers=bearer(token))
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.headers["content-disposition"] == (
            "attachment; filename=\"-ber-60.json\"; filename*=UTF-8''%C3%9Cber-60.json"
        )
        assert response.json() == _stored(older_than(60))

        far_away = await _save(client, token, "糖尿病 / Şeker", older_than(60))
        response = await client.get(f"{SAVED}/{far_away['id']}/export", headers=bearer(token))
        assert response.status_code == 200
        assert response.headers["content-disposition"] == (
            'attachment; filename="-------eker.json"; '
            "filename*=UTF-8''%E7%B3%96%E5%B0%BF%E7%97%85---%C5%9Eeker.json"
        )

        response = await client.delete(path, headers=bearer(token))
        assert response.status_code == 204
        assert (await client.get(path, headers=bearer(token))).status_code == 404
        assert await _names(client, token) == ["糖尿病 / Şeker", "Über 60 (copy)", "Frauen"]


@pytest.mark.parametrize("example", _sq2cql_examples())
async def test_an_example_of_the_national_portal_is_exported_as_the_same_query(
    hub: HubFixture, example: str
) -> None:
    original = json.loads((SQ2CQL / example).read_bytes())
    token = hub.user()
    async with serving(hub.app()) as client:
        response = await client.post(SAVED, json={"name": example, "query": original}, headers=bearer(token))
        if response.status_code == 422:
            pytest.skip(f"this site's mapping does not answer {example}: {response.json()['error']}")
        assert response.status_code == 201, response.text
        exported = await client.get(f"{SAVED}/{response.json()['id']}/export", headers=bearer(token))
        # Written back from the parsed query (issue 12, P-4): the same query, display texts included.
        assert json.loads(exported.content) == _stored(original)
        assert canonical_json(parse_query(exported.content)) == canonical_json(parse_query(original))


def test_the_examples_of_the_national_portal_are_found() -> None:
    if not SQ2CQL.is_dir():
        pytest.skip(f"reference data {SQ2CQL} is not available")
    assert len(_sq2cql_examples()) >= 20


# --- bad input -----------------------------------------------------------------------------------------


def _broken(change) -> dict[str, Any]:
    query = copy.deepcopy(older_than(50))
    change(query)
    return query


BAD_BODIES = {
    "name-not-a-string": ({"name": 5, "query": older_than(50)}, "name: "),
    "query-not-an-object": ({"name": "Alte", "query": [older_than(50)]}, "query: "),
    "name-missing": ({"query": older_than(50)}, "name: Field required"),
    "unknown-field": ({"name": "Alte", "query": older_than(50), "owner": 1}, "owner: "),
    "empty-name": ({"name": "   ", "query": older_than(50)}, "name: must not be empty"),
    "comparator": (
        {
            "name": "Alte",
            "query": _broken(
                lambda q: q["inclusionCriteria"][0][0]["valueFilter"].update(comparator="bigger")
            ),
        },
        "query.inclusionCriteria[0][0].valueFilter.comparator: must be one of",
    ),
    "unit": (
        {
            "name": "Alte",
            "query": _broken(
                lambda q: q["inclusionCriteria"][0][0]["valueFilter"]["unit"].update(code="furlong")
            ),
        },
        "query.inclusionCriteria[0][0].valueFilter.unit: ",
    ),
    "unmapped-context": (
        {
            "name": "Alte",
            "query": _broken(lambda q: q["inclusionCriteria"][0][0]["context"].update(code="Horoskop")),
        },
        "query.inclusionCriteria[0][0].context: context 'Horoskop' is not mapped",
    ),
    "no-criteria": (
        {"name": "Alte", "query": {"inclusionCriteria": []}},
        "query.inclusionCriteria: must not be empty",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
async def test_a_saved_query_with_bad_input_is_refused_naming_the_field_and_nothing_is_stored(
    hub: HubFixture, case: str
) -> None:
    body, complaint = BAD_BODIES[case]
    token = hub.user()
    async with serving(hub.app()) as client:
        saved = await _save(client, token, "Alte", older_than(50))
        before = database_contents(hub)
        response = await client.post(SAVED, json=body, headers=bearer(token))
        assert response.status_code == 422, response.text
        assert response.json()["error"].startswith(complaint), response.json()
        if case != "name-missing":  # a change may leave the name out
            response = await client.patch(f"{SAVED}/{saved['id']}", json=body, headers=bearer(token))
            assert response.status_code == 422, response.text
            assert response.json()["error"].startswith(complaint), response.json()
        assert database_contents(hub) == before


async def test_malformed_json_and_an_oversized_body_are_refused(hub: HubFixture) -> None:
    token = hub.user()
    async with serving(hub.app(max_body_bytes=4096)) as client:
        headers = {**bearer(token), "content-type": "application/json"}
        response = await client.post(SAVED, content=b'{"name": "Alte", "query": {', headers=headers)
        assert response.status_code == 400
        assert response.json()["error"].startswith("malformed JSON")

        huge = {"name": "Alte", "query": {**older_than(50), "display": "x" * 5000}}
        response = await client.post(SAVED, json=huge, headers=bearer(token))
        assert response.status_code == 413
        assert response.json() == {"error": "request body larger than 4096 bytes"}

        async def chunks():
            for _ in range(10):
                yield b" " * 1000

        response = await client.post(SAVED, content=chunks(), headers=headers)
        assert response.status_code == 413
        assert hub.count("saved_queries") == 0


async def test_a_saved_query_remembers_only_a_run_its_owner_asked(hub: HubFixture) -> None:
    hub.sites("uk-a", "uk-b", "uk-c")
    erika_token, max_token = hub.user("erika@example.org"), hub.user("max@example.org")
    async with serving(hub.app()) as client:
        saved = await _save(client, erika_token, "Alte", older_than(50))
        path = f"{SAVED}/{saved['id']}"
        own_run = await Researcher(client, erika_token).ask(older_than(50))
        response = await client.patch(path, json={"last_query_id": own_run}, headers=bearer(erika_token))
        assert response.json()["last_query_id"] == own_run

        others_run = await Researcher(client, max_token).ask(older_than(70))
        for query_id in ("no-such-query", others_run):
            response = await client.patch(path, json={"last_query_id": query_id}, headers=bearer(erika_token))
            assert response.status_code == 404, response.text
            assert response.json() == {"error": f"no query {query_id} of yours"}
        assert (await client.get(path, headers=bearer(erika_token))).json()["last_query_id"] == own_run


# --- who sees what -------------------------------------------------------------------------------------


async def test_a_researcher_can_neither_see_nor_change_nor_delete_anothers_saved_query(
    hub: HubFixture, people: People
) -> None:
    erika_token = hub.user("erika@example.org")
    max_token = hub.user("max@example.org")
    people.approved("max.portal@example.org")
    app = hub.app()
    async with serving(app) as client, browser(app) as max_browser:
        saved = await _save(client, erika_token, "Erikas Kohorte", older_than(50))
        path = f"{SAVED}/{saved['id']}"
        attempts = [
            client.get(path, headers=bearer(max_token)),
            client.get(f"{path}/export", headers=bearer(max_token)),
            client.patch(path, json={"name": "Meins"}, headers=bearer(max_token)),
            client.post(f"{path}/duplicate", headers=bearer(max_token)),
            client.delete(path, headers=bearer(max_token)),
        ]
        for attempt in attempts:
            response = await attempt
            assert response.status_code == 404, response.request.method
            assert response.json() == {"error": f"no saved query {saved['id']}"}
        assert await _names(client, max_token) == []

        await max_browser.login("max.portal@example.org", "a long enough passphrase")
        assert (await max_browser.get(f"/queries/saved/{saved['id']}")).status_code == 404
        assert "Erikas Kohorte" not in (await max_browser.get("/queries")).text
        assert (await client.get(path, headers=bearer(erika_token))).json() == saved


async def test_the_history_lists_the_users_own_queries_newest_first(hub: HubFixture) -> None:
    hub.sites("uk-a", "uk-b", "uk-c")
    erika_token, max_token = hub.user("erika@example.org"), hub.user("max@example.org")
    admin_token = hub.user("office@example.org", Role.ADMIN)
    async with serving(hub.app()) as client:
        erika, max_ = Researcher(client, erika_token), Researcher(client, max_token)
        asked = []
        for years in (40, 50, 60):
            asked.append(await erika.ask(older_than(years)))
            await max_.ask(older_than(years + 1))
            hub.clock.advance(60)
        asked.append(await erika.ask(older_than(40)))  # the same question again: the stored answer
        response = await client.get(f"{RESEARCHER_API}/history", headers=bearer(erika_token))
        assert response.status_code == 200
        history = response.json()["history"]
        assert [entry["query_id"] for entry in history] == asked[::-1]
        assert [entry["reused"] for entry in history] == [True, False, False, False]
        assert history[0]["query_id"] == history[-1]["query_id"]
        assert [entry["query"]["inclusionCriteria"][0][0]["valueFilter"]["value"] for entry in history] == [
            40,
            60,
            50,
            40,
        ]
        response = await client.get(
            f"{RESEARCHER_API}/history", params={"limit": 2}, headers=bearer(erika_token)
        )
        assert [entry["query_id"] for entry in response.json()["history"]] == asked[:1:-1]
        response = await client.get(f"{RESEARCHER_API}/history", headers=bearer(admin_token))
        assert response.json() == {"history": []}  # an administrator's history is their own too


@pytest.mark.parametrize("saved_id", ["0", "-1", str(2**31), "99999999999999999999"])
async def test_a_saved_query_id_out_of_range_is_refused_naming_it(hub: HubFixture, saved_id: str) -> None:
    token = hub.user()
    async with serving(hub.app()) as client:
        requests = [
            client.get(f"{SAVED}/{saved_id}", headers=bearer(token)),
            client.get(f"{SAVED}/{saved_id}/export", headers=bearer(token)),
            client.patch(f"{SAVED}/{saved_id}", json={"name": "x"}, headers=bearer(token)),
            client.post(f"{SAVED}/{saved_id}/duplicate", headers=bearer(token)),
            client.delete(f"{SAVED}/{saved_id}", headers=bearer(token)),
        ]
        for request in requests:
            response = await request
            assert response.status_code == 422, response.request.url
            assert response.json()["error"].startswith("saved_id: ")
