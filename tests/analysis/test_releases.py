"""The site's release log: what was released survives a restart (and a kill -9), so that differencing
and the daily budget cannot be dodged by waiting for the agent to restart; a refusal records nothing."""

from __future__ import annotations

import datetime as dt
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from datenraum.analysis.messages import VERSION
from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.site.analysis.executor import SiteExecutor
from datenraum.site.analysis.releases import ReleaseLog
from datenraum.site.analysis.tables import AnalysisTable

NOW = dt.datetime(2026, 12, 4, 20, 0, tzinfo=dt.UTC)


def _table(n: int = 60) -> AnalysisTable:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(10, 2, size=n), "id": np.arange(n, dtype=float)})
    return AnalysisTable(pa.Table.from_pandas(frame, preserve_index=False), "store-generation-7")


def _site(path: Path, policy: AnalysisPolicy | None = None, now: dt.datetime = NOW) -> SiteExecutor:
    """A site as the agent builds it after each start: its release log from the state folder."""
    return SiteExecutor({"data": _table()}, policy, site="s", releases=ReleaseLog(path), clock=lambda: now)


def _summary(below: int, *, project: str = "p", analyst: str = "a") -> dict:
    return {
        "v": VERSION,
        "op": "summary",
        "project": project,
        "analyst": analyst,
        "data": {"table": "data"},
        "where": [{"variable": "id", "comparator": "lt", "value": below}],
        "variables": ["x"],
    }


def test_differencing_against_a_release_before_the_restart_is_refused(tmp_path: Path) -> None:
    before = _site(tmp_path / "releases.sqlite")
    assert before.handle(_summary(30))["ok"]
    before.releases.close()

    after = _site(tmp_path / "releases.sqlite")
    answer = after.handle(_summary(31))
    assert not answer["ok"] and answer["error"]["rule"] == "differencing"
    assert "result" not in answer
    assert after.handle(_summary(30))["ok"]  # the same rows again are no difference


def test_differencing_is_checked_across_the_analysts_of_a_project(tmp_path: Path) -> None:
    site = _site(tmp_path / "releases.sqlite")
    assert site.handle(_summary(30, analyst="alice"))["ok"]
    assert site.handle(_summary(31, analyst="bob"))["error"]["rule"] == "differencing"
    assert site.handle(_summary(31, project="other", analyst="bob"))["ok"]


def test_the_daily_budget_survives_a_restart_and_starts_again_the_next_day(tmp_path: Path) -> None:
    policy = AnalysisPolicy(daily_budget=3)
    first = _site(tmp_path / "releases.sqlite", policy)
    assert [first.handle(_summary(40))["ok"] for _ in range(2)] == [True, True]
    first.releases.close()

    second = _site(tmp_path / "releases.sqlite", policy)
    answers = [second.handle(_summary(40)) for _ in range(2)]
    assert [a["ok"] for a in answers] == [True, False]
    assert answers[1]["error"]["rule"] == "budget" and answers[1]["error"]["threshold"] == 3
    second.releases.close()

    tomorrow = _site(tmp_path / "releases.sqlite", policy, NOW + dt.timedelta(days=1))
    assert tomorrow.handle(_summary(40))["ok"]


def test_every_released_result_is_recorded_per_project_and_analyst(tmp_path: Path) -> None:
    site = _site(tmp_path / "releases.sqlite")
    alice = site.handle(_summary(40, analyst="alice"))
    bob = site.handle(_summary(50, analyst="bob"))
    site.handle(_summary(41, analyst="bob"))  # refused: differencing against alice's
    site.releases.close()

    log = ReleaseLog(tmp_path / "releases.sqlite")
    assert [r.result for r in log.releases("p", "alice")] == [alice["result"]]
    assert [(r.analyst, r.operation, r.day) for r in log.releases("p")] == [
        ("alice", "summary", NOW.date()),
        ("bob", "summary", NOW.date()),
    ]
    assert [r.result for r in log.releases("p", "bob")] == [bob["result"]]
    assert log.spent("p", NOW.date()) == 2


def test_a_refused_release_spends_no_budget_and_leaves_no_row_set(tmp_path: Path) -> None:
    site = _site(tmp_path / "releases.sqlite", AnalysisPolicy(daily_budget=1))
    assert site.handle(_summary(40))["ok"]
    assert site.handle(_summary(20))["error"]["rule"] == "budget"
    site.releases.close()
    # the refused subset of 20 rows was not recorded: 21 rows (one away from it) pass differencing
    again = _site(tmp_path / "releases.sqlite", AnalysisPolicy(daily_budget=1), NOW + dt.timedelta(days=1))
    assert again.handle(_summary(21))["ok"]


# Writes releases as fast as it can, saying "released N" after each one is committed.
_WRITER = """
import datetime as dt, sys
import numpy as np
from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.site.analysis.releases import ReleaseLog

log = ReleaseLog(sys.argv[1])
policy = AnalysisPolicy(daily_budget=10**9)
now = dt.datetime(2026, 12, 4, tzinfo=dt.UTC)
for i in range(10**9):
    mask = np.zeros(100_000, dtype=bool)
    mask[: 1000 + 10 * i] = True
    log.release(project="p", analyst="a", operation="summary", source="t", masks=[mask],
                result={"i": i, "padding": "x" * 4000}, policy=policy, now=now)
    print("released", i + 1, flush=True)
"""


def test_a_kill_9_while_writing_leaves_every_answered_release_whole(tmp_path: Path) -> None:
    path = tmp_path / "releases.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        for line in writer.stdout:
            if line.strip() == "released 25":
                break
        writer.send_signal(signal.SIGKILL)
        last = 25 + sum(1 for line in writer.stdout if line.startswith("released"))
    finally:
        writer.kill()
        writer.wait()

    log = ReleaseLog(path)
    releases = log.releases("p")
    # every release that was reported (and so could have been posted) is there, each one whole,
    # each with its row set; at most the one in flight is missing
    assert len(releases) >= last
    assert [r.result["i"] for r in releases] == list(range(len(releases)))
    assert all(len(r.result["padding"]) == 4000 for r in releases)
    log.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM row_set").fetchone() == (len(releases),)
