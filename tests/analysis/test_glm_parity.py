"""Federated GLM = pooled statsmodels GLM on the same rows, to 1e-8 relative (beta, SE, deviance, null
deviance, dispersion), for every family, with weights, offsets and a factor with 4 levels and an
interaction; on fixed splits and as a property over random partitions into 2 to 37 sites."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datenraum.analysis import Analysis
from datenraum.privacy.analysis import AnalysisPolicy

from .helpers import design, partition, random_table, sites_of

links = sm.families.links
RTOL = 1e-8

# (family, link, response, statsmodels family, scale, offset?, weights?)
CASES = {
    "gaussian": ("gaussian", None, "y_gauss", sm.families.Gaussian(), None, False, True),
    "gaussian-log": ("gaussian", "log", "y_gamma", sm.families.Gaussian(links.Log()), None, False, False),
    "binomial-logit": ("binomial", "logit", "y_bin", sm.families.Binomial(), None, False, True),
    "binomial-probit": (
        "binomial",
        "probit",
        "y_bin",
        sm.families.Binomial(links.Probit()),
        None,
        False,
        False,
    ),
    "binomial-cloglog": (
        "binomial",
        "cloglog",
        "y_bin",
        sm.families.Binomial(links.CLogLog()),
        None,
        False,
        False,
    ),
    "poisson-offset": ("poisson", "log", "y_pois", sm.families.Poisson(), None, True, False),
    "poisson-offset-weights": ("poisson", "log", "y_pois", sm.families.Poisson(), None, True, True),
    "Gamma-log": ("Gamma", "log", "y_gamma", sm.families.Gamma(links.Log()), None, False, True),
    "Gamma-inverse": ("Gamma", "inverse", "y_gamma_inv", sm.families.Gamma(), None, False, False),
    "quasipoisson": ("quasipoisson", "log", "y_pois", sm.families.Poisson(), "X2", True, False),
    "quasibinomial": ("quasibinomial", "logit", "y_bin", sm.families.Binomial(), "X2", False, True),
}

TABLE = random_table(3000, seed=17)


def formula(case: str) -> str:
    _, _, response, _, _, offset, _ = CASES[case]
    return f"{response} ~ x1 + x2 + factor(g) + x1:x2" + (" + offset(log(t))" if offset else "")


@functools.cache
def pooled(case: str):
    return pooled_fit(case, TABLE)


def pooled_fit(case: str, frame: pd.DataFrame):
    _, _, response, family, scale, offset, weighted = CASES[case]
    rows = frame.dropna(subset=["x1"])
    kwargs = {}
    if offset:
        kwargs["offset"] = np.log(rows.t.to_numpy())
    if weighted:
        kwargs["var_weights"] = rows.w.to_numpy()
    with warnings.catch_warnings():  # Gamma's inverse link "does not respect the domain": it is fine here
        warnings.simplefilter("ignore")
        model = sm.GLM(rows[response].to_numpy(), design(rows), family=family, **kwargs)
        return model.fit(scale=scale, tol=1e-14, maxiter=300), len(rows)


def assert_same(fit, reference, n: int) -> None:
    expected_se = np.asarray(reference.bse)
    # relative to the coefficient, or to its standard error for a coefficient near zero
    error = np.abs(np.asarray(fit.coef) - np.asarray(reference.params))
    assert np.all(error <= RTOL * np.maximum(np.abs(reference.params), expected_se)), error
    np.testing.assert_allclose(fit.se, expected_se, rtol=RTOL)
    assert fit.deviance == pytest.approx(reference.deviance, rel=RTOL)
    assert fit.null_deviance == pytest.approx(reference.null_deviance, rel=RTOL)
    assert fit.dispersion == pytest.approx(reference.scale, rel=RTOL)
    assert fit.df_resid == reference.df_resid and fit.n == n
    assert fit.names == list(reference.params.index)
    assert fit.converged


def federated_fit(case: str, frames, policy=None):
    family, link, _, _, _, _, weighted = CASES[case]
    analysis = Analysis(sites_of(frames, policy), policy=policy)
    return analysis.glm(formula(case), family, link=link, weights="w" if weighted else None)


@pytest.mark.parametrize("case", list(CASES))
def test_federated_glm_equals_pooled_statsmodels(case: str) -> None:
    frames = partition(TABLE, 5, seed=3, minimum=200)
    reference, n = pooled(case)
    fit = federated_fit(case, frames)
    assert_same(fit, reference, n)
    assert fit.use_t == (CASES[case][4] == "X2" or case.startswith(("gaussian", "Gamma")))


def test_gaussian_identity_takes_one_round() -> None:
    frames = partition(TABLE, 3, seed=1, minimum=300)
    sites = sites_of(frames)
    fit = Analysis(sites).glm("y_gauss ~ x1 + x2", "gaussian")
    assert (fit.rounds, fit.iterations, sites.rounds) == (1, 1, 1)
    with_factor = Analysis(sites, project="other").glm("y_gauss ~ x1 + factor(g)", "gaussian")
    assert with_factor.rounds == 2  # one more for the global levels


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    case=st.sampled_from(["gaussian", "binomial-logit", "poisson-offset", "Gamma-log"]),
    sites=st.integers(min_value=2, max_value=37),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_any_partition_gives_the_pooled_fit(case: str, sites: int, seed: int) -> None:
    policy = AnalysisPolicy(min_sites=2)
    frames = partition(TABLE, sites, seed=seed, minimum=80)
    reference, n = pooled(case)
    assert_same(federated_fit(case, frames, policy), reference, n)
