"""Rules the hub applies before showing federated results to a researcher.

- A total is shown only when at least `min_sites` sites contributed a count: with fewer, the total is
  one or two hospitals' answers in disguise.
- A researcher may submit only so many queries per minute, hour and day: a differencing attack needs
  many near-identical queries, and an honest researcher does not.
- An identical query (same canonical JSON, same sites) within `reuse_window` gets the stored result, not a
  fresh one, whoever asks: combined with the sites' deterministic noise, repetition reveals nothing new.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import orjson

from datenraum.protocol.messages import SiteCount

__all__ = ["AggregationPolicy", "QuotaExceeded", "Total", "check_quota", "query_fingerprint", "total"]


@dataclass(frozen=True)
class AggregationPolicy:
    min_sites: int = 3
    per_minute: int = 10
    per_hour: int = 100
    per_day: int = 500
    reuse_window: dt.timedelta = dt.timedelta(hours=24)


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


def check_quota(previous: Sequence[dt.datetime], now: dt.datetime, policy: AggregationPolicy) -> None:
    """Raise QuotaExceeded if one more query now would exceed a limit, given the user's earlier ones."""
    for limit, window, allowed in (
        ("per minute", dt.timedelta(minutes=1), policy.per_minute),
        ("per hour", dt.timedelta(hours=1), policy.per_hour),
        ("per day", dt.timedelta(days=1), policy.per_day),
    ):
        recent = sorted(t for t in previous if now - t < window)
        if len(recent) >= allowed:
            raise QuotaExceeded(f"{allowed} {limit}", recent[len(recent) - allowed] + window - now)


def query_fingerprint(query_json: dict, sites: Sequence[str]) -> str:
    """Equal for the same question to the same sites, however the JSON was formatted."""
    body = orjson.dumps({"query": query_json, "sites": sorted(sites)}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(body).hexdigest()
