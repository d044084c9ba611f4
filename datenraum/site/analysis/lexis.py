"""A table split at the bins of survival time (a Lexis split) for the piecewise-exponential model.

Every subject with a time and an event indicator becomes one row per bin of `bin_width` it was at risk
in: `lexis_interval` (the bin's start, days), `lexis_exposure` (days at risk in the bin) and
`lexis_event` (1 in the bin of its event), beside all of its own columns. A Poisson GLM of
`lexis_event ~ factor(lexis_interval) + x + offset(log(lexis_exposure))` on these rows is the
piecewise-exponential survival model, and the federated GLM pools it exactly.

Times are the coarsened ones of `datenraum.privacy.risk_sets` (each interval's rows are then a risk set
Cox's rule allows): a subject leaves in the base cell of `time_bin` days its group ends in, at the
cell's middle (the life table's assumption: leaving is spread evenly over a cell).
"""

from __future__ import annotations

import numpy as np

from datenraum.analysis.messages import Lexis
from datenraum.privacy.analysis import AnalysisPolicy, Refused
from datenraum.privacy.risk_sets import coarsen_risk_sets
from datenraum.site.analysis.tables import TableError

__all__ = ["LEXIS_COLUMNS", "LexisTable"]

LEXIS_COLUMNS = ("lexis_interval", "lexis_exposure", "lexis_event")
MAX_SPLIT_ROWS = 5_000_000  # subjects x their intervals, so that one request cannot exhaust the site


class LexisTable:
    def __init__(self, base, lexis: Lexis, policy: AnalysisPolicy) -> None:
        if lexis.bin_width < policy.time_bin:
            raise Refused("time_bin", policy.time_bin, "piecewise exponential")
        time, event = base.column(lexis.time), base.column(lexis.event)
        if time.dtype == object or event.dtype == object:
            raise TableError(f"{lexis.time} and {lexis.event} must be numeric for the split")
        valid = ~np.isnan(time) & ~np.isnan(event)
        if np.any(time[valid] < 0):
            raise TableError(f"{lexis.time}: survival times must not be negative")
        if not np.all((event[valid] == 0) | (event[valid] == 1)):
            raise TableError(f"{lexis.event}: the event indicator must be 0 or 1")
        subjects = np.nonzero(valid)[0]
        released, died = coarsen_risk_sets(time[valid], event[valid], policy, "piecewise exponential")
        leave = released + policy.time_bin / 2  # the middle of the subject's last base cell
        # a subject leaving at a bin's boundary was at risk up to it, not for no time after it
        last = (np.ceil(leave / lexis.bin_width) - 1).astype(np.int64)
        counts = last + 1
        if int(counts.sum()) > MAX_SPLIT_ROWS:
            raise TableError(f"the split has more than {MAX_SPLIT_ROWS} rows; use wider bins")
        self.base = base
        self.key = f"{base.key}:lexis"
        self._origin = np.repeat(subjects, counts)
        position = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        start = position * lexis.bin_width
        is_last = position == np.repeat(last, counts)
        exposure = np.where(is_last, np.repeat(leave, counts) - start, lexis.bin_width)
        self._own = {
            "lexis_interval": start.astype(float),
            "lexis_exposure": exposure,
            "lexis_event": np.where(is_last, np.repeat(died, counts), 0).astype(float),
        }
        for values in self._own.values():
            values.setflags(write=False)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def n_rows(self) -> int:
        return len(self._origin)

    def ledger_rows(self, mask: np.ndarray) -> tuple[str, np.ndarray]:
        """The subjects of the split rows in `mask`: the ledger compares subjects, not their intervals."""
        subjects = np.zeros(self.base.n_rows, dtype=bool)
        subjects[self._origin[mask]] = True
        return self.base.ledger_rows(subjects)

    def names(self) -> list[str]:
        return [*self.base.names(), *LEXIS_COLUMNS]

    def column(self, name: str) -> np.ndarray:
        if name in self._own:
            return self._own[name]
        cached = self._cache.get(name)
        if cached is None:
            cached = self.base.column(name)[self._origin]
            cached.setflags(write=False)
            self._cache[name] = cached
        return cached

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        from datenraum.analysis.design import level_strings

        if name not in self._own:
            codes, labels = self.base.codes(name)
            return codes[self._origin], labels
        distinct, inverse = np.unique(self._own[name], return_inverse=True)
        return inverse.astype(np.int32), level_strings(distinct).tolist()
