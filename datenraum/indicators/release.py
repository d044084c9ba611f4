"""Pooling sites' cubes and releasing the pooled numbers under the disclosure rules (brief E1, rules 1-6).

`pool(deliveries, disease, indicator)`: the sum over sites of every cell, with `n_sites` per period (the
sites whose data reach that period). `release(pooled, indicator, k, min_sites)`: the rows as they may be
shown:

1. nothing from fewer than `min_sites` sites (default 3): such a period is withheld (`null`, with
   `withheld: "fewer than 3 sites"`); per-site series are the members' view, not this;
2. values 1..k-1 are `null` with `suppressed: true`; 0 stays 0;
3. complementary suppression in every released table: per period, the strata along each dimension and
   their margin (`datenraum.privacy.cells`); for daily series also the days of each ISO week, whose weekly
   count is published too;
4. no cumulative series is released at all (a running total beside a daily series would give away every
   suppressed day by differencing); 7-day averages are computed from released values only, and only when
   all seven are released; regions fall back to a coarser level: the federal states that would be
   suppressed more often than shown are merged into one stratum (`MERGED_STATES`, "other states") before
   the rules above, when there are at least two of them (one alone would only be renamed);
5. distributions (length of stay) only as binned counts under the same rules;
6. every row carries `n_sites`; the series carries `data_as_of` and `definitions_version`.

Releases follow one another (new deliveries, a site dropping out after 48 hours), and whoever kept the
earlier ones can subtract: a cell shown as 20 and later as 17 tells the 3 of the site that left, and a
merged stratum `other` shown once and its states shown apart later tell the state that stays small.
`History` is what a series has shown so far, and `release(..., history=...)` keeps it safe:

7. the merged federal states are fixed by the first release that shows anything, and kept for good;
8. a cell whose value differs by 1..k-1 from any value it showed before is hidden like a small one (and
   protected by complementary suppression like one); `remember` adds a release to the history.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from datenraum.indicators.cube import DIMENSIONS
from datenraum.indicators.registry import Indicator
from datenraum.privacy.cells import DEFAULT_K, margin_groups, suppress

__all__ = [
    "DEFAULT_MIN_SITES",
    "MERGED_STATES",
    "Delivery",
    "History",
    "Pooled",
    "merge_small_states",
    "merge_states",
    "moving_average",
    "pool",
    "release",
    "remember",
    "small_states",
]

DEFAULT_MIN_SITES = 3
MERGED_STATES = "other"
_STATE = DIMENSIONS.index("state")

Cell = tuple[str, tuple[str | None, ...]]


@dataclass(frozen=True)
class Delivery:
    site: str
    cube: dict[str, Any]

    @property
    def as_of(self) -> dt.date:
        return dt.date.fromisoformat(self.cube["data_as_of"])


@dataclass(frozen=True)
class Pooled:
    disease: str
    indicator: str
    #: (period, stratum) -> summed value
    values: dict[tuple[str, tuple[str | None, ...]], int]
    #: period -> number of sites whose data cover it
    n_sites: dict[str, int]
    periods: list[str]
    data_as_of: str | None
    definitions_version: str | None
    sites: tuple[str, ...]


@dataclass(frozen=True)
class History:
    """What one series has released so far: the merged states (None until something was shown) and
    every value each (period, stratum) cell has shown."""

    merged: frozenset[str] | None = None
    shown: Mapping[Cell, frozenset[int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "merged": None if self.merged is None else sorted(self.merged),
            "shown": [
                [period, list(stratum), sorted(values)] for (period, stratum), values in self.shown.items()
            ],
        }

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> History:
        merged = body.get("merged")
        return cls(
            None if merged is None else frozenset(merged),
            {
                (period, tuple(stratum)): frozenset(values)
                for period, stratum, values in body.get("shown", ())
            },
        )


def _periods(start: dt.date, end: dt.date, bucket: str) -> list[str]:
    if bucket == "iso_week":
        out: list[str] = []
        day = start - dt.timedelta(days=start.weekday())
        while day <= end:
            year, week, _ = day.isocalendar()
            out.append(f"{year}-W{week:02d}")
            day += dt.timedelta(days=7)
        return out
    return [(start + dt.timedelta(days=n)).isoformat() for n in range((end - start).days + 1)]


def _covers(period: str, as_of: dt.date) -> bool:
    if "W" in period:
        year, week = period.split("-W")
        return dt.date.fromisocalendar(int(year), int(week), 1) <= as_of
    return dt.date.fromisoformat(period) <= as_of


def pool(deliveries: Sequence[Delivery], disease: str, indicator: Indicator, start: dt.date) -> Pooled:
    """The sum of the sites' cells of one series (sites without the series do not count)."""
    values: dict[tuple[str, tuple[str | None, ...]], int] = defaultdict(int)
    used: list[Delivery] = []
    for delivery in deliveries:
        entry = next(
            (
                s
                for s in delivery.cube["series"]
                if s["disease"] == disease and s["indicator"] == indicator.id
            ),
            None,
        )
        if entry is None:
            continue
        used.append(delivery)
        for row in entry["rows"]:
            values[row[0], tuple(row[1:-1])] += row[-1]
    if not used:
        return Pooled(disease, indicator.id, {}, {}, [], None, None, ())
    end = max(d.as_of for d in used)
    periods = _periods(start, end, indicator.bucket)
    n_sites = {p: sum(1 for d in used if _covers(p, d.as_of)) for p in periods}
    versions = {d.cube["definitions_version"] for d in used}
    return Pooled(
        disease,
        indicator.id,
        dict(values),
        n_sites,
        periods,
        min(d.cube["data_as_of"] for d in used),
        versions.pop() if len(versions) == 1 else "mixed",
        tuple(sorted(d.site for d in used)),
    )


