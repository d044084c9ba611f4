"""The linkage unit's cost beside the bare library, side by side in one run: a distinct count of three
sites' cohorts (a) by `estimate_distinct` alone, (b) through the unit in process (parsing the deliveries,
SQLite, obfuscation), (c) over real HTTP to the unit served by uvicorn in a thread (JSON of base64 CLKs).
Wall and CPU seconds (this process), and the ratio to (a).

    .venv/bin/python bench/bench_linkunit.py [--persons 3200]
"""

from __future__ import annotations

import argparse
import base64
import json
import socket
import tempfile
import threading
import time
import uuid
from importlib.resources import files
from pathlib import Path

import httpx
import uvicorn

from datenraum.linkage import synthetic
from datenraum.linkage.encoder import Encoder
from datenraum.linkage.estimate import estimate_distinct
from datenraum.linkage.keys import project_secret
from datenraum.linkage.schema import load_schema
from datenraum.linkunit.app import create_app
from datenraum.linkunit.config import parse_config, token_digest
from datenraum.linkunit.service import LinkageUnit, parse_delivery
from datenraum.linkunit.store import Store

SITES = ("a", "b", "c")
THRESHOLD = 0.86


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--persons", type=int, default=3200)
    args = parser.parse_args()
    schema = load_schema(files("datenraum.linkage") / "schemas" / "de-patient-v3.json")
    encoder = Encoder(schema, project_secret(b"\x22" * 32, "bench"))
    cohorts, truth = synthetic.sites(args.persons, 3, seed=12)
    clks = [encoder.encode(c) for c in cohorts]
    bodies = [
        {
            "schema_digest": schema.digest,
            "records": [
                {"pseudonym": f"p{i}", "clk": base64.b64encode(row.tobytes()).decode()}
                for i, row in enumerate(m)
            ],
        }
        for m in clks
    ]
    folder = Path(tempfile.mkdtemp())
    (folder / "unit.key").write_bytes(b"k" * 40)
    tokens = {s: f"token-{s}" for s in SITES}
    project = {
        "schema_digest": schema.digest,
        "clk_bytes": schema.size // 8,
        "threshold": THRESHOLD,
        "sites": {s: token_digest(t) for s, t in tokens.items()},
        "hub": token_digest("hub"),
    }
    config = parse_config({"unit_key_file": "unit.key", "projects": {"p": project}}, folder)
    unit = LinkageUnit(config, Store(folder / "unit.sqlite"))
    rows = []

    estimate_distinct([m[:200] for m in clks], THRESHOLD)  # warm-up: BLAS threads, first allocations
    wall, cpu, est = _timed(lambda: estimate_distinct(clks, THRESHOLD))
    base = wall
    rows.append(
        ("library: estimate_distinct", wall, cpu, f"{est.distinct} ({est.interval[0]}-{est.interval[1]})")
    )

    def in_process():
        count_id = str(uuid.uuid4())
        cfg = config.projects["p"]
        for site, body in zip(SITES, bodies, strict=True):
            unit.deliver_cohort(cfg, count_id, site, parse_delivery(json.loads(json.dumps(body)), cfg))
        return unit.distinct_count(cfg, count_id)

    wall, cpu, released = _timed(in_process)
    rows.append(
        ("unit in process (parse, SQLite, obfuscate)", wall, cpu, str(released.as_json()["distinct"]))
    )

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(unit), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)

    def over_http():
        count_id = str(uuid.uuid4())
        for site, body in zip(SITES, bodies, strict=True):
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {tokens[site]}"}, timeout=300
            ) as c:
                c.put(f"/v1/projects/p/counts/{count_id}/sites/{site}", json=body).raise_for_status()
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer hub"}, timeout=300) as hub:
            return hub.get(f"/v1/projects/p/counts/{count_id}").json()

    wall, cpu, answer = _timed(over_http)
    rows.append(("unit over HTTP (uvicorn, JSON + base64)", wall, cpu, str(answer["distinct"])))
    server.should_exit = True
    thread.join(10)

    sizes = "+".join(str(len(c)) for c in cohorts)
    print(
        f"3 sites, cohorts {sizes} = {sum(map(len, cohorts))} records, {truth} true persons, threshold {THRESHOLD}"
    )
    print(f"{'variant':<44} {'wall s':>8} {'CPU s':>8} {'x lib':>6}  distinct")
    for name, wall, cpu, result in rows:
        print(f"{name:<44} {wall:>8.2f} {cpu:>8.2f} {wall / base:>6.2f}  {result}")


if __name__ == "__main__":
    main()
