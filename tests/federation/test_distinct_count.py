"""Distinct persons across sites (issue 23), end to end over real HTTP: the hub on PostgreSQL, the linkage
unit and four site agents as their own processes. Three sites hold overlapping synthetic people (typos,
moves, name changes between sites) and take part in linkage; the fourth has no [linkage] section. The
hub gets a count id from the unit, the agents deliver their cohorts' CLKs to the unit, and the hub shows
the unit's released count beside the sum of the sites' counts."""

from __future__ import annotations

import uuid

from linkage_data import ADULTS, linked_sites, start_linkage_unit, unit_config, write_private

from .conftest import AGENT_CONFIG

PROJECT = "distinct"
LINKED = ("site-a", "site-b", "site-c")
UNLINKED = "site-d"
SECRET = b"the shared linkage secret of the sites, at no hub or unit"


def test_the_hub_shows_distinct_persons_within_five_percent_where_the_sum_overstates(
    tmp_path, start_federation, postgres_server
):
    tokens = {site: uuid.uuid4().hex for site in LINKED}
    hub_token = uuid.uuid4().hex
    config = unit_config(tmp_path / "unit", PROJECT, SECRET, tokens, hub_token)
    unit_url, unit = start_linkage_unit(config, tmp_path / "unit.db")
    try:
        fed = start_federation(
            postgres_server.new_database(),
            linkage_unit_url=unit_url,
            linkage_project=PROJECT,
            linkage_token_file=str(write_private(tmp_path / "hub" / "linkunit.token", hub_token)),
        )
        sites, truth = linked_sites(tmp_path / "sites", AGENT_CONFIG, unit_url, PROJECT, SECRET, tokens)
        for site, linked in sites.items():
            fed.processes.start_agent(site, linked.store, fed.add_site(site), config=linked.agent_config)
        fed.add_site(UNLINKED)
        fed.start_agent(UNLINKED)  # the shared synthetic store, without [linkage]
        fed.researcher.wait_for_sites([*LINKED, UNLINKED])

        response = fed.researcher.client.post(
            "/api/v1/queries",
            json={"query": ADULTS, "sites": [*LINKED, UNLINKED], "distinct_persons": True},
        )
        assert response.status_code == 201, response.text
        result = fed.researcher.result(response.json()["id"])
    finally:
        unit.terminate()
        unit.wait(10)

    by_site = {answer["site"]: answer for answer in result["sites"]}
    assert {site: a["state"] for site, a in by_site.items()} == dict.fromkeys([*LINKED, UNLINKED], "answered")
    assert all(by_site[site]["linkage"] == "delivered" for site in LINKED)
    assert "no [linkage]" in by_site[UNLINKED]["linkage"]  # a per-site status, the query still answered

    distinct = result["distinct"]
    assert distinct["state"] == "released", distinct
    assert distinct["sites"] == list(LINKED)
    naive = sum(by_site[site]["count"]["obfuscated"] for site in LINKED)
    assert naive > 1.3 * len(truth)  # the sum counts a person once per site
    assert abs(distinct["value"] - len(truth)) <= 0.05 * len(truth), (distinct, len(truth), naive)
    assert distinct["interval"][0] <= len(truth) <= distinct["interval"][1]
    assert "counts each person once" in distinct["explanation"]
    assert f"Not in the distinct count: {UNLINKED}" in distinct["explanation"]
    # the hub holds the released numbers only: no CLKs, tokens or pseudonyms reach the researcher
    assert set(distinct) == {
        "state",
        "value",
        "interval",
        "below_threshold",
        "sites",
        "explanation",
        "reason",
    }
