"""Identity data for the linkage tests: Patient resources of synthetic people, a store of them, the
feasibility query that selects the adults, and a linkage unit as its own process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from datenraum.linkage import synthetic
from datenraum.linkage.encoder import Encoder
from datenraum.linkage.estimate import calibrate
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import load_schema
from datenraum.linkunit.config import token_digest
from datenraum.query.model import parse_query
from datenraum.site.feasibility import patient_ids
from datenraum.site.ingest import ingest
from datenraum.site.store import Store

SCHEMA_PATH = Path(__file__).parents[1] / "datenraum" / "linkage" / "schemas" / "de-patient-v3.json"

ADULTS = {
    "inclusionCriteria": [
        [
            {
                "context": {"system": "fdpg.mii.cds", "code": "Patient", "display": "Patient"},
                "termCodes": [{"system": "http://snomed.info/sct", "code": "424144002", "display": "Alter"}],
                "valueFilter": {
                    "type": "quantity-comparator",
                    "comparator": "gt",
                    "value": 30,
                    "unit": {"code": "a"},
                },
            }
        ]
    ]
}


def write_private(path: Path, text: str | bytes) -> Path:
    """A file only its owner may read (secrets and tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    os.chmod(path, 0o600)
    return path


def unit_config(folder: Path, project: str, secret: bytes, tokens: dict[str, str], hub_token: str) -> Path:
    """A linkage unit's configuration for one project of these sites, with a threshold calibrated on
    synthetic people encoded as the sites encode (the unit itself never gets `secret`)."""
    schema = load_schema(SCHEMA_PATH)
    encoder = Encoder(schema, project_secret(secret, project))
    train, _ = synthetic.sites(1200, 3, seed=11)
    threshold = calibrate([encoder.encode(s) for s in train], [[r["patient_id"] for r in s] for s in train])
    write_private(folder / "unit.key", os.urandom(32).hex())
    spec = {
        "schema_digest": schema.digest,
        "clk_bytes": schema.size // 8,
        "threshold": threshold.threshold,
        "sites": {site: token_digest(token) for site, token in tokens.items()},
        "hub": token_digest(hub_token),
    }
    config = {"unit_key_file": "unit.key", "projects": {project: spec}}
    return write_private(folder / "unit.json", json.dumps(config))


@dataclass(frozen=True)
class LinkedSite:
    store: Path
    agent_config: Path


def linked_sites(
    folder: Path, base_config: str, unit_url: str, project: str, secret: bytes, tokens: dict[str, str]
) -> tuple[dict[str, LinkedSite], set[str]]:
    """Site stores of overlapping synthetic people (one site per token) with agent configurations that
    deliver to the unit; and the true distinct persons of the ADULTS cohort over them."""
    people, _ = synthetic.sites(900, len(tokens), seed=31)
    secret_file = write_private(folder / "linkage.secret", secret)
    sites, truth = {}, set()
    for s, (site, records) in enumerate(zip(tokens, people, strict=True)):
        local = {f"s{s}p{n:05d}": r for n, r in enumerate(records)}
        store = identity_store(folder / site, local)
        with Store(store).snapshot() as snapshot:
            truth |= {local[i]["patient_id"] for i in patient_ids(snapshot, parse_query(ADULTS))}
        linkage = (
            f'[linkage]\nunit_url = "{unit_url}"\nproject = "{project}"\nsite = "{site}"\n'
            f'token_file = "{write_private(folder / site / "unit.token", tokens[site])}"\n'
            f'secret_file = "{secret_file}"\n'
        )
        sites[site] = LinkedSite(store, write_private(folder / site / "agent.toml", base_config + linkage))
    return sites, truth


def patient_resource(local_id: str, person: dict[str, str]) -> dict[str, Any]:
    """A Patient resource with the person's identity as the German patient profile names it."""
    return {
        "resourceType": "Patient",
        "id": local_id,
        "name": [{"use": "official", "family": person["family_name"], "given": person["given_name"].split()}],
        "gender": person["sex"],
        "birthDate": person["birth_date"],
        "address": [{"use": "home", "postalCode": person["postal_code"], "city": person["city"]}],
    }


def identity_store(folder: Path, people: dict[str, dict[str, str]]) -> Path:
    """A site store of these people (local id → identity record)."""
    folder.mkdir(parents=True, exist_ok=True)
    ndjson = folder / "patients.ndjson"
    ndjson.write_text("\n".join(json.dumps(patient_resource(i, r)) for i, r in people.items()) + "\n")
    store = Store(folder / "store")
    assert not ingest(store, [ndjson]).rejected
    return folder / "store"


def start_linkage_unit(config: Path, db: Path) -> tuple[str, subprocess.Popen]:
    """`datenraum linkunit serve` in its own process, without the sites' secret in its environment;
    returns its URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if "SECRET" not in k}
    cmd = [sys.executable, "-m", "datenraum", "linkunit", "serve", "--config", str(config)]
    cmd += ["--db", str(db), "--port", str(port)]
    process = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, process
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the linkage unit did not start"
            time.sleep(0.05)  # waiting for another process to listen, not a timing assumption
