"""The hub's settings: one frozen `HubConfig`, from defaults, a TOML file and the environment.

Precedence, lowest first: the defaults below, the TOML file (`datenraum hub ... --config hub.toml`, keys
as the field names, at the top level or in a `[hub]` table), environment variables
`DATENRAUM_HUB_<FIELD>` (e.g. `DATENRAUM_HUB_DATABASE_URL`, `DATENRAUM_HUB_MIN_SITES`), then command
line options. Durations are in seconds.

| field | default | what |
|---|---|---|
| database_url | sqlite:///var/hub/hub.db | SQLAlchemy URL; PostgreSQL as postgresql+psycopg://user@host/db |
| task_deadline_seconds | 30 | a task without a result this long after the query becomes timed-out |
| lease_seconds | 60 | a fetched (running) task without a result is offered to its site again after this |
| sweep_interval_seconds | 1 | how often the hub marks overdue tasks timed-out and re-offers expired leases |
| reminder_interval_seconds | 3600 | how often the sweep reminds whoever must act on a sample request item that has not moved for `sample_reminder_days` |
| dashboard_run_at | "" | the time of day (HH:MM, Europe/Berlin) at which the hub starts the crisis dashboard's daily run of indicators tasks, for the day before; empty: only runs started by hand |
| sample_reminder_days | 14 | a sample request item that has not moved this long is a quiet one (see `reminder_interval_seconds`) |
| max_body_bytes | 1048576 | larger request bodies are refused with 413 |
| max_concurrent_requests | 64 per CPU core | requests one hub worker works on at once; the next is answered at once with 503 and Retry-After (see `overload`; the site API is exempt) |
| max_waits | 1000 | long-polls and event streams one hub worker holds at once; the next is refused with 503 |
| max_waits_per_user | 8 | long-polls and event streams of one account in one hub worker at once; the next is refused with 429 |
| min_sites | 3 | a total is shown only when at least this many sites contributed a count |
| analysis_min_sites | 3 | a pooled analysis result needs at least this many sites (at least 2) |
| analysis_round_seconds | 30 | a site that has not answered one analysis round this long after it was sent is named as not answering |
| quota_per_minute / _per_hour / _per_day | 10 / 100 / 500 | submissions a user may make (reused ones too; a near-duplicate counts twice) |
| site_daily_tasks | 1000 | tasks the hub sends one site in 24 hours (keep it at most the sites' `tasks.daily_limit`); beyond, a query that asks the site is refused with 429 naming it |
| researcher_site_share | 0.1 | the part of `site_daily_tasks` one researcher's queries may take at a site in 24 hours (0.1: exhausting a site takes ten accounts) |
| reuse_window_seconds | 86400 | an identical query (same sites) within this gets the stored query |
| public_url | http://127.0.0.1:8700 | where people reach the portal (links in messages) |
| secure_cookies | false | mark session cookies Secure (set true behind HTTPS) |
| session_hours | 12 | a portal sign-in lasts this long |
| max_failed_logins | 5 | failed sign-ins per e-mail address before sign-in pauses (1 minute, doubling with each further failure, at most 15); a password reset ends the pause |
| token_days | 90 | an API token works this many days after it was issued (and until a password change or reset) |
| trusted_proxies | "" | addresses of reverse proxies whose X-Forwarded-For is believed (uvicorn's forwarded_allow_ips, comma-separated); empty: none, the peer's address counts |
| smtp_host / smtp_port / smtp_sender | "" / 25 / datenraum@localhost | send messages by SMTP; empty host: stored in the outbox, with their links masked |
| mail_folder | "" | without SMTP, write each message in full to this folder (one .eml file each, readable by the owner only; for development and the demo) |
| oidc_issuer / oidc_client_id / oidc_client_secret | "" | single sign-on by OpenID Connect (e.g. Keycloak); empty issuer: local accounts only |
| upload_folder | var/hub/uploads | where documents uploaded to proposals are stored (by content hash) |
| upload_max_bytes | 20971520 | larger documents are refused (the upload page's body may be this much larger than max_body_bytes) |
| upload_scan_command | "" | a virus scanner run with the file's path appended (split like a shell does); empty: no scanning |
| upload_scan_timeout_seconds | 60 | a scan that takes longer rejects the file |
| delivery_folder | var/hub/deliveries | where the sites' sealed packages are received (chunk by chunk) and kept |
| delivery_days | 28 | a site's part of a data delivery not uploaded this long after the delivery started has missed the period |
| linkage_unit_url / linkage_project | "" / "" | the linkage unit that counts distinct persons across sites, and the hub's project there; empty URL: queries cannot ask for distinct persons |
| linkage_token_file | "" | a file holding the hub's bearer token at the linkage unit (the sites' linkage secret never comes to the hub) |
| study_key_file | var/hub/study.key | the key that seals the studies' randomisation seeds in the database (created on first use, readable by the hub's user only; keep it out of database backups) |
| proposal_quorum | 2 | committee votes that decide a proposal (by majority; a tie waits for the next vote) |
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datenraum.privacy.aggregation import AggregationPolicy

__all__ = ["ENV_PREFIX", "ConfigError", "HubConfig", "load_config"]

ENV_PREFIX = "DATENRAUM_HUB_"


class ConfigError(ValueError):
    """A setting that cannot be used; the text names it."""


@dataclass(frozen=True)
class HubConfig:
    database_url: str = "sqlite:///var/hub/hub.db"
    task_deadline_seconds: float = 30.0
    lease_seconds: float = 60.0
    sweep_interval_seconds: float = 1.0
    reminder_interval_seconds: float = 3600.0
    sample_reminder_days: int = 14
    dashboard_run_at: str = ""
    max_body_bytes: int = 1024 * 1024
    # Per worker: about what the cores finish within a few hundred milliseconds (bench/bench_load.py).
    max_concurrent_requests: int = 64 * (os.cpu_count() or 1)
    max_waits: int = 1000
    max_waits_per_user: int = 8
    min_sites: int = 3
    quota_per_minute: int = 10
    quota_per_hour: int = 100
    quota_per_day: int = 500
    site_daily_tasks: int = 1000
    researcher_site_share: float = 0.1
    reuse_window_seconds: float = 24 * 3600.0
    public_url: str = "http://127.0.0.1:8700"
    secure_cookies: bool = False
    session_hours: float = 12.0
    max_failed_logins: int = 5
    token_days: float = 90.0
    trusted_proxies: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_sender: str = "datenraum@localhost"
    mail_folder: str = ""
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    upload_folder: str = "var/hub/uploads"
    upload_max_bytes: int = 20 * 1024 * 1024
    upload_scan_command: str = ""
    upload_scan_timeout_seconds: float = 60.0
    proposal_quorum: int = 2
    delivery_folder: str = "var/hub/deliveries"
    delivery_days: float = 28.0
    analysis_min_sites: int = 3
    analysis_round_seconds: float = 30.0
    linkage_unit_url: str = ""
    linkage_project: str = ""
    linkage_token_file: str = ""
    study_key_file: str = "var/hub/study.key"

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type in ("int", "float") and not value > 0:
                raise ConfigError(f"{field.name}: must be positive, got {value}")
        if self.researcher_site_share > 1:
            raise ConfigError(f"researcher_site_share: must be at most 1, got {self.researcher_site_share}")
        if not self.database_url:
            raise ConfigError("database_url: must not be empty")
        if self.linkage_unit_url and not (self.linkage_project and self.linkage_token_file):
            raise ConfigError("linkage_project, linkage_token_file: must be set when linkage_unit_url is")
        if self.dashboard_run_at:
            _time_of_day("dashboard_run_at", self.dashboard_run_at)
        if self.oidc_issuer and not self.oidc_client_id:
            raise ConfigError("oidc_client_id: must be set when oidc_issuer is (single sign-on)")

    @property
    def policy(self) -> AggregationPolicy:
        return AggregationPolicy(
            min_sites=self.min_sites,
            per_minute=self.quota_per_minute,
            per_hour=self.quota_per_hour,
            per_day=self.quota_per_day,
            reuse_window=dt.timedelta(seconds=self.reuse_window_seconds),
        )

    @property
    def dashboard_daily_run(self) -> dt.time | None:
        """The Berlin time of day of the dashboard's daily run, or None for none."""
        return _time_of_day("dashboard_run_at", self.dashboard_run_at) if self.dashboard_run_at else None

    @property
    def researcher_site_tasks(self) -> int:
        """Tasks one researcher's queries may give one site in 24 hours (at least one)."""
        # (the small addition keeps 100 * 0.29 at 29, not 28.999...)
        return max(1, int(self.site_daily_tasks * self.researcher_site_share + 1e-9))

    @property
    def token_lifetime(self) -> dt.timedelta:
        return dt.timedelta(days=self.token_days)

    @property
    def task_deadline(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.task_deadline_seconds)

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.lease_seconds)


