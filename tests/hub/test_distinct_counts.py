"""The hub's side of distinct-person counts (issue 23) against a real linkage unit process: what a query
asking for them stores and sends to the sites, and what happens when the unit is missing, unreachable or
refuses, or a site's status is hostile."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from linkage_data import start_linkage_unit

from datenraum.devtools.ports import free_port
from datenraum.hub.errors import Invalid
from datenraum.hub.feasibility.distinct import LinkageUnitUnavailable
from datenraum.hub.feasibility.service import Federation
from datenraum.linkunit.config import token_digest
from datenraum.protocol.messages import LINKAGE_DELIVERED, SiteCount, TaskResult, TaskState

from .helpers import HubFixture, older_than

PROJECT = "distinct"
HUB_TOKEN = uuid.uuid4().hex


@pytest.fixture(scope="module")
def unit_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("unit")
    (folder / "unit.key").write_text(os.urandom(32).hex())
    project = {
        "schema_digest": "0" * 64,
        "clk_bytes": 128,
        "threshold": 0.8,
        "sites": {site: token_digest(f"token of {site}") for site in ("uk-a", "uk-b")},
        "hub": token_digest(HUB_TOKEN),
    }
    config = folder / "unit.json"
    config.write_text(json.dumps({"unit_key_file": "unit.key", "projects": {PROJECT: project}}))
    url, process = start_linkage_unit(config, folder / "unit.db")
    yield url
    process.terminate()
    process.wait(10)


def _linked(hub: HubFixture, tmp_path: Path, url: str) -> Federation:
    token_file = tmp_path / "hub-linkunit.token"
    token_file.write_text(HUB_TOKEN)
    return hub.federation(linkage_unit_url=url, linkage_project=PROJECT, linkage_token_file=str(token_file))


def _user(hub: HubFixture):
    return hub.accounts.user_for(hub.user())


def test_a_distinct_query_gets_a_count_id_its_tasks_carry_and_is_not_answered_by_a_plain_one(
    hub: HubFixture, tmp_path: Path, unit_url: str
) -> None:
    hub.sites("uk-a", "uk-b")
    federation = _linked(hub, tmp_path, unit_url)
    user = _user(hub)
    plain = federation.submit(user, older_than(40), None)
    distinct = federation.submit(user, older_than(40), None, distinct_persons=True)
    assert not distinct.reused and distinct.query_id != plain.query_id
    site = hub.accounts.site_for(hub.accounts.rotate_site("uk-a"))
    payloads = {
        task.payload.get("linkage", {}).get("count_id"): task.payload for task in federation.claim(site).tasks
    }
    assert None in payloads  # the plain query's task carries no linkage request
    [count_id] = [key for key in payloads if key is not None]
    uuid.UUID(count_id)  # minted by the unit
    assert payloads[count_id]["linkage"] == {"unit_url": unit_url, "project": PROJECT, "count_id": count_id}
    assert federation.result(user, plain.query_id).distinct is None
    assert federation.result(user, distinct.query_id).distinct.state == "waiting"


def test_a_site_that_claims_a_delivery_it_did_not_make_leaves_the_count_failed_with_the_units_reason(
    hub: HubFixture, tmp_path: Path, unit_url: str
) -> None:
    hub.sites("uk-a", "uk-b")
    federation = _linked(hub, tmp_path, unit_url)
    user = _user(hub)
    submission = federation.submit(user, older_than(50), None, distinct_persons=True)
    for name in ("uk-a", "uk-b"):
        site = hub.accounts.site_for(hub.accounts.rotate_site(name))
        [task] = federation.claim(site).tasks
        result = TaskResult(task.id, TaskState.ANSWERED, count=SiteCount(40), linkage=LINKAGE_DELIVERED)
        federation.record(site, task.id, result)
    distinct = federation.result(user, submission.query_id).distinct
    assert distinct.state == "failed"
    assert "waiting for site(s) uk-a, uk-b" in distinct.reason and distinct.count is None


def test_a_site_whose_linkage_status_holds_nul_is_refused(
    hub: HubFixture, tmp_path: Path, unit_url: str
) -> None:
    hub.sites("uk-a")
    federation = _linked(hub, tmp_path, unit_url)
    federation.submit(_user(hub), older_than(60), None, distinct_persons=True)
    site = hub.accounts.site_for(hub.accounts.rotate_site("uk-a"))
    [task] = federation.claim(site).tasks
    hostile = TaskResult(task.id, TaskState.ANSWERED, count=SiteCount(40), linkage="delivered\x00")
    with pytest.raises(Invalid, match=r"^linkage: must not contain NUL"):
        federation.record(site, task.id, hostile)


def test_asking_for_distinct_persons_without_a_linkage_unit_is_refused_naming_the_option(
    hub: HubFixture,
) -> None:
    hub.sites("uk-a")
    with pytest.raises(Invalid, match=r"^distinct_persons: this hub has no linkage unit"):
        hub.federation().submit(_user(hub), older_than(40), None, distinct_persons=True)
    assert hub.count("queries") == 0


def test_an_unreachable_linkage_unit_refuses_the_query_and_stores_nothing(
    hub: HubFixture, tmp_path: Path
) -> None:
    hub.sites("uk-a")
    federation = _linked(hub, tmp_path, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(LinkageUnitUnavailable, match=r"^linkage unit http://127\.0\.0\.1:\d+: "):
        federation.submit(_user(hub), older_than(40), None, distinct_persons=True)
    assert hub.count("queries") == 0 and hub.count("tasks") == 0
