"""Rules the hub applies before showing federated results to a researcher.

- A total is shown only when at least `min_sites` sites contributed a count: with fewer, the total is
  one or two hospitals' answers in disguise.
- A researcher may submit only so many queries per minute, hour and day: a differencing attack needs
  many near-identical queries, and an honest researcher does not. A submission answered from a stored
  result does not count: it asks no site and reveals nothing new (`check_quota`).
- A submission that is a *near-duplicate* of one of the same researcher's submissions in the previous
  `near_duplicate_window` (one hour) counts `near_duplicate_weight` (2) times: the question with one
  criterion or one group added or removed (`canonical.near_duplicates`). Such pairs are what differencing
  needs (their two answers bracket the few patients in between); an honest researcher who refines a
  query step by step gets half as many refinements per window, not a refusal.
- The same question (same semantic canonical form, `canonical.canonical_query`, same sites) within
  `reuse_window` gets the stored result, not a fresh one, whoever asks; the sites' noise, keyed on the
  cohort, gives the same answer anyway.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from datenraum.protocol.messages import SiteCount
from datenraum.query.canonical import CanonicalQuery, canonical_query, near_duplicates
from datenraum.query.model import QueryError, parse_query

__all__ = [
    "AggregationPolicy",
    "QuotaExceeded",
    "Total",
    "check_quota",
    "check_submission",
    "query_fingerprint",
    "submission_weights",
    "total",
]


@dataclass(frozen=True)
class AggregationPolicy:
    min_sites: int = 3
    per_minute: int = 10
    per_hour: int = 100
    per_day: int = 500
    reuse_window: dt.timedelta = dt.timedelta(hours=24)
    near_duplicate_window: dt.timedelta = dt.timedelta(hours=1)
    near_duplicate_weight: int = 2


@dataclass(frozen=True)
class Total:
    """The sum of the sites' obfuscated counts; `at_least` when some sites were below threshold."""

    value: int
    sites: int
    at_least: bool


class QuotaExceeded(Exception):
    def __init__(self, limit: str, retry_after: dt.timedelta) -> None:
        super().__init__(
            f"query quota exceeded ({limit}); try again in {int(retry_after.total_seconds()) + 1} s"
        )
        self.limit = limit
        self.retry_after = retry_after


def total(counts: Iterable[SiteCount], policy: AggregationPolicy) -> Total | None:
    counts = list(counts)
    if len(counts) < policy.min_sites:
        return None
    value = sum(c.obfuscated for c in counts if c.obfuscated is not None)
    return Total(value, len(counts), any(c.below_threshold for c in counts))


def check_quota(
    previous: Sequence[dt.datetime], now: dt.datetime, policy: AggregationPolicy, weight: int = 1
) -> None:
    """Raise QuotaExceeded if a query of `weight` now would exceed a limit, given the user's earlier ones
    (a time appears as often as that submission's weight)."""
    for limit, window, allowed in (
        ("per minute", dt.timedelta(minutes=1), policy.per_minute),
        ("per hour", dt.timedelta(hours=1), policy.per_hour),
        ("per day", dt.timedelta(days=1), policy.per_day),
    ):
        recent = sorted(t for t in previous if now - t < window)
        needed = min(weight, allowed)
        if len(recent) + needed > allowed:
            # once this many of the oldest have left the window, the query fits
            leaving = len(recent) + needed - allowed
            raise QuotaExceeded(f"{allowed} {limit}", recent[leaving - 1] + window - now)


def submission_weights(
    asked: Sequence[tuple[dt.datetime, CanonicalQuery | None]], policy: AggregationPolicy
) -> list[int]:
    """The weight of each of a user's submissions (in time order; None for a question that cannot be
    compared): `near_duplicate_weight` for a near-duplicate of one in the window before it, else 1."""
    weights = []
    for i, (at, question) in enumerate(asked):
        near = question is not None and any(
            earlier is not None
            and at - policy.near_duplicate_window < before <= at
            and near_duplicates(question, earlier)
            for before, earlier in asked[:i]
        )
        weights.append(policy.near_duplicate_weight if near else 1)
    return weights


def query_fingerprint(query_json: dict, sites: Sequence[str]) -> str:
    """Equal for the same question to the same sites, however the JSON was formatted."""
    body = orjson.dumps({"query": query_json, "sites": sorted(sites)}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()


def check_submission(
    asked: Sequence[tuple[dt.datetime, Any]],
    question: CanonicalQuery,
    now: dt.datetime,
    policy: AggregationPolicy,
) -> None:
    """Raise QuotaExceeded if `question`, asked now, would exceed the user's quota, given the user's
    earlier submissions of the last day and window (time and stored query JSON, in time order)."""

    def comparable(query_json: Any) -> CanonicalQuery | None:
        try:
            return canonical_query(parse_query(query_json))
        except QueryError:  # stored under older rules: it counts, but as a question of its own
            return None

    history = [(at, comparable(query_json)) for at, query_json in asked]
    *weights, weight = submission_weights([*history, (now, question)], policy)
    times = [at for (at, _), w in zip(history, weights, strict=True) for _ in range(w)]
    check_quota(times, now, policy, weight)
