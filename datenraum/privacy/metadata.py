"""The disclosure rules for the figures a site reports to the FAIR catalogue (`SiteMetadata`).

They are the feasibility rules (`counts`: threshold and rounding of `ObfuscationPolicy`) applied to
figures that describe the whole store rather than a cohort:

- a count (patients, stored resources) below `threshold` leaves the site only as "below threshold";
  otherwise it is rounded to the nearest multiple of `rounding` (never below `rounding`). There is no
  noise: the figure is the same at every report of the same store, and a store's size is no cohort a
  researcher chooses, so there is nothing to average away;
- typical ages are the 5-year bins around the 5th and 95th percentile of the patients' ages, and only
  when there are at least `threshold` patients; the extremes themselves (the oldest patient) are never
  reported;
- the temporal coverage names only calendar years in which at least `threshold` patients had an
  encounter, so no year stands for a handful of people;
- a biobank is listed in the directory, and a sample category or temperature class under it, only
  when it holds samples of at least `threshold` patients, so no listing stands for a handful of donors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.protocol.messages import SiteCount

__all__ = ["AGE_BIN", "coverage_years", "disclosed_count", "held_by_enough", "typical_ages"]

AGE_BIN = 5


def disclosed_count(exact: int, policy: ObfuscationPolicy) -> SiteCount:
    """`exact` rounded to `policy.rounding`, or below threshold; never the raw value of a small count."""
    if exact < 0:
        raise ValueError("a count cannot be negative")
    if exact < policy.threshold:
        return SiteCount(None, below_threshold=True)
    rounded = (exact + policy.rounding // 2) // policy.rounding * policy.rounding
    return SiteCount(max(policy.rounding, rounded))


def typical_ages(ages: Sequence[int], policy: ObfuscationPolicy) -> tuple[int, int] | None:
    """(min, max) typical age: the 5th percentile rounded down and the 95th rounded up to 5-year bins;
    None for fewer than `threshold` patients. `ages` need not be sorted."""
    if len(ages) < policy.threshold:
        return None
    ordered = sorted(ages)
    low = ordered[int(0.05 * (len(ordered) - 1))]
    high = ordered[-1 - int(0.05 * (len(ordered) - 1))]
    return low // AGE_BIN * AGE_BIN, -(-high // AGE_BIN) * AGE_BIN


def coverage_years(patients_per_year: Mapping[int, int], policy: ObfuscationPolicy) -> tuple[int, int] | None:
    """The first and last year with encounters of at least `threshold` distinct patients, if any."""
    years = sorted(year for year, count in patients_per_year.items() if count >= policy.threshold)
    return (years[0], years[-1]) if years else None


def held_by_enough(patients_per_group: Mapping[str, int], policy: ObfuscationPolicy) -> tuple[str, ...]:
    """The groups (biobanks, sample categories, temperature classes) holding samples of at least
    `threshold` patients, sorted; the counts themselves stay at the site."""
    return tuple(sorted(group for group, count in patients_per_group.items() if count >= policy.threshold))
