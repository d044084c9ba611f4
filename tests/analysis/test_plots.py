"""Vega-Lite specs of analysis results hold the released aggregates and nothing else."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from datenraum.analysis import Analysis
from datenraum.analysis.plots import SCHEMA, forest, histogram, km_curve
from datenraum.privacy.analysis import AnalysisPolicy

from .helpers import sites_of


def _km_result() -> dict:
    rng = np.random.default_rng(11)
    frames = [
        pd.DataFrame(
            {
                "days": rng.exponential(300.0, 120),
                "died": (rng.uniform(size=120) < 0.6).astype(float),
                "arm": rng.choice(["a", "b"], 120),
            }
        )
        for _ in range(3)
    ]
    policy = AnalysisPolicy()
    return Analysis(sites_of(frames, policy), policy=policy).km("days", "died", group="arm")


def test_km_curve_spec_holds_the_released_curve_and_numbers_at_risk() -> None:
    result = _km_result()
    spec = km_curve(result, risk_every=3)
    assert spec["$schema"] == SCHEMA
    plot, table = spec["vconcat"]
    points = plot["data"]["values"]
    assert len(points) == sum(len(c["time"]) for c in result["curves"].values())
    marks = [layer["mark"] for layer in plot["layer"]]
    assert marks[0]["type"] == "area" and marks[1]["type"] == "line"
    assert all(m["interpolate"] == "step-after" for m in marks)
    assert all(p["time"] % result["bin_width"] == 0 for p in points)  # bin ends only
    for group, curve in result["curves"].items():
        shown = [r["n_risk"] for r in table["data"]["values"] if r["group"] == group]
        assert shown == curve["n_risk"][::3]
        assert all(n % 5 == 0 and n >= 5 for n in shown)  # as released: rounded, >= k
    assert "url" not in json.dumps(spec)


def test_histogram_shows_suppressed_bins_as_suppressed_not_zero() -> None:
    spec = histogram([0, 1, 2, 3, 4], [12, None, 0, 7], variable="bmi", k=5)
    values = spec["data"]["values"]
    assert [v["suppressed"] for v in values] == [False, True, False, False]
    assert values[1]["count"] is None and values[1]["label"] == "suppressed (< 5)"
    assert values[2]["count"] == 0  # a true zero stays a zero
    bars, shade, label = spec["layer"]
    assert bars["transform"] == [{"filter": "!datum.suppressed"}]
    assert shade["transform"] == [{"filter": "datum.suppressed"}] and "y" not in shade["encoding"]
    assert label["encoding"]["text"] == {"value": "suppressed"}


def test_forest_plot_has_rows_pooled_diamond_and_null_line() -> None:
    rows = [
        {"label": "site1", "estimate": 1.2, "ci_low": 0.9, "ci_high": 1.6},
        {"label": "site2", "estimate": 0.8, "ci_low": 0.5, "ci_high": 1.3},
    ]
    spec = forest(
        rows, pooled={"label": "pooled", "estimate": 1.0, "ci_low": 0.8, "ci_high": 1.25}, ratio=True
    )
    values = spec["data"]["values"]
    assert [v["label"] for v in values] == ["site1", "site2", "pooled"]
    assert [v["kind"] for v in values] == ["estimate", "estimate", "pooled"]
    layers = spec["layer"]
    assert layers[2]["mark"]["shape"] == "diamond"
    assert layers[3]["data"]["values"] == [{"null": 1.0}]
    assert layers[1]["encoding"]["x"]["scale"] == {"type": "log"}
    linear = forest(rows)
    assert linear["layer"][3]["data"]["values"] == [{"null": 0.0}]
