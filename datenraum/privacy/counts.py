"""Obfuscating a site's count before it leaves the site.

The national feasibility portal rounds counts and adds random noise. Our scheme, at least as strong:
1. a count below `threshold` leaves the site only as "below threshold";
2. otherwise bounded noise, uniform in [-noise, +noise], is added, and the result rounded to the nearest
   multiple of `rounding` (never below `rounding`, so a small cohort is not reported as zero).
The noise is drawn deterministically from a keyed hash (HMAC with the site secret) of the *cohort*: the
sorted ids of the patients the query selects (`cohort_key`). Every query that selects the same patients,
however it is written (criteria reordered, duplicated, re-nested, codes or units spelled differently),
gets the same answer, so asking variants and averaging their answers gains nothing, while the noise is
unpredictable without the site's secret. The key is not derived from the query text, which an attacker
can vary without bound (issue 12, P-1).

The store generation is deliberately not part of the key: a cohort that a new load leaves unchanged
keeps its answer, so waiting for loads does not yield fresh samples of its noise either. A cohort that a
load changes is a different cohort and gets its own noise.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from datenraum.protocol.messages import SiteCount

__all__ = ["CohortKey", "ObfuscationPolicy", "cohort_key", "obfuscate"]

# Separates this use of the site secret from any other (versioned, so a change of scheme is explicit).
_DOMAIN = b"datenraum feasibility cohort v1\n"
_BATCH = 65536  # ids hashed per update


@dataclass(frozen=True)
class ObfuscationPolicy:
    threshold: int = 10
    noise: int = 5
    rounding: int = 10

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.noise < 0 or self.rounding < 1:
            raise ValueError("threshold and rounding must be positive, noise must not be negative")


class CohortKey:
    """The noise key of one cohort, computed while its patient ids stream past (sorted, each once).

    The ids are hashed in batches as they arrive, so a cohort of a million patients needs neither a list
    of its ids nor a second query for its size: `size` is the exact count. Both stay inside the site.
    Ids are separated by a newline, which no FHIR id contains, so distinct cohorts hash distinct messages.
    """

    def __init__(self, site_secret: bytes) -> None:
        self._mac = hmac.new(site_secret, _DOMAIN, hashlib.sha256)
        self._last: str | None = None
        self.size = 0

    def add(self, ids: Iterable[str]) -> None:
        """Add the next ids of the cohort, in ascending order (ValueError otherwise: the key would then
        depend on the order the engine happened to return them in)."""
        stream = iter(ids)
        while batch := list(itertools.islice(stream, _BATCH)):
            previous = self._last
            for patient_id in batch:
                if previous is not None and patient_id <= previous:
                    raise ValueError("cohort ids must be sorted and distinct")
                previous = patient_id
            self._last = previous
            self._mac.update("\n".join(batch).encode() + b"\n")
            self.size += len(batch)

    def digest(self) -> bytes:
        return self._mac.copy().digest()


def cohort_key(site_secret: bytes, patient_ids: Iterable[str]) -> tuple[int, bytes]:
    """The exact size of the cohort and the key that fixes its noise (ids sorted, each once)."""
    key = CohortKey(site_secret)
    key.add(patient_ids)
    return key.size, key.digest()


def obfuscate(exact: int, policy: ObfuscationPolicy, key: bytes) -> SiteCount:
    if exact < 0:
        raise ValueError("a count cannot be negative")
    if exact < policy.threshold:
        return SiteCount(None, below_threshold=True)
    span = 2 * policy.noise + 1
    noise = int.from_bytes(key[:8], "big") % span - policy.noise
    noisy = exact + noise
    rounded = (noisy + policy.rounding // 2) // policy.rounding * policy.rounding
    return SiteCount(max(policy.rounding, rounded))
