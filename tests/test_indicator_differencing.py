"""Differencing across releases: whoever keeps every release of a series subtracts one from another.
Each attack runs against the release rules without a history (where it works) and with one (where it
must not)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from datenraum.indicators.cube import COLUMNS, CUBE_FORMAT
from datenraum.indicators.registry import default_registry
from datenraum.indicators.release import (
    MERGED_STATES,
    Delivery,
    History,
    Pooled,
    pool,
    release,
    remember,
)

START = dt.date(2021, 1, 4)  # a Monday: the days fall into whole ISO weeks
K = 5
INDICATOR = default_registry().indicators["new_inpatient_cases"]


def cube(events: Counter[tuple[str, str]], as_of: dt.date) -> dict[str, Any]:
    """A cube of new inpatient cases from (day, federal state) -> count."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for (day, state), n in events.items():
        counts[day, None, None, None, None, None] += n
        counts[day, None, None, None, state, None] += n
    return {
        "format": CUBE_FORMAT,
        "data_as_of": as_of.isoformat(),
        "definitions_version": "v",
        "columns": list(COLUMNS[1:]),
        "series": [
            {
                "disease": "covid19",
                "indicator": "new_inpatient_cases",
                "rows": [[*key, n] for key, n in sorted(counts.items(), key=lambda kv: str(kv[0]))],
            }
        ],
    }


def day(n: int) -> str:
    return (START + dt.timedelta(days=n)).isoformat()


def shown(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None], int]:
    return {(r["period"], r["state"]): r["value"] for r in rows if r["value"] is not None}


def releases(pooled: list[Pooled], *, remembered: bool) -> list[dict[tuple[str, str | None], int]]:
    """Each pooled state released in turn, with the history of the earlier ones or without any."""
    history, out = History(), []
    for one in pooled:
        rows = release(one, INDICATOR, k=K, history=history if remembered else History())
        history = remember(history, one, rows, K)
        out.append(shown(rows))
    return out


def same_cell_differences(published: list[dict[tuple[str, str | None], int]]) -> list[int]:
    """Every value in 1..k-1 an attacker gets by subtracting a cell's value in one release from another."""
    out = []
    for index, earlier in enumerate(published):
        for later in published[index + 1 :]:
            out += [abs(v - later[c]) for c, v in earlier.items() if c in later and 0 < abs(v - later[c]) < K]
    return out


def test_a_site_dropping_out_cannot_be_subtracted_out() -> None:
    # Four sites with 10 cases every day in BY; site d had 3 on day 2. Then d goes silent (48 hours).
    days = range(14)
    events = {site: Counter({(day(n), "BY"): 10 for n in days}) for site in "abcd"}
    events["d"][day(2), "BY"] = 3
    as_of = START + dt.timedelta(days=13)
    everyone = [Delivery(site, cube(e, as_of)) for site, e in events.items()]
    before = pool(everyone, "covid19", INDICATOR, START)
    after = pool(everyone[:3], "covid19", INDICATOR, START)

    naive = releases([before, after], remembered=False)
    assert naive[0][day(2), None] - naive[1][day(2), None] == 3  # site d's 3: the attack works
    assert 3 in same_cell_differences(naive)

    kept = releases([before, after], remembered=True)
    assert same_cell_differences(kept) == []
    assert (day(2), None) not in kept[1] and (day(2), "BY") not in kept[1]
    # ... and the hidden day is not the difference of its week's published days either.
    week = [c for c in [(day(n), None) for n in range(7)] if c not in kept[1]]
    assert len(week) >= 2


def test_a_merged_region_cannot_be_taken_apart_by_a_later_release() -> None:
    # Ten days: SL small on nine of them and HB always (merged into "other"); twenty more days arrive
    # on which SL is large, so SL alone would no longer be merged, and HB alone is never merged.
    def events(days: int) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        for n in range(days):
            out[day(n), "BY"] = 50
            out[day(n), "NI"] = 5 if n == 9 else 20
            out[day(n), "SL"] = 7 if n == 9 else (3 if n < 9 else 8)
            out[day(n), "HB"] = 2
        return out

    def pooled(days: int) -> Pooled:
        as_of = START + dt.timedelta(days=days - 1)
        # Three sites: the first has every case, the others none (but they count towards n_sites).
        empty = Counter[tuple[str, str]]()
        deliveries = [Delivery("a", cube(events(days), as_of))]
        deliveries += [Delivery(site, cube(empty, as_of)) for site in "bc"]
        return pool(deliveries, "covid19", INDICATOR, START)

    first, second = pooled(10), pooled(30)
    naive = releases([first, second], remembered=False)
    assert naive[0][day(9), MERGED_STATES] == 9 and (day(9), MERGED_STATES) not in naive[1]
    assert naive[0][day(9), MERGED_STATES] - naive[1][day(9), "SL"] == 2  # HB's 2: the attack works

    kept = releases([first, second], remembered=True)
    states = [{state for _period, state in release} for release in kept]
    assert states[0] == states[1] == {None, "BY", "NI", MERGED_STATES}
    assert kept[1][day(9), MERGED_STATES] == 9 and kept[1][day(20), MERGED_STATES] == 10
    assert same_cell_differences(kept) == []


def test_a_history_survives_its_json() -> None:
    pooled = pool(
        [Delivery(s, cube(Counter({(day(0), "BY"): 9, (day(0), "HB"): 1}), START)) for s in "abc"],
        "covid19",
        INDICATOR,
        START,
    )
    history = remember(History(), pooled, release(pooled, INDICATOR, k=K), K)
    assert history.shown[day(0), (None,) * 5] == {30}
    assert History.from_json(history.to_json()) == history


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_no_sequence_of_releases_differs_by_less_than_k(seed: int) -> None:
    # Sites deliver growing data, some drop out and come back: over every pair of releases no cell
    # differs by 1..k-1, and the merged states never change once something was shown.
    rng = random.Random(seed)
    sites = "abcde"
    states = ("BY", "NW", "HB", "SL", "BE")
    events = {site: Counter[tuple[str, str]]() for site in sites}
    pooled = []
    for step in range(4):
        as_of = START + dt.timedelta(days=7 * (step + 1) - 1)
        for site in sites:
            for _ in range(rng.randrange(60)):
                state = rng.choices(states, weights=(10, 10, 1, 1, 3))[0]
                events[site][day(rng.randrange(7 * (step + 1))), state] += 1
        present = [s for s in sites if rng.random() < 0.8] or list(sites)
        pooled.append(
            pool([Delivery(s, cube(events[s], as_of)) for s in present], "covid19", INDICATOR, START)
        )
    history, kept, pinned = History(), [], set()
    for one in pooled:
        rows = release(one, INDICATOR, k=K, history=history)
        history = remember(history, one, rows, K)
        kept.append(shown(rows))
        if history.merged is not None:
            pinned.add(history.merged)
            assert not {r["state"] for r in rows} & history.merged
    assert same_cell_differences(kept) == []
    assert not [v for release in kept for v in release.values() if 0 < v < K]
    assert len(pinned) <= 1
