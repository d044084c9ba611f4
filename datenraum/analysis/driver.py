"""Pooled analyses over a set of sites: the rounds, the aggregation and the solvers.

The same code runs on the hub (sites reached over the long-poll channel) and in local mode (sites run
in-process, `datenraum.site.analysis.local`): both give a `Sites`, which sends one request to a fixed set
of sites and returns every site's answer (one round trip). Checks happen inside each operation at the
site; nothing here makes an extra call for them.

- A site that refuses, fails or does not answer in time stops the analysis with an `AnalysisError`
  naming it (and the rule); a GLM never changes its set of sites between iterations.
- A pooled result needs at least `min_sites` sites (`datenraum.privacy.analysis`, rule `min_sites`).
- GLM: Fisher scoring on the sums of the sites' X'WX and scores; gaussian-identity in one round (closed
  form from X'X, X'y, y'y); stop when |dev_t - dev_t-1| / (|dev_t| + 0.1) < tol (R's and DataSHIELD's
  criterion) and the next Newton step is negligible; the reported beta is the one the last round was
  evaluated at, so the standard errors are those of the information at the reported beta.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from scipy import linalg, stats

from datenraum.analysis.design import column_names
from datenraum.analysis.families import family as make_family
from datenraum.analysis.formula import ModelSpec, Var, parse_formula, parse_variable
from datenraum.analysis.messages import VERSION
from datenraum.privacy.analysis import AnalysisPolicy, Refused, check_min_sites, suppress

__all__ = ["STEP_TOL", "Analysis", "AnalysisError", "GlmResult", "Sites"]

STEP_TOL = 1e-10  # the last Newton step, relative to max(|beta|, SE), below which a fit has converged


class Sites(Protocol):
    """A fixed set of sites that answers one request per round trip."""

    def names(self) -> list[str]: ...

    def ask(self, request: dict[str, Any], sites: Sequence[str]) -> dict[str, dict[str, Any] | None]:
        """Every named site's answer to `request` (None: no answer in time)."""
        ...


