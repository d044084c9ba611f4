"""Survival times coarsened so that no released risk-set sum isolates fewer than k subjects.

A pooled Cox model needs, per time bin, sums over the subjects at risk, over the bin's events and (by
difference) over its censored. Two such sets that differ by one person give away that person's
covariates: the risk sets of two neighbouring bins (one person left in between), a bin's events and its
leavers (Efron's sums), or the risk sets of two requests on the same rows with different bin widths.

The rule (`coarsen_risk_sets`): on the site's own base grid (cells of `time_bin` days, fixed by the
custodian and independent of any request), consecutive cells are merged into groups until each group
has either no or at least k events and either no or at least k censored subjects; everyone in a group
is moved to the group's last cell (a later time: a life table's grouping). A group at the end that
cannot reach k is merged into the group before. Every subject thus lies in a cell (group x event or
censored) of 0 or at least k subjects, and whatever bin width a request asks for (at least `time_bin`),
its bins only ever hold whole groups: every released set, and every difference of released sets of
these rows, is a union of such cells. Differences between row sets (subsets, cohorts) are the release
ledger's job (`ReleaseLedger`).

A risk set's sums weighted by exp(x beta) at a beta the analyst chose can still single one subject out:
a huge coefficient makes one subject's weight all of the set's, and its mean of x that subject's x.
`check_risk_share` refuses sums where one subject holds more than the policy's `dominance` share of a
bin's risk set (the rule `dominance`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from datenraum.privacy.analysis import AnalysisPolicy, Refused

if TYPE_CHECKING:
    import numpy as np

__all__ = ["check_risk_share", "coarsen_risk_sets"]


def _complete(events: int, censored: int, k: int) -> bool:
    return (events == 0 or events >= k) and (censored == 0 or censored >= k) and events + censored > 0


def coarsen_risk_sets(
    time: np.ndarray, event: np.ndarray, policy: AnalysisPolicy, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each subject's released time (the start of its group's last base cell, a multiple of
    `policy.time_bin`) and event indicator (unchanged). Refused when even all subjects together have
    1 to k-1 events or censored."""
    import numpy as np

    k = policy.min_cell
    event = event.astype(np.int64)
    if time.size == 0:
        return time.astype(float), event
    # only the cells someone leaves in: a time far out must not cost an array of every cell up to it
    cells, cell = np.unique(np.floor(time / policy.time_bin), return_inverse=True)
    events = np.bincount(cell, weights=event, minlength=len(cells)).astype(np.int64)
    censored = np.bincount(cell, minlength=len(cells)).astype(np.int64) - events
    if not _complete(int(events.sum()), int(censored.sum()), k):
        raise Refused("min_cell", k, f"{what}: events or censored")
    ends: list[int] = []  # the last cell of every closed group
    pending_events = pending_censored = 0
    for c in range(len(events)):
        pending_events += int(events[c])
        pending_censored += int(censored[c])
        if _complete(pending_events, pending_censored, k):
            ends.append(c)
            pending_events = pending_censored = 0
    last = len(events) - 1
    if not ends or ends[-1] != last:
        # the rest cannot reach k: merge backwards with whole groups until it does
        starts = [0, *(e + 1 for e in ends)]
        while ends and not _complete(pending_events, pending_censored, k):
            begin = starts[len(ends) - 1]
            end = ends.pop()
            pending_events += int(events[begin : end + 1].sum())
            pending_censored += int(censored[begin : end + 1].sum())
        ends.append(last)
    group_end = np.empty(len(events), dtype=np.int64)
    begin = 0
    for end in ends:
        group_end[begin : end + 1] = end
        begin = end + 1
    return cells[group_end[cell]] * policy.time_bin, event


def check_risk_share(bins: np.ndarray, risk: np.ndarray, policy: AnalysisPolicy, what: str) -> None:
    """Refused when in some bin one subject's weight `risk` (exp(x beta)) is more than `dominance` of the
    bin's risk set (everyone whose bin, `bins`, is that bin or later)."""
    import numpy as np

    if not np.all(np.isfinite(risk)):  # an overflowing weight is all of its risk set
        raise Refused("dominance", policy.dominance, f"{what}: risk set")
    count = int(bins.max()) + 1
    largest = np.zeros(count)
    np.maximum.at(largest, bins, risk)
    total = np.bincount(bins, weights=risk, minlength=count)
    largest = np.maximum.accumulate(largest[::-1])[::-1]
    total = np.cumsum(total[::-1])[::-1]
    occupied = total > 0
    if np.any(largest[occupied] > policy.dominance * total[occupied]):
        raise Refused("dominance", policy.dominance, f"{what}: risk set")
