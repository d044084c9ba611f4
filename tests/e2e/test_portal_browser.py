"""A new researcher's first visit, in a real browser: register, wait for approval, sign in, build the
feasibility query of the issue ("women over 50 with type 2 diabetes and HbA1c above 6.5 %, without any
cancer diagnosis") from the criteria search, run it against three sites, see each site's answer arrive,
save it, and run it again from the saved queries."""

from __future__ import annotations

import json
import re
import time

from playwright.sync_api import Page, expect

from .conftest import ADMIN, ARTIFACTS, SITES, Portal

RESEARCHER = {
    "name": "Dr. Erika Mustermann",
    "institution": "Universitätsklinikum Nord, Klinik für Endokrinologie",
    "email": "erika.mustermann@uk-nord.example",
    "password": "Diabetes-Studie-2026",
}


def sign_in(page: Page, url: str, email: str, password: str) -> None:
    page.goto(f"{url}/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.locator("form.stacked button[type=submit]").click()


def pick_criterion(page: Page, slot: str, text: str, expected_code: str) -> None:
    """Type into a criteria search box and pick the suggestion with the expected code, by keyboard."""
    search = page.locator(slot).locator("input[role=combobox]").last
    search.fill(text)
    options = page.locator("[role=listbox]:visible [role=option]")
    expect(options.first).to_be_visible()
    codes = options.locator(".concept-code").all_inner_texts()
    index = next(i for i, code in enumerate(codes) if code.endswith(f" {expected_code}"))
    for _ in range(index):
        search.press("ArrowDown")
    search.press("Enter")


def last_criterion(page: Page):
    return page.locator("article.criterion").last


def test_a_new_researcher_gets_a_federated_count_without_help(portal: Portal, new_page, screenshots) -> None:
    started = time.monotonic()
    visitor = new_page()
    visitor.goto(portal.url)
    screenshots(visitor, "start-page")
    visitor.get_by_role("link", name=re.compile("Konto beantragen")).click()
    for field, value in RESEARCHER.items():
        visitor.locator(f"#{field}").fill(value)
    visitor.locator("#password_repeat").fill(RESEARCHER["password"])
    screenshots(visitor, "registration-form")
    visitor.locator("form.stacked button[type=submit]").click()
    expect(visitor.get_by_role("status")).to_contain_text(RESEARCHER["email"])
    screenshots(visitor, "registration-received")

    sign_in(visitor, portal.url, RESEARCHER["email"], RESEARCHER["password"])
    expect(visitor.get_by_role("alert")).to_contain_text("approval")
    screenshots(visitor, "sign-in-before-approval")

    office = new_page()
    sign_in(office, portal.url, *ADMIN)
    office.goto(f"{portal.url}/admin/accounts?status=pending")
    row = office.locator(f"tr[data-email='{RESEARCHER['email']}']")
    expect(row).to_contain_text(RESEARCHER["institution"])
    screenshots(office, "coordination-office-pending")
    row.get_by_role("button", name=re.compile("Freischalten")).click()
    expect(office.get_by_role("status")).to_contain_text("freigeschaltet")
    screenshots(office, "coordination-office-approved")

    sign_in(visitor, portal.url, RESEARCHER["email"], RESEARCHER["password"])
    expect(visitor).to_have_url(re.compile("/queries/new$"))
    screenshots(visitor, "builder-empty")

    inclusion, exclusion = ".add-criterion[data-list=inclusion]", ".add-criterion[data-list=exclusion]"
    pick_criterion(visitor, inclusion, "Geschlecht", "263495000")
    last_criterion(visitor).get_by_label(re.compile("weiblich|female", re.I)).check()
    pick_criterion(visitor, inclusion, "Alter", "424144002")
    age = last_criterion(visitor)
    age.locator("select").first.select_option("gt")
    age.locator("input[type=number]").fill("50")
    pick_criterion(visitor, inclusion, "Diabetes Typ 2", "E11")
    pick_criterion(visitor, inclusion, "HbA1c", "4548-4")
    hba1c = last_criterion(visitor)
    hba1c.locator("select").first.select_option("gt")
    hba1c.locator("input[type=number]").fill("6.5")
    hba1c.locator("select").nth(1).select_option("%")
    pick_criterion(visitor, exclusion, "Krebs", "C00-C97")
    visitor.locator("#query-name").fill("Frauen über 50 mit Typ-2-Diabetes, HbA1c > 6,5 %, ohne Krebs")
    screenshots(visitor, "builder-filled")

    visitor.locator("#run-query").click()
    total = visitor.locator("#total")
    expect(total).to_have_attribute("data-state", "complete", timeout=60_000)
    rows = visitor.locator("#site-results tr")
    expect(rows).to_have_count(len(SITES))
    for name, *_ in SITES:
        expect(visitor.locator(f"#site-results tr[data-site='{name}']")).to_have_attribute(
            "data-state", "answered"
        )
    expect(total).to_contain_text("Gesamt")
    screenshots(visitor, "results")
    elapsed = time.monotonic() - started
    (ARTIFACTS / "first-visit-seconds.json").write_text(json.dumps({"seconds": round(elapsed, 1)}) + "\n")

    visitor.locator("#save-query").click()
    expect(visitor.locator("#builder-message")).to_contain_text("gespeichert")
    expect(visitor).to_have_url(re.compile(r"/queries/saved/\d+$"))
    visitor.get_by_role("link", name="Meine Anfragen").click()
    saved_row = visitor.locator("#saved-queries tr[data-saved-id]")
    expect(saved_row).to_have_count(1)
    screenshots(visitor, "saved-queries")
    saved_row.get_by_role("link", name="Erneut ausführen").click()
    expect(visitor.locator("article.criterion")).to_have_count(5)
    expect(visitor.locator("#total")).to_have_attribute("data-state", "complete", timeout=60_000)
    screenshots(visitor, "rerun-results")


def test_the_builder_works_with_the_keyboard_alone_and_in_english(
    portal: Portal, new_page, screenshots
) -> None:
    page = new_page(locale="en-GB")
    sign_in(page, portal.url, *ADMIN)
    expect(page).to_have_url(re.compile("/queries/new$"))
    expect(page.locator("h1")).to_have_text("Feasibility query")
    search = page.locator(".add-criterion[data-list=inclusion] input[role=combobox]")
    search.focus()
    page.keyboard.type("E11")
    expect(page.locator("[role=listbox]:visible [role=option]").first).to_contain_text("E11")
    page.keyboard.press("Enter")
    expect(page.locator("article.criterion")).to_have_count(1)
    page.locator("#run-query").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#total")).to_have_attribute("data-state", "complete", timeout=60_000)
    expect(page.locator("#total")).to_contain_text("Total")
    screenshots(page, "english-keyboard-result")
