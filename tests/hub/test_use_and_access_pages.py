"""The Use & Access pages and the directory pages, in-process on SQLite and PostgreSQL: who the
notifications go to, that a form sent by hand is refused as the workflow would refuse the button,
that strangers see nothing, that downloads are attachments with safe names, that the directory is
public but changed by the coordination office only, and that every text has German and English.
(The whole walk from draft to delivered is the browser test in tests/e2e.)"""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from datenraum.cli import main
from datenraum.hub.accounts.audit import AuditSource
from datenraum.hub.accounts.outbox import Outbox
from datenraum.hub.accounts.service import PortalRoleHolders, Site
from datenraum.hub.accounts.users import Status, Users
from datenraum.hub.db import SiteRow
from datenraum.hub.directory.service import EntryKind, load_seed
from datenraum.hub.portal import i18n
from datenraum.hub.proposals.values import Analysis, DocumentKind, ProjectRole
from datenraum.hub.proposals.workflow import Action, State
from datenraum.hub.roles import Role
from datenraum.hub.samples.service import SampleSearches
from datenraum.protocol.messages import TaskResult, TaskState

from .helpers import HubFixture, older_than, serving

pytestmark = pytest.mark.anyio

PASSWORD = "Pruefung-der-Seiten-2026"
TEMPLATES = Path(i18n.__file__).with_name("templates")
OUR_TEMPLATES = (
    "proposals.html",
    "proposal.html",
    "proposal_form.html",
    "notifications.html",
    "directory.html",
    "directory_site.html",
    "directory_entry.html",
    "_directory_forms.html",
    "base.html",
)
ETHICS_VOTE = b"%PDF-1.7\n% Ethikvotum\n%%EOF\n"


