"""What distinct persons cost a site's feasibility task, side by side in one run on one store: (a) the
count alone (the cohort's ids and noise key), (b) with the cohort's identities read from the store's
Patient resources, (c) with them encoded into CLKs, (d) with the CLKs delivered over real HTTP to a
linkage unit (uvicorn in a thread) by the agent's `CohortLinker`. Wall and CPU seconds (this process,
the unit's share included in (d)), and the ratio to (a).

    .venv/bin/python bench/bench_distinct_task.py [--persons 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

import uvicorn

from datenraum.linkage import synthetic
from datenraum.linkage.schema import load_schema
from datenraum.linkunit.app import create_app
from datenraum.linkunit.config import parse_config, token_digest
from datenraum.linkunit.service import LinkageUnit
from datenraum.linkunit.store import Store as UnitStore
from datenraum.privacy.counts import cohort_key
from datenraum.query.model import parse_query
from datenraum.site import linkage as site_linkage
from datenraum.site.agent.config import LinkageSettings
from datenraum.site.agent.linkage import CohortLinker
from datenraum.site.feasibility import iter_patient_ids
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
SCHEMA = Path(__file__).parents[1] / "datenraum" / "linkage" / "schemas" / "de-patient-v3.json"


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _store(folder: Path, persons: int) -> Store:
    [records], _ = synthetic.sites(persons, 1, seed=3)
    lines = []
    for n, r in enumerate(records):
        patient = {
            "resourceType": "Patient",
            "id": f"p{n:07d}",
            "name": [{"use": "official", "family": r["family_name"], "given": r["given_name"].split()}],
            "gender": r["sex"],
            "birthDate": r["birth_date"],
            "address": [{"use": "home", "postalCode": r["postal_code"], "city": r["city"]}],
        }
        lines.append(json.dumps(patient))
    (folder / "patients.ndjson").write_text("\n".join(lines) + "\n")
    store = Store(folder / "store")
    ingest(store, [folder / "patients.ndjson"])
    return store


def _unit(folder: Path) -> tuple[str, uvicorn.Server, threading.Thread]:
    schema = load_schema(SCHEMA)
    (folder / "unit.key").write_text(os.urandom(32).hex())
    project = {
        "schema_digest": schema.digest,
        "clk_bytes": schema.size // 8,
        "threshold": 0.86,
        "sites": {"a": token_digest("token-a"), "b": token_digest("token-b")},
        "hub": token_digest("hub"),
    }
    config = parse_config({"unit_key_file": "unit.key", "projects": {"p": project}}, folder)
    unit = LinkageUnit(config, UnitStore(folder / "unit.sqlite"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(unit), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)  # waiting for the server thread to listen
    return f"http://127.0.0.1:{listener.getsockname()[1]}", server, thread


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=20000)
    args = parser.parse_args()
    query = parse_query(ADULTS)
    secret = b"\x11" * 32
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = _store(folder, args.persons)
        url, server, thread = _unit(folder)
        (folder / "token").write_text("token-a")
        (folder / "secret").write_bytes(b"the sites' shared linkage secret")
        linker = CohortLinker(LinkageSettings(url, "p", "a", folder / "token", folder / "secret"), secret)
        rows = []
        with store.snapshot() as snapshot:

            def count():
                return cohort_key(secret, iter_patient_ids(snapshot, query))

            def with_identities():
                ids = list(iter_patient_ids(snapshot, query))
                return cohort_key(secret, ids), list(site_linkage.identities(snapshot, ids))

            def with_encoding():
                key, cohort = with_identities()
                return key, linker.encoder.encode([identity for _, identity in cohort])

            def with_delivery():
                key, cohort = with_identities()
                return key, linker.deliver(str(uuid.uuid4()), cohort)

            for name, fn in (
                ("(a) count only", count),
                ("(b) + identities from the store", with_identities),
                ("(c) + encoding into CLKs", with_encoding),
                ("(d) + delivery to the unit over HTTP", with_delivery),
            ):
                fn()  # warm: the store's pages and the encoder's token cache as in a running agent
                wall, cpu, out = _timed(fn)
                rows.append((name, wall, cpu, out))
        linker.close()
        server.should_exit = True
        thread.join(10)
    exact = rows[0][3][0]
    print(f"one site, {args.persons} patients, cohort of {exact} adults; {os.cpu_count()} cores")
    print(f"{'variant':<40} {'wall s':>8} {'CPU s':>8} {'x count':>8} {'records/s':>10}")
    base = rows[0][1]
    for name, wall, cpu, _ in rows:
        print(f"{name:<40} {wall:>8.3f} {cpu:>8.3f} {wall / base:>8.1f} {exact / wall:>10.0f}")
    assert rows[3][3][1] == "delivered", rows[3][3][1]


if __name__ == "__main__":
    main()
