"""The study pages in a real browser, against a hub process on PostgreSQL: a study lead sets up a study
from the GECCO REDCap dictionary (fourteen forms and the conversion report), and sets up another and designs a form whose preview (the vendored lforms) hides and shows an item by its branching and
updates a calculation live; saving publishes version 1, and a save tampered with on its way is refused
with the item named next to it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Page, Route, expect
from shared_data import shared_data_folder

from datenraum.devtools.federation import LocalFederation

from .test_portal_browser import sign_in

LEAD = ("studienleitung@datenraum.example", "Studienleitung-2026")


@dataclass
class StudyHub:
    url: str


@pytest.fixture(scope="module")
def study_hub(tmp_path_factory: pytest.TempPathFactory, postgres_server) -> Iterator[StudyHub]:
    """A hub with two sites (no agents: the study pages need none) and a researcher to lead studies."""
    workdir = tmp_path_factory.mktemp("study-hub")
    federation = LocalFederation(
        workdir,
        database_url=postgres_server.new_database(),
        hub_env={"DATENRAUM_HUB_STUDY_KEY_FILE": str(workdir / "study.key")},
    )
    try:
        federation.register(
            sites=["uk-a", "uk-b"], users=[(LEAD[0], "researcher")], passwords={LEAD[0]: LEAD[1]}
        )
        federation.start_hub()
        yield StudyHub(federation.url)
    finally:
        federation.close()


def _lead(new_page, hub: StudyHub) -> Page:
    page = new_page()
    sign_in(page, hub.url, *LEAD)
    expect(page.locator(".account-link")).to_be_visible()
    return page


def _new_study(page: Page, hub: StudyHub, code: str) -> None:
    page.goto(f"{hub.url}/studies")
    page.locator("#study-code").fill(code)
    page.locator("#study-title").fill("Ruhestand und Gesundheit")
    page.locator("#study-acronym").fill("RuGe")
    page.locator("#new-study button[type=submit]").click()
    expect(page.locator("#study-status")).to_have_text("geplant")


def _add_item(page: Page, link_id: str, text: str, type_: str) -> str:
    """Add an item in the designer and fill its first fields; the item's element id prefix."""
    page.locator("#designer-add").click()
    index = page.locator("#designer-items > li").count() - 1
    prefix = f"#item-{index}"
    page.locator(f"{prefix}-link").fill(link_id)
    page.locator(f"{prefix}-link").dispatch_event("change")
    page.locator(f"{prefix}-text").fill(text)
    page.locator(f"{prefix}-text").dispatch_event("change")
    page.locator(f"{prefix}-type").select_option(type_)
    return prefix


def _designed_form(page: Page, hub: StudyHub, code: str) -> None:
    page.goto(f"{hub.url}/studies/{code}/design")
    page.locator("#new-form").click()
    page.wait_for_function("() => window.LForms && LForms.Util && LForms.Util.addFormToPage")
    page.locator("#designer-title").fill("Ruhestand")
    page.locator("#designer-url").fill(f"https://datenraum.example/fhir/Questionnaire/{code}-ruhestand")
    page.locator("#designer-url").dispatch_event("change")
    _add_item(page, "age", "Alter (Jahre)", "integer")
    retired = _add_item(page, "retired", "Seit wann in Rente (Jahr)", "integer")
    page.locator(f"{retired}-when").select_option("age")
    page.locator(f"{retired}-operator").select_option(">")
    page.locator(f"{retired}-value").fill("65")
    page.locator(f"{retired}-value").dispatch_event("change")
    months = _add_item(page, "months", "Alter in Monaten", "integer")
    page.locator(f"{months}-calculation").fill("%resource.repeat(item).where(linkId='age').answer.value * 12")
    page.locator(f"{months}-calculation").dispatch_event("change")


def test_the_designer_preview_follows_branching_and_calculation_and_saving_publishes_a_version(
    study_hub: StudyHub, new_page, screenshots
) -> None:
    page = _lead(new_page, study_hub)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _new_study(page, study_hub, "ruge")
    _designed_form(page, study_hub, "ruge")
    preview = page.locator("#preview")
    expect(preview.get_by_label("Alter (Jahre)")).to_be_visible()
    expect(preview.get_by_text("Seit wann in Rente (Jahr)")).to_have_count(0)
    screenshots(page, "designed")

    preview.get_by_label("Alter (Jahre)").fill("70")
    preview.get_by_label("Alter (Jahre)").press("Tab")
    expect(preview.get_by_label("Seit wann in Rente (Jahr)")).to_be_visible()
    expect(preview.get_by_label("Alter in Monaten")).to_have_value("840")
    preview.get_by_label("Alter (Jahre)").fill("40")
    preview.get_by_label("Alter (Jahre)").press("Tab")
    expect(preview.get_by_text("Seit wann in Rente (Jahr)")).to_have_count(0)
    expect(preview.get_by_label("Alter in Monaten")).to_have_value("480")
    screenshots(page, "preview")

    page.locator("#designer-save").click()
    expect(page.locator("#designer-status")).to_have_text("Version 1 ist veröffentlicht.")
    page.goto(f"{study_hub.url}/studies/ruge/design")
    expect(page.locator("#study-forms")).to_contain_text("Ruhestand")
    assert errors == []


def test_a_save_tampered_with_on_its_way_is_refused_with_the_item_named(
    study_hub: StudyHub, new_page, screenshots
) -> None:
    page = _lead(new_page, study_hub)
    _new_study(page, study_hub, "ruge-tamper")
    _designed_form(page, study_hub, "ruge-tamper")

    def tamper(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["questionnaire"]["item"][1]["enableWhen"][0]["question"] = "nirgends"
        route.continue_(post_data=json.dumps(body))

    page.route(re.compile(r".*/api/v1/studies/ruge-tamper/forms$"), tamper)
    page.locator("#designer-save").click()
    problem = page.locator("#designer-items > li").nth(1).locator(".item-error")
    expect(problem).to_be_visible()
    expect(problem).to_contain_text("retired")
    expect(problem).to_contain_text("questionnaire.item[1].enableWhen[0].question")
    expect(page.locator("#designer-status")).to_be_hidden()
    screenshots(page, "refused")
    page.goto(f"{study_hub.url}/studies/ruge-tamper/design")
    expect(page.locator("#study-forms")).to_contain_text("Noch keine Formulare.")


def test_a_study_lead_sets_up_a_study_from_the_gecco_dictionary_in_the_browser(
    study_hub: StudyHub, new_page, screenshots
) -> None:
    dictionary = shared_data_folder("edc") / "gecco-redcap" / "datadictionary.csv"
    page = _lead(new_page, study_hub)
    page.goto(f"{study_hub.url}/studies")
    page.locator("#redcap-link").click()
    page.locator("#redcap-file").set_input_files(str(dictionary))
    page.locator("#redcap-code").fill("gecco")
    page.locator("#redcap-title").fill("German Corona Consensus Dataset")
    page.locator("#redcap-acronym").fill("GECCO")
    page.locator("#redcap-submit").click()
    expect(page.locator("#redcap-created")).to_contain_text("14")
    expect(page.locator("#redcap-report")).to_be_visible()
    screenshots(page, "report")
    page.locator("#redcap-study").click()
    page.goto(f"{study_hub.url}/studies/gecco/design")
    expect(page.locator("#study-forms tbody tr")).to_have_count(14)
    screenshots(page, "forms")