class AnalysisError(Exception):
    """The analysis cannot give a pooled result: `errors` are the sites' structured errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.get('site') or 'hub'}: {e.get('message_en')}" for e in errors))

    def to_json(self) -> dict[str, Any]:
        return {"ok": False, "errors": self.errors}


def _timeout(site: str) -> dict[str, Any]:
    return {
        "code": "no_answer",
        "rule": None,
        "threshold": None,
        "site": site,
        "message_en": f"site {site} did not answer in time",
        "message_de": f"Standort {site} hat nicht rechtzeitig geantwortet",
    }


@dataclass
class GlmResult:
    formula: str
    family: str
    link: str
    names: list[str]
    coef: list[float]
    se: list[float]
    stat: list[float]
    p_values: list[float]
    ci_low: list[float]
    ci_high: list[float]
    deviance: float
    null_deviance: float
    pearson_chi2: float
    dispersion: float
    df_resid: int
    df_model: int
    n: int
    n_missing: int
    n_total: int
    iterations: int
    rounds: int
    converged: bool
    use_t: bool
    sites: list[str]
    cov: list[list[float]] = field(repr=False, default_factory=list)

    def to_json(self) -> dict[str, Any]:
        body = {k: v for k, v in self.__dict__.items() if k != "cov"}
        body["coefficients"] = {
            name: {"estimate": b, "se": s, "stat": z, "p": p, "ci": [lo, hi]}
            for name, b, s, z, p, lo, hi in zip(
                self.names,
                self.coef,
                self.se,
                self.stat,
                self.p_values,
                self.ci_low,
                self.ci_high,
                strict=True,
            )
        }
        return body


class Analysis:
    """Pooled analyses of `data` (a table name, or a cohort with variable definitions) at `sites`."""

    def __init__(
        self,
        sites: Sites,
        *,
        project: str = "local",
        analyst: str = "local",
        data: Mapping[str, Any] | None = None,
        policy: AnalysisPolicy | None = None,
    ) -> None:
        self.sites = sites
        self.project = project
        self.analyst = analyst
        self.data = dict(data) if data is not None else {"table": "data"}
        self.policy = policy or AnalysisPolicy()

    # -- rounds
    def _request(self, op: str, where: Sequence[Mapping] | None, **fields: Any) -> dict[str, Any]:
        return {
            "v": VERSION,
            "op": op,
            "project": self.project,
            "analyst": self.analyst,
            "data": self.data,
            "where": [dict(c) for c in where or ()],
            **fields,
        }

    def _round(self, request: dict[str, Any], sites: Sequence[str]) -> dict[str, dict[str, Any]]:
        answers = self.sites.ask(request, sites)
        errors, results = [], {}
        for site in sites:
            answer = answers.get(site)
            if answer is None:
                errors.append(_timeout(site))
            elif not answer.get("ok"):
                errors.append({**answer.get("error", {}), "site": site})
            else:
                results[site] = answer["result"]
        if errors:
            raise AnalysisError(errors)
        return results

    def _site_set(self, sites: Sequence[str] | None) -> list[str]:
        chosen = list(sites) if sites is not None else self.sites.names()
        try:
            check_min_sites(len(chosen), self.policy, "pooled result")
        except Refused as refused:
            raise AnalysisError([refused.to_json()]) from None
        return chosen

    # -- moments
    def summary(
        self, variables: Sequence[str] | str, *, where=None, sites=None, by_site: bool = False
    ) -> dict:
        names = [variables] if isinstance(variables, str) else list(variables)
        chosen = self._site_set(sites)
        results = self._round(self._request("summary", where, variables=names), chosen)
        out = {}
        for name in names:
            parts = [results[s][name] for s in chosen]
            n = sum(p["n"] for p in parts)
            total = math.fsum(p["sum"] for p in parts)
            mean = total / n
            # Chan et al.: M2 = sum of M2_j + n_j (mean_j - mean)^2
            m2 = math.fsum(p["m2"] + p["n"] * (p["sum"] / p["n"] - mean) ** 2 for p in parts)
            var = m2 / (n - 1)
            entry = {
                "n": n,
                "n_missing": sum(p["n_missing"] for p in parts),
                "mean": mean,
                "var": var,
                "sd": math.sqrt(var),
                "sites": len(chosen),
            }
            if by_site:
                entry["by_site"] = {
                    s: {"n": p["n"], "mean": p["sum"] / p["n"], "var": p["m2"] / (p["n"] - 1)}
                    for s, p in zip(chosen, parts, strict=True)
                }
            out[name] = entry
        return out

    def describe(self, variables: Sequence[str] | str, *, where=None, sites=None) -> dict:
        """Per variable: numeric ones n, missing, mean, variance, sd, skewness and excess kurtosis (the
        biased, population forms of scipy.stats.skew/kurtosis) pooled exactly from the sites' central
        moments; categorical ones their pooled level counts (suppressed at a site: hidden pooled)."""
        names = [variables] if isinstance(variables, str) else list(variables)
        chosen = self._site_set(sites)
        results = self._round(self._request("describe", where, variables=names), chosen)
        out = {}
        for name in names:
            parts = [results[s][name] for s in chosen]
            if any(p["type"] != parts[0]["type"] for p in parts):
                raise AnalysisError(
                    [_numeric_error(f"{name} is numeric at some sites and categorical at others")]
                )
            if parts[0]["type"] == "categorical":
                levels = sorted(set().union(*(p["levels"] for p in parts)))
                counts: dict[str, int | None] = dict.fromkeys(levels, 0)
                for p in parts:
                    for level, count in zip(p["levels"], p["counts"], strict=True):
                        counts[level] = (
                            None if count is None or counts[level] is None else counts[level] + count
                        )
                total = None if any(p["n"] is None for p in parts) else sum(p["n"] for p in parts)
                out[name] = {
                    "type": "categorical",
                    "levels": levels,
                    "counts": [counts[v] for v in levels],
                    "n": total,
                    "sites": len(chosen),
                }
                continue
            n, mean, m2, m3, m4 = _pool_moments(parts)
            var = m2 / (n - 1)
            out[name] = {
                "type": "numeric",
                "n": n,
                "n_missing": sum(p["n_missing"] for p in parts),
                "mean": mean,
                "var": var,
                "sd": math.sqrt(var),
                "skewness": math.sqrt(n) * m3 / m2**1.5 if m2 > 0 else math.nan,
                "kurtosis": n * m4 / (m2 * m2) - 3 if m2 > 0 else math.nan,
                "sites": len(chosen),
            }
        return out

    def by_group(self, variables: Sequence[str] | str, group: str, *, where=None, sites=None) -> dict:
        """n, mean, variance and sd of each variable per level of `group`, pooled exactly; a group too
        small at any site is shown as None (its numbers there are not released, so none are pooled)."""
        names = [variables] if isinstance(variables, str) else list(variables)
        chosen = self._site_set(sites)
        results = self._round(self._request("by_group", where, variables=names, group=group), chosen)
        levels = sorted(set().union(*(r["groups"] for r in results.values())), key=_level_key)
        out: dict[str, Any] = {}
        for level in levels:
            parts = [r["groups"].get(level, {}) for r in results.values()]
            if any(part is None for part in parts):
                out[level] = None
                continue
            entry = {}
            for name in names:
                pieces = [part[name] for part in parts if part]
                n = sum(p["n"] for p in pieces)
                mean = math.fsum(p["sum"] for p in pieces) / n
                m2 = math.fsum(p["m2"] + p["n"] * (p["sum"] / p["n"] - mean) ** 2 for p in pieces)
                var = m2 / (n - 1)
                entry[name] = {"n": n, "mean": mean, "var": var, "sd": math.sqrt(var)}
            out[level] = entry
        return {"group": group, "variables": names, "groups": out, "sites": len(chosen)}

    def assign(self, name: str, *, derive: str | Var | None = None, subset=None, sites=None) -> dict:
        """Keep a derived variable (`derive="log(bmi)"`) or a subset (`subset=[conditions]`) under
        `name` in this analyst's workspace at every site (for the sites' time to live)."""
        chosen = self._site_set(sites)
        fields: dict[str, Any] = {"name": name}
        if derive is not None:
            fields["derive"] = (parse_variable(derive) if isinstance(derive, str) else derive).to_json()
        if subset is not None:
            fields["subset"] = [dict(c) for c in subset]
        results = self._round(self._request("assign", None, **fields), chosen)
        return {"name": name, "sites": len(chosen), "ttl": min(r["ttl"] for r in results.values())}

    def cor(self, variables: Sequence[str], *, where=None, sites=None) -> dict:
        chosen = self._site_set(sites)
        results = self._round(self._request("cor", where, variables=list(variables)), chosen)
        n = sum(r["n"] for r in results.values())
        mean = sum(np.asarray(r["mean"]) * r["n"] for r in results.values()) / n
        sscp = sum(
            np.asarray(r["sscp"])
            + r["n"] * np.outer(np.asarray(r["mean"]) - mean, np.asarray(r["mean"]) - mean)
            for r in results.values()
        )
        cov = sscp / (n - 1)
        sd = np.sqrt(np.diag(cov))
        return {
            "variables": list(variables),
            "n": n,
            "mean": mean.tolist(),
            "cov": cov.tolist(),
            "cor": (cov / np.outer(sd, sd)).tolist(),
            "sites": len(chosen),
        }

    def quantiles(
        self, variable: str, probs: Sequence[float] = (0.25, 0.5, 0.75), *, where=None, sites=None
    ) -> dict:
        chosen = self._site_set(sites)
        results = self._round(self._request("quantiles", where, variable=variable, probs=list(probs)), chosen)
        n = sum(r["n"] for r in results.values())
        pieces = []  # (edges, cumulative counts, rows below the first edge) per site
        for r in results.values():
            below = r["below"] if r["below"] is not None else math.nan
            cumulative = np.concatenate([[0.0], np.cumsum(r["counts"])])
            pieces.append((np.asarray(r["edges"]), cumulative, below))

        def cdf(t: float) -> float:
            total = 0.0
            for edges, cumulative, below in pieces:
                if t < edges[0]:
                    return math.nan if (below != 0) else total
                total += (0.0 if math.isnan(below) else below) + np.interp(t, edges, cumulative)
                if math.isnan(below):
                    return math.nan
            return total

        knots = np.unique(np.concatenate([edges for edges, _, _ in pieces]))
        values = np.array([cdf(t) for t in knots])
        out = {}
        for p in probs:
            target = p * n
            i = int(np.searchsorted(values, target, side="left"))
            if np.isnan(values).any() or i == 0 or i >= len(knots):
                raise AnalysisError(
                    [Refused("quantile_bins", self.policy.min_cell, f"quantile {p} of {variable}").to_json()]
                )
            lo, hi = knots[i - 1], knots[i]
            flo, fhi = values[i - 1], values[i]
            out[str(p)] = float(lo + (hi - lo) * (target - flo) / (fhi - flo)) if fhi > flo else float(lo)
        widths = {str(p): None for p in probs}
        for p in probs:
            q = out[str(p)]
            j = int(np.searchsorted(knots, q))
            widths[str(p)] = float(knots[min(j, len(knots) - 1)] - knots[max(j - 1, 0)])
        return {"variable": variable, "n": n, "quantiles": out, "bin_width": widths, "sites": len(chosen)}

    def table(self, variables: Sequence[str] | str, *, where=None, sites=None) -> dict:
        names = [variables] if isinstance(variables, str) else list(variables)
        chosen = self._site_set(sites)
        results = self._round(self._request("table", where, variables=names), chosen)
        levels = [sorted(set().union(*(r["levels"][i] for r in results.values()))) for i in range(len(names))]
        shape = tuple(len(level) for level in levels)
        counts = np.zeros(shape, dtype=np.int64)
        hidden = np.zeros(shape, dtype=bool)
        for r in results.values():
            site_counts = np.array(r["counts"], dtype=object).reshape([len(level) for level in r["levels"]])
            index = np.ix_(*[[levels[i].index(v) for v in r["levels"][i]] for i in range(len(names))])
            values = np.where(site_counts == None, 0, site_counts).astype(np.int64)  # noqa: E711
            counts[index] += values
            hidden[index] |= site_counts == None  # noqa: E711
        # margins pooled from the sites' own (suppressed ones hide the pooled margin)
        cells, margins = suppress(counts, self.policy.min_cell, hidden)
        for axis in range(len(names)):
            for r in results.values():
                idx = [[levels[i].index(v) for v in r["levels"][i]] for i in range(len(names)) if i != axis]
                site_margin = np.array(r["margins"][axis], dtype=object)
                if idx:
                    margins[axis][np.ix_(*idx)] |= site_margin == None  # noqa: E711
                elif site_margin.item() is None:
                    margins[axis][...] = True
        if any(r["total"] is None for r in results.values()):
            margins[-1] = np.ones((), dtype=bool)

        def shown(values: np.ndarray, mask: np.ndarray) -> Any:
            if values.ndim == 0:
                return None if bool(mask) else int(values)
            return [shown(v, m) for v, m in zip(values, mask, strict=True)]

        return {
            "variables": names,
            "levels": levels,
            "counts": shown(counts, cells),
            "margins": [shown(counts.sum(axis=a), margins[a]) for a in range(len(names))],
            "total": shown(np.array(counts.sum()), margins[-1]),
            "sites": len(chosen),
            "suppressed": int(cells.sum()),
        }

    # -- survival on binned time
    def km(
        self,
        time: str,
        event: str,
        *,
        group: str | None = None,
        bin_width: float | None = None,
        where=None,
        sites=None,
        alpha: float = 0.05,
    ) -> dict:
        """Pooled Kaplan–Meier curves (per level of `group`, with a log-rank test) over bins of
        `bin_width` (default: the policy's `time_bin`; each site refuses bins narrower than its own)."""
        from datenraum.analysis.survival import kaplan_meier, logrank, pool_bins

        width = float(bin_width if bin_width is not None else self.policy.time_bin)
        chosen = self._site_set(sites)
        fields: dict[str, Any] = {"time": time, "event": event, "bin_width": width}
        if group is not None:
            fields["group"] = group
        results = self._round(self._request("km", where, **fields), chosen)
        labels = sorted(set().union(*(r["groups"] for r in results.values())), key=_level_key)
        keys = ["n_risk", "events", "censored"]
        pooled = {
            label: pool_bins([r["groups"][label] for r in results.values() if label in r["groups"]], keys)
            for label in labels
        }
        out: dict[str, Any] = {
            "time_variable": time,
            "event_variable": event,
            "group": group,
            "bin_width": width,
            "curves": {
                label: kaplan_meier(c["n_risk"], c["events"], c["censored"], width, alpha)
                for label, c in pooled.items()
            },
            "sites": list(chosen),
        }
        if group is not None and len(labels) > 1:
            length = max(len(c["n_risk"]) for c in pooled.values())

            def padded(key: str) -> np.ndarray:
                return np.array([np.pad(c[key], (0, length - len(c[key]))) for c in pooled.values()])

            out["logrank"] = {"groups": labels, **logrank(padded("n_risk"), padded("events"))}
        return out

    def cox(
        self,
        time: str,
        event: str,
        covariates: Sequence[str] | str,
        *,
        ties: str = "efron",
        strata_by_site: bool = False,
        bin_width: float | None = None,
        where=None,
        sites=None,
        max_iter: int = 30,
        ph_test: str | None = None,
    ):
        """Cox proportional hazards on binned time, exactly pooled: Newton on the sum of the sites'
        partial likelihoods (pooled risk sets per bin; per site with `strata_by_site`), one round per
        iteration; the reported coefficients are those the last round was evaluated at. With `ph_test`
        (a time transform: `km` or `identity`) one more round: each site's scaled Schoenfeld residual
        test per covariate at the pooled coefficients (`datenraum.analysis.proportional_hazards`)."""
        from datenraum.analysis.survival import CoxResult, cox_terms, pool_cox_sites

        names = [covariates] if isinstance(covariates, str) else list(covariates)
        width = float(bin_width if bin_width is not None else self.policy.time_bin)
        chosen = self._site_set(sites)
        p = len(names)

        def evaluate(beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, dict]:
            request = self._request(
                "cox.step",
                where,
                time=time,
                event=event,
                bin_width=width,
                covariates=names,
                beta=beta.tolist(),
                ties=ties,
            )
            results = self._round(request, chosen)
            strata = list(results.values()) if strata_by_site else [pool_cox_sites(results, p, ties)]
            loglik, score, info = 0.0, np.zeros(p), np.zeros((p, p))
            for stratum in strata:
                ll, sc, inf = cox_terms(stratum, beta, ties)
                loglik, score, info = loglik + ll, score + sc, info + inf
            return loglik, score, info, results

        beta = np.zeros(p)
        loglik, score, info, results = evaluate(beta)
        loglik_null = loglik
        iterations, converged = 1, False
        while iterations < max_iter:
            step = _solve(info, score, names)
            scale = np.maximum(np.abs(beta), np.sqrt(np.diag(np.linalg.inv(info))))
            if np.all(np.abs(step) <= STEP_TOL * scale):
                converged = True
                break
            candidate = beta + step
            new = evaluate(candidate)
            iterations += 1
            halvings = 0
            while not math.isfinite(new[0]) or new[0] < loglik - 1e-9 * abs(loglik):
                halvings += 1
                if halvings > 20:
                    raise AnalysisError([_numeric_error("the Cox fit diverged")])
                candidate = (beta + candidate) / 2
                new = evaluate(candidate)
                iterations += 1
            beta = candidate
            loglik, score, info, results = new
        cov = linalg.inv(info)
        se = np.sqrt(np.diag(cov))
        z = beta / se
        q = stats.norm.ppf(0.975)
        ph_tests = None
        if ph_test is not None:
            request = self._request(
                "cox.ph",
                where,
                time=time,
                event=event,
                bin_width=width,
                covariates=names,
                beta=beta.tolist(),
                ties=ties,
                transform=ph_test,
            )
            ph_tests = self._round(request, chosen)
        return CoxResult(
            covariates=names,
            ties=ties,
            strata="site" if strata_by_site else None,
            coef=beta.tolist(),
            se=se.tolist(),
            stat=z.tolist(),
            p_values=(2 * stats.norm.sf(np.abs(z))).tolist(),
            hazard_ratio=np.exp(beta).tolist(),
            ci_low=np.exp(beta - q * se).tolist(),
            ci_high=np.exp(beta + q * se).tolist(),
            loglik=loglik,
            loglik_null=loglik_null,
            n=sum(r["n"] for r in results.values()),
            events=sum(r["events"] for r in results.values()),
            bin_width=width,
            iterations=iterations,
            converged=converged,
            sites=list(chosen),
            cov=cov.tolist(),
            ph_tests=ph_tests,
        )

    def pwe(
        self,
        time: str,
        event: str,
        covariates: Sequence[str] | str,
        *,
        bin_width: float | None = None,
        where=None,
        sites=None,
        max_iter: int = 25,
    ) -> GlmResult:
        """The piecewise-exponential survival model: each site splits its rows at the bins of
        `bin_width` (`datenraum.site.analysis.lexis`), and the federated Poisson GLM fits
        `lexis_event ~ factor(lexis_interval) + covariates + offset(log(lexis_exposure))` on the split
        rows, exactly pooled. exp of a covariate's coefficient is its hazard ratio. An interval without
        any event has no finite baseline estimate: such a fit ends with `converged` False (wider bins
        help)."""
        names = [covariates] if isinstance(covariates, str) else list(covariates)
        width = float(bin_width if bin_width is not None else self.policy.time_bin)
        split = Analysis(
            self.sites,
            project=self.project,
            analyst=self.analyst,
            data={**self.data, "lexis": {"time": time, "event": event, "bin_width": width}},
            policy=self.policy,
        )
        terms = " + ".join(["factor(lexis_interval)", *names, "offset(log(lexis_exposure))"])
        return split.glm(f"lexis_event ~ {terms}", "poisson", where=where, sites=sites, max_iter=max_iter)

    # -- study-level meta-analysis
    def glm_slma(
        self,
        formula: str | ModelSpec,
        family: str = "gaussian",
        *,
        link: str | None = None,
        weights: str | Var | None = None,
        where=None,
        sites=None,
    ) -> dict:
        """Each site fits the model on its own rows (`glm.local`); the coefficients are pooled by
        inverse-variance fixed effects and DerSimonian–Laird random effects, with Cochran's Q, I² and
        tau² per coefficient (as statsmodels' `combine_effects(..., method_re="chi2")`). Two rounds with
        factors (their global levels first), one without."""
        spec = parse_formula(formula) if isinstance(formula, str) else formula
        fam = make_family(family, link)
        weights_var = parse_variable(weights) if isinstance(weights, str) else weights
        chosen = self._site_set(sites)
        base = {
            "model": spec.to_json(),
            "family": fam.name,
            "link": fam.link.name,
            "weights": weights_var.to_json() if weights_var else None,
        }
        levels: dict[str, list[str]] = {}
        if spec.factors():
            prepared = self._round(self._request("glm.prepare", where, **base), chosen)
            for name in spec.factors():
                levels[name] = sorted(
                    set().union(*(r["levels"][name] for r in prepared.values())), key=_level_key
                )
        results = self._round(self._request("glm.local", where, **base, levels=levels), chosen)
        names = column_names(spec, levels)
        effects = np.array([results[s]["coef"] for s in chosen])
        variances = np.array([np.diag(results[s]["cov"]) for s in chosen])
        coefficients = {}
        for j, name in enumerate(names):
            coefficients[name] = _meta(effects[:, j], variances[:, j])
        return {
            "formula": spec.formula(),
            "family": fam.name,
            "link": fam.link.name,
            "names": names,
            "coefficients": coefficients,
            "n": sum(results[s]["n"] for s in chosen),
            "sites": list(chosen),
        }

    # -- GLM
    def glm(
        self,
        formula: str | ModelSpec,
        family: str = "gaussian",
        *,
        link: str | None = None,
        weights: str | Var | None = None,
        where=None,
        sites=None,
        tol: float = 1e-8,
        max_iter: int = 25,
    ) -> GlmResult:
        spec = parse_formula(formula) if isinstance(formula, str) else formula
        fam = make_family(family, link)
        weights_var = parse_variable(weights) if isinstance(weights, str) else weights
        chosen = self._site_set(sites)  # fixed for the whole fit
        base = {
            "model": spec.to_json(),
            "family": fam.name,
            "link": fam.link.name,
            "weights": weights_var.to_json() if weights_var else None,
        }
        rounds = 0
        levels: dict[str, list[str]] = {}
        if spec.factors() or fam.link.name == "inverse":
            prepared = self._round(self._request("glm.prepare", where, **base), chosen)
            rounds += 1
            for name in spec.factors():
                levels[name] = sorted(
                    set().union(*(r["levels"][name] for r in prepared.values())), key=_level_key
                )
        names = column_names(spec, levels)
        p = len(names)
        beta = np.zeros(p)
        if rounds and spec.intercept and not (fam.name == "gaussian" and fam.link.name == "identity"):
            # start at the intercept-only fit (no offset) the prepare round gives for free, as R's
            # mustart does; the inverse link cannot start at zero at all
            sum_w = sum(r["sum_w"] for r in prepared.values())
            mean = sum(r["sum_wy"] for r in prepared.values()) / sum_w
            beta[0] = (
                float(fam.link(np.array([mean]))[0])
                if spec.offset is None or fam.link.name == "inverse"
                else 0.0
            )

        def step(beta: np.ndarray, null_eta: float | None) -> dict[str, Any]:
            nonlocal rounds
            request = self._request(
                "glm.step", where, **base, levels=levels, beta=beta.tolist(), null_eta=null_eta
            )
            results = self._round(request, chosen)
            rounds += 1
            return _pool(results, p)

        gaussian_identity = fam.name == "gaussian" and fam.link.name == "identity"
        pooled = step(beta, None)
        if pooled["info"] is None:
            raise AnalysisError([_numeric_error("the starting values give invalid fitted values")])
        iterations = 1
        sum_w, sum_wy, sum_woff = pooled["sum_w"], pooled["sum_wy"], pooled["sum_woffset"]
        null_eta = float(fam.link(np.array([sum_wy / sum_w]))[0]) if not gaussian_identity else None
        if gaussian_identity:
            info, score = pooled["info"], pooled["score"]
            coef = _solve(info, score, names)
            # at beta = 0 the deviance is sum w (y - offset)^2 and the score X'W(y - offset)
            deviance = pooled["deviance"] - float(coef @ score)
            pearson = deviance
            mean_z = (sum_wy - sum_woff) / sum_w
            null_deviance = pooled["deviance"] - sum_w * mean_z * mean_z
            converged = True
            beta = coef
        else:
            dev_old = pooled["deviance"]
            converged = False
            null_done = False
            null_deviance = math.nan
            while iterations < max_iter:
                delta = _solve(pooled["info"], pooled["score"], names)
                candidate = beta + delta
                new = step(candidate, null_eta if not null_done else None)
                iterations += 1
                halvings = 0
                while new["info"] is None or not math.isfinite(new["deviance"]):
                    halvings += 1
                    if halvings > 10:
                        raise AnalysisError([_numeric_error("the fit diverged (no finite deviance)")])
                    candidate = (beta + candidate) / 2
                    new = step(candidate, null_eta if not null_done else None)
                    iterations += 1
                if "null" in new:
                    nul = new["null"]
                    null_step = nul["score"] / nul["info"]
                    null_deviance = nul["deviance"]
                    null_done = abs(null_step) <= 1e-10 * (abs(null_eta) + 1e-3)
                    null_eta += null_step
                beta, pooled = candidate, new
                dev = pooled["deviance"]
                next_step = _solve(pooled["info"], pooled["score"], names)
                # the reported beta is the one this round was evaluated at: stop only when the next
                # Newton step would not move it (relative to the coefficient or its standard error)
                scale = np.maximum(np.abs(beta), np.sqrt(np.diag(np.linalg.inv(pooled["info"]))))
                small = bool(np.all(np.abs(next_step) <= STEP_TOL * scale))
                if abs(dev - dev_old) / (abs(dev) + 0.1) < tol and small and null_done:
                    converged = True
                    break
                dev_old = dev
            while not null_done:  # the null model with an offset may need a few more rounds
                pooled_null = step(beta, null_eta)
                nul = pooled_null["null"]
                null_step = nul["score"] / nul["info"]
                null_deviance = nul["deviance"]
                null_done = abs(null_step) <= 1e-10 * (abs(null_eta) + 1e-3)
                null_eta += null_step
            deviance = pooled["deviance"]
            pearson = pooled["pearson"]
        n = pooled["n"]
        df_resid = n - p
        dispersion = pearson / df_resid if fam.estimated_dispersion else 1.0
        cov = linalg.inv(pooled["info"]) * dispersion
        se = np.sqrt(np.diag(cov))
        stat = beta / se
        use_t = fam.estimated_dispersion
        if use_t:
            p_values = 2 * stats.t.sf(np.abs(stat), df_resid)
            q = stats.t.ppf(0.975, df_resid)
        else:
            p_values = 2 * stats.norm.sf(np.abs(stat))
            q = stats.norm.ppf(0.975)
        return GlmResult(
            formula=spec.formula(),
            family=fam.name,
            link=fam.link.name,
            names=names,
            coef=beta.tolist(),
            se=se.tolist(),
            stat=stat.tolist(),
            p_values=p_values.tolist(),
            ci_low=(beta - q * se).tolist(),
            ci_high=(beta + q * se).tolist(),
            deviance=float(deviance),
            null_deviance=float(null_deviance),
            pearson_chi2=float(pearson),
            dispersion=float(dispersion),
            df_resid=df_resid,
            df_model=p - (1 if spec.intercept else 0),
            n=n,
            n_missing=pooled["n_total"] - n,
            n_total=pooled["n_total"],
            iterations=iterations,
            rounds=rounds,
            converged=converged,
            use_t=use_t,
            sites=list(chosen),
            cov=cov.tolist(),
        )


def _meta(effect: np.ndarray, variance: np.ndarray) -> dict[str, Any]:
    """Fixed-effect (inverse variance) and DerSimonian–Laird random-effects pooling of one effect."""
    w = 1.0 / variance
    fixed = float((w * effect).sum() / w.sum())
    fixed_se = float(math.sqrt(1.0 / w.sum()))
    q = float((w * (effect - fixed) ** 2).sum())
    df = len(effect) - 1
    tau2 = max(0.0, (q - df) / float(w.sum() - (w * w).sum() / w.sum())) if df > 0 else 0.0
    w_re = 1.0 / (variance + tau2)
    random = float((w_re * effect).sum() / w_re.sum())
    random_se = float(math.sqrt(1.0 / w_re.sum()))
    z = stats.norm.ppf(0.975)
    return {
        "fixed": {"estimate": fixed, "se": fixed_se, "ci": [fixed - z * fixed_se, fixed + z * fixed_se]},
        "random": {
            "estimate": random,
            "se": random_se,
            "ci": [random - z * random_se, random + z * random_se],
        },
        "q": q,
        "df": df,
        "p_q": float(stats.chi2.sf(q, df)) if df > 0 else math.nan,
        "i2": max(0.0, (q - df) / q) if q > 0 else 0.0,
        "tau2": tau2,
    }


def _pool_moments(parts: Sequence[Mapping[str, Any]]) -> tuple[int, float, float, float, float]:
    """n, mean and the central moment sums M2, M3, M4 of the union of the parts (Pébay 2008)."""
    n, mean, m2, m3, m4 = 0, 0.0, 0.0, 0.0, 0.0
    for p in parts:
        nb = p["n"]
        if nb == 0:
            continue
        mb = p["sum"] / nb
        na, total = n, n + nb
        delta = mb - mean
        m4 = (
            m4
            + p["m4"]
            + delta**4 * na * nb * (na * na - na * nb + nb * nb) / total**3
            + 6 * delta**2 * (na * na * p["m2"] + nb * nb * m2) / total**2
            + 4 * delta * (na * p["m3"] - nb * m3) / total
        )
        m3 = (
            m3
            + p["m3"]
            + delta**3 * na * nb * (na - nb) / total**2
            + 3 * delta * (na * p["m2"] - nb * m2) / total
        )
        m2 = m2 + p["m2"] + delta * delta * na * nb / total
        mean = mean + delta * nb / total
        n = total
    return n, mean, m2, m3, m4


def _level_key(level: str) -> tuple:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def _numeric_error(text: str) -> dict[str, Any]:
    return {
        "code": "numeric",
        "rule": None,
        "threshold": None,
        "site": None,
        "message_en": text,
        "message_de": text,
    }


def _pool(results: Mapping[str, Mapping[str, Any]], p: int) -> dict[str, Any]:
    upper = np.triu_indices(p)
    info = np.zeros((p, p))
    score = np.zeros(p)
    out: dict[str, Any] = {"n": 0, "n_total": 0, "sum_w": 0.0, "sum_wy": 0.0, "sum_woffset": 0.0}
    deviance = pearson = 0.0
    valid = True
    null = {"deviance": 0.0, "score": 0.0, "info": 0.0}
    has_null = False
    for r in results.values():
        for key in ("n", "n_total", "sum_w", "sum_wy", "sum_woffset"):
            out[key] += r[key]
        if r["info"] is None:
            valid = False
            continue
        block = np.zeros((p, p))
        block[upper] = r["info"]
        info += block
        score += np.asarray(r["score"])
        deviance += r["deviance"]
        pearson += r["pearson"]
        if "null" in r:
            has_null = True
            for key in null:
                null[key] += r["null"][key]
    info = info + np.triu(info, 1).T
    out.update(
        info=info if valid else None, score=score, deviance=deviance if valid else math.nan, pearson=pearson
    )
    if has_null:
        out["null"] = null
    return out


def _solve(info: np.ndarray, score: np.ndarray, names: Sequence[str]) -> np.ndarray:
    try:
        factor = linalg.cho_factor(info)
        return linalg.cho_solve(factor, score)
    except linalg.LinAlgError:
        rank = np.linalg.matrix_rank(info)
        raise AnalysisError(
            [
                _numeric_error(
                    f"the design matrix is singular (rank {rank} of {len(names)} columns: "
                    f"{', '.join(names)}); drop aliased terms"
                )
            ]
        ) from None
