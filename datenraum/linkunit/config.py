"""The linkage unit's configuration: its own key, and per project the agreed schema, threshold and callers.

A JSON file:

    {"unit_key_file": "unit.key",                     # the unit's own secret (link ids, count noise)
     "projects": {"p1": {"schema_digest": "<sha256 of the agreed schema>", "clk_bytes": 256,
                          "threshold": 0.86,
                          "sites": {"site-a": "<sha256 hex of site-a's token>", ...},
                          "hub": "<sha256 hex of the hub's token>",
                          "max_counts_per_day": 200,             # new counts released in 24 hours
                          "obfuscation": {"threshold": 10, "noise": 5, "rounding": 10}}}}

Callers are known only by the SHA-256 of their bearer tokens, so the file does not hold a usable token.
There is no place for the sites' encoding secret: the unit cannot be configured with it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datenraum.linkunit.errors import ConfigError
from datenraum.privacy.counts import ObfuscationPolicy

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    schema_digest: str
    clk_bytes: int
    threshold: float
    sites: dict[str, str]  # site name → SHA-256 hex of its token
    hub: str  # SHA-256 hex of the hub's token
    policy: ObfuscationPolicy
    max_counts_per_day: int = 200


@dataclass(frozen=True)
class UnitConfig:
    unit_key: bytes
    projects: dict[str, ProjectConfig]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _require(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {what}")


def _project(where: str, name: str, raw: Any) -> ProjectConfig:
    _require(isinstance(raw, dict), where, "must be an object")
    allowed = {"schema_digest", "clk_bytes", "threshold", "sites", "hub", "obfuscation", "max_counts_per_day"}
    unknown = sorted(set(raw) - allowed)
    _require(not unknown, where, f"unknown field(s) {unknown}")
    digest = raw.get("schema_digest")
    _require(
        isinstance(digest, str) and bool(_HEX64.match(digest)), f"{where}.schema_digest", "64 hex digits"
    )
    size = raw.get("clk_bytes")
    _require(isinstance(size, int) and 8 <= size <= 8192, f"{where}.clk_bytes", "an integer 8..8192")
    threshold = raw.get("threshold")
    _require(
        isinstance(threshold, int | float) and 0 < threshold <= 1, f"{where}.threshold", "a number in (0, 1]"
    )
    sites = raw.get("sites")
    _require(isinstance(sites, dict) and len(sites) >= 2, f"{where}.sites", "an object of at least 2 sites")
    for site, digest_hex in sites.items():
        _require(bool(_NAME.match(site)), f"{where}.sites", f"invalid site name {site!r}")
        _require(
            isinstance(digest_hex, str) and bool(_HEX64.match(digest_hex)),
            f"{where}.sites.{site}",
            "the SHA-256 hex of the site's token",
        )
    hub = raw.get("hub")
    _require(
        isinstance(hub, str) and bool(_HEX64.match(hub)), f"{where}.hub", "the SHA-256 hex of the hub's token"
    )
    _require(hub not in sites.values(), f"{where}.hub", "the hub's token must differ from every site's")
    obf = raw.get("obfuscation", {})
    _require(isinstance(obf, dict), f"{where}.obfuscation", "must be an object")
    try:
        policy = ObfuscationPolicy(**obf)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.obfuscation: {e}") from None
    quota = raw.get("max_counts_per_day", 200)
    _require(isinstance(quota, int) and quota >= 1, f"{where}.max_counts_per_day", "a positive integer")
    return ProjectConfig(name, digest, size, float(threshold), dict(sites), hub, policy, quota)


def parse_config(raw: Any, base: Path, source: str = "config") -> UnitConfig:
    _require(isinstance(raw, dict), source, "must be a JSON object")
    unknown = sorted(set(raw) - {"unit_key_file", "projects"})
    _require(not unknown, source, f"unknown field(s) {unknown}")
    key_file = raw.get("unit_key_file")
    _require(isinstance(key_file, str), f"{source}: unit_key_file", "the path of the unit's key file")
    path = base / key_file
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"{source}: unit_key_file {path}: {e.strerror}") from None
    _require(len(key) >= 32, f"{source}: unit_key_file {path}", "the key must have at least 32 bytes")
    projects = raw.get("projects")
    _require(isinstance(projects, dict) and projects, f"{source}: projects", "a non-empty object")
    parsed = {}
    for name, spec in projects.items():
        _require(bool(_NAME.match(name)), f"{source}: projects", f"invalid project name {name!r}")
        parsed[name] = _project(f"{source}: projects.{name}", name, spec)
    return UnitConfig(key, parsed)


def load_config(path: str | Path) -> UnitConfig:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno}, column {e.colno}: {e.msg}") from None
    return parse_config(raw, path.parent, str(path))
