"""Survival on binned time: pooled Kaplan–Meier, log-rank and Cox (Breslow, Efron, stratified by site)
equal lifelines and statsmodels on the pooled binned data of DataSHIELD's SURVIVAL sets (split by
study as the three sites), and no bin with fewer than k at risk is ever shown."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datenraum.analysis import Analysis, AnalysisError
from datenraum.privacy.analysis import AnalysisPolicy

from .helpers import sites_of

WIDTH = 30.0
COVARIATES = ["age", "female", "bmi"]


def subjects(path: Path) -> pd.DataFrame:
    """One row per subject of an expanded (counting-process) SURVIVAL file: follow-up in days."""
    rows = pd.read_csv(path)
    last = rows.dropna(subset=["endtime"]).sort_values(["id", "endtime"]).groupby("id").last()
    return pd.DataFrame(
        {
            "days": last["endtime"].to_numpy() * 365.25,
            "died": last["cens"].to_numpy(dtype=float),
            "age": last["age.60"].to_numpy(),
            "female": last["female"].to_numpy(),
            "bmi": last["bmi.26"].to_numpy(),
        }
    )


@pytest.fixture(scope="module")
def frames(analysis_testdata: Path) -> list[pd.DataFrame]:
    folder = analysis_testdata / "survival_expand_with_missing"
    return [subjects(folder / f"expand_missing_study{i}.csv") for i in (1, 2, 3)]


EXACT = AnalysisPolicy(rounding=1)


def binned(frame: pd.DataFrame, k: int = 5, width: float = WIDTH) -> pd.DataFrame:
    """The reference binning, written out independently of the site's: bin ends as times; from the
    first bin with fewer than k at risk on, everyone censored at the end of the bin before."""
    index = np.floor(frame.days.to_numpy() / width).astype(int)
    event = frame.died.to_numpy().astype(int)
    at_risk = np.array([(index >= b).sum() for b in range(index.max() + 1)])
    small = np.nonzero(at_risk < k)[0]
    if small.size:
        tail = index >= small[0]
        index, event = np.where(tail, small[0] - 1, index), np.where(tail, 0, event)
    out = frame.copy()
    out["T"], out["E"] = (index + 1) * width, event
    return out


def test_km_equals_lifelines_on_pooled_binned_data(frames: list[pd.DataFrame]) -> None:
    from lifelines import KaplanMeierFitter

    result = Analysis(sites_of(frames, EXACT), policy=EXACT).km("days", "died")
    curve = result["curves"]["all"]
    pooled = pd.concat([binned(f.dropna(subset=["days", "died"])) for f in frames])
    fitter = KaplanMeierFitter().fit(pooled["T"], pooled["E"])
    times = np.array(curve["time"])
    assert np.all(np.isclose(times % WIDTH, 0)), "only bin ends are released"
    expected = fitter.survival_function_at_times(times).to_numpy()
    np.testing.assert_allclose(curve["survival"], expected, rtol=0, atol=1e-12)
    ci = fitter.confidence_interval_survival_function_
    shared = [i for i, t in enumerate(times) if t in ci.index]
    assert len(shared) > 100
    np.testing.assert_allclose(
        np.array(curve["ci_low"])[shared], ci.iloc[:, 0].loc[times[shared]], rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(
        np.array(curve["ci_high"])[shared], ci.iloc[:, 1].loc[times[shared]], rtol=0, atol=1e-12
    )
    table = fitter.event_table
    at = times[1:]
    in_table = np.isin(at, table.index)
    np.testing.assert_array_equal(np.array(curve["n_risk"])[in_table], table.loc[at[in_table], "at_risk"])
    assert sum(curve["events"]) == int(pooled["E"].sum())


def test_logrank_equals_lifelines(frames: list[pd.DataFrame]) -> None:
    from lifelines.statistics import multivariate_logrank_test

    result = Analysis(sites_of(frames, EXACT), policy=EXACT).km("days", "died", group="female")
    parts = []
    for f in frames:
        f = f.dropna(subset=["days", "died", "female"])
        parts += [binned(f[f.female == g]) for g in (0, 1)]
    pooled = pd.concat(parts)
    reference = multivariate_logrank_test(pooled["T"], pooled["female"], pooled["E"])
    assert result["logrank"]["statistic"] == pytest.approx(reference.test_statistic, rel=1e-12)
    assert result["logrank"]["p"] == pytest.approx(reference.p_value, rel=1e-9)
    assert set(result["curves"]) == {"0", "1"}


def grouped(frame: pd.DataFrame, k: int = 5, width: float = WIDTH) -> pd.DataFrame:
    """The reference grouping of Cox's risk sets, written out independently of the site's: 30-day cells
    are taken together, from the first, until the group has 0 or >= k events and 0 or >= k censored;
    an incomplete rest joins the groups before it; each subject's time is the end of its group."""
    cell = np.floor(frame.days.to_numpy() / WIDTH).astype(int)
    died = frame.died.to_numpy().astype(int)
    per_cell = pd.DataFrame({"cell": cell, "died": died}).groupby("cell").died.agg(["sum", "count"])
    per_cell = per_cell.reindex(range(cell.max() + 1), fill_value=0)

    def fine(events: int, total: int) -> bool:
        return all(n == 0 or n >= k for n in (events, total - events)) and total > 0

    groups: list[list[int]] = [[]]
    for c in per_cell.index:
        groups[-1].append(c)
        if fine(per_cell.loc[groups[-1], "sum"].sum(), per_cell.loc[groups[-1], "count"].sum()):
            groups.append([])
    while groups[-1] and not fine(
        per_cell.loc[groups[-1], "sum"].sum(), per_cell.loc[groups[-1], "count"].sum()
    ):
        rest = groups.pop()
        groups[-1] = groups[-1] + rest
    end = {c: group[-1] for group in groups for c in group}
    out = frame.copy()
    start = np.array([end[c] for c in cell]) * WIDTH
    out["T"], out["E"] = (np.floor(start / width) + 1) * width, died
    return out


