"""The engines a site reads its store with: DuckDB (embedded, the default) or Apache Spark (a cluster).

Whatever reads the store, feasibility now and extraction, analysis and dashboard indicators later, goes
through one small interface, `SiteEngine` (`base.py`), so that it runs unchanged on either engine:

    with Store(path).snapshot() as snapshot, open_engine(snapshot, settings) as engine:
        table = engine.sql("SELECT gender, count(*) AS n FROM patient GROUP BY gender")  # pyarrow.Table
        ids = feasibility_engine(engine).patient_ids(query)                          # query.Engine

An engine is bound to one snapshot: its tables (`patient`, `condition`, ... the store's views, see
`datenraum.site.store.table_schemas`) are the Parquet files of that snapshot's manifest, read where they
are (no copy), and `engine.dialect` says which SQL dialect `sql` takes (the compiler in
`datenraum.query.engines.sql` writes each). Modules:

- `base`: `SiteEngine`, `EngineSettings` (the site's `[engine]` setting), `open_engine`,
  `feasibility_engine` and the error `EngineUnavailable`;
- `duckdb`: `DuckDBEngine`, the snapshot's own DuckDB connection;
- `spark`: `SparkEngine` (the snapshot's tables as temporary views of a Spark session) and
  `spark_session`, the one session of a process, started with the setting's master URL;
- `spark_ingest`: the read-and-flatten step of an ingest as Spark tasks;
- `postgres`: a snapshot's tables copied into a PostgreSQL schema, for running the PostgreSQL dialect
  (the spec suite's fourth engine; a warehouse that holds the store's tables).
"""

from datenraum.site.engines.base import (
    ENGINES,
    EngineSettings,
    EngineUnavailable,
    SiteEngine,
    feasibility_engine,
    open_engine,
)

__all__ = [
    "ENGINES",
    "EngineSettings",
    "EngineUnavailable",
    "SiteEngine",
    "feasibility_engine",
    "open_engine",
]
