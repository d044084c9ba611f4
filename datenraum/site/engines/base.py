"""The store-reading engine interface (`SiteEngine`), the site's engine setting, and feasibility on any
engine.

A `SiteEngine` is built over one snapshot of the store and offers its tables to SQL in one dialect. It is
deliberately small, so that a later capability needs nothing engine-specific: it writes its SQL (by hand,
or with sqlglot for `engine.dialect`), and gets an Arrow table back. What runs where (a process, a
cluster) is the engine's business.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from datenraum.query.engines.base import resolve_today
from datenraum.query.engines.sql import compile_count, compile_query
from datenraum.query.model import StructuredQuery

if TYPE_CHECKING:
    import pyarrow as pa

    from datenraum.site.store import Snapshot

__all__ = [
    "ENGINES",
    "EngineSettings",
    "EngineUnavailable",
    "SiteEngine",
    "SqlFeasibility",
    "feasibility_engine",
    "open_engine",
]

#: The engines a site may run its store on (the `[engine] name` setting, `--engine` on the commands).
ENGINES = ("duckdb", "spark")


class EngineUnavailable(RuntimeError):
    """The configured engine cannot be used (Spark without Java, an unreachable master, ...); the text
    names the setting to change."""


@dataclass(frozen=True)
class EngineSettings:
    """Which engine a site runs its store on, and where.

    `name`: "duckdb" (embedded, the default) or "spark". `spark_master`: the Spark master URL
    (`local[*]`: this machine's cores; `spark://host:7077` a standalone cluster; `k8s://https://...`
    Kubernetes). `spark_conf`: further Spark settings (`spark.executor.memory`, ...), passed as given.
    """

    name: str = "duckdb"
    spark_master: str = "local[*]"
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"unknown engine {self.name!r} (known: {', '.join(ENGINES)})")
        object.__setattr__(self, "spark_conf", MappingProxyType(dict(self.spark_conf)))


@runtime_checkable
class SiteEngine(Protocol):
    """SQL over the tables of one store snapshot; see the package docstring."""

    #: The SQL dialect `sql` takes, as sqlglot names it: "duckdb", "spark" or "postgres".
    dialect: str

    def tables(self) -> list[str]:
        """The tables SQL may read (every table of the store, empty ones too)."""
        ...

    def sql(self, statement: str) -> pa.Table:
        """The result of one SELECT statement, whole, as an Arrow table."""
        ...

    def sql_batches(self, statement: str, rows: int) -> Iterator[pa.RecordBatch]:
        """The result of one SELECT statement a portion of about `rows` rows at a time, in the
        statement's order: what a result too big for memory (an extraction's resources) is read with."""
        ...

    def close(self) -> None:
        """Release what the engine holds for the snapshot (the snapshot itself stays open)."""
        ...


@contextlib.contextmanager
def open_engine(snapshot: Snapshot, settings: EngineSettings | None = None) -> Iterator[SiteEngine]:
    """The engine `settings` names, over `snapshot`, for as long as the block runs; raises
    EngineUnavailable when it cannot start."""
    settings = settings if settings is not None else EngineSettings()
    engine: SiteEngine
    if settings.name == "spark":
        from datenraum.site.engines.spark import SparkEngine, spark_session

        engine = SparkEngine(snapshot, spark_session(settings))
    else:
        from datenraum.site.engines.duckdb import DuckDBEngine

        engine = DuckDBEngine(snapshot)
    try:
        yield engine
    finally:
        engine.close()


class SqlFeasibility:
    """The query `Engine` (`datenraum.query.engines.base`) over any `SiteEngine`: the structured query
    compiled in the engine's dialect and run there."""

    def __init__(self, engine: SiteEngine) -> None:
        self.engine = engine

    def patient_ids(self, query: StructuredQuery, *, today: dt.date | None = None) -> list[str]:
        """The ids of the cohort's patients, sorted; raises QueryError for a query the site cannot answer."""
        sql = compile_query(query, today=resolve_today(today), dialect=self.engine.dialect)
        return self.engine.sql(sql).column(0).to_pylist()

    def count(self, query: StructuredQuery, *, today: dt.date | None = None) -> int:
        """The exact number of the cohort's patients (no obfuscation: that is the hub's job)."""
        sql = compile_count(query, today=resolve_today(today), dialect=self.engine.dialect)
        return self.engine.sql(sql).column(0)[0].as_py()


def feasibility_engine(engine: SiteEngine) -> SqlFeasibility:
    """Feasibility (`patient_ids`, `count`) on `engine`."""
    return SqlFeasibility(engine)
