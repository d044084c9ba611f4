"""TORCH's HTTP operation, site-local: `datenraum extract serve --store DIR --port N`.

The same exchange as TORCH (`torch:docs/api/api.md`, brief §3.1), so that MII scripts
(`transfer-extraction-to-dup-fhir-server.sh`, aether's TORCH step) need only a base-URL change:

- `POST /fhir/$extract-data` with a FHIR `Parameters` body: `crtdl` as `valueBase64Binary` (the CRTDL
  JSON), optionally repeated `patient` as `valueString` (instead of the cohort). Everything is checked
  before the answer: invalid input gets 400 and an OperationOutcome whose issues name the JSON path
  (`issue.expression`); else 202 with `Content-Location: {base}/fhir/__status/{jobId}` (a UUID).
- `GET /fhir/__status/{jobId}`: 202 with `X-Progress` while the job waits or runs; 200 with the
  bulk-data-style manifest (`output: [{type, url}]`, absolute URLs, plus TORCH's extensions) when done;
  500 with an OperationOutcome when it failed; 404 for an unknown job; 400 for an id that is no UUID.
- `GET /fhir/__output/{jobId}/{file}`: the job's files (the NDJSON, reports, tables).

Jobs live under `--jobs DIR` (default `<store>/../extraction-jobs`): `{jobId}/request.json` (written
before the 202, atomically), `{jobId}/output/` (the job folder, `datenraum.site.extraction.output`),
`{jobId}/failed.json` when it failed. A service killed at any point (kill -9) finds the unfinished jobs
at its next start and resumes them; finished batches are kept, so the files are the same as without
the interruption. Jobs run one at a time in a background thread, in the order they came.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import logging
import queue
import re
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from datenraum.query.model import QueryError, parse_query
from datenraum.site.extraction.job import (
    SORT_MEMORY_LIMIT,
    ExtractionError,
    ExtractionOutOfMemory,
    JobOptions,
    prepare,
    run_extraction,
)
from datenraum.site.extraction.output import write_atomically

if TYPE_CHECKING:
    from datenraum.site.engines import EngineSettings

__all__ = ["JobRunner", "create_app"]

log = logging.getLogger("datenraum.site.extraction")
FHIR_JSON = "application/fhir+json"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def outcome(status: int, issues: list[tuple[str, str]], code: str = "invalid") -> JSONResponse:
    """An OperationOutcome: one issue per (JSON path or '', text)."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": code,
                "diagnostics": text,
                **({"expression": [path]} if path else {}),
            }
            for path, text in issues
        ],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


class _BadRequest(Exception):
    def __init__(self, issues: list[tuple[str, str]]) -> None:
        super().__init__(issues)
        self.issues = issues


def parse_parameters(body: bytes) -> tuple[bytes, list[str] | None]:
    """(CRTDL JSON bytes, patients or None) from a `$extract-data` Parameters body."""
    try:
        parameters = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise _BadRequest([("", f"the body is not JSON: {error}")]) from None
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise _BadRequest([("$.resourceType", "the body must be a FHIR Parameters resource")])
    items = parameters.get("parameter")
    if not isinstance(items, list):
        raise _BadRequest([("$.parameter", "expected a list of parameters")])
    crtdl: bytes | None = None
    patients: list[str] = []
    for index, item in enumerate(items):
        path = f"$.parameter[{index}]"
        name = item.get("name") if isinstance(item, dict) else None
        if name == "crtdl":
            value = item.get("valueBase64Binary")
            if not isinstance(value, str):
                raise _BadRequest([(f"{path}.valueBase64Binary", "crtdl must be a valueBase64Binary")])
            try:
                crtdl = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _BadRequest([(f"{path}.valueBase64Binary", "not valid base64")]) from None
        elif name == "patient":
            value = item.get("valueString")
            if not isinstance(value, str) or not value:
                raise _BadRequest([(f"{path}.valueString", "patient must be a valueString (an id)")])
            patients.append(value.removeprefix("Patient/"))
    if crtdl is None:
        raise _BadRequest([("$.parameter", "the crtdl parameter is missing")])
    return crtdl, (patients or None)


