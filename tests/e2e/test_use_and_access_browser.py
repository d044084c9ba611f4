"""Use & Access in a real browser, with every person at their own computer: a researcher writes a
proposal and submits it; the coordination office checks it formally, sends it back once, and forwards
the revised proposal to the committee; two committee members approve it; of the two sites asked, one
agrees and one declines with a reason, so the project goes on with the one that agreed; the office
marks the data delivered. Each step is taken on the page, through the forms the workflow offers.

The people are created as an operator does, with `datenraum hub create-user`; the coordination office
gives the site administrators their role on its accounts page. The researcher's saved query is
asked and saved through the API (the builder's own browser test covers the builder).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from datenraum.devtools.federation import Researcher

from .conftest import ADMIN, Portal
from .test_portal_browser import sign_in

PASSWORD = "Antrag-im-Datenraum-2026"
TYPE_2_DIABETES = {
    "version": "http://json-schema.org/to-be-done/schema#",
    "display": "Typ-2-Diabetes",
    "inclusionCriteria": [
        [
            {
                "context": {"system": "fdpg.mii.cds", "code": "Diagnose", "display": "Diagnose"},
                "termCodes": [
                    {
                        "system": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
                        "code": "E11",
                        "display": "Diabetes mellitus, Typ 2",
                    }
                ],
            }
        ]
    ],
}
ETHICS_VOTE = b"%PDF-1.7\n% Votum der Ethikkommission der Universitaet Nord, Az. 2026-117\n%%EOF\n"
TITLE = "Nierenfunktion nach Erstdiagnose eines Typ-2-Diabetes"


@dataclass(frozen=True)
class Person:
    email: str
    role: str
    name: str


def create_people(portal: Portal, people: list[Person], token_folder: Path) -> None:
    """`datenraum hub create-user` for each person, side by side, each with a portal password."""
    token_folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **portal.federation.hub_env}
    running = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "datenraum", "hub", "create-user", person.email),
                *("--role", person.role, "--name", person.name, "--password-file", "-"),
                *("--token-file", str(token_folder / person.email)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        for person in people
    ]
    for person, process in zip(people, running, strict=True):
        output, _ = process.communicate(PASSWORD + "\n", timeout=120)
        assert process.returncode == 0, f"create-user {person.email}: {output}"


def saved_query_with_a_result(portal: Portal, token: str, name: str) -> None:
    """Ask the query at the hub, save it and remember the run, as the builder does."""
    researcher = Researcher(portal.url, token)
    try:
        submitted = researcher.submit(TYPE_2_DIABETES)
        assert submitted.status_code in (200, 201), submitted.text
        query_id = submitted.json()["id"]
        researcher.result(query_id)
        saved = researcher.client.post("/api/v1/saved-queries", json={"name": name, "query": TYPE_2_DIABETES})
        assert saved.status_code == 201, saved.text
        ran = researcher.client.patch(
            f"/api/v1/saved-queries/{saved.json()['id']}", json={"last_query_id": query_id}
        )
        assert ran.status_code == 200, ran.text
    finally:
        researcher.close()


def signed_in(new_page, portal: Portal, email: str, password: str = PASSWORD) -> Page:
    page = new_page()
    sign_in(page, portal.url, email, password)
    expect(page.locator(".account-link")).to_be_visible()
    return page


def act(page: Page, action: str, *, reason: str | None = None, site: str | None = None) -> None:
    """Take a workflow action with its form on the proposal page."""
    form = page.locator(f"form.action-form[data-action='{action}']")
    if site is not None:
        form.locator("select[name=site_id]").select_option(label=site)
    if reason is not None:
        form.locator("textarea[name=reason]").fill(reason)
    form.locator("button[type=submit]").click()


def expect_state(page: Page, state: str) -> None:
    expect(page.locator("#proposal-state")).to_have_attribute("data-state", state)


def open_from_waiting(page: Page, title: str) -> None:
    """Follow the navigation's "waiting for me" to the proposal: what a person does after a notice."""
    expect(page.locator("#nav-waiting .count")).not_to_have_text("0")
    page.locator("#nav-waiting").click()
    page.locator("#proposal-list").get_by_role("link", name=title).click()


