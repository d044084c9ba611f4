"""Vega-Lite v6 specifications for the dashboard, built from released rows by a whitelist of chart types.

Specs are plain dicts with the data inlined (`data.values`, no URLs), never built from user input; the
page embeds them as JSON data and renders them with the vendored vega-embed under the strict CSP
(`ast: true`, see `hub/portal/static/charts.js`). A suppressed or withheld point has value `null`:
Vega-Lite leaves a gap there (its default for invalid values breaks the line and draws no point), and the
footnote says why.

- `time_series`: daily or weekly totals as a line with points, plus the 7-day average;
- `stacked_levels`: inpatients by highest care level, stacked areas;
- `bars`: the latest period's cells of one dimension (age group, sex);
- `small_multiples`: one small line chart per federal state.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CHART_TYPES", "bars", "small_multiples", "stacked_levels", "time_series"]

SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
CHART_TYPES = ("time_series", "stacked_levels", "bars", "small_multiples")
_DIMENSIONS = ("level", "sex", "age_rki", "state", "los_bin")
_LEVEL_ORDER = ["ward", "icu", "ventilation", "ecmo"]


def _is_total(row: dict[str, Any]) -> bool:
    return all(row.get(d) is None for d in _DIMENSIONS)


def _only(rows: list[dict[str, Any]], dimension: str) -> list[dict[str, Any]]:
    return [
        r
        for r in rows
        if r.get(dimension) is not None and all(r.get(d) is None for d in _DIMENSIONS if d != dimension)
    ]


def _x(bucket: str) -> dict[str, Any]:
    if bucket == "day":
        return {"field": "period", "type": "temporal", "title": "day"}
    return {"field": "period", "type": "ordinal", "title": "ISO week", "axis": {"labelOverlap": True}}


def _base(title: str, values: list[dict[str, Any]], width: int = 640, height: int = 220) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "title": title,
        "width": width,
        "height": height,
        "data": {"values": values},
    }


def _tooltip(extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"field": "period", "title": "period"},
        *({"field": e} for e in extra),
        {"field": "value", "type": "quantitative", "title": "value"},
        {"field": "n_sites", "type": "quantitative", "title": "sites"},
        {"field": "note", "title": "note"},
    ]


def _values(rows: list[dict[str, Any]], keep: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        note = "suppressed (fewer than k)" if r.get("suppressed") else r.get("withheld") or ""
        out.append(
            {
                "period": r["period"],
                **{k: r.get(k) for k in keep},
                "value": r.get("value"),
                "n_sites": r.get("n_sites"),
                "note": note,
                **({"average_7d": r.get("average_7d")} if "average_7d" in r else {}),
            }
        )
    return out


def time_series(title: str, rows: list[dict[str, Any]], bucket: str) -> dict[str, Any]:
    """Totals over time: a line with a point per released value, and the 7-day average as a second line."""
    values = _values([r for r in rows if _is_total(r)])
    layers: list[dict[str, Any]] = [
        {
            "mark": {"type": "line", "point": {"filled": True, "size": 18}},
            "encoding": {
                "x": _x(bucket),
                "y": {"field": "value", "type": "quantitative", "title": "count"},
                "tooltip": _tooltip(),
            },
        }
    ]
    if bucket == "day":
        layers.append(
            {
                "mark": {"type": "line", "strokeDash": [4, 2], "color": "#c0392b"},
                "encoding": {
                    "x": _x(bucket),
                    "y": {"field": "average_7d", "type": "quantitative", "title": "7-day average"},
                },
            }
        )
    return {**_base(title, values), "layer": layers}


def stacked_levels(title: str, rows: list[dict[str, Any]], bucket: str) -> dict[str, Any]:
    values = _values(_only(rows, "level"), ("level",))
    return {
        **_base(title, values),
        "mark": {"type": "area"},
        "encoding": {
            "x": _x(bucket),
            "y": {"field": "value", "type": "quantitative", "stack": "zero", "title": "inpatients"},
            "color": {
                "field": "level",
                "type": "nominal",
                "sort": _LEVEL_ORDER,
                "scale": {"domain": _LEVEL_ORDER},
            },
            "order": {"field": "level_order", "type": "quantitative"},
            "tooltip": _tooltip(("level",)),
        },
        "transform": [
            {"calculate": "indexof(['ward','icu','ventilation','ecmo'], datum.level)", "as": "level_order"}
        ],
    }


def bars(title: str, rows: list[dict[str, Any]], dimension: str) -> dict[str, Any]:
    """The cells of one dimension summed over the periods shown (released values only)."""
    cells = _only(rows, dimension)
    totals: dict[str, dict[str, Any]] = {}
    for r in cells:
        entry = totals.setdefault(
            r[dimension],
            {"period": "all", dimension: r[dimension], "value": 0, "n_sites": r.get("n_sites"), "note": ""},
        )
        if r.get("value") is None:
            entry["note"] = "some periods suppressed; not shown"
            entry["value"] = None
        elif entry["value"] is not None:
            entry["value"] += r["value"]
    values = sorted(totals.values(), key=lambda v: v[dimension])
    return {
        **_base(title, values, height=180),
        "mark": {"type": "bar"},
        "encoding": {
            "x": {"field": dimension, "type": "nominal", "sort": None},
            "y": {"field": "value", "type": "quantitative"},
            "tooltip": _tooltip((dimension,)),
        },
    }


def small_multiples(title: str, rows: list[dict[str, Any]], bucket: str) -> dict[str, Any]:
    values = _values(_only(rows, "state"), ("state",))
    return {
        "$schema": SCHEMA,
        "title": title,
        "data": {"values": values},
        "facet": {"field": "state", "type": "nominal", "title": "federal state"},
        "columns": 4,
        "spec": {
            "width": 150,
            "height": 70,
            "mark": {"type": "line", "point": {"filled": True, "size": 8}},
            "encoding": {
                "x": {**_x(bucket), "title": None},
                "y": {"field": "value", "type": "quantitative", "title": None},
                "tooltip": _tooltip(("state",)),
            },
        },
    }