class JobRunner:
    """The service's jobs: persisted under `jobs`, run one at a time by a background thread, on the
    site's engine (`engine`; DuckDB when None)."""

    def __init__(
        self,
        store: Path,
        jobs: Path,
        batch_size: int = 500,
        engine: EngineSettings | None = None,
        memory_limit: str = SORT_MEMORY_LIMIT,
    ) -> None:
        self.store = store
        self.jobs = jobs
        self.batch_size = batch_size
        self.engine = engine
        self.memory_limit = memory_limit
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.progress: dict[str, str] = {}
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        for folder in sorted(self.jobs.iterdir(), key=lambda p: p.stat().st_mtime):
            if (folder / "request.json").exists() and self.state(folder.name) == "PENDING":
                log.info("resuming extraction job %s", folder.name)
                self._queue.put(folder.name)
        self._thread = threading.Thread(target=self._work, name="datenraum-extract", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)

    def submit(self, crtdl: bytes, patients: list[str] | None) -> str:
        job_id = str(uuid.uuid4())
        folder = self.jobs / job_id
        folder.mkdir()
        request = {
            "crtdl": crtdl.decode(),
            "patients": patients,
            "today": dt.date.today().isoformat(),
            "batchSize": self.batch_size,
            "submitted": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        write_atomically(folder / "request.json", orjson.dumps(request))
        self._queue.put(job_id)
        return job_id

    def state(self, job_id: str) -> str | None:
        folder = self.jobs / job_id
        if not (folder / "request.json").exists():
            return None
        if (folder / "failed.json").exists():
            return "FAILED"
        job = folder / "output" / "job.json"
        if job.exists() and orjson.loads(job.read_bytes()).get("status") == "COMPLETED":
            return "COMPLETED"
        return "RUNNING" if job_id in self.progress else "PENDING"

    def _work(self) -> None:
        while (job_id := self._queue.get()) is not None:
            self.run(job_id)

    def run(self, job_id: str) -> None:
        """Run (or resume) one job to its end; its failure is recorded in `failed.json`."""
        folder = self.jobs / job_id
        request = orjson.loads((folder / "request.json").read_bytes())
        self.progress[job_id] = "Getting cohort"

        def progress(done: int, total: int) -> None:
            self.progress[job_id] = f"Processing batches ({100 * done // max(total, 1)}%)"

        options = JobOptions(
            today=dt.date.fromisoformat(request["today"]),
            patients=request["patients"],
            batch_size=request.get("batchSize", 500),
            engine=self.engine,
            memory_limit=self.memory_limit,
        )
        try:
            run_extraction(
                self.store, request["crtdl"].encode(), folder / "output", options, progress=progress
            )
        except ExtractionError as error:
            issues = [[v.path, v.message] for v in error.violations]
            write_atomically(folder / "failed.json", orjson.dumps({"issues": issues}))
        except ExtractionOutOfMemory as error:
            write_atomically(folder / "failed.json", orjson.dumps({"issues": [["", str(error)]]}))
        except Exception as error:  # the job fails, the service goes on
            log.exception("extraction job %s failed", job_id)
            write_atomically(
                folder / "failed.json", orjson.dumps({"issues": [["", f"internal error: {error}"]]})
            )
        finally:
            self.progress.pop(job_id, None)


def create_app(
    store: Path,
    jobs: Path,
    *,
    base_url: str | None = None,
    run: bool = True,
    batch_size: int = 500,
    engine: EngineSettings | None = None,
    memory_limit: str = SORT_MEMORY_LIMIT,
) -> FastAPI:
    """The service's app; `run=False` accepts jobs without running them (a test runs them with
    `app.state.runner.run(job_id)`)."""
    runner = JobRunner(store, jobs, batch_size, engine, memory_limit)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        if run:
            runner.start()
        yield
        runner.stop()

    app = FastAPI(
        title="Datenraum extraction (TORCH-compatible)", docs_url=None, redoc_url=None, lifespan=lifespan
    )
    app.state.runner = runner

    def base(request: Request) -> str:
        return (base_url or str(request.base_url)).rstrip("/")

    @app.post("/fhir/$extract-data")
    async def extract_data(request: Request) -> Response:
        try:
            crtdl, patients = parse_parameters(await request.body())
        except _BadRequest as bad:
            return outcome(400, bad.issues)
        try:
            prepared = prepare(crtdl, JobOptions(patients=patients))
            if patients is None:
                parse_query(prepared.crtdl.cohort)
        except ExtractionError as error:
            return outcome(400, [(v.path, v.message) for v in error.violations])
        except QueryError as error:
            return outcome(400, [(f"$.cohortDefinition{error.path.removeprefix('$')}", error.problem)])
        job_id = runner.submit(crtdl, patients)
        location = f"{base(request)}/fhir/__status/{job_id}"
        return Response(status_code=202, headers={"Content-Location": location})

    @app.get("/fhir/__status/{job_id}")
    def status(job_id: str, request: Request) -> Response:
        if not _UUID.match(job_id):
            return outcome(400, [("", f"{job_id!r} is not a job id (a UUID)")])
        state = runner.state(job_id)
        if state is None:
            return outcome(404, [("", f"no job {job_id}")], code="not-found")
        folder = runner.jobs / job_id
        if state == "FAILED":
            issues = orjson.loads((folder / "failed.json").read_bytes())["issues"]
            return outcome(500, [(p, t) for p, t in issues], code="processing")
        if state != "COMPLETED":
            progress = runner.progress.get(job_id, "Pending")
            return Response(status_code=202, headers={"X-Progress": progress})
        manifest = orjson.loads((folder / "output" / "manifest.json").read_bytes())
        files = f"{base(request)}/fhir/__output/{job_id}"
        manifest["request"] = f"{base(request)}/fhir/$extract-data"
        manifest["output"] = [{**o, "url": f"{files}/{o['url']}"} for o in manifest["output"]]
        manifest["extension"] = [
            {"url": e["url"], "valueUrl": f"{files}/{e['valueString']}"} for e in manifest["extension"]
        ]
        return JSONResponse(manifest)

    @app.get("/fhir/__output/{job_id}/{name:path}")
    def output(job_id: str, name: str) -> Response:
        if not _UUID.match(job_id) or runner.state(job_id) != "COMPLETED":
            return outcome(404, [("", f"no finished job {job_id}")], code="not-found")
        root = (runner.jobs / job_id / "output").resolve()
        path = (root / name).resolve()
        if root not in path.parents or not path.is_file() or path.name.startswith("."):
            return outcome(404, [("", f"no file {name}")], code="not-found")
        kind = "application/fhir+ndjson" if path.suffix == ".ndjson" else None
        return FileResponse(path, media_type=kind)

    return app


def serve(
    store: Path,
    port: int,
    *,
    host: str = "127.0.0.1",
    jobs: Path | None = None,
    batch_size: int = 500,
    engine: EngineSettings | None = None,
    memory_limit: str = SORT_MEMORY_LIMIT,
) -> None:
    import uvicorn

    jobs = jobs or store.resolve().parent / "extraction-jobs"
    app = create_app(store, jobs, batch_size=batch_size, engine=engine, memory_limit=memory_limit)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=5)
