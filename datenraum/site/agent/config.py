"""The site operator's settings for the site agent, read from a TOML file.

Every key is optional; a missing file section means its defaults. The defaults:

    [tasks]
    allowed = ["feasibility-count", "indicators"]  # task types this site answers; others get a "failed" result
    daily_limit = 1000               # tasks run on the store per calendar day (the agent's local time)
    time_limit = 20                  # seconds one task may take; its query is then interrupted and the
                                     # task failed (below the hub's task deadline, 30 s by default)
    concurrency = 2                  # tasks run side by side (one slow query does not hold up the rest)

    [obfuscation]                    # how a count is disguised before it leaves (datenraum.privacy.counts)
    threshold = 10                   # a count below this leaves only as "below threshold"
    noise = 5                        # uniform noise in [-noise, +noise] is added ...
    rounding = 10                    # ... and the result rounded to a multiple of this

    [hub]
    wait = 25                        # seconds one long-poll for tasks may wait at the hub (1 to 60)
    backoff_initial = 0.5            # first pause in seconds after the hub could not be reached ...
    backoff_cap = 30                 # ... doubling per failed attempt up to this

    [store]
    threads = 0                      # cores one query may use; 0: all (set it lower on a shared server)

    [engine]                         # what runs the store's queries (datenraum.site.engines)
    name = "duckdb"                  # "duckdb" (embedded) or "spark"
    spark_master = "local[*]"        # with "spark": the master URL (spark://HOST:7077, k8s://https://...)
    [analysis]                       # federated analysis (only with "analysis" in tasks.allowed); the
    min_rows = 10                    # disclosure rules of datenraum.privacy.analysis, each may only be
    min_cell = 5                     # tightened (min_rows, min_cell, dominance, glm_saturation,
    workspace_ttl = 3600             # levels_max, levels_density, min_sites, tail_factor, rounding,
                                     # daily_budget); workspace_ttl: seconds a derived variable lives
    data_end = 2025-12-31            # where time-to-event variables are censored (default: the
                                     # latest date the store holds)
    [extraction]                     # the `extraction` task (off unless "extraction" is in tasks.allowed)
    output = "/srv/extractions"      # site-local folder of the job folders (required to allow the task)
    time_limit = 3600                # seconds one extraction may take (checked between batches)
    memory_limit = "512MB"           # what DuckDB may hold while it sorts a job's resources
    key_file = "/etc/datenraum/site.key"  # the site secret (64 hex characters): a delivery's package is
                                     # de-identified with the project's keys derived from it, its
                                     # pseudonyms kept next to it (`site.key.pseudonyms.sqlite`)
    [linkage]                        # distinct-person counts across sites (off without this section)
    unit_url = "https://linkage.example.org"  # the only linkage unit this site delivers CLKs to
    project = "count"                # the project at the unit (its key derives from the secret)
    site = "site-a"                  # this site's name at the unit
    token_file = "linkunit.token"    # this site's bearer token at the unit
    secret_file = "linkage.secret"   # the secret the sites share; never sent to the hub or the unit
    schema = "..."                   # the agreed linkage schema (default: datenraum's de-patient-v3)

An unknown section or key, or a value of the wrong type or range, is an error naming the key, so that a
typo (`treshold`) does not silently leave a privacy setting at its default.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from datenraum.privacy.analysis import AnalysisPolicy
from datenraum.privacy.counts import ObfuscationPolicy
from datenraum.protocol.messages import TaskType
from datenraum.site.extraction.job import MEMORY_SIZE

__all__ = ["AgentConfig", "ConfigError", "LinkageSettings", "load_config", "parse_config"]


# More tasks side by side than this would only make each slower: they share the site's cores.
MAX_CONCURRENCY = 16


class ConfigError(ValueError):
    """The agent's configuration cannot be used; the text names the file and key."""


