"""The portal in a real browser: Debian's chromium driven by Playwright, against a hub on PostgreSQL with
three real site agents on their own synthetic stores, all as processes on 127.0.0.1.

Playwright's own browser download is never used (it cannot run here, and CI must not fetch one): the
browser is `/usr/bin/chromium`, which `scripts/setup` installs. Screenshots of each step go to
`test-artifacts/e2e/` for people to look at after a CI run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from datenraum.devtools.federation import LocalFederation, Researcher
from datenraum.site.ingest import ingest
from datenraum.synth import generate

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
# Without these, chromium tries to reach Google's services at start, which this machine's network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SITES = (("uk-nord", 1500, 11, 0), ("uk-sued", 1200, 22, 1), ("um-west", 1000, 33, 2))
ADMIN = ("koordination@datenraum.example", "Koordinationsstelle-2026")
HUB_SETTINGS = {
    "DATENRAUM_HUB_MIN_SITES": "3",
    "DATENRAUM_HUB_QUOTA_PER_MINUTE": "1000",
    "DATENRAUM_HUB_QUOTA_PER_HOUR": "10000",
    "DATENRAUM_HUB_QUOTA_PER_DAY": "100000",
    "DATENRAUM_HUB_SITE_DAILY_TASKS": "1000000",
    "DATENRAUM_HUB_UPLOAD_MAX_BYTES": str(256 * 1024),  # small, so that an oversized upload is quick
}
AGENT_CONFIG = "[hub]\nwait = 5\nbackoff_initial = 0.1\nbackoff_cap = 0.5\n"
# The sites have biobanks (synth --biobanks); two of them answer sample searches, the third does not.
SAMPLE_SITES = ("uk-nord", "uk-sued")
SAMPLE_TASKS = '[tasks]\nallowed = ["feasibility-count", "indicators", "sample-search"]\n'


@dataclass
class Portal:
    url: str
    federation: LocalFederation
    admin_token: str


@pytest.fixture(scope="session")
def portal(tmp_path_factory: pytest.TempPathFactory, postgres_server) -> Iterator[Portal]:
    workdir = tmp_path_factory.mktemp("portal")
    hub_env = {**HUB_SETTINGS, "DATENRAUM_HUB_UPLOAD_FOLDER": str(workdir / "uploads")}
    federation = LocalFederation(workdir, database_url=postgres_server.new_database(), hub_env=hub_env)
    try:
        stores = {}
        for name, patients, seed, profile in SITES:
            generate(workdir / f"{name}-data", patients, seed, workers=1, site_profile=profile, biobanks=True)
            ingest(workdir / f"{name}-store", [workdir / f"{name}-data"])
            stores[name] = workdir / f"{name}-store"
        credentials = federation.register(sites=list(stores))
        token_file = workdir / "admin.token"
        subprocess.run(
            [
                *(sys.executable, "-m", "datenraum", "hub", "create-user", ADMIN[0], "--role", "admin"),
                *("--name", "Koordinationsstelle", "--password-file", "-", "--token-file", str(token_file)),
            ],
            input=ADMIN[1] + "\n",
            env={**os.environ, **federation.hub_env},
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        agent_config = workdir / "agent.toml"
        agent_config.write_text(AGENT_CONFIG)
        sample_config = workdir / "agent-samples.toml"
        sample_config.write_text(AGENT_CONFIG + SAMPLE_TASKS)
        federation.start_hub()
        for name, store in stores.items():
            config = sample_config if name in SAMPLE_SITES else agent_config
            federation.start_agent(name, store, credentials[name], config=config)
        admin_token = token_file.read_text().strip()
        researcher = Researcher(federation.url, admin_token)
        researcher.wait_for_sites(list(stores))
        researcher.close()
        yield Portal(federation.url, federation, admin_token)
    finally:
        federation.close()


# Per module, not per session: while Playwright's sync API runs, its event loop counts as running in
# the main thread, and the asynchronous tests that follow in the same run could not start theirs.
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: run scripts/setup (package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class Screenshots:
    """Numbered screenshots of one test, kept as test artefacts."""

    def __init__(self, test: str) -> None:
        self.folder = ARTIFACTS / test
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.taken = 0

    def __call__(self, page, step: str) -> None:
        self.taken += 1
        page.screenshot(path=str(self.folder / f"{self.taken:02d}-{step}.png"), full_page=True)


@pytest.fixture
def screenshots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture
def new_page(browser):
    """A page in a fresh browser context (no cookies): one person at one computer."""
    contexts = []

    def open_page(locale: str = "de-DE"):
        context = browser.new_context(locale=locale, viewport={"width": 1366, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()
