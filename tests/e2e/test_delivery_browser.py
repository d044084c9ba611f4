"""A data delivery end to end, on PostgreSQL with three real site agents, in a real browser: an approved
data-delivery proposal gets a delivery (three extraction tasks); each agent extracts, de-identifies,
gates and seals its package; two custodians release theirs on the release page and one rejects with a
reason; one agent is killed after the first part of its upload and continues where it stopped when it
is started again; the researcher downloads the merged delivery from the delivery page and opens it with
the project's private key; a researcher of another project gets 404.

The proposal's walk to `ready-for-delivery` is taken through the proposals service on the hub's database
(the Use & Access browser test takes it on the pages); the delivery is started through the API.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Page, expect
from sqlalchemy.orm import sessionmaker

from datenraum.deidentify.delivery import SITE_TAG
from datenraum.deidentify.keys import new_secret
from datenraum.deidentify.package import new_recipient_key
from datenraum.devtools.federation import LocalFederation
from datenraum.hub.accounts.service import PortalRoleHolders
from datenraum.hub.db import SiteRow, UserRoleRow, UserRow, create_hub_engine
from datenraum.hub.proposals.service import Proposals, ProposalSettings
from datenraum.hub.proposals.tables import EventRow
from datenraum.hub.proposals.uploads import UploadPolicy
from datenraum.hub.proposals.values import Analysis, CohortQuery, Draft
from datenraum.hub.proposals.workflow import Action
from datenraum.hub.roles import Actor, Role
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

from .test_portal_browser import sign_in
from .test_use_and_access_browser import TYPE_2_DIABETES

SITES = ("uk-nord", "uk-sued", "um-west")
CASE = "torch/cases/diag-enc-diag"
PASSWORD = "Lieferung-im-Datenraum-2026"
PEOPLE = {
    "office": ("office@delivery.example", "admin"),
    "researcher": ("pi@delivery.example", "researcher"),
    "stranger": ("other@delivery.example", "researcher"),
    "committee-1": ("c1@delivery.example", "committee"),
    "committee-2": ("c2@delivery.example", "committee"),
    **{f"custodian-{site}": (f"dic@{site}.example", "researcher") for site in SITES},
}
AGENT_CONFIG = """[hub]
wait = 1
backoff_initial = 0.1
backoff_cap = 0.5
[tasks]
allowed = ["feasibility-count", "extraction"]
[extraction]
output = "{output}"
key_file = "{key}"
"""


@dataclass
class World:
    federation: LocalFederation
    workdir: Path
    tokens: dict[str, str]
    proposal_id: int
    private_key: bytes
    outputs: dict[str, Path]
    credentials: dict[str, Path]
    stores: dict[str, Path]
    agent_configs: dict[str, Path]
    public_key: str
    crtdl: dict

    def api(self, person: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.federation.url,
            headers={"Authorization": f"Bearer {self.tokens[person]}"},
            timeout=30,
        )

    def site_api(self, site: str) -> httpx.Client:
        token = self.credentials[site].read_text().strip()
        return httpx.Client(
            base_url=self.federation.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    def start_agent(self, site: str) -> None:
        self.federation.start_agent(
            site, self.stores[site], self.credentials[site], config=self.agent_configs[site]
        )

    def delivery(self) -> dict:
        with self.api("researcher") as client:
            answer = client.get(f"/api/v1/deliveries/{self.proposal_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def states(self) -> dict[str, str]:
        return {part["site"]: part["state"] for part in self.delivery()["sites"]}

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {self.states()}")
            time.sleep(0.2)


def _walk_to_ready_for_delivery(url: str, workdir: Path) -> int:
    engine = create_hub_engine(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    try:
        with sessions.begin() as session:
            users = {
                email: user_id for email, user_id in session.execute(sa.select(UserRow.email, UserRow.id))
            }
            sites = {name: site_id for name, site_id in session.execute(sa.select(SiteRow.name, SiteRow.id))}
            for site in SITES:
                session.add(
                    UserRoleRow(
                        user_id=users[PEOPLE[f"custodian-{site}"][0]], role="site-admin", site_id=sites[site]
                    )
                )

        def actor(person: str, site: str | None = None) -> Actor:
            email, role = PEOPLE[person]
            roles = frozenset({Role.SITE_ADMIN}) if site else frozenset({Role(role)})
            return Actor(users[email], roles, frozenset({sites[site]}) if site else frozenset())

        policy = UploadPolicy(folder=workdir / "uploads", max_bytes=1 << 20)
        proposals = Proposals(sessions, ProposalSettings(uploads=policy, quorum=2), PortalRoleHolders())
        draft = Draft(
            title="Diagnosen und Aufenthalte",
            abstract="Welche Diagnosen folgen einem stationären Aufenthalt?",
            questions=("Diagnosen nach Aufnahme",),
            cohort=(CohortQuery("Typ-2-Diabetes", TYPE_2_DIABETES, 30, dict.fromkeys(SITES, 10)),),
            modules=("Person", "Diagnose", "Fall"),
            analysis=Analysis.DATA_DELIVERY,
            site_ids=tuple(sites[s] for s in SITES),
        )
        proposal_id = proposals.create(actor("researcher"), draft)
        proposals.upload(actor("researcher"), proposal_id, "ethics-vote", "votum.pdf", b"%PDF-1.7\n%%EOF\n")
        proposals.apply(actor("researcher"), proposal_id, Action.SUBMIT)
        proposals.apply(actor("office"), proposal_id, Action.START_FORMAL_CHECK)
        proposals.apply(actor("office"), proposal_id, Action.FORWARD_TO_COMMITTEE)
        proposals.apply(actor("committee-1"), proposal_id, Action.VOTE_APPROVE)
        proposals.apply(actor("committee-2"), proposal_id, Action.VOTE_APPROVE)
        proposals.apply(actor("office"), proposal_id, Action.REQUEST_SITE_DECISIONS)
        for site in SITES:
            proposals.apply(
                actor(f"custodian-{site}", site), proposal_id, Action.SITE_AGREE, site_id=sites[site]
            )
        return proposal_id
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, postgres_server, extraction_data: Path
) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("delivery")
    hub_env = {
        "DATENRAUM_HUB_MIN_SITES": "1",
        "DATENRAUM_HUB_UPLOAD_FOLDER": str(workdir / "uploads"),
        "DATENRAUM_HUB_DELIVERY_FOLDER": str(workdir / "hub-deliveries"),
    }
    federation = LocalFederation(workdir, database_url=postgres_server.new_database(), hub_env=hub_env)
    try:
        stores, outputs, configs = {}, {}, {}
        for site in SITES:
            stores[site] = workdir / f"{site}-store"
            ingest(Store(stores[site]), [extraction_data / CASE / "input-bundle.json"])
            outputs[site] = workdir / f"{site}-extractions"
            key = workdir / f"{site}.key"
            key.write_text(new_secret() + "\n")
            key.chmod(0o600)
            configs[site] = workdir / f"{site}-agent.toml"
            configs[site].write_text(AGENT_CONFIG.format(output=outputs[site], key=key))
        people = [PEOPLE[p] for p in PEOPLE]
        files = federation.register(
            sites=list(SITES), users=people, passwords={email: PASSWORD for email, _role in people}
        )
        tokens = {person: files[email].read_text().strip() for person, (email, _r) in PEOPLE.items()}
        proposal_id = _walk_to_ready_for_delivery(federation.hub_env["DATENRAUM_HUB_DATABASE_URL"], workdir)
        federation.start_hub()
        private, public = new_recipient_key()
        world = World(
            federation,
            workdir,
            tokens,
            proposal_id,
            private,
            outputs,
            {site: files[site] for site in SITES},
            stores,
            configs,
            public.decode(),
            json.loads((extraction_data / CASE / "crtdl.json").read_text()),
        )
        for site in SITES:
            world.start_agent(site)
        yield world
    finally:
        federation.close()


def signed_in(new_page, world: World, person: str) -> Page:
    page = new_page()
    sign_in(page, world.federation.url, PEOPLE[person][0], PASSWORD)
    expect(page.locator(".account-link")).to_be_visible()
    return page


def test_from_approval_to_the_researchers_download(world: World, new_page, screenshots) -> None:
    with world.api("office") as office:
        started = office.post(
            "/api/v1/deliveries",
            json={"proposal": world.proposal_id, "crtdl": world.crtdl, "recipient_key": world.public_key},
        )
    assert started.status_code == 200, started.text
    assert sorted(s["site"] for s in started.json()["sites"]) == sorted(SITES)
    world.wait_for(lambda: set(world.states().values()) == {"awaiting-release"}, "three sealed packages")
    for part in world.delivery()["sites"]:
        assert part["summary"]["Leak-Gate-Findings"] == 0 and part["summary"]["Package-Bytes"] > 0

    # The agent of uk-nord dies after the first part of its upload (played here with its credential).
    world.federation.agents["uk-nord"].stop(kill=True)
    for site, decision in (("uk-nord", "release"), ("uk-sued", "release"), ("um-west", "reject")):
        page = signed_in(new_page, world, f"custodian-{site}")
        page.goto(f"{world.federation.url}/deliveries/release")
        section = page.locator(f"section.release[data-site='{site}']")
        expect(section.locator(".leak-gate")).to_contain_text("passed")
        screenshots(page, f"release-{site}")
        if decision == "release":
            section.locator("form.release-form button").click()
        else:
            section.locator("form.reject-form input[name=reason]").fill("Kohorte zu klein für eine Lieferung")
            section.locator("form.reject-form button").click()
        expect(page.locator(f"section.release[data-site='{site}']")).to_have_count(0)
    world.wait_for(lambda: world.states()["uk-sued"] == "uploaded", "the upload of uk-sued")
    assert world.states()["um-west"] == "rejected"

    task_id = next(p["task_id"] for p in world.delivery()["sites"] if p["site"] == "uk-nord")
    project = f"datenraum-proposal-{world.proposal_id}"
    sealed = (world.outputs["uk-nord"] / project / f"{task_id}.dpkg").read_bytes()
    half = sealed[: len(sealed) // 2]
    with world.site_api("uk-nord") as site:
        sent = site.put(
            f"/api/site/v1/deliveries/{task_id}/upload",
            params={"offset": 0},
            content=half,
            headers={"X-Chunk-SHA256": hashlib.sha256(half).hexdigest()},
        )
        assert sent.status_code == 200, sent.text
    world.start_agent("uk-nord")
    world.wait_for(lambda: world.states()["uk-nord"] == "uploaded", "the resumed upload of uk-nord")
    assert (
        f"resuming the upload at {len(half)} of {len(sealed)} bytes"
        in world.federation.agents["uk-nord"].log.read_text()
    )

    page = signed_in(new_page, world, "researcher")
    page.goto(f"{world.federation.url}/deliveries/{world.proposal_id}")
    expect(page.locator("#delivery-state")).to_have_text("delivered")
    expect(page.locator("tr[data-site='um-west'] .state")).to_have_text("rejected")
    screenshots(page, "delivery")
    with page.expect_download() as download_info:
        page.locator("#download").click()
    downloaded = world.workdir / "download.tar"
    download_info.value.save_as(downloaded)
    with tarfile.open(downloaded) as tar:
        assert sorted(tar.getnames()) == ["delivery.json", "sites/uk-nord.dpkg", "sites/uk-sued.dpkg"]
        assert tar.extractfile("sites/uk-nord.dpkg").read() == sealed  # type: ignore[union-attr]

    key_file = world.workdir / "project.pem"
    key_file.write_bytes(world.private_key)
    opened = subprocess.run(
        [
            sys.executable,
            "-m",
            "datenraum",
            "delivery",
            "open",
            "--key-file",
            str(key_file),
            str(downloaded),
            str(world.workdir / "opened"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert opened.returncode == 0, opened.stderr
    counts = json.loads(opened.stdout)["resources"]
    assert set(counts) == {"uk-nord", "uk-sued"} and all(counts.values())
    merged = "".join(p.read_text() for p in (world.workdir / "opened" / "merged").glob("*.ndjson"))
    assert SITE_TAG in merged and '"code":"uk-sued"' in merged
    assert world.delivery()["state"] == "fetched"

    # One byte changed in the downloaded file is found when it is opened.
    tampered = bytearray(downloaded.read_bytes())
    tampered[2048 + len(tampered) // 2] ^= 1
    (world.workdir / "tampered.tar").write_bytes(bytes(tampered))
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "datenraum",
            "delivery",
            "open",
            "--key-file",
            str(key_file),
            str(world.workdir / "tampered.tar"),
            str(world.workdir / "opened-tampered"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "error:" in refused.stderr and "Traceback" not in refused.stderr

    with world.api("stranger") as stranger:
        assert stranger.get(f"/api/v1/deliveries/{world.proposal_id}/download").status_code == 404
        assert stranger.get(f"/api/v1/deliveries/{world.proposal_id}").status_code == 404
    engine = create_hub_engine(world.federation.hub_env["DATENRAUM_HUB_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            kinds = connection.scalars(
                sa.select(EventRow.kind)
                .where(EventRow.proposal_id == world.proposal_id)
                .order_by(EventRow.id)
            ).all()
    finally:
        engine.dispose()
    delivery_kinds = [kind for kind in kinds if kind.startswith("deliver")]
    assert delivery_kinds[0] == "delivery-requested" and delivery_kinds[-1] == "delivery-fetched"
    for kind, times in (
        ("delivery-extracted", 3),
        ("delivery-released", 2),
        ("delivery-rejected", 1),
        ("delivery-uploaded", 2),
    ):
        assert delivery_kinds.count(kind) == times, delivery_kinds
    assert "delivered" in delivery_kinds
