"""Per-site proportional-hazards checks of the pooled Cox model: each site's scaled Schoenfeld residual
test equals lifelines' `proportional_hazard_test` on that site's grouped binned data, only statistics
and p-values leave the site, and a coefficient chosen to single one subject out is refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datenraum.analysis import Analysis, AnalysisError
from datenraum.analysis.messages import VERSION
from datenraum.privacy.analysis import AnalysisPolicy

from .helpers import sites_of
from .test_survival import COVARIATES, grouped, subjects

EXACT = AnalysisPolicy(rounding=1)


@pytest.fixture(scope="module")
def frames(analysis_testdata: Path) -> list[pd.DataFrame]:
    folder = analysis_testdata / "survival_expand_with_missing"
    return [subjects(folder / f"expand_missing_study{i}.csv") for i in (1, 2, 3)]


def ph_request(beta: list[float], transform: str, **changes) -> dict:
    return {
        "v": VERSION,
        "op": "cox.ph",
        "project": "p",
        "analyst": "a",
        "data": {"table": "data"},
        "where": [],
        "time": "days",
        "event": "died",
        "bin_width": 30.0,
        "covariates": COVARIATES,
        "beta": beta,
        "ties": "efron",
        "transform": transform,
        **changes,
    }


@pytest.mark.parametrize("transform", ["km", "identity"])
def test_site_test_equals_lifelines_on_the_sites_grouped_data(
    frames: list[pd.DataFrame], transform: str
) -> None:
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    site = frames[0]
    data = grouped(site.dropna(subset=["days", "died", *COVARIATES]))[["T", "E", *COVARIATES]]
    fitter = CoxPHFitter().fit(data, "T", "E", fit_options={"precision": 1e-14, "max_steps": 100})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = proportional_hazard_test(fitter, data, time_transform=transform)
    sites = sites_of(frames, EXACT)
    beta = fitter.params_[COVARIATES].tolist()
    answer = sites.executors["site1"].handle(ph_request(beta, transform))
    assert answer["ok"], answer
    result = answer["result"]["covariates"]
    expected = reference.summary.loc[COVARIATES]
    np.testing.assert_allclose(
        [result[c]["statistic"] for c in COVARIATES], expected["test_statistic"], rtol=1e-7
    )
    np.testing.assert_allclose([result[c]["p"] for c in COVARIATES], expected["p"], rtol=1e-6)


def test_pooled_cox_carries_each_sites_test_and_nothing_else(frames: list[pd.DataFrame]) -> None:
    fit = Analysis(sites_of(frames, EXACT), policy=EXACT).cox("days", "died", COVARIATES, ph_test="km")
    assert fit.ph_tests is not None and set(fit.ph_tests) == {"site1", "site2", "site3"}
    for answer in fit.ph_tests.values():
        assert set(answer) == {"transform", "covariates"}
        assert set(answer["covariates"]) == set(COVARIATES)
        for entry in answer["covariates"].values():
            assert set(entry) == {"statistic", "p"}
            assert entry["statistic"] >= 0 and 0 <= entry["p"] <= 1
    assert fit.to_json()["ph_tests"] == fit.ph_tests


@pytest.mark.parametrize("age_beta", [3.0, 500.0])  # 500: exp(x beta) overflows
def test_a_coefficient_that_singles_out_one_subject_is_refused(
    frames: list[pd.DataFrame], age_beta: float
) -> None:
    """The attack: with a huge beta on age, exp(x beta) of the oldest at risk is the whole risk set, so
    a bin's mean of x is that subject's own covariates."""
    sites = sites_of(frames, EXACT)
    answer = sites.executors["site1"].handle(ph_request([age_beta, 0.0, 0.0], "km"))
    assert not answer["ok"]
    assert answer["error"]["rule"] == "dominance"


@pytest.mark.parametrize("age_beta", [3.0, 500.0])
def test_a_newton_step_at_a_coefficient_that_singles_out_one_subject_is_refused_too(
    frames: list[pd.DataFrame], age_beta: float
) -> None:
    """The same attack through `cox.step`, whose beta the analyst chooses as freely: its s1 per bin would be
    the oldest subject's covariates."""
    request = ph_request([age_beta, 0.0, 0.0], "km", op="cox.step")
    del request["transform"]
    answer = sites_of(frames, EXACT).executors["site1"].handle(request)
    assert not answer["ok"]
    assert answer["error"]["rule"] == "dominance"
    assert "risk set" in answer["error"]["message_en"]
    assert "result" not in answer


