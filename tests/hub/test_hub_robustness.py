"""What the robustness probe of 2026-12 sent (issue 12, P-4, P-5, P-10; results #19-#26, #35, #36, #46,
#47): every request shape that gave a 500 gets a 4xx naming what is wrong, a page for a browser and
JSON for the API, with the security headers; a saved query stored by an older version that cannot be
read back is listed as unreadable, not a 500; and what a signed-in person sees is not cached.

Every test runs on SQLite and PostgreSQL, with the hub in-process.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from datenraum.hub.db import SavedQueryRow, UserRow
from datenraum.hub.roles import Role
from datenraum.query.model import canonical_json, parse_query, query_to_json

from .helpers import RESEARCHER_API, HubFixture, bearer, older_than, serving
from .portal_helpers import People, UseAndAccess, browser, database_contents

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

SAVED = f"{RESEARCHER_API}/saved-queries"
JSON = {"content-type": "application/json"}
CODE = "inclusionCriteria[0][0].termCodes[0].code"


def _diagnosis(code: str) -> str:
    """The probe's DX(code), as JSON text: `code` is written into it as it is, escapes and all."""
    return (
        '{"context":{"system":"fdpg.mii.cds","code":"Diagnose"},"termCodes":'
        '[{"system":"http://fhir.de/CodeSystem/bfarm/icd-10-gm","code":"' + code + '"}]}'
    )


def _query(criterion: str, extra: str = "") -> str:
    return '{"inclusionCriteria":[[' + criterion + "]]" + extra + "}"


def _age_over(value: str) -> str:
    return (
        '{"context":{"system":"fdpg.mii.cds","code":"Patient"},"termCodes":[{"system":"http://snomed.info/sct",'
        '"code":"424144002"}],"valueFilter":{"type":"quantity-comparator","comparator":"gt","value":'
        + value
        + ',"unit":{"code":"a"}}}'
    )


def _security_headers(response: httpx.Response) -> None:
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", ""), response
    assert response.headers.get("x-frame-options") == "DENY", response
    assert response.headers.get("x-content-type-options") == "nosniff", response


async def _post_both(client: httpx.AsyncClient, token: str, query: str) -> list[tuple[str, httpx.Response]]:
    """The query text submitted as a question and saved as a query, with how each names the query's
    JSON path: a question's errors start at the query ("$"), a saved query's at its field ("query")."""
    headers = {**bearer(token), **JSON}
    return [
        (
            "$",
            await client.post(
                f"{RESEARCHER_API}/queries", content='{"query":' + query + "}", headers=headers
            ),
        ),
        ("query", await client.post(SAVED, content='{"name":"p","query":' + query + "}", headers=headers)),
    ]


# --- P-4: what is saved is what the model reads, and a poisoned row stays readable ----------------------