def test_a_proposal_goes_from_draft_to_delivered(portal: Portal, new_page, screenshots, tmp_path) -> None:
    researcher = Person("dr.nierenfunktion@uk-nord.example", "researcher", "Dr. Nora Nieren")
    colleague = Person("statistik@uk-nord.example", "researcher", "Sven Statistik")
    members = [
        Person("uac.mitglied1@datenraum.example", "committee", "Prof. Clara Committee"),
        Person("uac.mitglied2@datenraum.example", "committee", "Prof. Carl Committee"),
    ]
    site_admins = {
        "uk-nord": Person("dic@uk-nord.example", "researcher", "DIZ Nord"),
        "uk-sued": Person("dic@uk-sued.example", "researcher", "DIZ Süd"),
    }
    create_people(portal, [researcher, colleague, *members, *site_admins.values()], tmp_path / "tokens")
    saved_query_with_a_result(
        portal, (tmp_path / "tokens" / researcher.email).read_text().strip(), "Typ-2-Diabetes (E11)"
    )

    office = signed_in(new_page, portal, *ADMIN)
    office.goto(f"{portal.url}/admin/accounts")
    for site, person in site_admins.items():
        row = office.locator(f"tr[data-email='{person.email}']")
        row.locator("form.grant select[name=role]").select_option("site-admin")
        row.locator("form.grant select[name=site]").select_option(site)
        row.locator("form.grant button").click()
        expect(office.get_by_role("status")).to_be_visible()
        row = office.locator(f"tr[data-email='{person.email}']")
        row.locator("form:has(input[name=role][value=researcher]) button").click()
        expect(office.locator(f"tr[data-email='{person.email}']")).to_contain_text(f"({site})")
        expect(row.locator("form:has(input[name=role][value=researcher])")).to_have_count(0)
    screenshots(office, "office-grants-site-administrators")

    # The researcher writes the proposal.
    author = signed_in(new_page, portal, researcher.email)
    author.get_by_role("link", name="Anträge").click()
    author.locator("#new-proposal").click()
    author.locator("#title").fill(TITLE)
    author.locator("#abstract").fill(
        "Wie häufig und wie schnell entwickelt sich nach der Erstdiagnose eines Typ-2-Diabetes eine "
        "chronische Niereninsuffizienz, und welche Laborwerte gehen ihr voraus?"
    )
    author.locator("#questions").fill(
        "Inzidenz der CKD (N18) nach Erstdiagnose E11\nVerlauf von eGFR und HbA1c vor der CKD-Diagnose"
    )
    author.locator("#cohort").get_by_label(re.compile("Typ-2-Diabetes")).check()
    for module in ("Person", "Diagnose", "Laborbefund", "Medikation"):
        author.locator("#modules").get_by_label(module, exact=True).check()
    author.locator("#data_from").fill("2015-01-01")
    author.locator("#data_to").fill("2025-12-31")
    author.locator("#biosamples").fill("Keine")
    author.locator("#analysis").get_by_label(re.compile("föderierte")).check()
    for site in site_admins:
        author.locator("#sites").get_by_label(site).check()
    author.locator("#start").fill("2027-01-01")
    author.locator("#end").fill("2028-12-31")
    author.locator("#team-email-0").fill(colleague.email)
    author.locator("#team-role-0").select_option("data-scientist")
    author.locator("#ethics_vote").set_input_files(
        {"name": "Ethikvotum 2026-117.pdf", "mimeType": "application/pdf", "buffer": ETHICS_VOTE}
    )
    screenshots(author, "researcher-writes-the-draft")
    author.locator("#save-draft").click()
    expect_state(author, "draft")
    expect(author.locator("#document-list")).to_contain_text("Ethikvotum 2026-117.pdf")
    expect(author.locator("#cohort-table")).to_contain_text("Typ-2-Diabetes (E11)")
    expect(author.locator("#cohort-table td.number")).to_have_text(re.compile(r"^\d+$"))
    proposal_url = author.url.split("?")[0]
    screenshots(author, "draft-saved")
    act(author, "submit")
    expect_state(author, "submitted")
    expect(author.locator("form.action-form[data-action='submit']")).to_have_count(0)
    screenshots(author, "submitted")

    # The coordination office checks it and sends it back once.
    office.goto(portal.url)
    open_from_waiting(office, TITLE)
    act(office, "start-formal-check")
    expect_state(office, "formal-check")
    act(office, "request-revision", reason="Bitte den Zeitraum der Laborwerte begründen.")
    expect_state(office, "revision-requested")
    screenshots(office, "office-asks-for-revision")

    author.goto(f"{portal.url}/notifications")
    expect(author.locator("#notification-list tr.unread").first).to_contain_text("revision-requested")
    screenshots(author, "researcher-notified")
    author.locator("#mark-all-read").click()
    expect(author.locator("#notification-list tr.unread")).to_have_count(0)
    author.goto(proposal_url)
    expect(author.locator("#timeline-table")).to_contain_text("Bitte den Zeitraum der Laborwerte begründen.")
    author.locator("#edit-proposal").click()
    author.locator("#biosamples").fill(
        "Keine; Laborwerte ab 2015, weil die Standorte sie ab dann digital führen"
    )
    author.locator("#save-draft").click()
    expect(author.get_by_role("status")).to_contain_text("gespeichert")
    act(author, "submit", reason="Zeitraum begründet")
    expect_state(author, "submitted")
    screenshots(author, "revised-and-submitted-again")

    office.goto(proposal_url)
    act(office, "start-formal-check")
    act(office, "forward-to-committee")
    expect_state(office, "committee-review")
    screenshots(office, "office-forwards-to-committee")

    # Two committee members vote; the second vote reaches the quorum.
    first = signed_in(new_page, portal, members[0].email)
    open_from_waiting(first, TITLE)
    first.locator("#comment-text").fill("Fragestellung klar; Datenschutzkonzept plausibel.")
    first.locator("#comment-form button").click()
    act(first, "vote-approve", reason="Wissenschaftlich gut begründet")
    expect_state(first, "committee-review")
    expect(first.locator("#votes")).to_contain_text(members[0].email)
    expect(first.locator("form.action-form[data-action^='vote-']")).to_have_count(0)
    screenshots(first, "first-committee-vote")
    second = signed_in(new_page, portal, members[1].email)
    open_from_waiting(second, TITLE)
    act(second, "vote-approve")
    expect_state(second, "approved")
    screenshots(second, "quorum-approves")

    office.goto(proposal_url)
    act(office, "request-site-decisions")
    expect_state(office, "site-decisions")

    # Each site's administrator decides for their site.
    north = signed_in(new_page, portal, site_admins["uk-nord"].email)
    open_from_waiting(north, TITLE)
    act(north, "site-agree", site="uk-nord", reason="Datennutzung durch das DIZ geprüft")
    expect(north.locator("#site-decisions tr[data-site='uk-nord']")).to_have_attribute(
        "data-decision", "agreed"
    )
    expect_state(north, "site-decisions")
    screenshots(north, "north-agrees")
    south = signed_in(new_page, portal, site_admins["uk-sued"].email)
    open_from_waiting(south, TITLE)
    act(south, "site-decline", site="uk-sued", reason="Laborsystem vor 2019 nicht im DIZ angebunden")
    expect_state(south, "ready-for-delivery")
    expect(south.locator("#site-decisions tr[data-site='uk-sued']")).to_contain_text(
        "Laborsystem vor 2019 nicht im DIZ angebunden"
    )
    screenshots(south, "south-declines-project-goes-on-with-north")

    office.goto(proposal_url)
    act(office, "mark-delivered")
    expect_state(office, "delivered")
    screenshots(office, "delivered")

    author.goto(proposal_url)
    expect_state(author, "delivered")
    kinds = author.locator("#timeline-table tr[data-kind]").evaluate_all(
        "rows => rows.map(row => row.dataset.kind)"
    )
    assert [kind for kind in kinds if kind not in ("create", "upload", "edit", "comment")] == [
        "submit",
        "start-formal-check",
        "request-revision",
        "submit",
        "start-formal-check",
        "forward-to-committee",
        "vote-approve",
        "vote-approve",
        "request-site-decisions",
        "site-agree",
        "site-decline",
        "mark-delivered",
    ]
    with author.expect_download() as pdf:
        author.locator("#export-pdf").click()
    assert pdf.value.suggested_filename.endswith(".pdf")
    assert Path(pdf.value.path()).read_bytes().startswith(b"%PDF")
    exported = author.request.get(f"{proposal_url}/export.json").json()
    assert exported["proposal"]["state"] == "delivered"
    assert [(site["site_name"], site["agreed"]) for site in exported["proposal"]["sites"]] == [
        ("uk-nord", True),
        ("uk-sued", False),
    ]
    screenshots(author, "researcher-sees-the-whole-history")