def _pooled_cox_data(frames: list[pd.DataFrame]) -> pd.DataFrame:
    parts = []
    for i, f in enumerate(frames):
        part = grouped(f.dropna(subset=["days", "died", *COVARIATES]))
        part["site"] = i
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
@pytest.mark.parametrize("strata", [False, True])
def test_cox_equals_statsmodels_phreg(frames: list[pd.DataFrame], ties: str, strata: bool) -> None:
    from statsmodels.duration.hazard_regression import PHReg

    fit = Analysis(sites_of(frames, EXACT), policy=EXACT).cox(
        "days", "died", COVARIATES, ties=ties, strata_by_site=strata
    )
    assert fit.converged
    pooled = _pooled_cox_data(frames)
    model = PHReg(
        pooled["T"],
        pooled[COVARIATES],
        status=pooled["E"],
        ties=ties,
        strata=pooled["site"] if strata else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = model.fit(method="newton", maxiter=100, gtol=1e-14)
    np.testing.assert_allclose(fit.coef, reference.params, rtol=1e-8)
    np.testing.assert_allclose(fit.se, reference.bse, rtol=1e-8)
    assert fit.loglik == pytest.approx(reference.llf, rel=1e-10)
    assert fit.n == len(pooled) and fit.events == int(pooled["E"].sum())


@pytest.mark.parametrize("strata", [False, True])
def test_cox_efron_equals_lifelines(frames: list[pd.DataFrame], strata: bool) -> None:
    from lifelines import CoxPHFitter

    fit = Analysis(sites_of(frames, EXACT), policy=EXACT).cox(
        "days", "died", COVARIATES, ties="efron", strata_by_site=strata
    )
    pooled = _pooled_cox_data(frames)[["T", "E", "site", *COVARIATES]]
    if not strata:
        pooled = pooled.drop(columns="site")
    reference = CoxPHFitter().fit(
        pooled,
        "T",
        "E",
        strata=["site"] if strata else None,
        fit_options={"precision": 1e-14, "max_steps": 100},
    )
    np.testing.assert_allclose(fit.coef, reference.params_[COVARIATES], rtol=1e-8)
    np.testing.assert_allclose(fit.se, reference.standard_errors_[COVARIATES], rtol=1e-8)
    assert fit.loglik == pytest.approx(reference.log_likelihood_, rel=1e-10)


def test_small_tail_bins_are_never_shown() -> None:
    """Two sites' tails thin out to fewer than k at risk: those bins are merged into the last bin with
    k at risk (censored there); no released at-risk count lies in 1..k-1, no time is not a bin end."""
    rng = np.random.default_rng(7)
    frames = []
    for _ in range(3):
        days = rng.exponential(200.0, size=60)
        frames.append(pd.DataFrame({"days": days, "died": (rng.uniform(size=60) < 0.7).astype(float)}))
    policy = AnalysisPolicy(rounding=1)
    sites = sites_of(frames, policy)
    answer = sites.executors["site1"].handle(
        {
            "v": 1,
            "op": "km",
            "project": "p",
            "analyst": "a",
            "data": {"table": "data"},
            "where": [],
            "time": "days",
            "event": "died",
            "bin_width": 30.0,
        }
    )
    counts = answer["result"]["groups"]["all"]
    assert all(n >= policy.min_cell for n in counts["n_risk"])
    raw = np.floor(frames[0].days / 30.0).astype(int)
    full_bins = raw.max() + 1
    assert len(counts["n_risk"]) < full_bins  # the thin tail was merged, not shown
    assert sum(counts["events"]) + sum(counts["censored"]) == 60
    result = Analysis(sites, policy=policy).km("days", "died")
    curve = result["curves"]["all"]
    assert all(n >= policy.min_cell for n in curve["n_risk"])
    # the rounded default: counts in multiples of 5
    rounded = Analysis(sites_of(frames), project="other").km("days", "died")["curves"]["all"]
    assert all(v % 5 == 0 for v in rounded["events"] + rounded["censored"] + rounded["n_risk"])


def test_bins_narrower_than_the_sites_are_refused(frames: list[pd.DataFrame]) -> None:
    with pytest.raises(AnalysisError) as error:
        Analysis(sites_of(frames, EXACT), policy=EXACT).km("days", "died", bin_width=7)
    assert {e["rule"] for e in error.value.errors} == {"time_bin"}
    assert {e["site"] for e in error.value.errors} == {"site1", "site2", "site3"}
    assert all(e["threshold"] == 30.0 for e in error.value.errors)
    wide = AnalysisPolicy(rounding=1, time_bin=7)
    result = Analysis(sites_of(frames, wide), policy=wide).km("days", "died", bin_width=7)
    assert result["bin_width"] == 7


def test_too_few_events_refused() -> None:
    rng = np.random.default_rng(3)
    frames = [
        pd.DataFrame({"days": rng.uniform(0, 900, 40), "died": np.r_[np.ones(3), np.zeros(37)]})
        for _ in range(3)
    ]
    with pytest.raises(AnalysisError) as error:
        Analysis(sites_of(frames, EXACT), policy=EXACT).km("days", "died")
    assert {e["rule"] for e in error.value.errors} == {"min_cell"}


@pytest.fixture
def survival_sites(frames: list[pd.DataFrame], tmp_path: Path) -> Path:
    folder = tmp_path / "sites"  # derived per-subject tables, in the test's temporary folder only
    folder.mkdir()
    for i, frame in enumerate(frames, 1):
        frame.to_csv(folder / f"study{i}.csv", index=False)
    return folder


def test_cli_km_and_cox_as_json(survival_sites: Path, frames: list[pd.DataFrame]) -> None:
    import json

    from click.testing import CliRunner

    from datenraum.cli import main

    common = ["--local-sites", str(survival_sites), "--time", "days", "--event", "died", "--json"]
    km = CliRunner().invoke(main, ["analysis", "km", *common, "--rounding", "1", "--group", "female"])
    assert km.exit_code == 0, km.output
    body = json.loads(km.output)
    reference = Analysis(sites_of(frames, EXACT), policy=EXACT).km("days", "died", group="female")
    assert body["logrank"]["statistic"] == pytest.approx(reference["logrank"]["statistic"], rel=1e-12)
    assert body["curves"]["1"]["survival"] == pytest.approx(reference["curves"]["1"]["survival"], abs=1e-12)
    cox = CliRunner().invoke(
        main, ["analysis", "cox", *common, *[a for c in COVARIATES for a in ("--covariate", c)]]
    )
    assert cox.exit_code == 0, cox.output
    fit = json.loads(cox.output)
    assert fit["ties"] == "efron" and fit["converged"]
    assert set(fit["coefficients"]) == set(COVARIATES)
    refused = CliRunner().invoke(main, ["analysis", "km", *common[:-1], "--bin-width", "0.5", "--json"])
    assert refused.exit_code != 0