class Browser:
    """One person's browser: cookies kept, the CSRF token sent with every form."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @property
    def csrf(self) -> str:
        return self.client.cookies["dr_csrf"]

    async def sign_in(self, email: str) -> None:
        await self.client.get("/login")
        response = await self.post("/login", email=email, password=PASSWORD)
        assert response.status_code == 303, response.text

    async def post(self, path: str, files: dict | None = None, **fields: object) -> httpx.Response:
        return await self.client.post(path, data={"csrf": self.csrf, **fields}, files=files)


@pytest.fixture
async def portal(hub: HubFixture, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = hub.app(upload_folder=str(tmp_path / "uploads"), upload_max_bytes=64 * 1024)
    async with serving(app) as client:
        yield client


@pytest.fixture
async def browser(portal: httpx.AsyncClient) -> AsyncIterator[Callable[[str], Awaitable[Browser]]]:
    """Sign someone in, in a browser of their own."""
    opened: list[httpx.AsyncClient] = []

    async def signed_in(email: str) -> Browser:
        client = httpx.AsyncClient(transport=portal._transport, base_url=portal.base_url)
        opened.append(client)
        person = Browser(client)
        await person.sign_in(email)
        return person

    yield signed_in
    for client in opened:
        await client.aclose()


def people(hub: HubFixture) -> dict[str, int]:
    """A researcher, the office, a committee member and the administrator of uk-a, by their role."""
    hub.sites("uk-a", "uk-b")
    emails = {
        "researcher": ("forscherin@example.org", Role.RESEARCHER),
        "stranger": ("fremd@example.org", Role.RESEARCHER),
        "admin": ("office@example.org", Role.ADMIN),
        "committee": ("committee@example.org", Role.COMMITTEE),
        "site-admin": ("dic@example.org", Role.RESEARCHER),
    }
    for email, role in emails.values():
        hub.accounts.create_user(email, role, password=PASSWORD)
    users = Users(hub.sessions, Outbox(hub.sessions, None))
    ids = users.approved_ids([email for email, _ in emails.values()])
    office = AuditSource(ids["office@example.org"], "office@example.org")
    users.grant(office, ids["dic@example.org"], Role.SITE_ADMIN, "uk-a")
    return {name: ids[email] for name, (email, _) in emails.items()}


def site_ids(hub: HubFixture) -> dict[str, int]:
    with hub.engine.connect() as connection:
        return dict(connection.execute(sa.select(SiteRow.name, SiteRow.id)).all())


async def submitted_proposal(hub: HubFixture, researcher: Browser) -> int:
    saved = await researcher.client.post(
        "/api/v1/saved-queries",
        json={"name": "Ältere", "query": older_than(50)},
        headers={"X-CSRF-Token": researcher.csrf},
    )
    assert saved.status_code == 201, saved.text
    response = await researcher.post(
        "/proposals/new",
        files={"ethics_vote": ("votum.pdf", ETHICS_VOTE, "application/pdf")},
        title="Diabetes und Niere",
        abstract="Wie häufig folgt eine Niereninsuffizienz?",
        questions="Inzidenz der CKD",
        cohort=f"saved:{saved.json()['id']}",
        modules=["Person", "Diagnose"],
        analysis="federated-analysis",
        site_ids=[str(site_ids(hub)["uk-a"])],
    )
    assert response.status_code == 303, response.text
    proposal_id = int(re.search(r"/proposals/(\d+)", response.headers["location"]).group(1))
    submit = await researcher.post(f"/proposals/{proposal_id}/actions/submit")
    assert submit.status_code == 303, submit.text
    return proposal_id


def test_role_holders_are_the_approved_accounts_with_the_role_for_the_site(hub: HubFixture) -> None:
    ids = people(hub)
    users = Users(hub.sessions, Outbox(hub.sessions, None))
    holders = PortalRoleHolders()
    uk_a, uk_b = site_ids(hub)["uk-a"], site_ids(hub)["uk-b"]
    with hub.sessions() as session:
        assert holders.user_ids(session, "committee") == [ids["committee"]]
        assert holders.user_ids(session, "site-admin", uk_a) == [ids["site-admin"]]
        assert holders.user_ids(session, "site-admin", uk_b) == []
        assert holders.user_ids(session, "site-admin") == []
    users.set_status(AuditSource(ids["admin"], "office@example.org"), ids["committee"], Status.DISABLED)
    with hub.sessions() as session:
        assert holders.user_ids(session, "committee") == []


async def test_an_action_sent_by_hand_is_refused_on_the_page_as_the_workflow_refuses_it(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    proposal_id = await submitted_proposal(hub, researcher)

    own_check = await researcher.post(f"/proposals/{proposal_id}/actions/start-formal-check")
    assert own_check.status_code == 403
    assert "only the role &#39;admin&#39; may do this" in own_check.text
    assert 'data-state="submitted"' in own_check.text

    office = await browser("office@example.org")
    page = await office.client.get(f"/proposals/{proposal_id}")
    assert 'data-action="start-formal-check"' in page.text
    assert 'data-action="request-revision"' not in page.text  # not before the check has started
    await office.post(f"/proposals/{proposal_id}/actions/start-formal-check")
    without_reason = await office.post(f"/proposals/{proposal_id}/actions/request-revision", reason="  ")
    assert without_reason.status_code == 409
    assert "a reason is required" in without_reason.text
    unknown = await office.post(f"/proposals/{proposal_id}/actions/approve-everything")
    assert unknown.status_code == 404

    site_admin = await browser("dic@example.org")
    assert (await site_admin.client.get(f"/proposals/{proposal_id}")).status_code == 200
    early = await site_admin.post(
        f"/proposals/{proposal_id}/actions/site-agree", site_id=str(site_ids(hub)["uk-a"])
    )
    assert early.status_code == 409
    assert "not possible while the proposal is formal-check" in early.text


async def test_a_stranger_finds_neither_the_proposal_nor_its_documents(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    proposal_id = await submitted_proposal(hub, researcher)
    page = await researcher.client.get(f"/proposals/{proposal_id}")
    document_path = re.search(rf"/proposals/{proposal_id}/documents/\d+", page.text).group(0)

    stranger = await browser("fremd@example.org")
    for path in (f"/proposals/{proposal_id}", document_path, f"/proposals/{proposal_id}/export.json"):
        response = await stranger.client.get(path)
        assert response.status_code == 404, path
        assert "<html" in response.text  # the portal's error page, not a stack trace
    listed = await stranger.client.get("/proposals")
    assert "Diabetes und Niere" not in listed.text
    uploaded = await stranger.post(
        f"/proposals/{proposal_id}/documents",
        files={"file": ("x.txt", b"hello", "text/plain")},
        kind="other",
    )
    assert uploaded.status_code == 404
    anonymous = await portal.get(document_path, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"].startswith("/login")


async def test_a_download_is_an_attachment_under_a_name_no_header_can_be_broken_by(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    proposal_id = await submitted_proposal(hub, researcher)
    name = "Vertrag; final – Prüfung.txt"
    stored = await researcher.post(
        f"/proposals/{proposal_id}/documents",
        files={"file": (name, b"Nutzungsvertrag\n", "application/pdf")},
        kind="data-use-agreement",
    )
    assert stored.status_code == 303, stored.text
    page = await researcher.client.get(f"/proposals/{proposal_id}")
    path = re.findall(rf"/proposals/{proposal_id}/documents/\d+", page.text)[-1]
    download = await researcher.client.get(path)
    assert download.content == b"Nutzungsvertrag\n"
    assert download.headers["content-type"] == "text/plain; charset=utf-8"  # what it is, not what was claimed
    disposition = download.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Vertrag_ final _ Pr_fung.txt"; ')
    assert disposition.endswith("filename*=UTF-8''Vertrag%3B%20final%20%E2%80%93%20Pr%C3%BCfung.txt")


async def test_the_dashboard_and_the_navigation_count_what_waits_for_each_person(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    proposal_id = await submitted_proposal(hub, researcher)
    office = await browser("office@example.org")
    waiting = await office.client.get("/proposals/waiting")
    assert f'data-proposal-id="{proposal_id}"' in waiting.text
    assert re.search(r'id="nav-waiting"[^>]*>[^<]*<span class="count" data-count="1">', waiting.text)
    committee = await browser("committee@example.org")
    assert f'data-proposal-id="{proposal_id}"' not in (await committee.client.get("/proposals/waiting")).text

    notifications = await office.client.get("/notifications")
    assert "waits for you: submitted" in notifications.text
    read = await office.post("/notifications/read", all="1")
    assert read.status_code == 303
    assert 'class="unread"' not in (await office.client.get("/notifications")).text


async def test_the_directory_is_public_and_only_the_office_changes_it(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    load_seed(hub.sessions)
    listing = await portal.get("/directory")
    assert listing.status_code == 200
    assert 'id="site-count">(37)' in listing.text
    assert "directory-admin" not in listing.text
    found = await portal.get("/directory", params={"q": "KOELN"})
    assert 'id="site-count">(1)' in found.text
    site = await portal.get("/directory/sites/uk-koeln")
    assert "HiGHmed" in site.text
    api = (await portal.get("/api/v1/directory")).json()
    assert len(api["sites"]) == 37
    assert (await portal.get("/api/v1/directory/sites/nowhere")).json() == {
        "error": "directory site 'nowhere'"
    }
    projects = (await portal.get("/api/v1/directory/entries", params={"kind": "project"})).json()
    assert {entry["kind"] for entry in projects["entries"]} == {"project"}

    researcher = await browser("forscherin@example.org")
    refused = await researcher.post(
        "/admin/directory/sites", slug="uk-fake", name="Fake", city="Nirgendwo", contact="x"
    )
    assert refused.status_code == 403
    office = await browser("office@example.org")
    invalid = await office.post("/admin/directory/sites", slug="Kein Slug", name="X", city="Y", contact="Z")
    assert invalid.status_code == 400
    assert "slug &#39;Kein Slug&#39;" in invalid.text
    assert 'value="X"' in invalid.text  # what was entered is still there
    saved = await office.post(
        "/admin/directory/sites", slug="uk-test", name="Testklinikum", city="Teststadt", contact="dic@test"
    )
    assert saved.status_code == 303
    joined = await office.post("/admin/directory/participations", site="uk-test", entry="mii", role="Partner")
    assert joined.status_code == 303
    assert (await portal.get("/api/v1/directory/sites/uk-test")).json()["participations"] == [
        {"entry": "mii", "role": "Partner"}
    ]


def test_seed_directory_adds_what_is_missing_and_then_nothing(database_url: str, hub: HubFixture) -> None:
    first = CliRunner().invoke(main, ["hub", "seed-directory", "--database-url", database_url])
    assert first.exit_code == 0, first.output
    assert "37 sites" in first.stderr
    again = CliRunner().invoke(main, ["hub", "seed-directory", "--database-url", database_url])
    assert "0 sites, 0 infrastructures and projects, 0 participations added" in again.stderr


def test_every_text_of_the_use_and_access_pages_is_there_in_german_and_english() -> None:
    catalogue = json.loads(Path(i18n.__file__).with_name("texts.json").read_text(encoding="utf-8"))
    used = set()
    for template in OUR_TEMPLATES:
        used |= set(re.findall(r't\[["\']([a-z_.\-]+)["\']\]', (TEMPLATES / template).read_text()))
    enumerated = {
        "proposal_state": State,
        "proposal_action": Action,
        "analysis": Analysis,
        "project_role": ProjectRole,
        "document_kind": DocumentKind,
        "directory_kind": EntryKind,
    }
    for prefix, values in enumerated.items():
        used |= {f"{prefix}.{value.value}" for value in values}
    used |= {
        f"event.{kind}" for kind in ("create", "comment", "upload", *(action.value for action in Action))
    }
    missing = sorted(
        key for key in used if not (catalogue.get(key, {}).get("de") and catalogue.get(key, {}).get("en"))
    )
    assert missing == []


async def test_a_document_over_the_upload_limit_gets_the_upload_message_not_a_bare_413(
    hub: HubFixture, tmp_path: Path
) -> None:
    people(hub)
    app = hub.app(upload_folder=str(tmp_path), max_body_bytes=32 * 1024, upload_max_bytes=64 * 1024)
    async with serving(app) as client:
        researcher = Browser(client)
        await researcher.sign_in("forscherin@example.org")
        proposal_id = await submitted_proposal(hub, researcher)
        oversized = await researcher.post(
            f"/proposals/{proposal_id}/documents",
            files={"file": ("anhang.pdf", b"%PDF-1.7\n" + bytes(80 * 1024), "application/pdf")},
            kind="other",
        )
        assert oversized.status_code == 400
        assert "anhang.pdf: 81929 bytes is more than the limit of 65536 bytes" in oversized.text
        elsewhere = await client.post("/api/v1/saved-queries", content=bytes(40 * 1024))
        assert elsewhere.status_code == 413


async def test_a_draft_form_with_a_mistake_comes_back_with_what_was_entered_and_chosen(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    saved = []
    for years in (50, 60):
        response = await researcher.client.post(
            "/api/v1/saved-queries",
            json={"name": f"Älter als {years}", "query": older_than(years)},
            headers={"X-CSRF-Token": researcher.csrf},
        )
        saved.append(response.json()["id"])
    created = await researcher.post("/proposals/new", title="Kohorten", cohort=f"saved:{saved[0]}")
    proposal_id = int(re.search(r"/proposals/(\d+)", created.headers["location"]).group(1))

    again = await researcher.post(
        f"/proposals/{proposal_id}/edit",
        title="Kohorten, geändert",
        cohort=f"saved:{saved[1]}",  # the first one unticked, the second one ticked
        data_from="31.12.2020",
        team_email="niemand@example.org",
        team_role="observer",
    )
    assert again.status_code == 400
    assert "data_from: &#39;31.12.2020&#39; is not a date (YYYY-MM-DD)" in again.text
    # An address without an account is invited, not refused: the form does not tell who has one.
    assert "team[0]" not in again.text
    assert 'value="niemand@example.org"' in again.text
    assert 'value="Kohorten, geändert"' in again.text
    assert re.search(r'value="kept:0"\s*>', again.text)  # shown, not ticked
    assert re.search(rf'value="saved:{saved[1]}"\s*checked', again.text)
    assert f'value="saved:{saved[0]}"' not in again.text  # it is the proposal's already, as kept:0

    fixed = await researcher.post(
        f"/proposals/{proposal_id}/edit", title="Kohorten, geändert", cohort=["kept:0", f"saved:{saved[1]}"]
    )
    assert fixed.status_code == 303
    page = await researcher.client.get(f"/proposals/{proposal_id}")
    assert "Älter als 50" in page.text
    assert "Älter als 60" in page.text


# --- the sample locator and the sample request items ---------------------------------------------------


def answer_sample_search(hub: HubFixture, site: str, biobank: str) -> None:
    """The site's answer to its open sample-search task, recorded as the site API records it."""
    searches = SampleSearches(hub.sessions, hub.config, hub.clock)
    account = Site(site_ids(hub)[site], site)
    [task] = searches.claim(account)
    count = {"obfuscated": 40}
    samples = {
        "patients": count,
        "specimens": count,
        "samples": count,
        "biobanks": [{"biobank": biobank, "name": "Biobank A", "patients": count}],
        "cells": [
            {"biobank": biobank, "category": "blood-plasma", "temperature": "-60to-85", "patients": count}
        ],
    }
    searches.record(account, task.id, TaskResult(task.id, TaskState.ANSWERED, samples=samples))


