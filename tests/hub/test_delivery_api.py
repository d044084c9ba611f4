"""The delivery's HTTP side, in-process: hostile uploads get a clear 4xx naming what is wrong and store
nothing; a good upload and the team's download go through."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from datenraum.hub.accounts.service import User
from datenraum.hub.delivery.service import CHUNK_MAX, Deliveries
from datenraum.hub.roles import Role

from .helpers import HubFixture, bearer, serving
from .portal_helpers import OFFICE, People, UseAndAccess

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

PACKAGE = b"sealed package bytes " * 100


@pytest.fixture
def released(hub: HubFixture, people: People, tmp_path: Path) -> dict:
    credentials = hub.sites("uk-a", "uk-b")
    owner_token = hub.user("pi@example.org")
    owner = hub.accounts.user_for(owner_token)
    assert owner is not None
    office_id = people.approved("office@example.org", Role.ADMIN)
    people.users.grant(OFFICE, office_id, Role.SITE_ADMIN, "uk-a")
    committee_id = people.approved("committee@example.org", Role.COMMITTEE)
    office = people.acting(office_id)
    objects = UseAndAccess.on(hub, tmp_path / "uploads", "uk-a")
    folder = tmp_path / "deliveries"
    actors = (people.acting(owner.id), office, people.acting(committee_id), office)
    proposal_id, task_id = objects.awaiting_release(hub, folder, actors, "uk-a")
    custodian = User(office.user_id, "office@example.org", office.roles, office.site_ids)
    Deliveries(hub.sessions, hub.config, hub.clock).release(custodian, task_id)
    return {
        "app": hub.app(delivery_folder=str(folder)),
        "site": bearer(credentials["uk-a"]),
        "other_site": bearer(credentials["uk-b"]),
        "owner": bearer(owner_token),
        "stranger": bearer(hub.user("other@example.org")),
        "task": task_id,
        "proposal": proposal_id,
        "folder": folder,
    }


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_hostile_uploads_are_refused_with_what_is_wrong_and_nothing_is_kept(released: dict) -> None:
    task, site = released["task"], released["site"]
    url = f"/api/site/v1/deliveries/{task}/upload"
    chunk = PACKAGE[:100]
    async with serving(released["app"]) as client:
        cases = [
            (dict(params={"offset": 0}, content=chunk, headers=site), 422, "X-Chunk-SHA256"),
            (
                dict(params={"offset": -1}, content=chunk, headers={**site, "X-Chunk-SHA256": digest(chunk)}),
                422,
                "offset",
            ),
            (
                dict(params={"offset": 0}, content=chunk, headers={**site, "X-Chunk-SHA256": digest(b"x")}),
                422,
                "SHA-256",
            ),
            (
                dict(params={"offset": 0}, content=chunk, headers={**site, "X-Chunk-SHA256": "zz"}),
                422,
                "X-Chunk-SHA256",
            ),
            (
                dict(params={"offset": 5}, content=chunk, headers={**site, "X-Chunk-SHA256": digest(chunk)}),
                409,
                "continues at offset 0",
            ),
            (
                dict(
                    params={"offset": 0},
                    content=chunk,
                    headers={**released["other_site"], "X-Chunk-SHA256": digest(chunk)},
                ),
                404,
                "no task",
            ),
            (
                dict(
                    params={"offset": 0},
                    content=b"\0" * (CHUNK_MAX + 1),
                    headers={**site, "X-Chunk-SHA256": "0" * 64},
                ),
                413,
                "larger than",
            ),
        ]
        for kwargs, status, text in cases:
            response = await client.put(url, **kwargs)
            assert response.status_code == status, (kwargs.get("params"), response.text)
            assert text in response.text
        for path in (
            "/api/site/v1/deliveries/..%2F..%2Fetc/upload",
            "/api/site/v1/deliveries/not-a-task/upload",
        ):
            assert (await client.get(path, headers=site)).status_code == 404
        complete = f"/api/site/v1/deliveries/{task}/complete"
        for body, status in (
            ({"bytes": "1", "sha256": digest(PACKAGE)}, 422),
            ({"bytes": 1}, 422),
            ({"bytes": 10, "sha256": digest(PACKAGE)}, 409),
        ):
            response = await client.post(complete, json=body, headers=site)
            assert response.status_code == status, response.text
        assert (await client.get(url, headers=site)).json()["received"] == 0
    assert not list(released["folder"].rglob("*.dpkg"))


async def test_an_upload_in_chunks_then_the_teams_download(released: dict) -> None:
    task, site = released["task"], released["site"]
    async with serving(released["app"]) as client:
        offset = 0
        while offset < len(PACKAGE):
            part = PACKAGE[offset : offset + 700]
            response = await client.put(
                f"/api/site/v1/deliveries/{task}/upload",
                params={"offset": offset},
                content=part,
                headers={**site, "X-Chunk-SHA256": digest(part)},
            )
            assert response.status_code == 200, response.text
            offset = response.json()["received"]
        done = await client.post(
            f"/api/site/v1/deliveries/{task}/complete",
            json={"bytes": len(PACKAGE), "sha256": digest(PACKAGE)},
            headers=site,
        )
        assert done.json() == {"state": "uploaded", "sha256": digest(PACKAGE)}
        url = f"/api/v1/deliveries/{released['proposal']}/download"
        assert (await client.get(url, headers=released["stranger"])).status_code == 404
        download = await client.get(url, headers=released["owner"])
        assert download.status_code == 200 and PACKAGE in download.content
        state = await client.get(f"/api/v1/deliveries/{released['proposal']}", headers=released["owner"])
        assert state.json()["state"] == "fetched"
