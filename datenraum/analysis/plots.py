"""Vega-Lite v6 specifications of analysis results, built from released aggregates only.

Every builder takes what an `Analysis` call returned (pooled, suppressed, rounded at the sites) and
inlines it as `data.values` (no URLs, no expressions from user input), so a chart never shows more than
the result it draws. The portal renders them with the vendored vega-embed under the strict CSP.

- `km_curve`: Kaplan–Meier step curves with their pointwise intervals (a band per group) and a
  numbers-at-risk table under the plot (`Analysis.km`);
- `histogram`: counts per bin; a suppressed bin (count `None`) is drawn as a marked "suppressed" bin,
  never as a zero-height bar;
- `forest`: estimates with intervals per row (sites or coefficients) and an optional pooled diamond,
  with the line of no effect (1 for ratios, 0 otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["SCHEMA", "forest", "histogram", "km_curve"]

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"


def km_curve(result: Mapping[str, Any], *, risk_every: int = 6, width: int = 560) -> dict[str, Any]:
    """The curves of `Analysis.km(...)` with intervals and, every `risk_every` bins, the pooled numbers
    at risk per group (as released: rounded)."""
    points, risk = [], []
    for group, curve in result["curves"].items():
        for i, t in enumerate(curve["time"]):
            points.append(
                {
                    "group": group,
                    "time": t,
                    "survival": curve["survival"][i],
                    "ci_low": curve["ci_low"][i],
                    "ci_high": curve["ci_high"][i],
                }
            )
        for j in range(0, len(curve["n_risk"]), risk_every):
            risk.append({"group": group, "time": curve["bin_start"][j], "n_risk": curve["n_risk"][j]})
    unit = f"{result['time_variable']} (bins of {result['bin_width']:g})"
    x = {"field": "time", "type": "quantitative", "title": unit}
    colour = {"field": "group", "type": "nominal", "title": result.get("group") or "group"}
    curve_layer = {
        "width": width,
        "height": 300,
        "layer": [
            {
                "mark": {"type": "area", "interpolate": "step-after", "opacity": 0.2},
                "encoding": {
                    "x": x,
                    "y": {"field": "ci_low", "type": "quantitative"},
                    "y2": {"field": "ci_high"},
                    "color": colour,
                },
            },
            {
                "mark": {"type": "line", "interpolate": "step-after"},
                "encoding": {
                    "x": x,
                    "y": {
                        "field": "survival",
                        "type": "quantitative",
                        "title": "survival",
                        "scale": {"domain": [0, 1]},
                    },
                    "color": colour,
                    "tooltip": [
                        {"field": "group"},
                        {"field": "time", "type": "quantitative"},
                        {"field": "survival", "type": "quantitative", "format": ".3f"},
                        {"field": "ci_low", "type": "quantitative", "format": ".3f"},
                        {"field": "ci_high", "type": "quantitative", "format": ".3f"},
                    ],
                },
            },
        ],
        "data": {"values": points},
    }
    risk_table = {
        "width": width,
        "title": {"text": "numbers at risk", "fontSize": 11, "anchor": "start"},
        "data": {"values": risk},
        "mark": {"type": "text"},
        "encoding": {
            "x": {"field": "time", "type": "quantitative", "title": None, "axis": None},
            "y": {"field": "group", "type": "nominal", "title": None},
            "text": {"field": "n_risk", "type": "quantitative"},
        },
    }
    return {
        "$schema": SCHEMA,
        "title": f"Kaplan–Meier: {result['event_variable']} ({len(result['sites'])} sites)",
        "vconcat": [curve_layer, risk_table],
        "resolve": {"scale": {"x": "shared"}},
    }


def histogram(
    edges: Sequence[float], counts: Sequence[int | None], *, variable: str, k: int | None = None
) -> dict[str, Any]:
    """Bars of released counts between `edges`; a suppressed bin (None) is a hatched-grey bin across the
    plot labelled "suppressed" (and "< k" when k is given), with no count."""
    if len(edges) != len(counts) + 1:
        raise ValueError("expected one more edge than counts")
    values = [
        {
            "start": edges[i],
            "end": edges[i + 1],
            "count": c,
            "suppressed": c is None,
            "label": "suppressed" + (f" (< {k})" if k else "") if c is None else str(c),
        }
        for i, c in enumerate(counts)
    ]
    x = {"field": "start", "type": "quantitative", "bin": {"binned": True}, "title": variable}
    return {
        "$schema": SCHEMA,
        "title": f"{variable}",
        "width": 560,
        "height": 240,
        "data": {"values": values},
        "layer": [
            {
                "transform": [{"filter": "!datum.suppressed"}],
                "mark": {"type": "bar"},
                "encoding": {
                    "x": x,
                    "x2": {"field": "end"},
                    "y": {"field": "count", "type": "quantitative", "title": "count"},
                    "tooltip": [{"field": "start"}, {"field": "end"}, {"field": "label", "title": "count"}],
                },
            },
            {
                "transform": [{"filter": "datum.suppressed"}],
                "mark": {"type": "rect", "color": "#bbbbbb", "opacity": 0.5, "strokeDash": [4, 2]},
                "encoding": {
                    "x": x,
                    "x2": {"field": "end"},
                    "tooltip": [{"field": "start"}, {"field": "end"}, {"field": "label", "title": "count"}],
                },
            },
            {
                "transform": [{"filter": "datum.suppressed"}],
                "mark": {"type": "text", "angle": 270, "align": "left", "dx": 4, "y": 0},
                "encoding": {
                    "x": {"field": "start", "type": "quantitative"},
                    "text": {"value": "suppressed"},
                },
            },
        ],
    }


def forest(
    rows: Sequence[Mapping[str, Any]],
    *,
    pooled: Mapping[str, Any] | None = None,
    ratio: bool = False,
    title: str = "",
) -> dict[str, Any]:
    """One row per `{label, estimate, ci_low, ci_high}` (e.g. a site's hazard ratio), the pooled one as
    a diamond below; `ratio` draws a log axis and the line of no effect at 1, else at 0."""
    values = [{**dict(r), "kind": "estimate"} for r in rows]
    if pooled is not None:
        values.append({**dict(pooled), "kind": "pooled"})
    order = [v["label"] for v in values]
    scale = {"type": "log"} if ratio else {"zero": False}
    x = {"field": "estimate", "type": "quantitative", "scale": scale, "title": title or "estimate"}
    y = {"field": "label", "type": "nominal", "sort": order, "title": None}
    return {
        "$schema": SCHEMA,
        "title": title or "forest plot",
        "width": 480,
        "height": {"step": 24},
        "data": {"values": values},
        "layer": [
            {
                "mark": {"type": "rule"},
                "encoding": {
                    "x": {"field": "ci_low", "type": "quantitative"},
                    "x2": {"field": "ci_high"},
                    "y": y,
                },
            },
            {
                "mark": {"type": "point", "filled": True, "shape": "square"},
                "transform": [{"filter": "datum.kind == 'estimate'"}],
                "encoding": {"x": x, "y": y},
            },
            {
                "mark": {"type": "point", "filled": True, "shape": "diamond", "size": 200},
                "transform": [{"filter": "datum.kind == 'pooled'"}],
                "encoding": {"x": x, "y": y},
            },
            {
                "data": {"values": [{"null": 1.0 if ratio else 0.0}]},
                "mark": {"type": "rule", "strokeDash": [4, 4]},
                "encoding": {"x": {"field": "null", "type": "quantitative"}},
            },
        ],
    }