async def test_the_sample_pages_refuse_hostile_forms_naming_the_field_and_store_nothing(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    bad = await researcher.post("/samples", category="plutonium")
    assert bad.status_code == 422
    assert "samples.categories[0]" in bad.text
    injected = await researcher.post("/samples", diagnoses="E11'); DROP TABLE specimen; --")
    assert injected.status_code == 422
    assert "samples.diagnoses[0]" in injected.text
    foreign_cohort = await researcher.post("/samples", cohort="999999")
    assert foreign_cohort.status_code == 404
    assert hub.count("sample_searches") == 0

    searched = await researcher.post("/samples", category="blood", temperature="-60to-85")
    assert searched.status_code == 303, searched.text
    search_path = searched.headers["location"]
    page = await researcher.client.get(search_path)
    assert 'data-state="running"' in page.text
    for site in ("uk-a", "uk-b"):
        answer_sample_search(hub, site, "bb-a")
    page = await researcher.client.get(search_path)
    assert 'id="search-state" data-state="complete"' in page.text
    assert "Biobank A" in page.text

    draft = await researcher.post(
        "/proposals/new",
        title="Proben",
        abstract="Plasma",
        questions="Proteom",
        modules=["Person"],
        analysis="federated-analysis",
        site_ids=[str(site_ids(hub)["uk-a"])],
    )
    assert draft.status_code == 303, draft.text
    proposal_id = int(re.search(r"/proposals/(\d+)", draft.headers["location"]).group(1))
    fields = {"proposal": str(proposal_id), "donors": "10", "samples_per_donor": "1", "volume": "0,5 ml"}
    uk_a, uk_b = site_ids(hub)["uk-a"], site_ids(hub)["uk-b"]
    refused = {
        "item[0]: not a biobank of this search's answers": {**fields, "item": "999|bb-a"},
        "donors: a whole number": {**fields, "item": f"{uk_a}|bb-a", "donors": "-1"},
        "collection: retrospective or prospective": {**fields, "item": f"{uk_a}|bb-a", "collection": "x"},
        # uk-b answered, but the proposal does not ask it
        "site_id: not one of the proposal's sites": {
            **fields,
            "item": f"{uk_b}|bb-a",
            "collection": "prospective",
        },
    }
    for message, form in refused.items():
        response = await researcher.post(f"{search_path}/request", **form)
        assert response.status_code in (400, 422), response.text
        assert message in html.unescape(response.text)
    assert hub.count("proposal_sample_items") == 0

    added = await researcher.post(
        f"{search_path}/request", **{**fields, "item": f"{uk_a}|bb-a", "collection": "retrospective"}
    )
    assert added.status_code == 303, added.text
    items_page = await researcher.client.get(f"/proposals/{proposal_id}/samples")
    assert 'data-state="submitted"' in items_page.text
    unknown = await researcher.post(f"/proposals/{proposal_id}/samples/1", event="approve-everything")
    assert unknown.status_code == 400
    early = await researcher.post(f"/proposals/{proposal_id}/samples/1", event="contact")
    assert early.status_code in (403, 409)
    assert hub.count("proposal_sample_item_history") == 0

    stranger = await browser("fremd@example.org")
    assert (await stranger.client.get(f"/proposals/{proposal_id}/samples")).status_code == 404
    assert (await stranger.client.get(search_path)).status_code == 404


async def test_the_sample_search_asks_only_the_chosen_sites_and_refuses_a_forged_site_or_biobank(
    hub: HubFixture, portal: httpx.AsyncClient, browser
) -> None:
    people(hub)
    researcher = await browser("forscherin@example.org")
    form = await researcher.client.get("/samples")
    assert 'name="site" value="uk-a"' in form.text
    unknown_site = await researcher.post("/samples", site="uk-nowhere")
    assert unknown_site.status_code == 422
    assert "sites[0]: there is no active site" in html.unescape(unknown_site.text)
    forged_biobank = await researcher.post("/samples", biobank="bb' OR 1=1")
    assert forged_biobank.status_code == 422
    assert "samples.biobanks[0]" in forged_biobank.text
    assert hub.count("sample_searches") == 0
    searched = await researcher.post("/samples", site="uk-b", biobank="bbmri-eric:ID:DE_X")
    assert searched.status_code == 303, searched.text
    assert hub.count("sample_search_tasks") == 1
    page = await researcher.client.get(searched.headers["location"])
    assert 'data-site="uk-b"' in page.text
    assert 'data-site="uk-a"' not in page.text
