"""Survival on binned time, pooled from the sites' aggregates (hub side; the site side is
`datenraum.site.analysis.executor`, the binning and tail rule `datenraum.privacy.analysis.bin_survival`).

Time is released only in bins of `bin_width` (at least each site's own minimum, `time_bin`; default 30
days): a subject with time t lies in bin floor(t / width), shown as the bin's end. Every site cuts its
curve where fewer than k are at risk (the rest censored at the end of the last bin with k at risk).

- Kaplan–Meier: S(t_j) = prod (1 - d_i / n_i) over the pooled per-bin counts; Greenwood's variance
  S^2 sum d / (n (n - d)); the interval as lifelines' default (log(-log) transform). Equal to lifelines'
  `KaplanMeierFitter` on the pooled binned data.
- Log-rank (2 or more groups): observed minus expected events per group and the hypergeometric
  covariance, pooled per bin over the sites (lifelines' `multivariate_logrank_test`).
- Cox: Newton on the pooled partial likelihood of the binned times, Breslow or Efron ties, from the
  sites' risk-set sums per bin (one round per iteration); optionally stratified by site (each site its
  own baseline hazard). Each site groups its times first so that no difference of two risk sets holds
  fewer than k subjects (`datenraum.privacy.risk_sets`). Equal to a pooled Cox fit (lifelines,
  statsmodels' PHReg) on the grouped binned data.
- Proportional hazards per site: at the pooled coefficients each site tests its own scaled Schoenfeld
  residuals against time (`datenraum.analysis.proportional_hazards`) and answers only the statistic
  and p-value per covariate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import linalg, stats

__all__ = ["CoxResult", "cox_terms", "kaplan_meier", "logrank", "pool_bins"]


def pool_bins(tables: Sequence[Mapping[str, Sequence[float]]], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The per-bin arrays of several sites summed, the shorter ones padded with zeros (a site has no one
    at risk after its last bin)."""
    length = max((len(t[keys[0]]) for t in tables), default=0)
    out = {}
    for key in keys:
        total = np.zeros(length)
        for t in tables:
            values = np.asarray(t[key], dtype=float)
            total[: len(values)] += values
        out[key] = total
    return out