@dataclass(frozen=True)
class AgentConfig:
    allowed_tasks: frozenset[TaskType] = frozenset(
        {TaskType.FEASIBILITY_COUNT, TaskType.SITE_METADATA, TaskType.INDICATORS}
    )
    daily_limit: int = 1000
    time_limit: float = 20.0
    concurrency: int = 2
    policy: ObfuscationPolicy = field(default_factory=ObfuscationPolicy)
    wait: int = 25
    backoff_initial: float = 0.5
    backoff_cap: float = 30.0
    threads: int = 0
    engine: str = "duckdb"
    spark_master: str = "local[*]"
    analysis: AnalysisPolicy = field(default_factory=AnalysisPolicy)
    workspace_ttl: float = 3600.0
    data_end: dt.date | None = None
    extraction_output: Path | None = None
    extraction_time_limit: float = 3600.0
    extraction_memory_limit: str = "512MB"
    extraction_key_file: Path | None = None
    linkage: LinkageSettings | None = None


@dataclass(frozen=True)
class LinkageSettings:
    """Where and as whom this site delivers its cohorts' CLKs; the files are read when the agent starts."""

    unit_url: str
    project: str
    site: str
    token_file: Path
    secret_file: Path
    schema: Path | None = None  # None: the bundled de-patient-v3 schema


_ANALYSIS_KEYS = (*(f.name for f in fields(AnalysisPolicy)), "workspace_ttl", "data_end")


def _date(value: Any, key: str) -> dt.date | None:
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected a date (2025-12-31), got {value!r}")


