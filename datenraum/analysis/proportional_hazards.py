"""The scaled Schoenfeld residual test of proportional hazards (Grambsch and Therneau 1994), from one
site's per-bin risk-set sums at the pooled coefficients.

Every event of a bin has the residual x_i - m_b, m_b the risk set's weighted mean of x at beta (Breslow:
S1/S0; Efron: the mean over the bin's `d` steps of (S1 - l/d E1) / (S0 - l/d E0), as lifelines computes
it). Scaled by D V (D the site's events, V its inverse information at beta), each covariate's statistic
is the squared covariance of the scaled residuals with g(time), chi-squared on 1 df: lifelines'
`proportional_hazard_test` formula. Since g is one value per bin, only the per-bin sums are needed.

`g`: `identity` (the bin's end) or `km` (1 - the site's Kaplan–Meier estimate at the bin's end, R's
default). lifelines' `rank` is left out: it numbers the tied events of a bin one by one in storage order,
which has no meaning on binned time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = ["PhTest", "risk_set_means", "schoenfeld_test"]


@dataclass(frozen=True)
class PhTest:
    statistic: tuple[float, ...]  # per covariate
    p: tuple[float, ...]


def risk_set_means(
    d: np.ndarray, s0: np.ndarray, s1: np.ndarray, e0: np.ndarray | None, e1: np.ndarray | None
) -> np.ndarray:
    """Per bin (rows) the mean of x over the risk set an event of the bin is compared with (Breslow
    without `e0`/`e1`, Efron with them); zero in bins without events."""
    means = np.zeros_like(s1)
    for b in np.nonzero(d > 0)[0]:
        events = round(float(d[b]))
        if e0 is None or e1 is None:
            means[b] = s1[b] / s0[b]
            continue
        f = np.arange(events) / events
        means[b] = ((s1[b][None, :] - f[:, None] * e1[b][None, :]) / (s0[b] - f * e0[b])[:, None]).mean(
            axis=0
        )
    return means


def schoenfeld_test(
    d: np.ndarray, x_events: np.ndarray, means: np.ndarray, cov: np.ndarray, g: np.ndarray
) -> PhTest:
    """The test per covariate from per-bin events `d`, sums of x over the events `x_events` (bins x p),
    risk-set means, the inverse information `cov` at beta and the transformed time `g` of each bin."""
    total = float(d.sum())
    g_mean = float((d * g).sum() / total)
    centred = g - g_mean
    residual_sums = x_events - d[:, None] * means  # sum of the bin's Schoenfeld residuals
    u = centred @ residual_sums
    spread = float((d * centred * centred).sum())
    scaled = u @ cov
    statistic = total * scaled * scaled / (np.diag(cov) * spread)
    return PhTest(tuple(statistic.tolist()), tuple(stats.chi2.sf(statistic, 1).tolist()))
