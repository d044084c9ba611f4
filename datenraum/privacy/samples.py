"""The disclosure rules for a sample search's figures (`datenraum.protocol.samples`), on top of the
feasibility rules (`counts.ObfuscationPolicy`: threshold, bounded noise, rounding):

- a group of samples (a cell, a biobank, the total) whose *patients* are fewer than `threshold` is
  withheld whole: every figure of it is only "below threshold". Its specimens are those few patients'
  specimens, and 40 tubes of 3 patients tell as much as the 3;
- patients get the feasibility noise; samples, specimens and aliquots get `specimen_factor` (20) times
  that noise, because one patient can contribute many specimens (samply/focus: DELTA_SPECIMEN = 20 ×
  DELTA_PATIENT), so removing or adding one patient moves them by up to ~20;
- the noise of each figure is keyed on the site secret, the figure's name and a digest of the group's
  sorted specimen ids (`group_key`): the same samples give the same answer however the search was
  written, so repeating or rephrasing it cannot average the noise away, and a search that differs by one
  specimen draws fresh noise, far wider than that one specimen;
- quantities (ml, g) do not leave the site: they are for the conversation with the biobank.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from datenraum.privacy.counts import ObfuscationPolicy, obfuscate
from datenraum.protocol.messages import SiteCount

__all__ = ["SPECIMEN_MEASURES", "SamplePolicy", "group_key", "release_group"]

_DOMAIN = b"datenraum sample group v1\n"
SPECIMEN_MEASURES = ("samples", "specimens", "aliquots")


@dataclass(frozen=True)
class SamplePolicy:
    counts: ObfuscationPolicy = field(default_factory=ObfuscationPolicy)
    specimen_factor: int = 20

    def __post_init__(self) -> None:
        if self.specimen_factor < 1:
            raise ValueError("specimen_factor must be at least 1")

    @property
    def specimen_counts(self) -> ObfuscationPolicy:
        return ObfuscationPolicy(
            self.counts.threshold, self.counts.noise * self.specimen_factor, self.counts.rounding
        )


def group_key(specimen_ids: list[str]) -> bytes:
    """The digest of a group's specimens (ids sorted, each once, newline-separated, as the site's SQL
    writes it: `sha256(string_agg(id, chr(10) ORDER BY id))`)."""
    return hashlib.sha256("\n".join(sorted(set(specimen_ids))).encode()).digest()


def _key(site_secret: bytes, measure: str, group: bytes) -> bytes:
    return hmac.new(site_secret, _DOMAIN + measure.encode() + b"\n" + group, hashlib.sha256).digest()


def release_group(
    exact: dict[str, int], group: bytes, site_secret: bytes, policy: SamplePolicy
) -> dict[str, SiteCount]:
    """The figures of one group as they may leave the site. `exact` has `patients` and any of
    `SPECIMEN_MEASURES`; `group` is the group's `group_key`."""
    unknown = set(exact) - {"patients", *SPECIMEN_MEASURES}
    if unknown or "patients" not in exact:
        raise ValueError(
            f"a sample group has patients and {', '.join(SPECIMEN_MEASURES)}, not {sorted(unknown)}"
        )
    if exact["patients"] < policy.counts.threshold:
        return {measure: SiteCount(None, below_threshold=True) for measure in exact}
    released = {"patients": obfuscate(exact["patients"], policy.counts, _key(site_secret, "patients", group))}
    for measure in SPECIMEN_MEASURES:
        if measure in exact:
            key = _key(site_secret, measure, group)
            released[measure] = obfuscate(exact[measure], policy.specimen_counts, key)
    return released
