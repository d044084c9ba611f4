"""Disclosure control for federated analysis, applied by each site to its own rows before anything
leaves it (authoritative: a site never trusts the hub's or the client's checks), and by the hub for the
rules that need every site's answer (minimum sites).

The rules and defaults (brief "federated analysis" table 9.3; a site may tighten them, never loosen them
below the network floors in `FLOORS`):

| rule | default | what is refused |
|---|---|---|
| `min_rows` | 10 | any statistic over fewer rows at this site; a subset smaller than that |
| `min_cell` | k = 5 | a non-zero count below k: a table cell (suppressed with the margins that would reveal it), a factor level, a class of a binary variable (response, design column, weight, offset), the events of a binomial/poisson model |
| `sparse_column` | k | a design column or summarised variable with fewer than k non-zero values (x times an indicator) |
| `dominance` | 0.9 | a sum or mean (or a gaussian response, a design column) where one row holds more than 0.9 of the absolute total |
| `glm_saturation` | 0.10 | a model with more parameters than 0.10 x rows at this site |
| `levels` | 40, 0.33 | a factor with more than 40 levels or more than 0.33 x rows |
| `differencing` | k | a release whose row set differs from an earlier release of the project by 1 to k-1 rows (blocked, not warned; the site keeps every release in its release log, `datenraum.site.analysis.releases`) |
| `min_sites` | 3 | a pooled result of fewer sites |
| `no_extremes` | - | min and max are never released; p5/p95 only with n >= 20 k (`tail_factor`) |
| `quantile_bins` | k | quantiles come from a binned CDF, each bin holding at least k rows, never an observed value |
| `budget` | 2000 | released statistics per project and site per day |
| `time_bin` | 30 | survival times are released only in bins of at least this width (days; the custodian's choice); a bin's at-risk count below k is never shown: the subjects still at risk there are censored at the end of the last bin with at least k at risk (`bin_survival`) |
| `risk_sets` | k | Cox's per-bin sums: the site's `time_bin` cells are grouped until each has 0 or at least k events and 0 or at least k censored, so no difference of released risk sets (between bins, or between bin widths) isolates fewer than k (`datenraum.privacy.risk_sets`) |

A refusal names the rule and the threshold, never the value that broke it (`Refused.to_json`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

# numpy is imported by the checks that compute: the hub reads only the policy, and starts without it.
if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "FLOORS",
    "AnalysisPolicy",
    "Refused",
    "bin_survival",
    "check_binary",
    "check_budget",
    "check_differencing",
    "check_dominance",
    "check_levels",
    "check_min_sites",
    "check_rows",
    "check_saturation",
    "check_sparse",
    "round_count",
    "suppress",
]

_TEXTS: dict[str, tuple[str, str]] = {
    "min_rows": (
        "{what}: fewer than {threshold} rows at this site",
        "{what}: weniger als {threshold} Zeilen an diesem Standort",
    ),
    "min_cell": (
        "{what}: a count between 1 and {threshold_minus} (minimum {threshold})",
        "{what}: eine Anzahl zwischen 1 und {threshold_minus} (Minimum {threshold})",
    ),
    "sparse_column": (
        "{what}: fewer than {threshold} non-zero values",
        "{what}: weniger als {threshold} von null verschiedene Werte",
    ),
    "dominance": (
        "{what}: one row holds more than {threshold} of the total",
        "{what}: eine Zeile trägt mehr als {threshold} der Summe",
    ),
    "glm_saturation": (
        "{what}: more parameters than {threshold} x rows at this site",
        "{what}: mehr Parameter als {threshold} x Zeilen an diesem Standort",
    ),
    "levels": (
        "{what}: too many levels (at most {threshold})",
        "{what}: zu viele Ausprägungen (höchstens {threshold})",
    ),
    "differencing": (
        "{what}: its rows differ from an earlier release of this project by fewer than {threshold} rows",
        "{what}: die Zeilen unterscheiden sich von einer früheren Freigabe dieses Projekts um weniger als {threshold}",
    ),
    "min_sites": (
        "{what}: a pooled result needs at least {threshold} sites",
        "{what}: ein gepooltes Ergebnis braucht mindestens {threshold} Standorte",
    ),
    "no_extremes": (
        "{what}: minimum and maximum are never released; tail quantiles need at least {threshold} rows",
        "{what}: Minimum und Maximum werden nie herausgegeben; Randquantile brauchen mindestens {threshold} Zeilen",
    ),
    "quantile_bins": (
        "{what}: the quantile lies where fewer than {threshold} rows are",
        "{what}: das Quantil liegt, wo weniger als {threshold} Zeilen sind",
    ),
    "time_bin": (
        "{what}: time bins narrower than {threshold} are not allowed at this site",
        "{what}: Zeitintervalle schmaler als {threshold} sind an diesem Standort nicht erlaubt",
    ),
    "budget": (
        "{what}: this project's daily budget of {threshold} released statistics at this site is used up",
        "{what}: das Tagesbudget von {threshold} Freigaben dieses Projekts an diesem Standort ist aufgebraucht",
    ),
}


class Refused(Exception):
    """A site (or the hub) refuses to release a statistic; `rule` and `threshold` say why."""

    def __init__(self, rule: str, threshold: float | int, what: str, site: str | None = None) -> None:
        self.rule = rule
        self.threshold = threshold
        self.what = what
        self.site = site
        en, de = _TEXTS[rule]
        values = {"what": what, "threshold": threshold, "threshold_minus": _minus(threshold)}
        self.message_en = en.format(**values)
        self.message_de = de.format(**values)
        super().__init__(self.message_en)

    def to_json(self) -> dict[str, Any]:
        return {
            "code": "disclosure",
            "rule": self.rule,
            "threshold": self.threshold,
            "site": self.site,
            "message_en": self.message_en,
            "message_de": self.message_de,
        }


def _minus(threshold: float | int) -> float | int:
    return threshold - 1 if isinstance(threshold, int) else threshold


@dataclass(frozen=True)
class AnalysisPolicy:
    min_rows: int = 10
    min_cell: int = 5
    dominance: float = 0.9
    glm_saturation: float = 0.10
    levels_max: int = 40
    levels_density: float = 0.33
    min_sites: int = 3
    tail_factor: int = 20
    rounding: int = 5  # table counts are rounded to a multiple of this (1: exact)
    daily_budget: int = 2000
    time_bin: float = 30.0  # narrowest time bin of survival analyses (days)

    def __post_init__(self) -> None:
        for name, (floor, loosest) in FLOORS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"analysis.{name}: expected a number")
            if (loosest == "min" and value < floor) or (loosest == "max" and value > floor):
                bound = "at least" if loosest == "min" else "at most"
                raise ValueError(
                    f"analysis.{name}: must be {bound} {floor} (the network's floor), got {value}"
                )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AnalysisPolicy:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(
                f"analysis: unknown keys {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
            )
        return cls(**dict(values))


# name -> (floor, which side is looser): a site may only move away from the floor towards safety.
FLOORS: dict[str, tuple[float, str]] = {
    "min_rows": (5, "min"),
    "min_cell": (3, "min"),
    "dominance": (0.9, "max"),
    "glm_saturation": (0.33, "max"),
    "levels_max": (40, "max"),
    "levels_density": (0.33, "max"),
    "min_sites": (2, "min"),
    "tail_factor": (10, "min"),
    "rounding": (1, "min"),
    "daily_budget": (1, "min"),
    "time_bin": (1, "min"),
}


def check_rows(n: int, policy: AnalysisPolicy, what: str) -> None:
    if n < policy.min_rows:
        raise Refused("min_rows", policy.min_rows, what)


def check_binary(values: np.ndarray, policy: AnalysisPolicy, what: str) -> None:
    """A column with exactly two distinct values: each must occur at least k times."""
    import numpy as np

    distinct, counts = np.unique(values, return_counts=True)
    if len(distinct) == 2 and counts.min() < policy.min_cell:
        raise Refused("min_cell", policy.min_cell, what)


def check_sparse(values: np.ndarray, policy: AnalysisPolicy, what: str) -> None:
    import numpy as np

    nonzero = int(np.count_nonzero(values))
    if 0 < nonzero < policy.min_cell:
        raise Refused("sparse_column", policy.min_cell, what)


def check_dominance(values: np.ndarray, policy: AnalysisPolicy, what: str) -> None:
    import numpy as np

    absolute = np.abs(values)
    total = float(absolute.sum())
    if total > 0 and float(absolute.max()) > policy.dominance * total:
        raise Refused("dominance", policy.dominance, what)


def check_levels(counts: Mapping[str, int], n: int, policy: AnalysisPolicy, what: str) -> None:
    if len(counts) > policy.levels_max or len(counts) > policy.levels_density * n:
        raise Refused("levels", min(policy.levels_max, int(policy.levels_density * n)), what)
    if any(0 < c < policy.min_cell for c in counts.values()):
        raise Refused("min_cell", policy.min_cell, what)


def check_saturation(p: int, n: int, policy: AnalysisPolicy, what: str) -> None:
    if p > policy.glm_saturation * n:
        raise Refused("glm_saturation", policy.glm_saturation, what)


def check_min_sites(sites: int, policy: AnalysisPolicy, what: str) -> None:
    if sites < policy.min_sites:
        raise Refused("min_sites", policy.min_sites, what)


def bin_survival(
    time: np.ndarray, event: np.ndarray, width: float, policy: AnalysisPolicy, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Survival times in bins of `width` (at least the site's `time_bin`): each subject's bin index
    floor(t / width) (released as the bin's end, (index + 1) x width, never the time itself) and event
    indicator. At-risk counts fall with time, so the bins with fewer than k at risk are the tail: from
    the first such bin on, every subject is merged into the last bin with at least k at risk, censored
    there (a curve that stops where fewer than k are left, as a life table would be cut)."""
    import numpy as np

    if width < policy.time_bin:
        raise Refused("time_bin", policy.time_bin, what)
    index = np.floor(time / width).astype(np.int64)
    event = event.astype(np.int64)
    if index.size == 0:
        return index, event
    at_risk = np.cumsum(np.bincount(index)[::-1])[::-1]  # at the start of each bin
    small = np.nonzero(at_risk < policy.min_cell)[0]
    if small.size:
        cut = int(small[0])
        if cut == 0:
            raise Refused("min_cell", policy.min_cell, what)
        tail = index >= cut
        index = np.where(tail, cut - 1, index)
        event = np.where(tail, 0, event)
    return index, event


