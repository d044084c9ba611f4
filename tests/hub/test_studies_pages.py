"""The study pages of the portal: a researcher sets up a study and becomes its lead, gives roles, moves the
recruitment status with a reason; the design page adds arms and visits; the statistician sets the scheme
(a seed drawn by the hub is shown once) and exports the sequence with the seed; everyone else gets the
page they may see, without the forms they may not use. Every text is there in German and English."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from shared_data import shared_data_folder

from datenraum.hub.portal import i18n
from datenraum.protocol.studies import RecruitmentStatus, StudyRole

from .helpers import HubFixture, serving
from .portal_helpers import People, alert, browser
from .studies_helpers import FORM_URL, baseline_form

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("fast_passwords")]

TEMPLATES = Path(i18n.__file__).with_name("templates")
OUR_TEMPLATES = (
    "studies.html",
    "study.html",
    "_study_nav.html",
    "study_design.html",
    "study_designer.html",
    "study_randomisation.html",
    "studies_redcap.html",
)


def test_every_text_of_the_study_pages_is_there_in_german_and_english() -> None:
    catalogue = json.loads(Path(i18n.__file__).with_name("texts.json").read_text(encoding="utf-8"))
    used = {"nav.studies", "notice.study_created", "notice.study_saved"}
    for template in OUR_TEMPLATES:
        used |= set(re.findall(r't\[["\']([a-z_.\-]+)["\']\]', (TEMPLATES / template).read_text()))
    used |= {f"study_status.{status.value}" for status in RecruitmentStatus}
    used |= {f"study_role.{role.value}" for role in StudyRole}
    used |= {f"redcap_status.{status}" for status in ("converted", "partial", "not converted")}
    script = (TEMPLATES.parent / "static" / "studies-designer.js").read_text()
    used |= {f"designer.{key}" for key in re.findall(r"\bT\.([a-z_]+)", script)}
    missing = sorted(
        key for key in used if not (catalogue.get(key, {}).get("de") and catalogue.get(key, {}).get("en"))
    )
    assert missing == []


async def test_a_researcher_sets_up_a_study_in_the_portal_and_leads_it(
    hub: HubFixture, people: People
) -> None:
    hub.sites("uk-a", "uk-b")
    people.approved("lead@example.org")
    people.approved("entry@example.org")
    app = hub.app()
    async with serving(app), browser(app) as lead, browser(app, "10.0.0.2") as entry:
        await lead.login("lead@example.org")
        created = await lead.submit(
            "/studies",
            {"code": "napkon-x", "title": "Kohorte X", "acronym": "NX", "registry_id": "DRKS00000001"},
        )
        assert created.status_code == 303 and created.headers["location"].startswith("/studies/napkon-x")
        await lead.submit("/studies/napkon-x/sites", {"site": "uk-a"})
        granted = await lead.submit(
            "/studies/napkon-x/roles", {"email": "entry@example.org", "role": "data-entry", "site": "uk-a"}
        )
        assert granted.status_code == 303
        bad_role = await lead.submit("/studies/napkon-x/roles", {"email": "x@example.org", "role": "admin"})
        page = await lead.get("/studies/napkon-x")
        await entry.login("entry@example.org")
        seen_by_entry = await entry.get("/studies/napkon-x")
        refused = await entry.submit("/studies/napkon-x/setup", {"title": "Übernommen", "acronym": "X"})
    assert bad_role.status_code == 422 and "role:" in alert(bad_role)
    assert "entry@example.org" in page.text and 'id="study-setup"' in page.text
    assert seen_by_entry.status_code == 200
    assert 'id="study-setup"' not in seen_by_entry.text and 'id="grant-role"' not in seen_by_entry.text
    assert refused.status_code == 403 and "only a study lead" in alert(refused)


async def test_the_design_page_adds_arms_and_visits_and_refuses_a_duplicate_code(
    hub: HubFixture, people: People
) -> None:
    hub.sites("uk-a")
    people.approved("lead@example.org")
    app = hub.app()
    async with serving(app), browser(app) as lead:
        await lead.login("lead@example.org")
        await lead.submit("/studies", {"code": "design", "title": "Design", "acronym": "D"})
        published = await lead.api("POST", "/api/v1/studies/design/forms", {"questionnaire": baseline_form()})
        assert published.status_code == 201, published.text
        await lead.submit("/studies/design/design", {"step": "add-arm", "code": "A", "name": "Standard"})
        twice = await lead.submit(
            "/studies/design/design", {"step": "add-arm", "code": "A", "name": "Nochmal"}
        )
        visit = {
            "step": "add-visit",
            "arm": "A",
            "code": "v1",
            "name": "Baseline",
            "day_offset": "0",
            "window_after": "3",
            "form": FORM_URL,
        }
        added = await lead.submit("/studies/design/design", visit)
        bad_day = await lead.submit("/studies/design/design", {**visit, "code": "v2", "day_offset": "morgen"})
        page = await lead.get("/studies/design/design")
    assert twice.status_code == 422 and "arms[1].code: duplicate arm code 'A'" in alert(twice)
    assert added.status_code == 303
    assert bad_day.status_code == 422 and "day_offset" in alert(bad_day)
    assert "v1 – Baseline" in page.text and "Baseline" in page.text


async def test_the_statistician_sets_the_scheme_sees_a_drawn_seed_once_and_exports_the_sequence(
    hub: HubFixture, people: People
) -> None:
    hub.sites("uk-a")
    people.approved("lead@example.org")
    people.approved("stat@example.org")
    app = hub.app()
    async with serving(app), browser(app) as lead, browser(app, "10.0.0.3") as statistician:
        await lead.login("lead@example.org")
        await lead.submit("/studies", {"code": "rct", "title": "RCT", "acronym": "R"})
        await lead.submit("/studies/rct/sites", {"site": "uk-a"})
        await lead.api("POST", "/api/v1/studies/rct/forms", {"questionnaire": baseline_form()})
        await lead.api(
            "PUT",
            "/api/v1/studies/rct/arms",
            {"arms": [{"code": code, "name": code, "visits": []} for code in ("A", "B")]},
        )
        await lead.submit("/studies/rct/roles", {"email": "stat@example.org", "role": "statistician"})
        lead_view = await lead.get("/studies/rct/randomisation")
        await statistician.login("stat@example.org")
        set_page = await statistician.submit(
            "/studies/rct/randomisation",
            {"block_sizes": "2, 4", "ratio": "A:1, B:1", "factors": "sex: f, m", "seed": ""},
        )
        seed = re.search(r"<code>([0-9a-f]{64})</code>", set_page.text)
        again = await statistician.get("/studies/rct/randomisation")
        exported = await statistician.submit(
            "/studies/rct/randomisation/sequence", {"seed": seed.group(1) if seed else "", "length": "4"}
        )
        wrong = await statistician.submit(
            "/studies/rct/randomisation/sequence", {"seed": "x" * 40, "length": "4"}
        )
    assert lead_view.status_code == 403
    assert set_page.status_code == 200 and seed is not None
    assert seed.group(1) not in again.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 2 * 4 and {row["arm"] for row in rows} <= {"A", "B"}
    assert wrong.status_code == 403 and "not the study's seed" in alert(wrong)


async def test_the_designer_page_loads_the_latest_version_and_the_vendored_renderer(
    hub: HubFixture, people: People
) -> None:
    people.approved("lead@example.org")
    app = hub.app()
    async with serving(app), browser(app) as lead:
        await lead.login("lead@example.org")
        await lead.submit("/studies", {"code": "forms", "title": "Forms", "acronym": "F"})
        await lead.api("POST", "/api/v1/studies/forms/forms", {"questionnaire": baseline_form()})
        page = await lead.get(f"/studies/forms/designer?url={FORM_URL}")
        script = await lead.get("/studies/lforms/webcomponent/lhc-forms.js")
        escape = await lead.get("/studies/lforms/../../hub/config.py")
        unknown = await lead.get("/studies/forms/designer?url=urn:none")
    data = json.loads(
        re.search(
            r'<script type="application/json" id="designer-data">(.*?)</script>', page.text, re.S
        ).group(1)
    )
    assert data["questionnaire"]["version"] == "1" and data["code"] == "forms"
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert escape.status_code == 404
    assert unknown.status_code == 422


def _gecco() -> bytes:
    return (shared_data_folder("edc") / "gecco-redcap" / "datadictionary.csv").read_bytes()


async def test_a_study_lead_creates_a_study_from_the_gecco_dictionary_with_one_form_per_instrument(
    hub: HubFixture, people: People
) -> None:
    people.approved("lead@example.org")
    app = hub.app()
    async with serving(app), browser(app) as lead:
        await lead.login("lead@example.org")
        page = await lead.submit(
            "/studies/redcap",
            {"code": "gecco", "title": "GECCO", "acronym": "GECCO"},
            files={"dictionary": ("datadictionary.csv", _gecco(), "text/csv")},
        )
        study = await lead.api("GET", "/api/v1/studies/gecco")
    assert page.status_code == 200, alert(page)
    assert 'id="redcap-report"' in page.text and 'href="/studies/gecco"' in page.text
    forms = study.json()["forms"]
    assert len(forms) == 14
    assert {f["version"] for f in forms} == {"1"}
    assert all(f["url"].startswith("http://127.0.0.1:8700/fhir/Questionnaire/gecco/") for f in forms)


@pytest.mark.parametrize(
    ("content", "named"),
    [
        (b"not,a,dictionary\n1,2,3\n", "dictionary.csv:1"),
        (b"\xff\xfe\x00garbage", "dictionary: dictionary.csv is not UTF-8 text (byte 0)"),
    ],
)
async def test_a_dictionary_that_cannot_be_read_is_refused_naming_where_and_nothing_is_stored(
    hub: HubFixture, people: People, content: bytes, named: str
) -> None:
    people.approved("lead@example.org")
    app = hub.app()
    async with serving(app), browser(app) as lead:
        await lead.login("lead@example.org")
        page = await lead.submit(
            "/studies/redcap",
            {"code": "kaputt", "title": "Kaputt", "acronym": "K"},
            files={"dictionary": ("dictionary.csv", content, "text/csv")},
        )
        missing = await lead.submit("/studies/redcap", {"code": "kaputt", "title": "Kaputt", "acronym": "K"})
    assert page.status_code == 422 and named in alert(page)
    assert missing.status_code == 422 and "dictionary: choose" in alert(missing)
    assert hub.count("studies") == 0 and hub.count("study_forms") == 0
