"""Distinct persons across sites (issue 23), end to end over real HTTP: the hub on PostgreSQL, the linkage
unit and four site agents as their own processes. Three sites hold overlapping synthetic people (typos,
moves, name changes between sites) and take part in linkage; the fourth has no [linkage] section. The
hub gets a count id from the unit, the agents deliver their cohorts' CLKs to the unit, and the hub shows
the unit's released count beside the sum of the sites' counts."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from linkage_data import ADULTS, identity_store, start_linkage_unit

from datenraum.linkage import synthetic
from datenraum.linkage.encoder import Encoder
from datenraum.linkage.estimate import calibrate
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import load_schema
from datenraum.linkunit.config import token_digest
from datenraum.query.model import parse_query
from datenraum.site.feasibility import patient_ids
from datenraum.site.store import Store

from .conftest import AGENT_CONFIG

PROJECT = "distinct"
LINKED = ("site-a", "site-b", "site-c")
UNLINKED = "site-d"
SECRET = b"the shared linkage secret of the sites, at no hub or unit"
SCHEMA_PATH = Path(__file__).parents[2] / "datenraum" / "linkage" / "schemas" / "de-patient-v3.json"


def _threshold() -> float:
    encoder = Encoder(load_schema(SCHEMA_PATH), project_secret(SECRET, PROJECT))
    train, _ = synthetic.sites(1200, 3, seed=11)
    return calibrate(
        [encoder.encode(s) for s in train], [[r["patient_id"] for r in s] for s in train]
    ).threshold


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.chmod(path, 0o600)
    return path


def _unit_config(folder: Path, tokens: dict[str, str], hub_token: str) -> Path:
    schema = load_schema(SCHEMA_PATH)
    _write(folder / "unit.key", os.urandom(32).hex())
    project = {
        "schema_digest": schema.digest,
        "clk_bytes": schema.size // 8,
        "threshold": _threshold(),
        "sites": {site: token_digest(token) for site, token in tokens.items()},
        "hub": token_digest(hub_token),
    }
    return _write(
        folder / "unit.json", json.dumps({"unit_key_file": "unit.key", "projects": {PROJECT: project}})
    )


def test_the_hub_shows_distinct_persons_within_five_percent_where_the_sum_overstates(
    tmp_path, start_federation, postgres_server
):
    tokens = {site: uuid.uuid4().hex for site in LINKED}
    hub_token = uuid.uuid4().hex
    unit_url, unit = start_linkage_unit(
        _unit_config(tmp_path / "unit", tokens, hub_token), tmp_path / "unit.db"
    )
    try:
        fed = start_federation(
            postgres_server.new_database(),
            linkage_unit_url=unit_url,
            linkage_project=PROJECT,
            linkage_token_file=str(_write(tmp_path / "hub" / "linkunit.token", hub_token)),
        )
        people, _ = synthetic.sites(900, 3, seed=31)
        secret_file = _write(tmp_path / "sites" / "linkage.secret", SECRET)
        truth: set[str] = set()
        for s, (site, records) in enumerate(zip(LINKED, people, strict=True)):
            local = {f"s{s}p{n:05d}": r for n, r in enumerate(records)}
            store = identity_store(tmp_path / "sites" / site, local)
            with Store(store).snapshot() as snapshot:
                truth |= {local[i]["patient_id"] for i in patient_ids(snapshot, parse_query(ADULTS))}
            linkage = (
                f'[linkage]\nunit_url = "{unit_url}"\nproject = "{PROJECT}"\nsite = "{site}"\n'
                f'token_file = "{_write(tmp_path / "sites" / site / "unit.token", tokens[site])}"\n'
                f'secret_file = "{secret_file}"\n'
            )
            config = _write(tmp_path / "sites" / site / "agent.toml", AGENT_CONFIG + linkage)
            fed.processes.start_agent(site, store, fed.add_site(site), config=config)
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