def small_states(values: Mapping[Cell, int], k: int) -> frozenset[str]:
    """The federal states to merge: those whose own cells (broken down by state only) are in 1..k-1 in
    more periods than they are k or more, when there are at least two of them (one alone would only be
    renamed)."""
    small: dict[str, int] = defaultdict(int)
    for (_period, stratum), value in values.items():
        state = stratum[_STATE]
        if state is None or any(part is not None for i, part in enumerate(stratum) if i != _STATE):
            continue
        if 0 < value < k:
            small[state] += 1
        elif value >= k:
            small[state] -= 1
    merged = frozenset(state for state, balance in small.items() if balance > 0)
    return merged if len(merged) >= 2 else frozenset()


def merge_states(values: Mapping[Cell, int], states: frozenset[str]) -> dict[Cell, int]:
    """`values` with `states` merged into `MERGED_STATES`, the same in every period and stratum, so that
    the series stays comparable over time."""
    if not states:
        return dict(values)
    out: dict[Cell, int] = defaultdict(int)
    for (period, stratum), value in values.items():
        if stratum[_STATE] in states:
            stratum = (*stratum[:_STATE], MERGED_STATES, *stratum[_STATE + 1 :])
        out[period, stratum] += value
    return dict(out)


def merge_small_states(values: Mapping[Cell, int], k: int) -> dict[Cell, int]:
    """`values` with the small federal states (`small_states`) merged into `MERGED_STATES`."""
    return merge_states(values, small_states(values, k))


def _iso_week(day: str) -> str:
    year, week, _ = dt.date.fromisoformat(day).isocalendar()
    return f"{year}-W{week:02d}"


def release(
    pooled: Pooled,
    indicator: Indicator,
    *,
    k: int = DEFAULT_K,
    min_sites: int = DEFAULT_MIN_SITES,
    history: History = History(),
) -> list[dict[str, Any]]:
    """The released rows of a pooled series: every period, the total and each stratum's cells. With the
    series' `history`, nothing in it can be subtracted from these rows to give a value in 1..k-1."""
    total_key: tuple[str | None, ...] = (None,) * len(DIMENSIONS)
    by_period: dict[str, dict[tuple[str | None, ...], int]] = defaultdict(dict)
    merged = small_states(pooled.values, k) if history.merged is None else history.merged
    for (period, stratum), value in merge_states(pooled.values, merged).items():
        by_period[period][stratum] = value
    has_total = indicator.kind != "length_of_stay"
    margins: list[tuple[Any, list[Any]]] = []
    flat: dict[tuple[str, tuple[str | None, ...]], int] = {}
    for period in pooled.periods:
        cells = dict(by_period.get(period, {}))
        if has_total:
            cells.setdefault(total_key, 0)
        for stratum, value in cells.items():
            flat[period, stratum] = value
        for margin, children in margin_groups(cells):
            margins.append(((period, margin), [(period, c) for c in children]))
    if indicator.bucket == "day" and has_total:
        weeks: dict[str, list[Any]] = defaultdict(list)
        for period in pooled.periods:
            weeks[_iso_week(period)].append((period, total_key))
        margins.extend((None, days) for days in weeks.values())
    hidden = suppress(flat, k, margins=margins, sensitive=_differencing(flat, history, k))
    rows: list[dict[str, Any]] = []
    for period in pooled.periods:
        n_sites = pooled.n_sites.get(period, 0)
        withheld = n_sites < min_sites
        keys = [total_key] if has_total else []
        keys.extend(
            sorted(
                (s for s in by_period.get(period, {}) if s != total_key),
                key=lambda s: tuple(v or "" for v in s),
            )
        )
        for stratum in keys:
            value = flat.get((period, stratum), 0)
            row: dict[str, Any] = {"period": period}
            row.update({name: part for name, part in zip(DIMENSIONS, stratum, strict=True)})
            if withheld:
                row.update(value=None, suppressed=False, withheld=f"fewer than {min_sites} sites")
            elif (period, stratum) in hidden:
                row.update(value=None, suppressed=True)
            else:
                row.update(value=value, suppressed=False)
            row["n_sites"] = n_sites
            rows.append(row)
    return rows


def _differencing(flat: Mapping[Cell, int], history: History, k: int) -> set[Cell]:
    """The cells whose value differs by 1..k-1 from a value they showed before."""
    return {
        cell
        for cell, value in flat.items()
        if any(0 < abs(value - before) < k for before in history.shown.get(cell, ()))
    }


def remember(history: History, pooled: Pooled, rows: Sequence[Mapping[str, Any]], k: int) -> History:
    """`history` with the values `rows` (a `release` of `pooled`) show; the merged states are fixed by the
    first release that shows a value."""
    shown = dict(history.shown)
    for row in rows:
        if row["value"] is None:
            continue
        cell = (row["period"], tuple(row[name] for name in DIMENSIONS))
        shown[cell] = shown.get(cell, frozenset()) | {row["value"]}
    merged = history.merged
    if merged is None and shown:
        merged = small_states(pooled.values, k)
    return History(merged, shown)


def moving_average(values: Sequence[int | None], window: int = 7) -> list[float | None]:
    """Trailing averages of released values; None where any of the window is not released."""
    out: list[float | None] = []
    for index in range(len(values)):
        part = values[max(0, index - window + 1) : index + 1]
        if len(part) < window or any(v is None for v in part):
            out.append(None)
        else:
            out.append(round(sum(part) / window, 2))  # type: ignore[arg-type]
    return out