async def test_p4_a_saved_query_with_a_key_nested_300_deep_is_refused_naming_the_path(
    hub: HubFixture,
) -> None:
    """#19: the probe's deep.json."""
    token = hub.user()
    deep = "[" * 300 + "1" + "]" * 300
    async with serving(hub.app()) as client:
        response = await client.post(
            SAVED,
            content='{"name":"p","query":' + _query(_diagnosis("E11"), ',"x":' + deep) + "}",
            headers={**bearer(token), **JSON},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"].startswith("query.x[0][0]"), response.text
    assert hub.count("saved_queries") == 0


async def test_p4_p5_a_lone_surrogate_in_a_code_is_refused_naming_the_path(hub: HubFixture) -> None:
    """#24, #25: `"\\ud800"` as a JSON escape, asked and saved; nothing is stored."""
    hub.sites("uk-a", "uk-b", "uk-c")
    token = hub.user()
    async with serving(hub.app()) as client:
        for field, response in await _post_both(client, token, _query(_diagnosis("\\ud800"))):
            assert response.status_code == 422, response.text
            assert response.json()["error"].startswith(f"{field}.{CODE}: "), response.text
        assert (await client.get(SAVED, headers=bearer(token))).status_code == 200
    assert hub.count("saved_queries") == 0
    assert hub.count("queries") == 0


@pytest.mark.parametrize(
    "where",
    [
        _query(_diagnosis("E11\\u0000")),
        _query(_diagnosis("E11").replace("icd-10-gm", "icd-10-gm\\u0000")),
        _query(_diagnosis("E11").replace('"Diagnose"', '"Diagnose","display":"\\u0000"')),
        _query(_diagnosis("E11"), ',"display":"Diabetes\\u0000"'),
        _query(_diagnosis("E11"), ',"version":"\\u0000"'),
        _query(_age_over("50").replace('"code":"a"', '"code":"a\\u0000"')),
        _query(_diagnosis("E11"), ',"display":"\\udfff"'),
    ],
    ids=["code", "system", "display", "query-display", "version", "unit", "surrogate-display"],
)
async def test_p10_nul_or_a_surrogate_in_any_string_of_a_query_is_refused(
    hub: HubFixture, where: str
) -> None:
    """#26: the hub refuses NUL elsewhere, because PostgreSQL cannot store it; in a query too."""
    hub.sites("uk-a", "uk-b", "uk-c")
    token = hub.user()
    async with serving(hub.app()) as client:
        for field, response in await _post_both(client, token, where):
            assert response.status_code == 422, response.text
            assert response.json()["error"].startswith(f"{field}."), response.text
    assert hub.count("saved_queries") == 0


async def test_p4_a_saved_query_is_stored_as_the_model_reads_it(hub: HubFixture) -> None:
    """Not "exactly as given": keys the model does not read are not stored, so nothing that cannot be
    written back is; the export is the re-serialised query, and reads as the same query."""
    token = hub.user()
    given = {**older_than(50), "x": {"anything": ["at", "all"]}}
    given["inclusionCriteria"][0][0]["attributeFilters"] = []
    async with serving(hub.app()) as client:
        response = await client.post(SAVED, json={"name": "Alte", "query": given}, headers=bearer(token))
        assert response.status_code == 201, response.text
        saved = response.json()
        assert saved["query"] == query_to_json(parse_query(given))
        assert "x" not in saved["query"]
        exported = await client.get(f"{SAVED}/{saved['id']}/export", headers=bearer(token))
        assert json.loads(exported.content) == saved["query"]
        assert canonical_json(parse_query(exported.content)) == canonical_json(parse_query(given))


def _poison(hub: HubFixture, email: str, name: str, query_text: str) -> int:
    """A saved query as an older version stored it, exactly as given, behind the API's back."""
    with hub.sessions.begin() as session:
        user_id = session.scalar(sa.select(UserRow.id).where(UserRow.email == email))
        row = SavedQueryRow(
            user_id=user_id, name=name, query={}, created=hub.clock.now, updated=hub.clock.now
        )
        session.add(row)
        session.flush()
        saved_id = row.id
    with hub.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE saved_queries SET query = :query WHERE id = :id"),
            {"query": query_text, "id": saved_id},
        )
    return saved_id


async def test_p4_a_poisoned_saved_query_is_listed_as_unreadable_and_can_be_deleted(
    hub: HubFixture, people: People
) -> None:
    """#20, #25: rows an older version stored make neither the list nor the pages answer 500."""
    people.approved("erika@example.org")
    token = hub.user("max@example.org")  # another account, to see that it is not affected
    deep = _query(_diagnosis("E11"), ',"x":' + "[" * 300 + "1" + "]" * 300)
    poisoned = [_poison(hub, "erika@example.org", "Tief", deep)]
    if hub.engine.dialect.name == "sqlite":  # PostgreSQL refuses a lone surrogate in JSON itself
        poisoned.append(_poison(hub, "erika@example.org", "Surrogat", _query(_diagnosis("\\ud800"))))
    app = hub.app()
    async with serving(app) as client, browser(app) as erika:
        await erika.login("erika@example.org")
        good = await erika.api("POST", SAVED, {"name": "Alte", "query": older_than(50)})
        assert good.status_code == 201, good.text
        response = await erika.api("GET", SAVED)
        assert response.status_code == 200, response.text
        listed = {saved["id"]: saved for saved in response.json()["saved_queries"]}
        assert listed[good.json()["id"]]["unreadable"] is None
        for saved_id in poisoned:
            assert listed[saved_id]["query"] is None
            assert "delete it" in listed[saved_id]["unreadable"]
            response = await erika.api("GET", f"{SAVED}/{saved_id}")
            assert response.status_code == 200, response.text
            assert response.json()["query"] is None
            for method, path in (
                ("GET", f"{SAVED}/{saved_id}/export"),
                ("POST", f"{SAVED}/{saved_id}/duplicate"),
            ):
                response = await erika.api(method, path)
                assert response.status_code == 409, response.text
                assert "delete it" in response.json()["error"]
        page = await erika.get("/queries")
        assert page.status_code == 200
        for saved_id in poisoned:
            assert f'data-action="delete" data-id="{saved_id}"' in page.text
            assert (await erika.get(f"/queries/saved/{saved_id}")).status_code == 409
        for saved_id in poisoned:
            assert (await erika.api("DELETE", f"{SAVED}/{saved_id}")).status_code == 204
        response = await erika.api("GET", SAVED)
        assert [saved["id"] for saved in response.json()["saved_queries"]] == [good.json()["id"]]
        assert (await client.get(SAVED, headers=bearer(token))).json() == {"saved_queries": []}


