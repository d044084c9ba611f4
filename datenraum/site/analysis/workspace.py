"""The analyst's workspace at the site: derived variables and subsets, per project and analyst, each
kept for a time to live (`[analysis] workspace_ttl`, one hour by default) after it was last assigned.

DataSHIELD keeps "assigned" objects in a server-side R session; here an `assign` request names a
derived variable (a whitelisted transform of a variable: `log(bmi)`) or a subset (typed conditions),
and later requests of the same project and analyst use the name: a derived variable as a column, a
subset as `data.subset`. Nothing is evaluated, and a subset is checked for its size when it is made
(`min_rows`). The workspace lives in the agent's memory: a restarted agent has an empty one, and the
hub fails an analysis that was running on it (see `datenraum.hub.analysis`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from datenraum.analysis.design import transform
from datenraum.analysis.formula import Var
from datenraum.analysis.messages import Condition
from datenraum.site.analysis.tables import AnalysisTable, TableError

__all__ = ["Workspace", "WorkspaceTable"]

MAX_ENTRIES = 50  # per project and analyst


@dataclass(frozen=True)
class Entry:
    derive: Var | None
    subset: tuple[Condition, ...]
    expires: float


class Workspace:
    def __init__(self, ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, str], dict[str, Entry]] = {}
        self._lock = threading.Lock()

    def assign(
        self, project: str, analyst: str, name: str, derive: Var | None, subset: tuple[Condition, ...]
    ) -> float:
        """Keep the entry; the seconds it lives."""
        with self._lock:
            entries = self._live(project, analyst)
            if name not in entries and len(entries) >= MAX_ENTRIES:
                raise TableError(f"the workspace holds {MAX_ENTRIES} names already; reuse one")
            entries[name] = Entry(derive, subset, self._clock() + self.ttl)
        return self.ttl

    def entries(self, project: str, analyst: str) -> dict[str, Entry]:
        with self._lock:
            return dict(self._live(project, analyst))

    def _live(self, project: str, analyst: str) -> dict[str, Entry]:
        now = self._clock()
        entries = self._entries.setdefault((project, analyst), {})
        for name in [n for n, e in entries.items() if e.expires <= now]:
            del entries[name]
        return entries


class WorkspaceTable:
    """An analysis table with the workspace's derived variables as further columns."""

    def __init__(self, base: AnalysisTable, entries: dict[str, Entry]) -> None:
        self.base = base
        self.key = base.key
        self.entries = entries
        self._derived = {n: e.derive for n, e in entries.items() if e.derive is not None}

    @property
    def n_rows(self) -> int:
        return self.base.n_rows

    def ledger_rows(self, mask: np.ndarray) -> tuple[str, np.ndarray]:
        return self.base.ledger_rows(mask)

    def names(self) -> list[str]:
        return [*self.base.names(), *self._derived]

    def column(self, name: str) -> np.ndarray:
        var = self._derived.get(name)
        if var is None:
            return self.base.column(name)
        values = self.base.column(var.name)
        if values.dtype == object:
            raise TableError(f"{name}: {var.name} is categorical and cannot be transformed")
        out = transform(values, var.transform)
        out.setflags(write=False)
        return out

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        if name not in self._derived:
            return self.base.codes(name)
        from datenraum.analysis.design import level_strings

        values = self.column(name)
        distinct, inverse = np.unique(values, return_inverse=True)
        keep = ~np.isnan(distinct)
        return np.where(keep[inverse], inverse, -1).astype(np.int32), level_strings(distinct[keep]).tolist()

    def subset(self, name: str) -> tuple[Condition, ...]:
        entry = self.entries.get(name)
        if entry is None or entry.derive is not None:
            raise TableError(f"no subset {name!r} in the workspace (expired, or never assigned)")
        return entry.subset
