"""Helpers of the analysis tests: sites from data frames, random tables, pooled statsmodels fits."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.site.analysis.local import LocalSites
from datenraum.site.analysis.tables import AnalysisTable


def sites_of(frames: Sequence[pd.DataFrame], policy: AnalysisPolicy | None = None) -> LocalSites:
    tables = {
        f"site{i + 1}": AnalysisTable(pa.Table.from_pandas(f, preserve_index=False), f"t{i}")
        for i, f in enumerate(frames)
    }
    return LocalSites.from_tables(tables, policy)


def random_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = rng.uniform(size=n)
    g = rng.choice(["a", "b", "c", "d"], size=n)
    effect = pd.Series(g).map({"a": 0.0, "b": 0.3, "c": -0.2, "d": 0.5}).to_numpy()
    t = rng.uniform(0.5, 2.0, size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    eta = -0.3 + 0.6 * x1 - 0.8 * x2 + effect
    frame = pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "g": g,
            "t": t,
            "w": w,
            "y_gauss": 2 + eta + rng.normal(scale=0.7, size=n),
            "y_bin": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float),
            "y_pois": rng.poisson(np.exp(0.2 + 0.4 * x1 + effect) * t).astype(float),
            "y_gamma": rng.gamma(2.0, np.exp(0.5 + 0.3 * x1 + effect) / 2.0),
            "y_gamma_inv": rng.gamma(3.0, 1.0 / (0.5 + 0.4 * x2 + 0.1 * (effect + 0.2)) / 3.0),
        }
    )
    frame.loc[rng.choice(n, size=n // 50, replace=False), "x1"] = np.nan  # missing values, listwise
    return frame


def design(frame: pd.DataFrame, interaction: bool = True) -> pd.DataFrame:
    """The pooled design matrix of `~ x1 + x2 + factor(g) + x1:x2` (treatment coding, reference "a"),
    written out by hand so that the federated design code is checked as well."""
    x = pd.DataFrame({"(Intercept)": 1.0, "x1": frame.x1, "x2": frame.x2}, index=frame.index)
    for level in ("b", "c", "d"):
        x[f"factor(g){level}"] = (frame.g == level).astype(float)
    if interaction:
        x["x1:x2"] = frame.x1 * frame.x2
    return x


def partition(frame: pd.DataFrame, sites: int, seed: int, minimum: int) -> list[pd.DataFrame]:
    """Split the rows of `frame` at random into `sites` parts of at least `minimum` rows each."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    spare = len(frame) - sites * minimum
    sizes = minimum + rng.multinomial(spare, rng.dirichlet(np.ones(sites)))
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [frame.iloc[order[a:b]].reset_index(drop=True) for a, b in itertools.pairwise(bounds)]
