"""Apache Spark as the site's engine: one Spark session per process, and `SparkEngine`, a snapshot's
tables as temporary views over the same Parquet files (no copy).

The session is started with the site's master URL (`[engine] spark_master`, `local[*]` by default). The
JVM's console output (Spark's log, Java stack traces) goes to a log file, never to the site's console: a
Spark that cannot start is one `EngineUnavailable` naming the setting, with the log file for the details.

On a cluster the executors read the store's files by the paths of the manifest, so the store must be on a
file system every executor mounts at the same path (or an object store that Spark reads); the executors
need Python with Datenraum installed only for `datenraum ingest --engine spark` (feasibility runs as SQL).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from datenraum.query.model import StructuredQuery
from datenraum.site.engines.base import EngineSettings, EngineUnavailable
from datenraum.site.store import SEQ_COLUMN, Snapshot, table_schemas

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkEngine", "spark_cohort", "spark_log", "spark_session", "stop_spark_session"]

# Settings that suit a site: Datenraum's timestamps are naive UTC (TIMESTAMP_NTZ), Spark's UI and progress
# bars are of no use to an agent, and the driver binds to loopback in local mode.
_DEFAULTS = {
    "spark.app.name": "datenraum-site",
    "spark.sql.session.timeZone": "UTC",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.pyspark.jvmStacktrace.enabled": "false",
}
_LOCAL_DEFAULTS = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
# How long a spark:// master may take to accept a connection before it counts as unreachable.
_CONNECT_SECONDS = 5.0

_lock = threading.Lock()
_session: SparkSession | None = None
_session_key: tuple | None = None
_log: Path | None = None


def spark_log() -> Path | None:
    """The log file of this process's Spark driver (JVM output), once a session was started."""
    return _log


def spark_session(settings: EngineSettings) -> SparkSession:
    """The process's Spark session for `settings` (started on first use; a session on another master or
    configuration is stopped first). Raises EngineUnavailable, naming the setting, when Spark cannot
    start."""
    global _session, _session_key
    key = (settings.spark_master, tuple(sorted(settings.spark_conf.items())))
    with _lock:
        if _session is not None and _session_key == key:
            return _session
        if _session is not None:
            _stop()
        _session = _start(settings)
        _session_key = key
        return _session


def stop_spark_session() -> None:
    """Stop the process's Spark session, if one runs (also done at exit)."""
    with _lock:
        _stop()


def _stop() -> None:
    global _session, _session_key
    if _session is not None:
        with contextlib.suppress(Exception):
            _session.stop()
        _session, _session_key = None, None


atexit.register(stop_spark_session)


def _check_master(master: str) -> None:
    """Fail fast, with the setting's name, on a master URL Spark would only give up on after minutes."""
    setting = f"engine.spark_master = {master!r}"
    if not re.fullmatch(r"local(\[(\*|\d+)(,\d+)?\])?|spark://.+|k8s://.+|yarn", master):
        raise EngineUnavailable(
            f"{setting}: not a Spark master URL (expected local[*], local[N], spark://HOST:PORT, "
            "k8s://https://HOST:PORT or yarn)"
        )
    if master.startswith("spark://"):
        for address in master.removeprefix("spark://").split(","):
            host, _, port = address.rpartition(":")
            try:
                with socket.create_connection((host, int(port)), timeout=_CONNECT_SECONDS):
                    pass
            except (OSError, ValueError) as error:
                raise EngineUnavailable(
                    f"{setting}: no Spark master answers at {address} ({error})"
                ) from None


def _conf(settings: EngineSettings) -> dict[str, str]:
    conf = dict(_DEFAULTS)
    if settings.spark_master.startswith("local"):
        conf.update(_LOCAL_DEFAULTS)
        # The Python of the ingest's tasks: this one, with Datenraum installed. On a cluster it is the
        # cluster's setting (spark-defaults.conf of SPARK_CONF_DIR), which a value set here would hide.
        conf["spark.pyspark.python"] = sys.executable
        conf["spark.pyspark.driver.python"] = sys.executable
    conf.update(settings.spark_conf)
    conf["spark.master"] = settings.spark_master
    return conf


