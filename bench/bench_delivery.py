"""Delivery through the hub with bounded memory: a sealed package of N MB uploaded by the agent's
upload code (chunks with their SHA-256, the whole file's SHA-256 at the end) to a real hub process over
HTTP, then downloaded by the project's team as the merged tar, streamed to disk. Reports MB/s and the
peak RSS of the hub process and of this process (the agent's side), beside the package's size: memory
must stay flat however large the package is.

    .venv/bin/python bench/bench_delivery.py [--mb 1024]

The part is put in the `released` state directly in the hub's database: the workflow before it is not
what this measures (tests/e2e/test_delivery_browser.py walks it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil
from sqlalchemy.orm import sessionmaker

from datenraum.devtools.federation import LocalFederation
from datenraum.hub.accounts.service import Accounts
from datenraum.hub.db import UserRow, create_hub_engine
from datenraum.hub.delivery.service import project_id
from datenraum.hub.delivery.tables import DataDeliveryRow, DeliveryPartRow
from datenraum.hub.proposals.tables import ProposalRow, TeamMemberRow
from datenraum.protocol.messages import API_PREFIX
from datenraum.site.agent.delivery import upload_released

SITE = "uk-bench"


def _peak_mb(pid: int) -> float:
    """The peak RSS (VmHWM) of `pid` and its children, in MB."""
    total = 0.0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with open(f"/proc/{process.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    total = max(total, int(line.split()[1]) / 1024)
    return total


def _released_part(url: str, site_id: int, owner_id: int) -> tuple[int, str]:
    engine = create_hub_engine(url)
    now = dt.datetime.now(dt.UTC)
    task_id = str(uuid.uuid4())
    try:
        with sessionmaker(engine).begin() as session:
            proposal = ProposalRow(
                owner_id=owner_id,
                state="ready-for-delivery",
                title="Benchmark",
                abstract="",
                questions=[],
                modules=[],
                biosamples="",
                analysis="data-delivery",
                created=now,
                updated=now,
            )
            session.add(proposal)
            session.flush()
            session.add(
                TeamMemberRow(proposal_id=proposal.id, user_id=owner_id, project_role="data-scientist")
            )
            delivery = DataDeliveryRow(
                proposal_id=proposal.id,
                crtdl={},
                crtdl_sha256="0" * 64,
                recipient_key="",
                profile="fdpg",
                started_by=owner_id,
                created=now,
                deadline=now + dt.timedelta(days=28),
            )
            session.add(delivery)
            session.flush()
            session.add(
                DeliveryPartRow(
                    task_id=task_id,
                    delivery_id=delivery.id,
                    site_id=site_id,
                    state="released",
                    received=0,
                    updated=now,
                )
            )
            return proposal.id, task_id
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=1024)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    federation = LocalFederation(
        work, hub_env={"DATENRAUM_HUB_DELIVERY_FOLDER": str(work / "hub-deliveries")}
    )
    try:
        files = federation.register(sites=[SITE], users=[("pi@bench.example", "researcher")])
        engine = create_hub_engine(federation.hub_env["DATENRAUM_HUB_DATABASE_URL"])
        with sessionmaker(engine)() as session:
            owner_id = session.query(UserRow.id).filter(UserRow.email == "pi@bench.example").scalar()
        site_id = Accounts(sessionmaker(engine)).site_for(files[SITE].read_text().strip()).id
        engine.dispose()
        proposal_id, task_id = _released_part(
            federation.hub_env["DATENRAUM_HUB_DATABASE_URL"], site_id, owner_id
        )
        job = work / "site" / project_id(proposal_id) / task_id
        job.parent.mkdir(parents=True)
        with open(job.with_name(task_id + ".dpkg"), "wb") as package:
            for _ in range(args.mb // 4):
                package.write(os.urandom(4 << 20))
        federation.start_hub()
        assert federation.hub is not None
        site = httpx.Client(base_url=federation.url + API_PREFIX, timeout=120)
        token = files[SITE].read_text().strip()

        def request(method: str, path: str, **kwargs: object) -> httpx.Response:
            headers = {**kwargs.pop("headers", {}), "Authorization": f"Bearer {token}"}  # type: ignore[dict-item]
            return site.request(method, path, headers=headers, **kwargs)  # type: ignore[arg-type]

        rows = []
        cpu, wall = time.process_time(), time.perf_counter()
        done = upload_released(request, lambda project, task: work / "site" / project / task, lambda: False)
        assert done == 1, "the upload did not complete; see the hub's log in " + str(work)
        rows.append(("upload (agent -> hub)", time.perf_counter() - wall, time.process_time() - cpu))
        researcher = httpx.Client(
            base_url=federation.url,
            headers={"Authorization": f"Bearer {files['pi@bench.example'].read_text().strip()}"},
            timeout=120,
        )
        cpu, wall = time.process_time(), time.perf_counter()
        with (
            researcher.stream("GET", f"/api/v1/deliveries/{proposal_id}/download") as response,
            open(work / "download.tar", "wb") as out,
        ):
            response.raise_for_status()
            for block in response.iter_bytes(1 << 20):
                out.write(block)
        rows.append(("download (hub -> team)", time.perf_counter() - wall, time.process_time() - cpu))
        hub_peak = _peak_mb(federation.hub.process.pid)
        own_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"package {args.mb} MB; hub on SQLite, one process; chunks of 4 MiB")
        print(f"{'step':<26} {'wall s':>8} {'MB/s':>8} {'client CPU s':>13}")
        for label, seconds, cpu_seconds in rows:
            print(f"{label:<26} {seconds:>8.1f} {args.mb / seconds:>8.0f} {cpu_seconds:>13.1f}")
        print(f"peak RSS: hub {hub_peak:.0f} MB, agent side (this process) {own_peak:.0f} MB")
        site.close()
        researcher.close()
    finally:
        federation.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
