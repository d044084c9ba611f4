"""Local mode (in the spirit of DataSHIELD's DSLite): every table file of a folder is one site, run
in-process by its own `SiteExecutor`, so that analyses can be written and tested without a federation.

    from datenraum.analysis import Analysis
    from datenraum.site.analysis.local import LocalSites

    sites = LocalSites.from_folder("demo-sites")      # a.csv, b.parquet, ... -> sites "a", "b", ...
    fit = Analysis(sites).glm("t2d ~ age + factor(sex) + bmi", family="binomial")

Requests and answers pass through JSON as they would over the wire, and each site applies its own
disclosure rules (one `AnalysisPolicy` for all, or one per site).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.site.analysis.executor import SiteExecutor
from datenraum.site.analysis.tables import AnalysisTable, TableError, read_table

__all__ = ["LocalSites"]

SUFFIXES = (".csv", ".tsv", ".parquet")


class LocalSites:
    def __init__(self, executors: Mapping[str, SiteExecutor]) -> None:
        self.executors = dict(executors)
        self.rounds = 0
        self.critical_path = 0.0  # seconds

    @classmethod
    def from_tables(
        cls, tables: Mapping[str, AnalysisTable], policy: AnalysisPolicy | None = None
    ) -> LocalSites:
        return cls({name: SiteExecutor({"data": t}, policy, site=name) for name, t in tables.items()})

    @classmethod
    def from_folder(cls, folder: str | Path, policy: AnalysisPolicy | None = None) -> LocalSites:
        folder = Path(folder)
        if not folder.is_dir():
            raise TableError(f"{folder} is not a folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
        if not files:
            raise TableError(f"{folder} holds no .csv, .tsv or .parquet file (one per site)")
        return cls.from_tables({p.stem: read_table(p) for p in files}, policy)

    def names(self) -> list[str]:
        return list(self.executors)

    def ask(self, request: dict[str, Any], sites: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Each site answers in turn (in a federation they answer at once: `critical_path` is the sum over
        rounds of the slowest site's time, what the rounds would take with the sites in parallel)."""
        self.rounds += 1
        wire = orjson.dumps(request)
        answers: dict[str, dict[str, Any] | None] = {}
        slowest = 0.0
        for site in sites:
            if site not in self.executors:
                answers[site] = None
                continue
            started = time.perf_counter()
            answers[site] = orjson.loads(orjson.dumps(self.executors[site].handle(orjson.loads(wire))))
            slowest = max(slowest, time.perf_counter() - started)
        self.critical_path += slowest
        return answers