# --- P-5: numbers and ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1" + "0" * 400, "-1" + "0" * 400, "1" + "0" * 5000])
async def test_p5_an_integer_too_large_for_a_number_is_refused_naming_the_path(
    hub: HubFixture, value: str
) -> None:
    """#23: 10**400 as a value filter's value."""
    hub.sites("uk-a", "uk-b", "uk-c")
    token = hub.user()
    async with serving(hub.app()) as client:
        for field, response in await _post_both(client, token, _query(_age_over(value))):
            assert response.status_code in (400, 422), response.text
            if response.status_code == 422:
                assert response.json()["error"].startswith(
                    f"{field}.inclusionCriteria[0][0].valueFilter.value: "
                ), response.text
    assert hub.count("saved_queries") == 0


BAD_IDS = [
    "99999999999999999999",
    str(2**63),
    str(2**31),
    "0",
    "-1",
    "%C2%B2",
    "%D9%A3",
    "1.0",
    "1e3",
    "0x10",
]


async def _proposal_world(hub: HubFixture, people: People, tmp_path: Path) -> tuple[UseAndAccess, int]:
    hub.sites("uk-a", "uk-b", "uk-c")
    erika = people.approved("erika@example.org")
    world = UseAndAccess.on(hub, tmp_path / "uploads", "uk-a")
    return world, world.draft(people.acting(erika))


@pytest.mark.parametrize("bad", BAD_IDS)
async def test_p5_a_path_id_that_is_not_a_row_id_is_a_422_page_never_500(
    hub: HubFixture, people: People, tmp_path: Path, bad: str
) -> None:
    """#35: ids above 2**63, non-ASCII digits and other non-ids in every portal and API path."""
    _world, proposal_id = await _proposal_world(hub, people, tmp_path)
    app = hub.app(upload_folder=str(tmp_path / "uploads"))
    async with serving(app), browser(app) as erika:
        await erika.login("erika@example.org")
        pages = [
            ("GET", f"/proposals/{bad}"),
            ("GET", f"/proposals/{bad}/edit"),
            ("GET", f"/proposals/{bad}/export.json"),
            ("GET", f"/proposals/{bad}/export.pdf"),
            ("GET", f"/proposals/{proposal_id}/documents/{bad}"),
            ("GET", f"/proposals/{bad}/documents/1"),
            ("GET", f"/queries/saved/{bad}"),
            ("POST", f"/proposals/{bad}/edit"),
            ("POST", f"/proposals/{bad}/actions/submit"),
            ("POST", f"/proposals/{bad}/comments"),
            ("POST", f"/proposals/{bad}/publications"),
        ]
        for method, path in pages:
            if method == "GET":
                response = await erika.get(path)
            else:
                response = await erika.submit(path, {"text": "x"})
            assert response.status_code in (404, 422), (path, response.status_code)
            assert response.headers["content-type"].startswith("text/html"), path
            _security_headers(response)
        for method in ("GET", "DELETE"):
            response = await erika.api(method, f"{SAVED}/{bad}")
            assert response.status_code in (404, 422), (bad, response.status_code)
            assert response.headers["content-type"] == "application/json"