def test_the_upload_form_refuses_wrong_types_oversized_files_and_path_tricks(
    portal: Portal, new_page, screenshots, tmp_path
) -> None:
    researcher = Person("upload.test@uk-sued.example", "researcher", "Ulla Upload")
    create_people(portal, [researcher], tmp_path / "tokens")
    page = signed_in(new_page, portal, researcher.email)
    page.goto(f"{portal.url}/proposals/new")
    page.locator("#title").fill("Dokumente prüfen")
    page.locator("#save-draft").click()
    expect_state(page, "draft")

    def upload(name: str, content: bytes, claimed_type: str) -> None:
        page.locator("#document-file").set_input_files(
            {"name": name, "mimeType": claimed_type, "buffer": content}
        )
        page.locator("#upload-document").click()

    upload("votum.pdf", b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200), "application/pdf")
    expect(page.get_by_role("alert")).to_contain_text(
        "votum.pdf: the content is not one of the accepted types"
    )
    screenshots(page, "wrong-type-refused")
    upload("gross.pdf", b"%PDF-1.7\n" + b"0" * (300 * 1024), "application/pdf")
    expect(page.get_by_role("alert")).to_contain_text("is more than the limit of 262144 bytes")
    screenshots(page, "oversized-refused")
    upload("../../../etc/cron.d/evil.txt", b"* * * * * root true\n", "text/plain")
    expect(page.get_by_role("alert")).to_contain_text("must not contain folders or '..'")
    screenshots(page, "path-trick-refused")
    expect(page.locator("#document-list")).to_contain_text("Noch keine Dokumente")

    upload("Datennutzungsvertrag.txt", "Vertrag über die Nutzung – Entwurf\n".encode(), "text/plain")
    expect(page.get_by_role("status")).to_contain_text("gespeichert")
    link = page.locator("#document-list a").first
    expect(link).to_have_text("Datennutzungsvertrag.txt")
    answer = page.request.get(f"{portal.url}{link.get_attribute('href')}")
    assert answer.headers["content-disposition"].startswith('attachment; filename="Datennutzungsvertrag.txt"')
    stranger = httpx.get(f"{portal.url}{link.get_attribute('href')}", follow_redirects=False)
    assert stranger.status_code == 303  # to the sign-in page: no download without seeing the proposal


def test_anyone_finds_the_network_in_the_directory_without_signing_in(
    portal: Portal, new_page, screenshots
) -> None:
    visitor = new_page()
    visitor.goto(portal.url)
    visitor.get_by_role("link", name="Netzwerk").click()
    expect(visitor.locator("#directory-sites tbody tr")).to_have_count(37)
    screenshots(visitor, "directory-all-sites")
    visitor.locator("#directory-search").fill("koeln")
    visitor.locator("#directory-search").press("Enter")
    expect(visitor.locator("#directory-sites tbody tr")).to_have_count(1)
    visitor.get_by_role("link", name="Uniklinik Köln").click()
    expect(visitor).to_have_url(re.compile("/directory/sites/uk-koeln$"))
    expect(visitor.locator("#participations")).to_contain_text("HiGHmed")
    expect(visitor.locator("#directory-admin")).to_have_count(0)
    screenshots(visitor, "directory-site-page")
    visitor.locator("#participations").get_by_role("link", name="HiGHmed").click()
    expect(visitor.locator("#participants tbody tr").first).to_be_visible()
    screenshots(visitor, "directory-project-page")
