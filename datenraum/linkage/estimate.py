"""Linking several sites' CLKs, counting distinct persons with an interval, calibrating the threshold.

The distinct count is the number of clusters of the greedy multi-party solve at the threshold; the interval
is the counts at threshold ± `margin` (a lower threshold merges more, so counts fewer persons), widened
to contain the point estimate. Because multi-party counts on dirty data move with the threshold
(brief C6), the threshold is calibrated per schema on labelled data (`calibrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datenraum.linkage.compare import Candidates, candidate_pairs, cluster


def _subset(c: Candidates, threshold: float) -> Candidates:
    keep = c.score >= threshold
    return Candidates(c.da[keep], c.ra[keep], c.db[keep], c.rb[keep], c.score[keep])


def link(
    datasets: Sequence[np.ndarray], threshold: float, *, blocking: tuple[int, int] | None = None
) -> np.ndarray:
    """A cluster id per record (datasets concatenated in order)."""
    return cluster([len(d) for d in datasets], candidate_pairs(datasets, threshold, blocking=blocking))


@dataclass(frozen=True)
class Estimate:
    distinct: int
    interval: tuple[int, int]
    threshold: float

    def as_json(self) -> dict:
        return {"distinct": self.distinct, "interval": list(self.interval), "threshold": self.threshold}


def estimate_distinct(
    datasets: Sequence[np.ndarray],
    threshold: float,
    *,
    margin: float = 0.05,
    blocking: tuple[int, int] | None = None,
) -> Estimate:
    sizes = [len(d) for d in datasets]
    cands = candidate_pairs(datasets, max(0.0, threshold - margin), blocking=blocking)

    def count(t: float) -> int:
        return len(np.unique(cluster(sizes, _subset(cands, t))))

    n, lo, hi = count(threshold), count(threshold - margin), count(min(1.0, threshold + margin))
    return Estimate(n, (min(lo, n), max(hi, n)), round(float(threshold), 4))


def _pairs(ids: np.ndarray) -> set[tuple[int, int]]:
    order = np.argsort(ids, kind="stable")
    bounds = np.flatnonzero(np.diff(ids[order])) + 1
    out: set[tuple[int, int]] = set()
    for group in np.split(order, bounds):
        g = sorted(group.tolist())
        out.update((g[i], g[j]) for i in range(len(g)) for j in range(i + 1, len(g)))
    return out


@dataclass(frozen=True)
class Calibration:
    threshold: float
    precision: float
    recall: float
    table: list[dict]

    def as_json(self) -> dict:
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "table": self.table,
        }


def calibrate(
    datasets: Sequence[np.ndarray],
    entities: Sequence[Sequence[str]],
    thresholds: Sequence[float] | None = None,
    *,
    blocking: tuple[int, int] | None = None,
) -> Calibration:
    """Precision and recall of the linked pairs per threshold against the known entities (one label per
    record, equal labels = the same person); the threshold picked is the middle of the thresholds with the
    best F1 (a plateau's middle is the least sensitive choice)."""
    thresholds = sorted(thresholds or [round(0.7 + 0.01 * i, 2) for i in range(30)])
    sizes = [len(d) for d in datasets]
    labels = np.concatenate([np.asarray(e, dtype=object) for e in entities])
    truth = _pairs(np.unique(labels.astype(str), return_inverse=True)[1])
    cands = candidate_pairs(datasets, thresholds[0], blocking=blocking)
    table = []
    for t in thresholds:
        found = _pairs(cluster(sizes, _subset(cands, t)))
        tp = len(found & truth)
        precision = tp / len(found) if found else 1.0
        recall = tp / len(truth) if truth else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table.append({"threshold": t, "precision": round(precision, 4), "recall": round(recall, 4), "f1": f1})
    best = max(row["f1"] for row in table)
    plateau = [row for row in table if row["f1"] >= best - 1e-12]
    pick = plateau[len(plateau) // 2]
    for row in table:
        row["f1"] = round(row["f1"], 4)
    return Calibration(pick["threshold"], pick["precision"], pick["recall"], table)