def test_an_unknown_time_transform_is_refused_naming_the_field(frames: list[pd.DataFrame]) -> None:
    sites = sites_of(frames, EXACT)
    answer = sites.executors["site1"].handle(ph_request([0.0, 0.0, 0.0], "rank"))
    assert not answer["ok"]
    assert "transform" in answer["error"]["message_en"]
    with pytest.raises(AnalysisError, match="transform"):
        Analysis(sites_of(frames, EXACT), policy=EXACT).cox("days", "died", COVARIATES, ph_test="rank")


def test_the_test_uses_the_coarsened_risk_sets_only(frames: list[pd.DataFrame]) -> None:
    """Times inside one risk-set group moved apart change nothing that leaves the site."""
    sites = sites_of(frames, EXACT)
    before = sites.executors["site1"].handle(ph_request([0.01, -0.2, 0.03], "identity"))
    moved = frames[0].copy()
    moved["days"] = np.floor(moved["days"] / 30.0) * 30.0 + 29.0  # each within its own 30-day cell
    after = (
        sites_of([moved, *frames[1:]], EXACT)
        .executors["site1"]
        .handle(ph_request([0.01, -0.2, 0.03], "identity"))
    )
    assert before == after


def lexis_split(frame: pd.DataFrame, width: float = 365.0) -> pd.DataFrame:
    """The reference split, written out independently of the site's: from the grouped times (the start
    of each subject's last 30-day cell), leaving at that cell's middle, one row per bin at risk."""
    data = grouped(frame.dropna(subset=["days", "died"]), width=30.0)
    rows = []
    for _, subject in data.iterrows():
        leave = subject["T"] - 30.0 + 15.0
        last = int(np.ceil(leave / width)) - 1
        for b in range(last + 1):
            rows.append(
                {
                    "interval": b * width,
                    "exposure": leave - b * width if b == last else width,
                    "event": subject["E"] if b == last else 0.0,
                    **{c: subject[c] for c in COVARIATES},
                }
            )
    return pd.DataFrame(rows)


def test_piecewise_exponential_equals_statsmodels_poisson_on_the_pooled_split(
    frames: list[pd.DataFrame],
) -> None:
    import statsmodels.api as sm

    fit = Analysis(sites_of(frames, EXACT), policy=EXACT).pwe("days", "died", COVARIATES, bin_width=365.0)
    split = pd.concat([lexis_split(f) for f in frames], ignore_index=True).dropna()
    intervals = pd.get_dummies(split["interval"], prefix="i", drop_first=True, dtype=float)
    x = sm.add_constant(pd.concat([intervals, split[COVARIATES]], axis=1))
    reference = sm.GLM(split["event"], x, family=sm.families.Poisson(), offset=np.log(split["exposure"])).fit(
        tol=1e-12
    )
    assert fit.converged and fit.n == len(split)
    np.testing.assert_allclose(fit.coef, reference.params.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(fit.se, reference.bse.to_numpy(), rtol=1e-8)
    assert fit.deviance == pytest.approx(reference.deviance, rel=1e-8)


def test_piecewise_exponential_refuses_bins_narrower_than_the_sites(frames: list[pd.DataFrame]) -> None:
    with pytest.raises(AnalysisError, match=r"time_bin|bins"):
        Analysis(sites_of(frames, EXACT), policy=EXACT).pwe("days", "died", COVARIATES, bin_width=7.0)


def test_a_malformed_split_is_refused_naming_the_field(frames: list[pd.DataFrame]) -> None:
    sites = sites_of(frames, EXACT)
    body = ph_request([0.0, 0.0, 0.0], "km")
    body["data"] = {"table": "data", "lexis": {"time": "days", "event": "died", "bin_width": -1}}
    answer = sites.executors["site1"].handle(body)
    assert not answer["ok"] and "data.lexis.bin_width" in answer["error"]["message_en"]


def test_a_split_fit_differing_by_one_subject_is_refused(frames: list[pd.DataFrame]) -> None:
    """The attack: fit, then fit again without the one oldest subject. The split rows of that subject
    are many, but the release ledger compares subjects, and one subject is below k."""
    analysis = Analysis(sites_of(frames, EXACT), policy=EXACT)
    analysis.pwe("days", "died", COVARIATES, bin_width=365.0)
    oldest = float(frames[0]["age"].max())
    assert (frames[0]["age"] == oldest).sum() == 1
    without = [{"variable": "age", "comparator": "lt", "value": oldest}]
    with pytest.raises(AnalysisError) as refused:
        analysis.pwe("days", "died", COVARIATES, bin_width=365.0, where=without)
    assert {e["rule"] for e in refused.value.errors if e["site"] == "site1"} == {"differencing"}