def kaplan_meier(
    n_risk: np.ndarray, events: np.ndarray, censored: np.ndarray, width: float, alpha: float = 0.05
) -> dict[str, Any]:
    """The pooled curve at the end of every bin with someone at risk, from time 0 (S = 1)."""
    keep = np.nonzero(n_risk > 0)[0]
    last = int(keep[-1]) + 1 if keep.size else 0
    n, d, c = n_risk[:last], events[:last], censored[:last]
    d = np.minimum(d, n)  # rounded counts may overshoot in the last bin
    survival = np.cumprod(1.0 - d / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(d > 0, d / (n * (n - d)), 0.0)
    greenwood = np.cumsum(terms)
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_s = np.log(survival)
        spread = z * np.sqrt(greenwood) / log_s
        lower = np.exp(-np.exp(np.log(-log_s) - spread))
        upper = np.exp(-np.exp(np.log(-log_s) + spread))
    before = survival == 1.0  # no event yet: the interval is the point (lifelines: S=1, a 0/0)
    lower = np.where(before, 1.0, lower)
    upper = np.where(before, 1.0, upper)
    gone = survival == 0.0  # everyone had the event: no interval (lifelines: NaN)
    lower, upper = np.where(gone, 0.0, lower), np.where(gone, 0.0, upper)
    with np.errstate(invalid="ignore"):
        se = np.where(gone, 0.0, survival * np.sqrt(greenwood))
    time = (np.arange(last) + 1) * width
    return {
        "time": [0.0, *time.tolist()],
        "survival": [1.0, *survival.tolist()],
        "se": [0.0, *se.tolist()],
        "ci_low": [1.0, *lower.tolist()],
        "ci_high": [1.0, *upper.tolist()],
        "n_risk": [int(x) for x in n],
        "events": [int(x) for x in d],
        "censored": [int(x) for x in c],
        "bin_start": (np.arange(last) * width).tolist(),
        "alpha": alpha,
    }


def logrank(n_risk: np.ndarray, events: np.ndarray) -> dict[str, Any]:
    """Log-rank test of G groups from their pooled per-bin at-risk and event counts (G x bins)."""
    n_total = n_risk.sum(axis=0)
    d_total = events.sum(axis=0)
    use = (n_total > 0) & (d_total > 0)
    n, d, big_n, big_d = n_risk[:, use], events[:, use], n_total[use], d_total[use]
    share = n / big_n
    observed = d.sum(axis=1)
    expected = (big_d * share).sum(axis=1)
    factor = np.where(big_n > 1, big_d * (big_n - big_d) / np.maximum(big_n - 1, 1), 0.0)
    groups = n.shape[0]
    cov = np.zeros((groups, groups))
    for g in range(groups):
        for h in range(groups):
            cov[g, h] = (factor * share[g] * ((1.0 if g == h else 0.0) - share[h])).sum()
    diff = (observed - expected)[:-1]
    chi2 = float(diff @ linalg.solve(cov[:-1, :-1], diff, assume_a="pos"))
    df = groups - 1
    return {
        "statistic": chi2,
        "df": df,
        "p": float(stats.chi2.sf(chi2, df)),
        "observed": observed.tolist(),
        "expected": expected.tolist(),
    }


def cox_terms(site: Mapping[str, Any], beta: np.ndarray, ties: str) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood, score and information of one stratum from its per-bin sums."""
    p = len(beta)
    upper = np.triu_indices(p)
    d = np.asarray(site["d"], dtype=float)
    s0 = np.asarray(site["s0"], dtype=float)
    s1 = np.asarray(site["s1"], dtype=float).reshape(len(d), p)
    s2_flat = np.asarray(site["s2"], dtype=float).reshape(len(d), len(upper[0]))
    loglik = float(np.asarray(site["x_events"]) @ beta)
    score = np.asarray(site["x_events"], dtype=float).copy()
    info = np.zeros((p, p))

    def square(flat: np.ndarray) -> np.ndarray:
        m = np.zeros((p, p))
        m[upper] = flat
        return m + np.triu(m, 1).T

    if ties == "efron":
        e0 = np.asarray(site["e0"], dtype=float)
        e1 = np.asarray(site["e1"], dtype=float).reshape(len(d), p)
        e2 = np.asarray(site["e2"], dtype=float).reshape(len(d), len(upper[0]))
    for b in np.nonzero(d > 0)[0]:
        events = round(float(d[b]))
        if ties == "breslow":
            loglik -= events * math.log(s0[b])
            mean = s1[b] / s0[b]
            score -= events * mean
            info += events * (square(s2_flat[b]) / s0[b] - np.outer(mean, mean))
            continue
        # Efron: the bin's events leave the risk set in `events` equal steps f = l / events, all at once
        # (one vector per bin, not one Python step per event)
        f = np.arange(events) / events
        phi0 = s0[b] - f * e0[b]
        means = (s1[b][None, :] - f[:, None] * e1[b][None, :]) / phi0[:, None]
        loglik -= float(np.log(phi0).sum())
        score -= means.sum(axis=0)
        inverse = 1.0 / phi0
        info += square(s2_flat[b]) * inverse.sum() - square(e2[b]) * (f * inverse).sum() - means.T @ means
    return loglik, score, info


def pool_cox_sites(results: Mapping[str, Mapping[str, Any]], p: int, ties: str) -> dict[str, Any]:
    """The sites' per-bin sums added bin by bin (one pooled risk set per bin)."""
    keys = ["d", "s0", "s1", "s2"] + (["e0", "e1", "e2"] if ties == "efron" else [])
    q = p * (p + 1) // 2
    width = {"d": 1, "s0": 1, "s1": p, "s2": q, "e0": 1, "e1": p, "e2": q}
    length = max(len(r["d"]) for r in results.values())
    out: dict[str, Any] = {k: np.zeros(length * width[k]) for k in keys}
    for r in results.values():
        for k in keys:
            values = np.asarray(r[k], dtype=float)
            out[k][: len(values)] += values
    out["x_events"] = np.sum([np.asarray(r["x_events"], dtype=float) for r in results.values()], axis=0)
    return out


@dataclass
class CoxResult:
    covariates: list[str]
    ties: str
    strata: str | None
    coef: list[float]
    se: list[float]
    stat: list[float]
    p_values: list[float]
    hazard_ratio: list[float]
    ci_low: list[float]
    ci_high: list[float]
    loglik: float
    loglik_null: float
    n: int
    events: int
    bin_width: float
    iterations: int
    converged: bool
    sites: list[str]
    cov: list[list[float]] = field(repr=False, default_factory=list)
    # per site: its proportional-hazards test per covariate at the pooled coefficients (if asked)
    ph_tests: dict[str, dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in self.__dict__.items() if k != "cov"}
        body["coefficients"] = {
            name: {"estimate": b, "se": s, "stat": z, "p": pv, "hazard_ratio": hr, "ci": [lo, hi]}
            for name, b, s, z, pv, hr, lo, hi in zip(
                self.covariates,
                self.coef,
                self.se,
                self.stat,
                self.p_values,
                self.hazard_ratio,
                self.ci_low,
                self.ci_high,
                strict=True,
            )
        }
        return body