def _integer(value: Any, key: str, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{key}: expected an integer {bounds}, got {value}")
    return value


def _seconds(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{key}: expected a positive number of seconds, got {value!r}")
    return float(value)


def _task_types(value: Any, key: str) -> frozenset[TaskType]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of task types, got {value!r}")
    known = ", ".join(repr(t.value) for t in TaskType)
    types = set()
    for item in value:
        try:
            types.add(TaskType(item))
        except ValueError:
            raise ConfigError(f"{key}: unknown task type {item!r} (known: {known})") from None
    return frozenset(types)


_SCHEMA: dict[str, tuple[str, ...]] = {
    "tasks": ("allowed", "daily_limit", "time_limit", "concurrency"),
    "obfuscation": ("threshold", "noise", "rounding"),
    "hub": ("wait", "backoff_initial", "backoff_cap"),
    "store": ("threads",),
    "engine": ("name", "spark_master"),
    "analysis": _ANALYSIS_KEYS,
    "extraction": ("output", "time_limit", "memory_limit", "key_file"),
    "linkage": ("unit_url", "project", "site", "token_file", "secret_file", "schema"),
}


def _check_keys(document: Mapping[str, Any]) -> None:
    for section, body in document.items():
        if section not in _SCHEMA:
            raise ConfigError(f"{section}: unknown section (known: {', '.join(_SCHEMA)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{section}: expected a table ([{section}])")
        for key in body:
            if key not in _SCHEMA[section]:
                raise ConfigError(
                    f"{section}.{key}: unknown key (known in [{section}]: {', '.join(_SCHEMA[section])})"
                )


def parse_config(document: Mapping[str, Any]) -> AgentConfig:
    """The configuration a parsed TOML document describes (defaults for what it leaves out)."""
    _check_keys(document)
    tasks = document.get("tasks", {})
    obfuscation = document.get("obfuscation", {})
    hub = document.get("hub", {})
    store = document.get("store", {})
    engine = document.get("engine", {})
    analysis = dict(document.get("analysis", {}))
    extraction = document.get("extraction", {})
    defaults = AgentConfig()
    workspace_ttl = _seconds(analysis.pop("workspace_ttl", defaults.workspace_ttl), "analysis.workspace_ttl")
    data_end = _date(analysis.pop("data_end", None), "analysis.data_end")
    try:
        analysis_policy = AnalysisPolicy.from_mapping(analysis)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    policy = ObfuscationPolicy(
        threshold=_integer(
            obfuscation.get("threshold", defaults.policy.threshold), "obfuscation.threshold", 1
        ),
        noise=_integer(obfuscation.get("noise", defaults.policy.noise), "obfuscation.noise", 0),
        rounding=_integer(obfuscation.get("rounding", defaults.policy.rounding), "obfuscation.rounding", 1),
    )
    backoff_initial = _seconds(hub.get("backoff_initial", defaults.backoff_initial), "hub.backoff_initial")
    backoff_cap = _seconds(hub.get("backoff_cap", defaults.backoff_cap), "hub.backoff_cap")
    if backoff_cap < backoff_initial:
        raise ConfigError(f"hub.backoff_cap: must not be below hub.backoff_initial ({backoff_initial})")
    allowed = _task_types(tasks.get("allowed", [t.value for t in defaults.allowed_tasks]), "tasks.allowed")
    output = extraction.get("output")
    if output is not None and (not isinstance(output, str) or not output):
        raise ConfigError(f"extraction.output: expected a folder, got {output!r}")
    key_file = extraction.get("key_file")
    if key_file is not None and (not isinstance(key_file, str) or not key_file):
        raise ConfigError(f"extraction.key_file: expected a file, got {key_file!r}")
    memory_limit = extraction.get("memory_limit", defaults.extraction_memory_limit)
    if not isinstance(memory_limit, str) or not MEMORY_SIZE.fullmatch(memory_limit):
        raise ConfigError(f'extraction.memory_limit: expected a size such as "512MB", got {memory_limit!r}')
    if TaskType.EXTRACTION in allowed and output is None:
        raise ConfigError("extraction.output: required when tasks.allowed has 'extraction'")
    linkage = _linkage(document["linkage"]) if "linkage" in document else None
    return AgentConfig(
        allowed_tasks=allowed,
        daily_limit=_integer(tasks.get("daily_limit", defaults.daily_limit), "tasks.daily_limit", 0),
        time_limit=_seconds(tasks.get("time_limit", defaults.time_limit), "tasks.time_limit"),
        concurrency=_integer(
            tasks.get("concurrency", defaults.concurrency), "tasks.concurrency", 1, MAX_CONCURRENCY
        ),
        policy=policy,
        wait=_integer(hub.get("wait", defaults.wait), "hub.wait", 1, 60),
        backoff_initial=backoff_initial,
        backoff_cap=backoff_cap,
        threads=_integer(store.get("threads", defaults.threads), "store.threads", 0),
        engine=_choice(engine.get("name", defaults.engine), "engine.name", ("duckdb", "spark")),
        spark_master=_text(engine.get("spark_master", defaults.spark_master), "engine.spark_master"),
        analysis=analysis_policy,
        workspace_ttl=workspace_ttl,
        data_end=data_end,
        extraction_output=Path(output) if output is not None else None,
        extraction_time_limit=_seconds(
            extraction.get("time_limit", defaults.extraction_time_limit), "extraction.time_limit"
        ),
        extraction_memory_limit=memory_limit,
        extraction_key_file=Path(key_file) if key_file is not None else None,
        linkage=linkage,
    )


def _linkage(section: Mapping[str, Any]) -> LinkageSettings:
    for key in ("unit_url", "project", "site", "token_file", "secret_file"):
        if key not in section:
            raise ConfigError(f"linkage.{key}: required in [linkage]")
    url = _text(section["unit_url"], "linkage.unit_url")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"linkage.unit_url: expected an http(s) URL, got {url!r}")
    schema = section.get("schema")
    return LinkageSettings(
        unit_url=url.rstrip("/"),
        project=_text(section["project"], "linkage.project"),
        site=_text(section["site"], "linkage.site"),
        token_file=Path(_text(section["token_file"], "linkage.token_file")),
        secret_file=Path(_text(section["secret_file"], "linkage.secret_file")),
        schema=None if schema is None else Path(_text(schema, "linkage.schema")),
    )


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
    return value


def load_config(path: Path | None) -> AgentConfig:
    """Read the operator's TOML file (None: all defaults); a ConfigError names the file and the key."""
    if path is None:
        return parse_config({})
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    try:
        return parse_config(document)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
