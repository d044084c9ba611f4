"""The site EDC's settings (`datenraum studies serve --config site.toml`), read from a TOML file.

    [site]
    name = "uk-nord"                      # this site's name at the hub: the roster and allocations use it
    store = "/srv/datenraum/store"        # the site store the completed forms are written into
    database = "/srv/datenraum/edc.sqlite"  # the EDC's working data (default: edc.sqlite beside the store)

    [hub]
    url = "https://hub.example.org"       # the hub the study definitions come from
    credential_file = "/etc/datenraum/site.credential"  # the site agent's credential (connects out)

    [pseudonyms]
    key_file = "/etc/datenraum/site.key"  # the site secret; study pseudonyms are keyed with it

    [consent]
    policies = ["2.16.840.1.113883.3.1937.777.24.5.3.6", "2.16.840.1.113883.3.1937.777.24.5.3.8"]
                                          # MII broad-consent policies enrolment needs (these: the default,
                                          # MDAT erheben and MDAT wissenschaftlich nutzen)

    [web]
    session_hours = 8                     # how long a sign-in lasts
    secure_cookies = true                 # cookies only over HTTPS (false for a plain-HTTP test set-up)

Every key of [site] and [hub] except `database` is required; an unknown section or key, or a value of the
wrong type, is an error naming the file and key, so that a typo never leaves a setting at its default.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datenraum.site.studies.consent import ENROLMENT_POLICIES

__all__ = ["EdcConfig", "EdcConfigError", "load_edc_config", "parse_edc_config"]


_POLICY = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


class EdcConfigError(ValueError):
    """The EDC's configuration cannot be used; the text names the file and key."""


@dataclass(frozen=True)
class EdcConfig:
    site: str
    store: Path
    database: Path
    hub_url: str
    credential_file: Path
    key_file: Path
    consent_policies: tuple[str, ...] = ENROLMENT_POLICIES
    session_hours: float = 8.0
    secure_cookies: bool = True


_SCHEMA: dict[str, dict[str, bool]] = {  # section -> key -> required
    "site": {"name": True, "store": True, "database": False},
    "hub": {"url": True, "credential_file": True},
    "pseudonyms": {"key_file": True},
    "consent": {"policies": False},
    "web": {"session_hours": False, "secure_cookies": False},
}


def _text(body: Mapping[str, Any], section: str, key: str) -> str | None:
    value = body.get(key)
    if value is None:
        if _SCHEMA[section][key]:
            raise EdcConfigError(f"{section}.{key}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise EdcConfigError(f"{section}.{key}: expected a non-empty string, got {value!r}")
    return value


def parse_edc_config(document: Mapping[str, Any], base: Path = Path(".")) -> EdcConfig:
    """The configuration a parsed TOML document describes; relative paths are relative to `base`."""
    for section, body in document.items():
        if section not in _SCHEMA:
            raise EdcConfigError(f"{section}: unknown section (known: {', '.join(_SCHEMA)})")
        if not isinstance(body, dict):
            raise EdcConfigError(f"{section}: expected a table ([{section}])")
        for key in body:
            if key not in _SCHEMA[section]:
                known = ", ".join(_SCHEMA[section])
                raise EdcConfigError(f"{section}.{key}: unknown key (known in [{section}]: {known})")
    for section in ("site", "hub", "pseudonyms"):
        if section not in document:
            raise EdcConfigError(f"[{section}]: required section")
    site, hub, pseudonyms = document["site"], document["hub"], document["pseudonyms"]
    web = document.get("web", {})

    def path(section: str, body: Mapping[str, Any], key: str) -> Path | None:
        text = _text(body, section, key)
        return None if text is None else base / Path(text)

    store = path("site", site, "store")
    assert store is not None  # required
    url = _text(hub, "hub", "url") or ""
    if not url.startswith(("http://", "https://")):
        raise EdcConfigError(f"hub.url: expected an http(s) URL, got {url!r}")
    hours = web.get("session_hours", 8.0)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24:
        raise EdcConfigError(f"web.session_hours: expected a number of hours from 0 to 24, got {hours!r}")
    policies = document.get("consent", {}).get("policies", list(ENROLMENT_POLICIES))
    if (
        not isinstance(policies, list)
        or not policies
        or not all(isinstance(p, str) and _POLICY.match(p) for p in policies)
    ):
        raise EdcConfigError(
            f"consent.policies: expected a non-empty list of policy codes (OIDs like {ENROLMENT_POLICIES[0]}), "
            f"got {policies!r}"
        )
    secure = web.get("secure_cookies", True)
    if not isinstance(secure, bool):
        raise EdcConfigError(f"web.secure_cookies: expected true or false, got {secure!r}")
    return EdcConfig(
        site=_text(site, "site", "name") or "",
        store=store,
        database=path("site", site, "database") or store.parent / "edc.sqlite",
        hub_url=url.rstrip("/"),
        credential_file=path("hub", hub, "credential_file") or Path(),
        key_file=path("pseudonyms", pseudonyms, "key_file") or Path(),
        consent_policies=tuple(policies),
        session_hours=float(hours),
        secure_cookies=secure,
    )


def load_edc_config(path: Path) -> EdcConfig:
    """Read and check `path`; errors name the file."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise EdcConfigError(f"{path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise EdcConfigError(f"{path}: not valid TOML: {error}") from None
    try:
        return parse_edc_config(document, path.parent)
    except EdcConfigError as error:
        raise EdcConfigError(f"{path}: {error}") from None
