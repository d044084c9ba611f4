"""Obfuscating a site's count before it leaves the site.

The national feasibility portal rounds counts and adds random noise. Our scheme, at least as strong:
1. a count below `threshold` leaves the site only as "below threshold";
2. otherwise bounded noise, uniform in [-noise, +noise], is added, and the result rounded to the nearest
   multiple of `rounding` (never below `rounding`, so a small cohort is not reported as zero).
The noise is drawn deterministically from a keyed hash of (site secret, canonical query, store
generation): asking the same question of the same data gets the same answer, so repeating a query and
averaging its answers gains nothing, while the noise is unpredictable without the site's secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import orjson

from datenraum.protocol.messages import SiteCount

__all__ = ["ObfuscationPolicy", "noise_key", "obfuscate"]


@dataclass(frozen=True)
class ObfuscationPolicy:
    threshold: int = 10
    noise: int = 5
    rounding: int = 10

    def __post_init__(self) -> None:
        if self.threshold < 1 or self.noise < 0 or self.rounding < 1:
            raise ValueError("threshold and rounding must be positive, noise must not be negative")


def noise_key(site_secret: bytes, query_json: dict, generation: int) -> bytes:
    """The key that fixes the noise for one question on one state of the data."""
    message = orjson.dumps(query_json, option=orjson.OPT_SORT_KEYS) + b"|" + str(generation).encode()
    return hmac.new(site_secret, message, hashlib.sha256).digest()


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
