"""The sample locator and a sample request in a real browser, against the hub and three real site agents
on synthetic stores with biobanks (two of them answer sample searches, one does not): a researcher
searches blood and tissue samples, sees each site's answer per biobank and why one site gave none,
requests the samples of both collections of uk-nord in the draft of a proposal; once the proposal is
approved and at the sites, the coordination office contacts the biobank, which answers for each
collection (one available under conditions, one not), the researcher accepts the conditions, the
samples are made available, and the researcher sees every item's state and the biobank's messages.
"""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from .conftest import ADMIN, Portal
from .test_use_and_access_browser import (
    ETHICS_VOTE,
    Person,
    act,
    create_people,
    expect_state,
    saved_query_with_a_result,
    signed_in,
)

TITLE = "Plasmaproteom bei Typ-2-Diabetes"


def write_draft(author: Page, portal: Portal) -> str:
    """A draft proposal asking uk-nord, saved; its URL."""
    author.goto(f"{portal.url}/proposals")
    author.locator("#new-proposal").click()
    author.locator("#title").fill(TITLE)
    author.locator("#abstract").fill(
        "Proteomprofile im Plasma vor und nach Erstdiagnose eines Typ-2-Diabetes."
    )
    author.locator("#questions").fill("Welche Proteine gehen einer Nephropathie voraus?")
    author.locator("#cohort").get_by_label(re.compile("Proben Typ-2-Diabetes")).check()
    for module in ("Person", "Diagnose", "Bioprobe"):
        boxes = author.locator("#modules").get_by_label(module, exact=True)
        if boxes.count():
            boxes.check()
    author.locator("#data_from").fill("2015-01-01")
    author.locator("#data_to").fill("2025-12-31")
    author.locator("#biosamples").fill("Siehe Probenanfragen")
    author.locator("#analysis").get_by_label(re.compile("föderierte")).check()
    author.locator("#sites").get_by_label("uk-nord").check()
    author.locator("#start").fill("2027-01-01")
    author.locator("#end").fill("2028-12-31")
    author.locator("#ethics_vote").set_input_files(
        {"name": "Ethikvotum Proben.pdf", "mimeType": "application/pdf", "buffer": ETHICS_VOTE}
    )
    author.locator("#save-draft").click()
    expect_state(author, "draft")
    return author.url.split("?")[0]


def step(page: Page, item: int, event: str, message: str = "") -> None:
    """Take a step of the `item`-th request item on the proposal's sample page."""
    form = page.locator(".sample-item").nth(item).locator(f"form[data-event='{event}']")
    if message:
        form.locator("input[name=message]").fill(message)
    form.locator("button").click()


def expect_item(page: Page, item: int, state: str) -> None:
    expect(page.locator(".sample-item").nth(item)).to_have_attribute("data-state", state)


