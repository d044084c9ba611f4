"""Distinct-person counts across sites: the hub's side of the linkage unit (issue 23).

A query that asks for distinct persons gets a count id from the linkage unit (`POST .../counts`) before it
is stored; its tasks carry the id and the unit's URL, each site delivers its cohort's CLKs to the unit
itself and tells the hub only whether it did. Once every task is finished the hub reads the count over the
sites that delivered, and keeps it: the unit releases a count over one set of sites only. The hub holds its
own bearer token at the unit and nothing else: never the sites' linkage secret, CLKs, tokens or cluster
ids, only the released, obfuscated count with its interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from datenraum.hub.config import ConfigError, HubConfig
from datenraum.hub.errors import HubError, Invalid

__all__ = ["DistinctCount", "LinkageUnit", "LinkageUnitUnavailable", "explanation"]


class LinkageUnitUnavailable(HubError):
    """The linkage unit could not be reached or refused the hub; the text says which and why."""

    status = 502


@dataclass(frozen=True)
class DistinctCount:
    """What the unit released for a query: obfuscated numbers only, over the sites that delivered."""

    value: int | None  # None: below the disclosure threshold
    interval: tuple[int, int] | None
    sites: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "interval": None if self.interval is None else list(self.interval),
            "below_threshold": self.value is None,
            "sites": list(self.sites),
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> DistinctCount:
        interval = body.get("interval")
        return cls(body.get("value"), None if interval is None else tuple(interval), tuple(body["sites"]))


def explanation(delivered: Sequence[str], missing: Sequence[str]) -> str:
    """Why the distinct count differs from the sum (and whom it leaves out), for the researcher."""
    text = (
        "The sum adds the sites' counts, so a person treated at several of these sites counts once per "
        "site; the distinct count counts each person once, linked by encoded identities at the linkage "
        f"unit ({', '.join(delivered)}). Both are obfuscated."
    )
    if missing:
        text += f" Not in the distinct count: {', '.join(missing)} (no CLKs delivered)."
    return text


class LinkageUnit:
    """The hub's client of the linkage unit (a separate service, reached over HTTP)."""

    def __init__(self, config: HubConfig, transport: httpx.BaseTransport | None = None) -> None:
        self.url = config.linkage_unit_url.rstrip("/")
        self.project = config.linkage_project
        self._token = _read_token(config.linkage_token_file) if self.url else ""
        self._transport = transport

    @property
    def configured(self) -> bool:
        return bool(self.url)

    def create_count(self) -> str:
        if not self.configured:
            raise Invalid("distinct_persons: this hub has no linkage unit (linkage_unit_url is not set)")
        body = self._call("POST", f"/v1/projects/{self.project}/counts")
        return str(body["count_id"])

    def released_count(self, count_id: str, sites: Sequence[str]) -> DistinctCount:
        body = self._call(
            "GET", f"/v1/projects/{self.project}/counts/{count_id}", params={"sites": ",".join(sites)}
        )
        interval = body.get("interval")
        return DistinctCount(
            None if body.get("below_threshold") else int(body["distinct"]),
            None if interval is None else (int(interval[0]), int(interval[1])),
            tuple(body.get("sites", sites)),
        )

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            with httpx.Client(base_url=self.url, timeout=60, transport=self._transport) as client:
                response = client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            raise LinkageUnitUnavailable(f"linkage unit {self.url}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code != 200 or not isinstance(body, dict):
            reason = body.get("error") if isinstance(body, dict) else response.text[:200]
            raise LinkageUnitUnavailable(f"linkage unit {self.url} ({response.status_code}): {reason}")
        return body


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(f"linkage_token_file: {path}: {error.strerror}") from None
    if not token:
        raise ConfigError(f"linkage_token_file: {path} is empty")
    return token