def _start(settings: EngineSettings) -> SparkSession:
    global _log
    _check_master(settings.spark_master)
    try:
        from pyspark import SparkConf, SparkContext
        from pyspark.java_gateway import launch_gateway
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineUnavailable(
            "engine.name = 'spark': pyspark is not installed (pip install pyspark)"
        ) from None
    conf = SparkConf(loadDefaults=False).setAll(list(_conf(settings).items()))
    log_file = Path(tempfile.gettempdir()) / f"datenraum-spark-{os.getpid()}.log"
    _log = log_file
    output = open(log_file, "ab")  # noqa: SIM115 - the JVM writes to it for as long as it runs
    if settings.spark_master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no warning about the host's name
    # The RDD tasks' Python (the ingest's) comes from the environment, not from spark.pyspark.python:
    # this interpreter's path unless the site sets PYSPARK_PYTHON (executors with Python elsewhere).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    gateway = None
    try:
        gateway = launch_gateway(conf, popen_kwargs={"stdout": output, "stderr": subprocess.STDOUT})
        context = SparkContext(conf=conf, gateway=gateway)
    except Exception as error:
        if gateway is not None and gateway.proc is not None:
            with contextlib.suppress(Exception):
                gateway.proc.kill()
        raise EngineUnavailable(_start_failure(settings, error, log_file)) from None
    finally:
        output.close()
    context.setLogLevel("ERROR")
    return SparkSession(context)


def _start_failure(settings: EngineSettings, error: Exception, log_file: Path) -> str:
    """One line on why Spark did not start, naming the setting to look at."""
    text = str(error)
    if "JAVA_GATEWAY_EXITED" in text or "Java gateway process exited" in text:
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        if "JAVA_HOME" in log or "java: not found" in log or "No such file" in log:
            reason = "Java is not installed (Spark needs a Java 17 runtime: scripts/setup installs it)"
        else:
            reason = "the Spark driver (a Java process) exited at start"
        return f"engine.name = 'spark': Spark could not start: {reason}; see {log_file}"
    # The first line of the Java exception, without the stack trace.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = next(
        (line for line in lines if "Exception" in line or "Error" in line), lines[0] if lines else ""
    )
    reason = re.sub(r"^.*?(\w+(Exception|Error):)", r"\1", reason)[:300]
    return f"engine.spark_master = {settings.spark_master!r}: Spark could not start: {reason}; see {log_file}"