def round_count(value: int, rounding: int) -> int:
    """Round to the nearest multiple of `rounding` (a non-zero count never to zero)."""
    if rounding <= 1 or value == 0:
        return value
    return max(rounding, (value + rounding // 2) // rounding * rounding)


def suppress(
    counts: np.ndarray, k: int, hidden: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Primary and secondary suppression of a 1- to 3-way table whose margins are released too.

    Returns the mask of suppressed cells and, per axis, the mask of suppressed margins (the sums over
    that axis), then the grand total's (a 0-d mask). Primary: every cell with 0 < n < k (NA is a level
    like any other, so NA cells are checked too). Secondary, to a fixed point: a line of cells (along any
    axis) with exactly one suppressed cell would give it away as margin minus the visible cells, so a
    second cell of that line is suppressed (the smallest visible one); where the line has no other cell,
    its margin is suppressed, and with it every margin of that axis and the grand total.
    """
    import numpy as np

    cells = (counts > 0) & (counts < k)
    if hidden is not None:  # cells already hidden (at a site, when the hub pools the sites' tables)
        cells |= hidden
    margins = [np.zeros(np.delete(counts.shape, axis), dtype=bool) for axis in range(counts.ndim)]
    total = np.zeros((), dtype=bool)
    changed = True
    while changed:
        changed = False
        for axis in range(counts.ndim):
            moved_cells = np.moveaxis(cells, axis, -1)
            moved_counts = np.moveaxis(counts, axis, -1)
            single = moved_cells.sum(axis=-1) == 1
            for index in zip(*np.nonzero(single), strict=True) if single.ndim else [()]:
                line = moved_cells[index]
                if line.sum() != 1:
                    continue
                candidates = np.where(~line)[0]
                if candidates.size == 0:
                    margins[axis][...] = True
                    total = np.ones((), dtype=bool)
                    continue
                values = moved_counts[index][candidates]
                # the smallest visible non-zero cell; a zero cell only if there is none
                order = np.where(values > 0, values, np.iinfo(np.int64).max)
                pick = candidates[int(np.argmin(order))]
                moved_cells[(*index, pick)] = True  # a view: writes through to `cells`
                changed = True
    # Margins are counts as well: one below k is suppressed, and so (one being recoverable from the
    # grand total minus the others) is a second margin of that axis, or all of them in a 3-way table.
    if counts.ndim > 1:
        for axis in range(counts.ndim):
            sums = counts.sum(axis=axis)
            margins[axis] |= (sums > 0) & (sums < k)
            n_hidden = int(margins[axis].sum())
            if n_hidden and counts.ndim == 3:
                margins[axis][...] = True
            elif n_hidden == 1:
                visible = np.where(~margins[axis], sums, np.iinfo(np.int64).max)
                if visible.min() == np.iinfo(np.int64).max:
                    total = np.ones((), dtype=bool)
                else:
                    margins[axis][np.unravel_index(int(np.argmin(visible)), sums.shape)] = True
    grand = int(counts.sum())
    if 0 < grand < k:
        total = np.ones((), dtype=bool)
    return cells, [*margins, total]


def check_differencing(
    mask: np.ndarray, earlier: Iterable[np.ndarray], policy: AnalysisPolicy, what: str
) -> None:
    """Refuse a release whose row set (`mask`, packed bits) differs from an earlier release of the same
    project and source by 1 to k-1 rows (symmetric difference): the two answers would isolate those few
    rows. Equal row sets are fine (the same rows again); masks of another length are another table."""
    import numpy as np

    for known in earlier:
        if known.shape != mask.shape:
            continue
        differ = int(np.bitwise_count(np.bitwise_xor(known, mask)).sum())
        if 0 < differ < policy.min_cell:
            raise Refused("differencing", policy.min_cell, what)


def check_budget(spent: int, amount: int, policy: AnalysisPolicy, what: str) -> None:
    """Refuse a release that would take a project over its daily budget at this site."""
    if spent + amount > policy.daily_budget:
        raise Refused("budget", policy.daily_budget, what)
