"""The query page's option "distinct persons across sites" (issue 23) in a real Chromium against a hub on
PostgreSQL, a linkage unit and three site agents over overlapping synthetic people: the researcher ticks
the option, runs an imported query, and reads the distinct count beside the sum with why they differ."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from linkage_data import ADULTS, linked_sites, start_linkage_unit, unit_config, write_private
from playwright.sync_api import expect

from datenraum.devtools.federation import LocalFederation, Researcher

from .conftest import ADMIN, AGENT_CONFIG, HUB_SETTINGS

PROJECT = "distinct"
SECRET = b"the shared linkage secret of the sites, at no hub or unit"


@dataclass(frozen=True)
class LinkedPortal:
    url: str
    truth: int
    query_file: Path


@pytest.fixture(scope="module")
def linked_portal(tmp_path_factory: pytest.TempPathFactory, postgres_server) -> Iterator[LinkedPortal]:
    workdir = tmp_path_factory.mktemp("linked-portal")
    tokens = {site: uuid.uuid4().hex for site in ("uk-nord", "uk-sued", "um-west")}
    hub_token = uuid.uuid4().hex
    unit_url, unit = start_linkage_unit(
        unit_config(workdir / "unit", PROJECT, SECRET, tokens, hub_token), workdir / "unit.db"
    )
    hub_env = {
        **HUB_SETTINGS,
        "DATENRAUM_HUB_UPLOAD_FOLDER": str(workdir / "uploads"),
        "DATENRAUM_HUB_LINKAGE_UNIT_URL": unit_url,
        "DATENRAUM_HUB_LINKAGE_PROJECT": PROJECT,
        "DATENRAUM_HUB_LINKAGE_TOKEN_FILE": str(write_private(workdir / "hub-linkunit.token", hub_token)),
    }
    federation = LocalFederation(workdir, database_url=postgres_server.new_database(), hub_env=hub_env)
    try:
        sites, truth = linked_sites(workdir / "sites", AGENT_CONFIG, unit_url, PROJECT, SECRET, tokens)
        credentials = federation.register(sites=list(sites))
        subprocess.run(
            [
                *(sys.executable, "-m", "datenraum", "hub", "create-user", ADMIN[0], "--role", "admin"),
                *("--name", "Koordinationsstelle", "--password-file", "-"),
                *("--token-file", str(workdir / "admin.token")),
            ],
            input=ADMIN[1] + "\n",
            env={**os.environ, **federation.hub_env},
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        federation.start_hub()
        for name, linked in sites.items():
            federation.start_agent(name, linked.store, credentials[name], config=linked.agent_config)
        researcher = Researcher(federation.url, (workdir / "admin.token").read_text().strip())
        researcher.wait_for_sites(list(sites))
        researcher.close()
        query_file = workdir / "adults.json"
        query_file.write_text(json.dumps(ADULTS))
        yield LinkedPortal(federation.url, len(truth), query_file)
    finally:
        federation.close()
        unit.terminate()
        unit.wait(10)


def test_a_researcher_ticks_distinct_persons_and_reads_them_beside_the_sum(
    linked_portal: LinkedPortal, new_page, screenshots
) -> None:
    page = new_page()
    page.goto(f"{linked_portal.url}/login")
    page.locator("#email").fill(ADMIN[0])
    page.locator("#password").fill(ADMIN[1])
    page.locator("form.stacked button[type=submit]").click()
    page.goto(f"{linked_portal.url}/queries/new")
    page.locator("#import-query").set_input_files(str(linked_portal.query_file))
    page.get_by_label(re.compile("verschiedene Personen über die Standorte")).check()
    screenshots(page, "distinct-option")
    page.locator("#run-query").click()
    distinct = page.locator("#distinct-total")
    expect(distinct).to_have_attribute("data-state", "released", timeout=60_000)
    screenshots(page, "distinct-released")
    shown = re.match(
        r"Verschiedene Personen: (\d+) \(Bereich (\d+)–(\d+), aus uk-nord, uk-sued, um-west\)",
        distinct.inner_text(),
    )
    assert shown, distinct.inner_text()
    value, low, high = map(int, shown.groups())
    assert abs(value - linked_portal.truth) <= 0.05 * linked_portal.truth
    assert low <= linked_portal.truth <= high
    expect(page.locator("#distinct-explanation")).to_contain_text("zählt jede Person einmal")
    expect(page.locator("#site-results td.linkage")).to_have_text(["übermittelt"] * 3)
    total = int(re.search(r"(\d+)", page.locator("#total").inner_text()).group(1))
    assert total > 1.3 * value  # the sum counts a person once per site