# --- the store's tables as Spark views ----------------------------------------------------------------


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark schema of a store table (naive timestamps are TIMESTAMP_NTZ, as the compiler assumes)."""
    from pyspark.sql import types as T

    types = {
        pa.string(): T.StringType(),
        pa.bool_(): T.BooleanType(),
        pa.float64(): T.DoubleType(),
        pa.int64(): T.LongType(),
        pa.date32(): T.DateType(),
        pa.timestamp("us"): T.TimestampNTZType(),
    }
    return T.StructType([T.StructField(f.name, types[f.type], True) for f in schema])


class SparkEngine:
    """SQL (Spark dialect) over a snapshot's tables, each a temporary view of the Parquet files its manifest
    lists. The views live in a session of their own (sharing the process's Spark context), so that
    engines over different snapshots do not see each other's tables; a view is registered when a
    statement first reads its table (a feasibility query reads two or three of the store's tables, and
    each registration costs Spark a round of analysis)."""

    dialect = "spark"

    def __init__(self, snapshot: Snapshot, session: SparkSession) -> None:
        self.snapshot = snapshot
        self.session = session.newSession()
        self._schemas = table_schemas()
        self._registered: set[str] = set()

    def frame(self, table: str) -> DataFrame:
        """The table's rows as a DataFrame: its files read with the current schema, so that a column an
        older version did not write reads as NULL."""
        schema = self._schemas[table]
        if SEQ_COLUMN in schema.names:
            schema = schema.remove(schema.get_field_index(SEQ_COLUMN))
        files = [str(f) for f in self.snapshot.files(table)]
        structure = spark_schema(schema)
        if not files:
            return self.session.createDataFrame([], structure)
        return self.session.read.schema(structure).parquet(*files)

    def register(self, tables: Iterable[str]) -> None:
        """Make the store's `tables` visible to SQL (the others are left for later)."""
        for table in tables:
            if table in self._schemas and table not in self._registered:
                self.frame(table).createOrReplaceTempView(table)
                self._registered.add(table)

    def tables(self) -> list[str]:
        return list(self._schemas)

    def sql(self, statement: str) -> pa.Table:
        self.register(_read_tables(statement))
        return self.session.sql(statement).toArrow()

    def sql_batches(self, statement: str, rows: int) -> Iterator[pa.RecordBatch]:
        """Partition by partition to the driver (`toLocalIterator`), so the driver holds one partition
        and one portion, never the whole result; an ORDER BY's partitions come in its order."""
        self.register(_read_tables(statement))
        from pyspark.sql.pandas.types import to_arrow_schema

        frame = self.session.sql(statement)
        schema = to_arrow_schema(frame.schema)
        portion: list[tuple] = []
        for row in frame.toLocalIterator(prefetchPartitions=False):
            portion.append(tuple(row))
            if len(portion) >= rows:
                yield _record_batch(schema, portion)
                portion = []
        if portion:
            yield _record_batch(schema, portion)

    def close(self) -> None:
        for table in self._registered:
            with contextlib.suppress(Exception):
                self.session.catalog.dropTempView(table)
        self._registered = set()


def _record_batch(schema: pa.Schema, rows: list[tuple]) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    return pa.record_batch([pa.array(c, type=f.type) for c, f in zip(columns, schema, strict=True)], schema)


def _read_tables(statement: str) -> set[str]:
    """The names a statement reads FROM or JOINs (CTE names too; only the store's are registered)."""
    from sqlglot import exp, parse_one

    return {table.name for table in parse_one(statement, dialect="spark").find_all(exp.Table)}


# How often the jobs of a task past its time limit are cancelled again: a cancel reaches only the jobs
# running at that moment, and a query may start its next job (or its first, after planning) later.
_CANCEL_RETRY_SECONDS = 0.05


@contextlib.contextmanager
def _time_limited(context: Any, seconds: float | None) -> Iterator[None]:
    """Runs the block's Spark jobs in a job group of their own, cancelled once `seconds` have passed (and
    again until the block ends); the block then raises TimeoutError, also if it finished meanwhile, as
    its answer came too late. None: no limit."""
    if seconds is None:
        yield
        return
    group = f"datenraum-task-{uuid.uuid4().hex}"
    over, done = threading.Event(), threading.Event()

    def cancel() -> None:
        over.set()
        while not done.is_set():
            with contextlib.suppress(Exception):
                context.cancelJobGroup(group)
            done.wait(_CANCEL_RETRY_SECONDS)

    # Job groups are per thread (PySpark's pinned threads), so tasks side by side keep their own.
    context.setJobGroup(group, "datenraum feasibility task", interruptOnCancel=True)
    timer = threading.Timer(seconds, cancel)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if not over.is_set():
            raise
    finally:
        done.set()
        timer.cancel()
        context.setLocalProperty("spark.jobGroup.id", None)
    if over.is_set():
        raise TimeoutError(
            f"the Spark jobs of the query were cancelled after {seconds:g} s (tasks.time_limit)"
        )


def spark_cohort(
    settings: EngineSettings, time_limit: float | None = None
) -> Callable[[Snapshot, StructuredQuery], Iterator[str]]:
    """The site agent's cohort (`datenraum.site.agent.loop.Cohort`) on Spark: a task's patient ids,
    sorted. The session starts here, so that a Spark that cannot start stops the agent at once. A query
    still running after `time_limit` seconds (the agent's `tasks.time_limit`) has its Spark jobs
    cancelled and raises TimeoutError: the agent's own time limit interrupts only DuckDB."""
    from datenraum.site.engines.base import feasibility_engine

    session = spark_session(settings)

    def cohort(snapshot: Snapshot, query: StructuredQuery) -> Iterator[str]:
        engine = SparkEngine(snapshot, session)
        try:
            with _time_limited(session.sparkContext, time_limit):
                ids = feasibility_engine(engine).patient_ids(query)
            return iter(ids)
        finally:
            engine.close()

    return cohort
