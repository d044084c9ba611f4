"""The read-and-flatten step of an ingest as Spark tasks: `datenraum ingest --engine spark`.

The planned read tasks (`datenraum.site.ingest.plan`) become the elements of an RDD, one per partition,
and each Spark task runs the same Python reader as a worker process of the DuckDB path
(`datenraum.site.ingest.worker.run_task`: strict reader, row-by-row reader, staging Parquet). What comes
back is each task's `ReadResult`, in plan order, for the existing commit; so the store is the same as the
DuckDB path's, table for table and reject for reject.

The tasks write their staging Parquet into the load's staging folder in the store; on a cluster the store
is on a file system that every executor mounts at the same path, and the executors' Python has Datenraum
installed (`spark.pyspark.python`).
"""

from __future__ import annotations

from collections.abc import Iterable

from datenraum.site.engines.base import EngineSettings
from datenraum.site.engines.spark import spark_log, spark_session
from datenraum.site.ingest.plan import ReadResult, ReadTask
from datenraum.site.ingest.report import IngestError
from datenraum.site.ingest.worker import run_task

__all__ = ["read_on_spark"]


def _where(task: ReadTask) -> str:
    """Where a task starts reading, in the words of a reject (file:line, or the Bundle file)."""
    piece = task.pieces[0]
    where = piece.location(piece.first_line) if piece.kind != "json" else piece.path
    more = len(task.pieces) - 1
    return where + (f" (and {more} more file{'s' if more > 1 else ''})" if more else "")


def _run(task: ReadTask) -> tuple[str, object]:
    """A Spark task: the read task run as in a worker process; an error comes back as text naming where
    the task read, rather than as a Python traceback inside a Java one."""
    try:
        return "ok", run_task(task)
    except Exception as error:
        return "error", f"{_where(task)}: {type(error).__name__}: {error}"


def read_on_spark(tasks: Iterable[ReadTask], settings: EngineSettings) -> list[ReadResult]:
    """The results of `tasks`, read by Spark tasks of the session `settings` names, in task order.

    Raises EngineUnavailable when Spark cannot start, IngestError (naming file and line where the task
    began) when a task fails; nothing is loaded then."""
    tasks = list(tasks)
    if not tasks:
        return []
    session = spark_session(settings)
    context = session.sparkContext
    context.setJobDescription(f"datenraum ingest: {len(tasks)} read tasks")
    try:
        outcomes = context.parallelize(tasks, len(tasks)).map(_run).collect()
    except Exception as error:
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise IngestError(
            f"a Spark task failed ({first[:200]}); nothing was loaded; see the Spark log {spark_log()}"
        ) from None
    results = []
    for status, value in outcomes:
        if status == "error":
            raise IngestError(f"reading {value}; nothing was loaded")
        results.append(value)
    return results
