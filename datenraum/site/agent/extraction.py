"""The agent's `extraction` task: an approved project's CRTDL extracted into a site-local job folder.

Off unless the operator lists "extraction" in `tasks.allowed` (and names `extraction.output`). The task's
payload is `{"crtdl": <CRTDL JSON>, "project": <approved project id>}`. The job runs into
`<extraction.output>/<project>/<task id>/` (TORCH's job folder, see `datenraum.site.extraction.output`);
what goes back to the hub is only the state and the job summary's counts (`datenraum.privacy.delivery`): no patient
id, no resource, no file leaves the site. A task of a data delivery (its payload has the project's
`recipient_key`) is also de-identified, gated and sealed at the site (`agent.delivery`); the package
leaves only after the site's custodian released it, as a separate upload.

A task offered again after the agent was stopped or killed resumes its job folder (finished batches are
kept; the job's day is the one recorded when it began). The time limit (`extraction.time_limit`) and
the agent's stop are checked between batches.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from datenraum.privacy.delivery import extraction_counts
from datenraum.protocol.messages import Task, TaskResult, TaskState
from datenraum.site.agent.config import AgentConfig

__all__ = ["run_extraction_task"]

log = logging.getLogger("datenraum.site.agent")

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class _Interrupted(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _folder_name(value: str) -> str:
    name = _SAFE.sub("_", value)[:100]
    return name if name.strip(".") else "_"


def job_folder(config: AgentConfig, project: str, task_id: str) -> Path:
    assert config.extraction_output is not None
    return config.extraction_output / _folder_name(project) / _folder_name(task_id)


def run_extraction_task(
    task: Task, *, store: Path, config: AgentConfig, stopping: Callable[[], bool]
) -> TaskResult | None:
    """The task's result (not journaled yet); None if the agent stopped meanwhile (no result: the hub
    offers the task again and the job resumes)."""
    import datetime as dt

    from datenraum.site.engines import EngineSettings
    from datenraum.site.extraction import ExtractionError, ExtractionOutOfMemory, JobOptions, run_extraction

    def failed(reason: str) -> TaskResult:
        log.warning("task %s: failed: %s", task.id, reason)
        return TaskResult(task.id, TaskState.FAILED, reason=reason[:2000])

    crtdl = task.payload.get("crtdl")
    project = task.payload.get("project")
    if not isinstance(crtdl, dict):
        return failed("malformed task: payload.crtdl must be the CRTDL (a JSON object)")
    if not isinstance(project, str) or not project.strip() or len(project) > 200:
        return failed("malformed task: payload.project must be the approved project's id")
    if config.extraction_output is None:
        return failed("this site has no extraction output folder configured")
    out = job_folder(config, project, task.id)
    today = None
    if (out / "job.json").exists():  # resuming: the job's day is the one it began with
        today = dt.date.fromisoformat(orjson.loads((out / "job.json").read_bytes())["today"])
    deadline = time.monotonic() + config.extraction_time_limit

    def progress(done: int, total: int) -> None:
        if stopping():
            raise _Interrupted("stopping")
        if time.monotonic() > deadline:
            raise _Interrupted("time")

    started = time.perf_counter()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = run_extraction(
            store,
            orjson.dumps(crtdl),
            out,
            JobOptions(
                today=today,
                engine=EngineSettings(config.engine, config.spark_master),
                memory_limit=config.extraction_memory_limit,
            ),
            progress=progress,
        )
    except _Interrupted as interrupted:
        if interrupted.why == "stopping":
            return None
        return failed(
            f"time limit of {config.extraction_time_limit:g} s exceeded; the finished batches are kept "
            "and the job resumes when the task is sent again"
        )
    except ExtractionError as error:
        return failed(f"the CRTDL cannot be extracted here: {error}")
    except (FileExistsError, ExtractionOutOfMemory) as error:
        return failed(str(error))
    except Exception:
        log.exception("task %s: unexpected error in the extraction", task.id)
        return failed("the site could not run the extraction (internal error, see the site's log)")
    counts = extraction_counts(summary)
    if "recipient_key" in task.payload:  # a data delivery: de-identified, gated and sealed here
        from datenraum.site.agent.delivery import DeliveryError, seal_delivery

        try:
            counts |= seal_delivery(out, task.payload, config)
        except DeliveryError as error:
            return failed(str(error))
    log.info(
        "task %s: extraction of project %s done in %.1f s into %s",
        task.id,
        project,
        time.perf_counter() - started,
        out,
    )
    return TaskResult(task.id, TaskState.ANSWERED, summary=counts)