FORMS = {
    "notification-superscript": ("/notifications/read", {"id": "²"}),
    "notification-huge": ("/notifications/read", {"id": "9" * 25}),
    "site-superscript": ("/proposals/new", {"title": "T", "site_ids": "²"}),
    "site-huge": ("/proposals/new", {"title": "T", "site_ids": "9" * 25}),
    "site-arabic-digit": ("/proposals/new", {"title": "T", "site_ids": "٣"}),
    "saved-superscript": ("/proposals/new", {"title": "T", "cohort": "saved:²"}),
    "saved-huge": ("/proposals/new", {"title": "T", "cohort": "saved:" + "9" * 25}),
    "kept-superscript": ("/proposals/{id}/edit", {"title": "T", "cohort": "kept:²"}),
    "kept-5000-digits": ("/proposals/{id}/edit", {"title": "T", "cohort": "kept:" + "9" * 5000}),
    "action-site-superscript": ("/proposals/{id}/actions/submit", {"site_id": "²"}),
    "action-site-huge": ("/proposals/{id}/actions/submit", {"site_id": "9" * 25}),
}


@pytest.mark.parametrize("case", sorted(FORMS))
async def test_p5_a_form_id_that_is_not_a_row_id_is_a_400_page_never_500(
    hub: HubFixture, people: People, tmp_path: Path, case: str
) -> None:
    """#36: form digits like `²` or above 2**63."""
    _world, proposal_id = await _proposal_world(hub, people, tmp_path)
    path, form = FORMS[case]
    app = hub.app(upload_folder=str(tmp_path / "uploads"))
    async with serving(app), browser(app) as erika:
        await erika.login("erika@example.org")
        before = database_contents(hub)
        response = await erika.submit(path.format(id=proposal_id), form)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("text/html")
        _security_headers(response)
        assert database_contents(hub) == before


# --- #46: an unexpected failure; #47: what a signed-in person sees is not cached --------------------------


async def test_p5_an_unexpected_failure_is_a_page_for_browsers_json_for_the_api_with_security_headers(
    hub: HubFixture,
) -> None:
    """#46: the 500 answer had no CSP, X-Frame-Options or nosniff, and was JSON on a page."""
    app = hub.app()

    async def broken() -> None:
        raise RuntimeError("password=hunter2 at /srv/hub/secret.py line 7")

    app.add_api_route("/api/v1/broken", broken)
    app.add_api_route("/broken", broken)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with serving(app), httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
        for path, accept, page in [
            ("/api/v1/broken", "*/*", False),
            ("/api/v1/broken", "application/json", False),
            ("/api/v1/broken", "text/html,application/xhtml+xml,*/*;q=0.8", True),
            ("/broken", "*/*", True),
            ("/broken", "application/json", True),
        ]:
            response = await client.get(path, headers={"accept": accept})
            assert response.status_code == 500, path
            _security_headers(response)
            assert "hunter2" not in response.text
            if page:
                assert response.headers["content-type"].startswith("text/html"), (path, accept)
                assert '<p class="error" role="alert">' in response.text
            else:
                assert response.json() == {"error": "internal error"}


async def test_47_responses_to_a_signed_in_request_are_not_stored_by_caches(
    hub: HubFixture, people: People
) -> None:
    people.approved("erika@example.org")
    token = hub.user("api@example.org", Role.RESEARCHER)
    app = hub.app()
    async with serving(app) as client, browser(app) as erika:
        response = await erika.login("erika@example.org")
        assert response.headers["cache-control"] == "no-store"  # it sets the session cookie
        for path in ("/account", "/queries", "/queries/new", "/proposals", "/no-such-page", "/"):
            response = await erika.get(path)
            assert response.headers.get("cache-control") == "no-store", path
        for path in (SAVED, f"{SAVED}/999", f"{RESEARCHER_API}/sites"):
            response = await erika.api("GET", path)
            assert response.headers.get("cache-control") == "no-store", path
            response = await client.get(path, headers=bearer(token))
            assert response.headers.get("cache-control") == "no-store", path


def test_the_reproductions_are_valid_json() -> None:
    for text in (_query(_diagnosis("E11")), _query(_age_over("50"))):
        assert isinstance(json.loads(text), dict)
