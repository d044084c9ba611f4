"""Attacks on the pooled Cox model's per-bin risk-set sums, written as an analyst would run them.

At beta = 0 a site's `cox.step` answer holds, per time bin, the count and the sum of x of everyone at
risk (s0, s1), of the bin's events (d, e0, e1) and so of the bin's censored (the rest of the leavers).
Two released sets whose difference is one person give away that person's covariates, binned time and
event. The attacks look for such a difference within one answer (between bins) and between two
answers on the same rows that only differ in the bin width; both must come back empty-handed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd

from datenraum.privacy.analysis import AnalysisPolicy

from .helpers import sites_of

SECRET = 3.7  # the covariate value of the one person the attacker wants
POLICY = AnalysisPolicy(rounding=1)


def cox_answer(frame: pd.DataFrame, width: float, ties: str = "efron") -> dict:
    sites = sites_of([frame], POLICY)
    answer = sites.executors["site1"].handle(
        {
            "v": 1,
            "op": "cox.step",
            "project": "p",
            "analyst": "a",
            "data": {"table": "data"},
            "where": [],
            "time": "days",
            "event": "died",
            "bin_width": width,
            "covariates": ["x"],
            "beta": [0.0],
            "ties": ties,
        }
    )
    assert answer["ok"], answer
    return answer["result"]


def released_sets(result: dict) -> Iterator[tuple[float, float]]:
    """(count, sum of x) of every set whose sums one answer releases at beta = 0: the risk set at each
    bin's start, each bin's events, each bin's censored."""
    d, s0, s1 = (np.asarray(result[k], dtype=float) for k in ("d", "s0", "s1"))
    e0, e1 = np.asarray(result["e0"], dtype=float), np.asarray(result["e1"], dtype=float)
    nxt0, nxt1 = np.r_[s0[1:], 0.0], np.r_[s1[1:], 0.0]
    for b in range(len(d)):
        yield s0[b], s1[b]
        yield e0[b], e1[b]
        yield s0[b] - nxt0[b] - e0[b], s1[b] - nxt1[b] - e1[b]


def isolate(*results: dict) -> list[float]:
    """Every x value the attacker reads off a difference of one person between two released sets."""
    sets = [s for r in results for s in released_sets(r)]
    found = []
    for (n_a, x_a), (n_b, x_b) in itertools.combinations(sets, 2):
        if abs(abs(n_a - n_b) - 1) < 1e-9:
            found.append(abs(x_a - x_b))
        for n, x in ((n_a, x_a), (n_b, x_b)):
            if abs(n - 1) < 1e-9:
                found.append(x)
    return found


def cells(rng: np.random.Generator, start: float, stop: float, events: int, censored: int) -> pd.DataFrame:
    n = events + censored
    return pd.DataFrame(
        {
            "days": rng.uniform(start, stop, n),
            "died": np.r_[np.ones(events), np.zeros(censored)],
            "x": rng.normal(size=n).round(3),
        }
    )


def target(days: float, died: float) -> pd.DataFrame:
    return pd.DataFrame({"days": [days], "died": [died], "x": [SECRET]})


def test_one_person_alone_in_a_bin_is_not_isolated_by_differencing_risk_sets() -> None:
    rng = np.random.default_rng(1)
    frame = pd.concat(
        [
            cells(rng, 0, 30, 6, 6),
            target(40.0, 1.0),  # the only one to leave in [30, 60)
            *(cells(rng, 30 * b, 30 * b + 30, 6, 6) for b in range(2, 8)),
        ],
        ignore_index=True,
    )
    result = cox_answer(frame, 30.0)
    assert not any(np.isclose(found, SECRET) for found in isolate(result))
    for count, _ in released_sets(result):
        assert count == 0 or count >= POLICY.min_cell


def test_one_event_among_censored_is_not_isolated_by_efron_sums() -> None:
    rng = np.random.default_rng(2)
    frame = pd.concat(
        [
            cells(rng, 0, 30, 6, 6),
            target(45.0, 1.0),  # the one event of [30, 60), among censored
            cells(rng, 30, 60, 0, 8),
            *(cells(rng, 30 * b, 30 * b + 30, 6, 6) for b in range(2, 8)),
        ],
        ignore_index=True,
    )
    result = cox_answer(frame, 30.0)
    assert not any(np.isclose(found, SECRET) for found in isolate(result))


def test_two_bin_widths_on_the_same_rows_do_not_isolate_one_person() -> None:
    """Each answer alone has at least k in every set; the target is alone in [60, 90), which the
    60-day bins put at risk at day 60 and the 90-day bins do not at day 90."""
    rng = np.random.default_rng(3)
    frame = pd.concat(
        [
            cells(rng, 0, 30, 6, 6),
            cells(rng, 30, 60, 6, 6),
            target(70.0, 0.0),
            *(cells(rng, 30 * b, 30 * b + 30, 6, 6) for b in range(3, 12)),
        ],
        ignore_index=True,
    )
    sixty, ninety = cox_answer(frame, 60.0, "breslow"), cox_answer(frame, 90.0, "breslow")
    pairs = [
        abs(a1 - b1)
        for (a0, a1), (b0, b1) in itertools.product(
            zip(sixty["s0"], sixty["s1"], strict=True), zip(ninety["s0"], ninety["s1"], strict=True)
        )
        if abs(abs(a0 - b0) - 1) < 1e-9
    ]
    assert not any(np.isclose(found, SECRET) for found in pairs)


def test_a_time_far_out_is_a_clear_error_not_a_huge_answer() -> None:
    rng = np.random.default_rng(4)
    frame = pd.concat([cells(rng, 0, 300, 20, 20), target(1e15, 0.0)], ignore_index=True)
    sites = sites_of([frame], POLICY)
    body = {
        "v": 1,
        "project": "p",
        "analyst": "a",
        "data": {"table": "data"},
        "time": "days",
        "event": "died",
        "bin_width": 30.0,
    }
    cox = {"op": "cox.step", "covariates": ["x"], "beta": [0.0], "ties": "breslow"}
    for request in ({**body, "op": "km"}, {**body, **cox}):
        answer = sites.executors["site1"].handle(request)
        assert not answer["ok"]
        assert answer["error"]["code"] == "bad_request"
        assert "days: the times span more than 10000 bins of 30" in answer["error"]["message_en"]
