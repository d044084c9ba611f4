"""DataSHIELD parity on its own test data (CNSIM 1-3, SURVIVAL expand-with-missing 1-3, split by site as
published): N valid/missing, degrees of freedom, deviances and iteration counts as DataSHIELD's tests
expect (`reference_results.json`), and the pooled statsmodels fits recorded there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datenraum.analysis import Analysis
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.tables import read_table


@pytest.fixture(scope="module")
def reference(analysis_testdata: Path) -> dict:
    return json.loads((analysis_testdata / "reference_results.json").read_text())


@pytest.fixture(scope="module")
def cnsim(analysis_testdata: Path) -> LocalSites:
    return LocalSites.from_tables(
        {f"study{i}": read_table(analysis_testdata / f"cnsim/CNSIM{i}.csv") for i in (1, 2, 3)}
    )


@pytest.fixture(scope="module")
def survival(analysis_testdata: Path) -> LocalSites:
    folder = analysis_testdata / "survival_expand_with_missing"
    return LocalSites.from_tables(
        {f"study{i}": read_table(folder / f"expand_missing_study{i}.csv") for i in (1, 2, 3)}
    )


MODELS = {
    "gaussian_LAB_TSC~LAB_TRIG": ("cnsim", "LAB_TSC ~ LAB_TRIG", "gaussian", 3),
    "binomial_DIS_DIAB~GENDER*PM_BMI_CONTINUOUS+LAB_HDL": (
        "cnsim",
        "DIS_DIAB ~ factor(GENDER)*PM_BMI_CONTINUOUS + LAB_HDL",
        "binomial",
        9,
    ),
    "poisson_survtime~1+time.id+female": ("survival", "survtime ~ 1 + time.id + female", "poisson", 5),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_glm_as_datashield_expects(name: str, reference: dict, request: pytest.FixtureRequest) -> None:
    data, formula, family, datashield_iterations = MODELS[name]
    sites = request.getfixturevalue(data)
    fit = Analysis(sites, project=f"parity {name}").glm(formula, family)
    expected = reference[name]
    ds = expected["datashield_expect"]
    assert (fit.n, fit.n_missing, fit.n_total, fit.df_resid) == (
        ds["Nvalid"],
        ds["Nmissing"],
        ds["Ntotal"],
        ds["df"],
    )
    assert fit.deviance == pytest.approx(expected["deviance"], rel=1e-8)
    assert fit.deviance == pytest.approx(ds["dev"], abs=1e-3)  # DataSHIELD's own rounding
    assert fit.null_deviance == pytest.approx(expected["null_deviance"], rel=1e-8)
    assert fit.dispersion == pytest.approx(expected["dispersion"], rel=1e-8)
    assert fit.iterations <= datashield_iterations
    if family == "gaussian":
        assert fit.iterations == 1 and fit.rounds == 1
    # the pooled statsmodels fit on the concatenated sites (names as R writes them, GENDER a factor)
    coef = dict(zip(fit.names, fit.coef, strict=True))
    se = dict(zip(fit.names, fit.se, strict=True))
    for r_name, value in expected["coef"].items():
        ours = r_name.replace("GENDER1", "factor(GENDER)1")
        assert coef[ours] == pytest.approx(value, rel=1e-8)
        assert se[ours] == pytest.approx(expected["se"][r_name], rel=1e-8)


def test_mean_and_variance_as_datashield(cnsim: LocalSites, reference: dict) -> None:
    summary = Analysis(cnsim, project="parity mean").summary("LAB_TSC", by_site=True)["LAB_TSC"]
    expected = reference["mean_LAB_TSC"]["datashield_expect"]
    assert summary["mean"] == pytest.approx(expected["Global.Mean"], rel=1e-12)
    assert (summary["n"], summary["n_missing"]) == (expected["Nvalid"], expected["Nmissing"])
    variances = [summary["by_site"][f"study{i}"]["var"] for i in (1, 2, 3)]
    np.testing.assert_allclose(variances, reference["var_LAB_TSC_by_site"]["datashield_expect"], atol=1e-6)


def test_quantiles_are_pooled_within_a_bin_and_never_observed(
    cnsim: LocalSites, reference: dict, analysis_testdata: Path
) -> None:
    probs = [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95]
    result = Analysis(cnsim, project="parity quantiles").quantiles("LAB_HDL", probs)
    pooled = pd.concat(
        pd.read_csv(analysis_testdata / f"cnsim/CNSIM{i}.csv").rename(columns=str.strip) for i in (1, 2, 3)
    )["LAB_HDL"].dropna()
    exact = np.quantile(pooled, probs)
    np.testing.assert_allclose(exact, reference["quantiles_LAB_HDL"]["pooled_exact_type7"], rtol=1e-12)
    observed = set(pooled.tolist())
    for p, q in zip(probs, exact, strict=True):
        ours = result["quantiles"][str(p)]
        assert abs(ours - q) <= result["bin_width"][str(p)]
        assert ours not in observed
    # DataSHIELD's combined values are the N-weighted means of the site quantiles, not pooled quantiles
    datashield = reference["quantiles_LAB_HDL"][
        "datashield_combine_expect(n-weighted mean of site quantiles)"
    ]
    assert not np.allclose(datashield, exact, rtol=1e-6)
