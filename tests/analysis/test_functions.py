"""describe, statistics by group, study-level meta-analysis and the site workspace: each pooled result
equals the reference computed on the pooled rows (or on the per-site fits, for the meta-analysis)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import statsmodels.api as sm
from statsmodels.stats.meta_analysis import combine_effects

from datenraum.analysis import Analysis, AnalysisError

from .helpers import random_table, sites_of


@pytest.fixture(scope="module")
def frames() -> list[pd.DataFrame]:
    return [random_table(n, seed) for n, seed in ((400, 1), (700, 2), (550, 3), (300, 4))]


def test_describe_equals_the_pooled_moments(frames: list[pd.DataFrame]) -> None:
    pooled = pd.concat(frames)
    result = Analysis(sites_of(frames)).describe(["x1", "y_gauss", "g"])
    x = pooled["x1"].dropna().to_numpy()
    d = result["x1"]
    assert d["n"] == len(x) and d["n_missing"] == pooled["x1"].isna().sum()
    assert d["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert d["var"] == pytest.approx(x.var(ddof=1), rel=1e-12)
    assert d["skewness"] == pytest.approx(scipy.stats.skew(x), rel=1e-9)
    assert d["kurtosis"] == pytest.approx(scipy.stats.kurtosis(x), rel=1e-9)
    g = result["g"]
    assert g["type"] == "categorical" and g["levels"] == ["a", "b", "c", "d"]
    # counts are rounded to 5 at each site: within 2.5 per site of the truth
    truth = pooled["g"].value_counts().sort_index().to_numpy()
    assert np.all(np.abs(np.array(g["counts"]) - truth) <= 2.5 * len(frames))


def test_statistics_by_group_equal_the_pooled_groups(frames: list[pd.DataFrame]) -> None:
    pooled = pd.concat(frames)
    result = Analysis(sites_of(frames)).by_group(["y_gauss", "x2"], "g")
    for level, rows in pooled.groupby("g"):
        for name in ("y_gauss", "x2"):
            values = rows[name].dropna()
            entry = result["groups"][level][name]
            assert entry["n"] == len(values)
            assert entry["mean"] == pytest.approx(values.mean(), rel=1e-12)
            assert entry["var"] == pytest.approx(values.var(ddof=1), rel=1e-10)


def test_a_small_group_is_hidden_not_refused(frames: list[pd.DataFrame]) -> None:
    small = [f.copy() for f in frames]
    small[0].loc[small[0].index[:3], "g"] = "tiny"
    result = Analysis(sites_of(small)).by_group(["x2"], "g")
    assert result["groups"]["tiny"] is None and result["groups"]["a"] is not None


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
def test_meta_analysis_equals_statsmodels_combine_effects(frames: list[pd.DataFrame], family: str) -> None:
    response = {"gaussian": "y_gauss", "binomial": "y_bin", "poisson": "y_pois"}[family]
    result = Analysis(sites_of(frames)).glm_slma(f"{response} ~ x1 + x2 + factor(g)", family)
    fam = {
        "gaussian": sm.families.Gaussian(),
        "binomial": sm.families.Binomial(),
        "poisson": sm.families.Poisson(),
    }
    fits = []
    for frame in frames:
        rows = frame.dropna(subset=["x1"])
        x = pd.get_dummies(rows[["x1", "x2", "g"]], columns=["g"], drop_first=True, dtype=float)
        fits.append(sm.GLM(rows[response], sm.add_constant(x), family=fam[family]).fit(tol=1e-14))
    for j, name in enumerate(result["names"]):
        effect = np.array([f.params.iloc[j] for f in fits])
        variance = np.array([f.bse.iloc[j] ** 2 for f in fits])
        reference = combine_effects(effect, variance, method_re="chi2")
        got = result["coefficients"][name]
        assert got["fixed"]["estimate"] == pytest.approx(reference.mean_effect_fe, rel=1e-7)
        assert got["fixed"]["se"] == pytest.approx(reference.sd_eff_w_fe, rel=1e-7)
        assert got["q"] == pytest.approx(reference.q, rel=1e-7)
        # DerSimonian-Laird truncates tau2 at 0 (as metafor); statsmodels leaves it negative
        if reference.tau2 > 0:
            assert got["tau2"] == pytest.approx(reference.tau2, rel=1e-6)
            assert got["random"]["estimate"] == pytest.approx(reference.mean_effect_re, rel=1e-7)
            assert got["random"]["se"] == pytest.approx(reference.sd_eff_w_re, rel=1e-7)
        else:
            assert got["tau2"] == 0
            assert got["random"]["estimate"] == pytest.approx(reference.mean_effect_fe, rel=1e-7)
            assert got["random"]["se"] == pytest.approx(reference.sd_eff_w_fe, rel=1e-7)
    assert any(got["tau2"] > 0 for got in result["coefficients"].values()) or family != "gaussian"


def test_workspace_derived_variable_and_subset(frames: list[pd.DataFrame]) -> None:
    analysis = Analysis(sites_of(frames))
    analysis.assign("log_t", derive="log(t)")
    analysis.assign("high", subset=[{"variable": "x2", "comparator": "gt", "value": 0.5}])
    analysis.data = {"table": "data", "subset": "high"}
    got = analysis.summary("log_t")["log_t"]
    pooled = pd.concat(frames)
    expected = np.log(pooled.loc[pooled["x2"] > 0.5, "t"])
    assert got["n"] == len(expected) and got["mean"] == pytest.approx(expected.mean(), rel=1e-12)
    # another analyst sees neither
    other = Analysis(sites_of(frames), analyst="someone-else", data={"table": "data", "subset": "high"})
    with pytest.raises(AnalysisError, match="no subset"):
        other.summary("x1")


def test_a_subset_below_the_minimum_is_refused(frames: list[pd.DataFrame]) -> None:
    with pytest.raises(AnalysisError) as raised:
        Analysis(sites_of(frames)).assign(
            "few", subset=[{"variable": "x2", "comparator": "gt", "value": 0.995}]
        )
    assert {e["rule"] for e in raised.value.errors} == {"min_rows"}