_TOML_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _time_of_day(name: str, value: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}: a time of day as HH:MM, got {value!r}") from None


def _from_toml(name: str, kind: str, value: Any, source: str) -> Any:
    """TOML values have types, and must have the setting's (a quoted number is a mistake)."""
    if (isinstance(value, bool) and kind != "bool") or not isinstance(value, _TOML_TYPES[kind]):
        raise ConfigError(f"{name} ({source}): expected {kind}, got {value!r}")
    return float(value) if kind == "float" else value


def _boolean(value: str) -> bool:
    try:
        return _BOOLEANS[value.strip().lower()]
    except KeyError:
        raise ValueError(value) from None


def _from_env(name: str, kind: str, value: str, source: str) -> Any:
    try:
        return {"str": str, "int": int, "float": float, "bool": _boolean}[kind](value)
    except ValueError:
        raise ConfigError(f"{name} ({source}): expected {kind}, got {value!r}") from None


def load_config(
    path: Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
) -> HubConfig:
    """The settings from `path` (TOML, optional), then `env` (default os.environ), then `overrides`.

    Overrides that are None are ignored, so command line options that were not given can be passed as is.
    """
    env = os.environ if env is None else env
    kinds = {field.name: str(field.type) for field in dataclasses.fields(HubConfig)}
    values: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"{path}: {error}") from None
        table = document.get("hub", document)
        for name, value in table.items():
            if name not in kinds:
                raise ConfigError(f"{path}: unknown setting {name!r} (known: {', '.join(kinds)})")
            values[name] = _from_toml(name, kinds[name], value, str(path))
    for name, kind in kinds.items():
        variable = ENV_PREFIX + name.upper()
        if variable in env:
            values[name] = _from_env(name, kind, env[variable], variable)
    values.update({name: value for name, value in overrides.items() if value is not None})
    return HubConfig(**values)
