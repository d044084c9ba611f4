"""Identity data for the linkage tests: Patient resources of synthetic people, a store of them, the
feasibility query that selects the adults, and a linkage unit as its own process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from datenraum.site.ingest import ingest
from datenraum.site.store import Store

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