def test_samples_are_found_requested_in_a_proposal_and_answered_by_the_biobank(
    portal: Portal, new_page, screenshots, tmp_path
) -> None:
    researcher = Person("proben@uk-nord.example", "researcher", "Dr. Paula Proben")
    members = [
        Person("uac.proben1@datenraum.example", "committee", "Prof. Pia Committee"),
        Person("uac.proben2@datenraum.example", "committee", "Prof. Paul Committee"),
    ]
    biobanker = Person("biobank@uk-nord.example", "researcher", "Biobank Nord")
    create_people(portal, [researcher, *members, biobanker], tmp_path / "tokens")
    saved_query_with_a_result(
        portal, (tmp_path / "tokens" / researcher.email).read_text().strip(), "Proben Typ-2-Diabetes"
    )
    office = signed_in(new_page, portal, *ADMIN)
    office.goto(f"{portal.url}/admin/accounts")
    row = office.locator(f"tr[data-email='{biobanker.email}']")
    row.locator("form.grant select[name=role]").select_option("site-admin")
    row.locator("form.grant select[name=site]").select_option("uk-nord")
    row.locator("form.grant button").click()
    expect(office.locator(f"tr[data-email='{biobanker.email}']")).to_contain_text("(uk-nord)")

    author = signed_in(new_page, portal, researcher.email)
    proposal_url = write_draft(author, portal)

    # The search: the type tree's groups, every site asked; the answers arrive on the page.
    author.get_by_role("link", name="Proben finden").click()
    author.locator("#sample-types input[value=blood]").check()
    author.locator("#sample-types input[value=tissue]").check()
    screenshots(author, "search-form")
    author.locator("#search-samples").click()
    expect(author.locator("#search-state")).to_have_attribute("data-state", "complete", timeout=60_000)
    north = author.locator("section.site-samples[data-site='uk-nord']")
    expect(north).to_have_attribute("data-state", "answered")
    expect(author.locator("section.site-samples[data-site='uk-sued']")).to_have_attribute(
        "data-state", "answered"
    )
    west = author.locator("section.site-samples[data-site='um-west']")
    expect(west).to_have_attribute("data-state", "failed")
    expect(west.locator(".reason")).to_contain_text("sample-search")
    # Two of three sites answered: no total, by the rule for totals.
    expect(author.locator("#total-patients")).to_contain_text("nicht gezeigt")
    collections = north.locator("input[name=item]")
    expect(collections).to_have_count(2)
    expect(north.locator("table.data").first).to_contain_text(re.compile(r"Plasma|Serum|Vollblut|Buffy"))
    screenshots(author, "answers-per-site-and-biobank")

    # Request the samples of both collections in the draft.
    for index in range(2):
        collections.nth(index).check()
    author.locator("#request-proposal").select_option(value=proposal_url.rsplit("/", 1)[1])
    author.locator("#request-donors").fill("40")
    author.locator("#request-per-donor").fill("2")
    author.locator("#request-volume").fill("je 0,5 ml")
    author.locator("#request-storage").fill("Trockeneis-Versand")
    author.locator("#request-these").click()
    expect(author.locator(".sample-item")).to_have_count(2)
    for index in range(2):
        expect_item(author, index, "submitted")
    screenshots(author, "request-items-in-the-draft")

    # The proposal goes through Use & Access to the sites.
    author.goto(proposal_url)
    act(author, "submit")
    expect_state(author, "submitted")
    office.goto(proposal_url)
    act(office, "start-formal-check")
    act(office, "forward-to-committee")
    expect_state(office, "committee-review")
    for member in members:
        voter = signed_in(new_page, portal, member.email)
        voter.goto(proposal_url)
        act(voter, "vote-approve")
    office.goto(proposal_url)
    expect_state(office, "approved")
    act(office, "request-site-decisions")
    expect_state(office, "site-decisions")

    # The coordination office contacts the biobank for each item.
    office.locator("#sample-requests").click()
    for index in range(2):
        step(office, index, "contact", "Bitte Verfügbarkeit prüfen")
        expect_item(office, index, "representative-contacted")
    # No step of the biobank's is offered to the office.
    expect(office.locator("form[data-event='check-availability']")).to_have_count(0)

    # The biobank answers for each collection.
    bank = signed_in(new_page, portal, biobanker.email)
    bank.goto(f"{proposal_url}/samples")
    for index in range(2):
        step(bank, index, "check-availability")
        expect_item(bank, index, "checking-availability")
    step(bank, 0, "mark-available")
    expect_item(bank, 0, "available")
    step(bank, 0, "indicate-access-conditions", "Materialtransfervereinbarung erforderlich")
    expect_item(bank, 0, "access-conditions-indicated")
    step(bank, 1, "mark-unavailable", "Keine Gewebeproben dieser Kohorte")
    expect_item(bank, 1, "unavailable")
    screenshots(bank, "biobank-answers")

    # The researcher sees the answers, accepts the conditions; the biobank makes the samples available.
    author.goto(f"{proposal_url}/samples")
    expect_item(author, 0, "access-conditions-indicated")
    expect_item(author, 1, "unavailable")
    expect(author.locator(".sample-item").nth(0)).to_contain_text("Materialtransfervereinbarung erforderlich")
    expect(author.locator(".sample-item").nth(1)).to_contain_text("Keine Gewebeproben dieser Kohorte")
    step(author, 0, "accept-access-conditions", "MTA unterschrieben")
    expect_item(author, 0, "access-conditions-met")
    bank.goto(f"{proposal_url}/samples")
    step(bank, 0, "make-available", "Versand am Montag")
    expect_item(bank, 0, "made-available")

    author.goto(f"{proposal_url}/samples")
    expect_item(author, 0, "made-available")
    expect_item(author, 1, "unavailable")
    expect(author.locator(".sample-item").nth(0).locator("ol.history li")).to_have_count(6)
    expect(author.locator("form[data-event]")).to_have_count(0)
    screenshots(author, "researcher-sees-the-states")
