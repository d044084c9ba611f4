"""What the linkage unit does: accept deliveries, link, build each site's link table, release counts.

Link ids: the greedy multi-party solve (`datenraum.linkage.estimate.link`) at the project's threshold
clusters the registered CLKs of all sites; a cluster's link id is a keyed hash (the unit's own key) of
its first member, so the same person has the same id at every site of the project and ids of two projects
differ. A site receives only the rows of its own pseudonyms.

Counts for the hub: every site of the project delivers the CLKs of its cohort for one count id; the
number of distinct persons (clusters) and its interval (`estimate_distinct`) pass the same obfuscation as
a site's count (`datenraum.privacy.counts.obfuscate`). The noise is keyed by the unit's key on the
*content* of the deliveries (every site's pseudonyms), never on the count id: asking again under a new id
gives the same answer, so repeating gains nothing; and adding one person at one site changes the key
whether or not that person is already counted at another site, so the difference of two answers does not
tell whether the person is at two hospitals (`tests/test_linkunit.py` runs the attack). Fresh noise per
new cohort could still be averaged over many pairs of cohorts, so new counts are rationed per project
(`max_counts_per_day`, like the hub's query quotas); a released count can be read again freely.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from datenraum.linkage.estimate import estimate_distinct, link
from datenraum.linkunit.config import ProjectConfig, UnitConfig
from datenraum.linkunit.errors import AlreadyReleased, InvalidInput, NotFound, NotReady, QuotaExceeded
from datenraum.linkunit.store import Records, Store
from datenraum.privacy.counts import obfuscate

MAX_RECORDS = 500_000
_PSEUDONYM = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_COUNT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")
_LINK_DOMAIN = b"datenraum linkage unit link id v1\n"
_COUNT_DOMAIN = b"datenraum linkage unit distinct count v1\n"


def parse_delivery(raw: Any, project: ProjectConfig) -> Records:
    """`{"schema_digest": ..., "records": [{"pseudonym": ..., "clk": base64}, ...]}` → (pseudonym, bytes)."""
    if not isinstance(raw, dict):
        raise InvalidInput("$: expected a JSON object")
    unknown = sorted(set(raw) - {"schema_digest", "records"})
    if unknown:
        raise InvalidInput(f"$: unknown field(s) {unknown}")
    if raw.get("schema_digest") != project.schema_digest:
        raise InvalidInput(
            f"$.schema_digest: {raw.get('schema_digest')!r} is not the schema agreed for project {project.name}"
        )
    records = raw.get("records")
    if not isinstance(records, list):
        raise InvalidInput("$.records: expected an array")
    if len(records) > MAX_RECORDS:
        raise InvalidInput(f"$.records: {len(records)} records, at most {MAX_RECORDS} in one delivery")
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for i, record in enumerate(records):
        where = f"$.records[{i}]"
        if not isinstance(record, dict) or set(record) != {"pseudonym", "clk"}:
            raise InvalidInput(f"{where}: expected an object with exactly pseudonym and clk")
        pseudonym, clk = record["pseudonym"], record["clk"]
        if not isinstance(pseudonym, str) or not _PSEUDONYM.match(pseudonym):
            raise InvalidInput(f"{where}.pseudonym: 1-128 characters of A-Z a-z 0-9 . _ : -")
        if pseudonym in seen:
            raise InvalidInput(f"{where}.pseudonym: {pseudonym!r} occurs twice")
        seen.add(pseudonym)
        if not isinstance(clk, str):
            raise InvalidInput(f"{where}.clk: expected a base64 string")
        try:
            bits = base64.b64decode(clk, validate=True)
        except binascii.Error:
            raise InvalidInput(f"{where}.clk: not valid base64") from None
        if len(bits) != project.clk_bytes:
            raise InvalidInput(f"{where}.clk: {len(bits)} bytes, the project's CLKs have {project.clk_bytes}")
        out.append((pseudonym, bits))
    return out


@dataclass(frozen=True)
class LinkRow:
    pseudonym: str
    link_id: str


@dataclass(frozen=True)
class ReleasedCount:
    """What the hub receives: obfuscated numbers only (None when below the disclosure threshold)."""

    distinct: int | None
    interval: tuple[int, int] | None
    below_threshold: bool
    sites: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "distinct": self.distinct,
            "interval": list(self.interval) if self.interval else None,
            "below_threshold": self.below_threshold,
            "sites": list(self.sites),
        }


def _matrix(records: Records, size: int) -> np.ndarray:
    if not records:
        return np.zeros((0, size), dtype=np.uint8)
    return np.frombuffer(b"".join(c for _, c in records), dtype=np.uint8).reshape(len(records), size)


class LinkageUnit:
    def __init__(self, config: UnitConfig, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock

    def project(self, name: str) -> ProjectConfig:
        project = self.config.projects.get(name)
        if project is None:
            raise NotFound(f"no project {name!r}")
        return project

    def register(self, project: ProjectConfig, site: str, records: Records) -> int:
        self.store.replace_registration(project.name, site, records)
        return len(records)

    def link_table(self, project: ProjectConfig, site: str) -> list[LinkRow]:
        registered = self.store.registrations(project.name)
        if site not in registered:
            raise NotFound(f"site {site} has registered no CLKs for project {project.name}")
        sites = sorted(registered)
        ids = link([_matrix(registered[s], project.clk_bytes) for s in sites], project.threshold)
        members = [(s, p) for s in sites for p, _ in registered[s]]
        first: dict[int, tuple[str, str]] = {}
        for cluster, member in zip(ids.tolist(), members, strict=True):
            first.setdefault(cluster, member)
        rows = []
        for cluster, (s, pseudonym) in zip(ids.tolist(), members, strict=True):
            if s == site:
                anchor = "\x1f".join((project.name, *first[cluster])).encode()
                link_id = hmac.digest(self.config.unit_key, _LINK_DOMAIN + anchor, hashlib.sha256).hex()[:32]
                rows.append(LinkRow(pseudonym, link_id))
        return rows

    def deliver_cohort(self, project: ProjectConfig, count_id: str, site: str, records: Records) -> None:
        _check_count_id(count_id)
        if not self.store.replace_cohort(project.name, count_id, site, records):
            raise NotReady(f"count {count_id} was already released; it takes no more deliveries")

    @staticmethod
    def create_count(project: ProjectConfig) -> str:
        """A new count id for the hub to hand to the sites of `project`: random, so that no site can guess
        the id of a count it was not asked for (nothing is stored until the first delivery)."""
        return str(uuid.uuid4())

    def distinct_count(
        self, project: ProjectConfig, count_id: str, sites: Sequence[str] | None = None
    ) -> ReleasedCount:
        """The released count over `sites` (every site of the project when None). A count is released
        over one set of sites only: reading it over another would be a second count of the same cohorts."""
        _check_count_id(count_id)
        wanted = _count_sites(project, sites)
        released_over = self.store.released_sites(project.name, count_id)
        if released_over is not None and released_over != wanted:
            raise AlreadyReleased(
                f"count {count_id} was released over site(s) {', '.join(released_over)}, not over others"
            )
        cohorts = {s: c for s, c in self.store.cohort(project.name, count_id).items() if s in wanted}
        missing = sorted(set(wanted) - set(cohorts))
        if missing:
            raise NotReady(f"count {count_id}: waiting for site(s) {', '.join(missing)}")
        now = self.clock()
        rationed = self.store.releases_since(project.name, now - 86400) >= project.max_counts_per_day
        if rationed and not self.store.is_released(project.name, count_id):
            raise QuotaExceeded(
                f"project {project.name}: {project.max_counts_per_day} counts in 24 hours, no more now"
            )
        sites = sorted(cohorts)
        content = hmac.new(
            self.config.unit_key, _COUNT_DOMAIN + project.name.encode() + b"\n", hashlib.sha256
        )
        for s in sites:
            for pseudonym, _ in cohorts[s]:
                content.update(f"{s}\x1f{pseudonym}\n".encode())
        key = content.digest()
        datasets = [_matrix(cohorts[s], project.clk_bytes) for s in sites if cohorts[s]]
        if datasets:
            estimate = estimate_distinct(datasets, project.threshold)
            exact, (lo, hi) = estimate.distinct, estimate.interval
        else:
            exact, lo, hi = 0, 0, 0
        self.store.mark_released(project.name, count_id, now, sites)
        released = obfuscate(exact, project.policy, key)
        if released.obfuscated is None:
            return ReleasedCount(None, None, True, tuple(sites))
        # The interval's ends are obfuscated like the count, then widened by what obfuscation can move a
        # number (noise plus half the rounding), so that the interval states the uncertainty of both.
        slack = project.policy.noise + project.policy.rounding // 2
        bounds = [
            obfuscate(v, project.policy, hashlib.sha256(key + tag).digest()).obfuscated or 0
            for v, tag in ((lo, b"lo"), (hi, b"hi"))
        ]
        low = max(0, min(released.obfuscated, bounds[0]) - slack)
        high = max(released.obfuscated, bounds[1]) + slack
        return ReleasedCount(released.obfuscated, (low, high), False, tuple(sites))


def _count_sites(project: ProjectConfig, sites: Sequence[str] | None) -> tuple[str, ...]:
    if sites is None:
        return tuple(sorted(project.sites))
    if not sites:
        raise InvalidInput("sites: name at least one site")
    for site in sites:
        if site not in project.sites:
            raise InvalidInput(f"sites: {site!r} is no site of project {project.name}")
    if len(set(sites)) != len(sites):
        raise InvalidInput("sites: a site is named twice")
    return tuple(sorted(sites))


def _check_count_id(count_id: str) -> None:
    if not _COUNT_ID.match(count_id):
        raise InvalidInput(f"count id {count_id!r}: 8-64 characters of A-Z a-z 0-9 -")
