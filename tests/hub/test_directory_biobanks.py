"""Biobanks join the network directory from their sites' reports: the catalogue report of a site names
the biobanks of its store that hold samples of enough donors, and the directory lists exactly those, as
entries of kind `biobank` the site takes part in; a biobank no longer reported leaves, a bad listing is
refused whole, and the office cannot enter biobanks by hand."""

from __future__ import annotations

import pytest

from datenraum.hub.directory.service import Directory, Entry, EntryKind, Site
from datenraum.hub.errors import Invalid
from datenraum.hub.roles import Actor
from datenraum.protocol.messages import BiobankListing, SiteCount, SiteMetadata, TaskResult, TaskState

from .helpers import SITE_API, HubFixture, bearer, serving

pytestmark = pytest.mark.anyio

OFFICE = Actor(1, frozenset({"admin"}))
CHARITE = BiobankListing(
    "org-biobank-charite", "Zentrale Biobank der Charité", "bbmri-eric:ID:DE_CHARITE", None,
    ("blood-serum", "whole-blood"), ("-60to-85",),
)  # fmt: skip
COLLECTION = BiobankListing(
    "org-covid-collection", "COVID-19 collection", None, "org-biobank-charite", ("swab",), ()
)


def metadata(*biobanks: BiobankListing) -> SiteMetadata:
    return SiteMetadata(generation=1, patients=SiteCount(4000), records=SiteCount(90_000), biobanks=biobanks)


async def report(client, credential: str, listing: SiteMetadata, generation: int) -> int:
    headers = bearer(credential)
    await client.post(
        f"{SITE_API}/heartbeat", json={"version": "1", "generation": generation}, headers=headers
    )
    tasks = (await client.get(f"{SITE_API}/metadata-tasks", headers=headers)).json()["tasks"]
    task_id = tasks[0]["id"]
    body = TaskResult(task_id, TaskState.ANSWERED, metadata=listing).to_json()
    response = await client.post(f"{SITE_API}/metadata-tasks/{task_id}/result", json=body, headers=headers)
    return response.status_code


def biobank_entries(directory: dict) -> list[dict]:
    return [entry for entry in directory["entries"] if entry["kind"] == "biobank"]


async def test_a_sites_report_lists_its_biobanks_and_a_later_one_takes_them_away(hub: HubFixture) -> None:
    credential = hub.sites("uk-berlin")["uk-berlin"]
    Directory(hub.sessions).save_site(
        OFFICE, Site("uk-berlin", "Charité – Universitätsmedizin Berlin", "Berlin")
    )
    async with serving(hub.app()) as client:
        assert await report(client, credential, metadata(CHARITE, COLLECTION), 1) == 200
        listed = biobank_entries((await client.get("/api/v1/directory")).json())
        assert [entry["name"] for entry in listed] == ["COVID-19 collection", "Zentrale Biobank der Charité"]
        charite = next(entry for entry in listed if entry["name"].startswith("Zentrale"))
        assert charite["acronym"] == "bbmri-eric:ID:DE_CHARITE"
        assert "Holds samples of: Serum, Whole blood. Storage: -60 to -85 °C." in charite["description"]
        site = next(
            s for s in (await client.get("/api/v1/directory")).json()["sites"] if s["slug"] == "uk-berlin"
        )
        assert {p["entry"] for p in site["participations"]} == {entry["slug"] for entry in listed}
        page = (await client.get("/directory")).text
        assert "Zentrale Biobank der Charité" in page and 'id="directory-biobanks"' in page
        entry_page = (await client.get(f"/directory/entries/{charite['slug']}")).text
        assert "Charité – Universitätsmedizin Berlin" in entry_page

        # The collection is no longer reported (its donors fell under the threshold): it leaves.
        assert await report(client, credential, metadata(CHARITE), 2) == 200
        listed = biobank_entries((await client.get("/api/v1/directory")).json())
        assert [entry["slug"] for entry in listed] == [charite["slug"]]


async def test_a_bad_biobank_name_is_refused_and_nothing_of_the_report_is_kept(hub: HubFixture) -> None:
    credential = hub.sites("uk-berlin")["uk-berlin"]
    Directory(hub.sessions).save_site(OFFICE, Site("uk-berlin", "Charité", "Berlin"))
    hostile = BiobankListing("org-x", "B" * 301, None, None, ("serum",), ())
    async with serving(hub.app()) as client:
        headers = bearer(credential)
        tasks = (await client.get(f"{SITE_API}/metadata-tasks", headers=headers)).json()["tasks"]
        body = TaskResult(tasks[0]["id"], TaskState.ANSWERED, metadata=metadata(hostile)).to_json()
        response = await client.post(
            f"{SITE_API}/metadata-tasks/{tasks[0]['id']}/result", json=body, headers=headers
        )
        assert response.status_code in (400, 422), response.text
        assert "metadata.biobanks[].name: expected a string of at most 300 characters" in response.text
        assert biobank_entries((await client.get("/api/v1/directory")).json()) == []
        # The task is still open: the site can answer it again, correctly.
        assert (await client.get(f"{SITE_API}/metadata-tasks", headers=headers)).json()["tasks"]


async def test_a_site_the_directory_does_not_know_lists_no_biobank(hub: HubFixture) -> None:
    credential = hub.sites("uk-neu")["uk-neu"]
    async with serving(hub.app()) as client:
        assert await report(client, credential, metadata(CHARITE), 1) == 200
        assert biobank_entries((await client.get("/api/v1/directory")).json()) == []


def test_the_office_cannot_enter_a_biobank_by_hand(hub: HubFixture) -> None:
    with pytest.raises(Invalid, match="biobanks are listed by their sites' reports"):
        Directory(hub.sessions).save_entry(OFFICE, Entry("bb-x", EntryKind.BIOBANK, "BB", "A biobank"))
