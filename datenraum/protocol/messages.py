"""What hub and site agents say to each other, as frozen values with a JSON form.

The site only ever connects out to the hub (hospital firewalls allow no inbound traffic), so every
exchange is a site's request: it long-polls for tasks and posts results. Task ids are chosen by the hub
and are the idempotency key: a site posts at most one result per task, and posting the same result again
(after a lost response, a restart) is accepted as a no-op.

Feasibility results carry only obfuscated counts (see `datenraum.privacy`); an exact count has no field
to travel in. Dashboard results (`indicators` tasks) carry a cube of aggregates per day or week and stratum
(`datenraum.indicators.cube`), never a per-patient row; the hub applies its release rules to them
before anything is shown (as the NUM dashboard's sites deliver their aggregates).

An `analysis` task (federated analysis, `datenraum.analysis.messages`) carries one versioned analysis
request as its payload, `{"v": 1, "request": {...}}`, and is answered with the site's analysis answer
(`{"v": 1, "ok": ..., "result" | "error": ...}`, aggregates that passed the site's disclosure control) in
`TaskResult.analysis`; nothing in either is evaluated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "API_PREFIX",
    "LINKAGE_DELIVERED",
    "ProtocolError",
    "SiteCount",
    "SiteMetadata",
    "TableDescription",
    "Task",
    "TaskResult",
    "TaskState",
    "TaskType",
]

API_PREFIX = "/api/site/v1"


class ProtocolError(ValueError):
    """A message that does not follow the protocol; the text says which field and why."""


class TaskType(StrEnum):
    FEASIBILITY_COUNT = "feasibility-count"
    # The figures of the site's data for the FAIR catalogue (`SiteMetadata`); the hub asks on a schedule.
    SITE_METADATA = "site-metadata"
    INDICATORS = "indicators"  # payload: {"definitions": <registry JSON>, "as_of": "YYYY-MM-DD"}
    ANALYSIS = "analysis"
    # payload: {"crtdl": <CRTDL JSON>, "project": <approved project id>}; the site extracts into its own
    # output folder and answers with the job summary's counts only (`TaskResult.summary`)
    EXTRACTION = "extraction"
    # payload: {"query": <structured query JSON> or null, "samples": <sample filter JSON>}; answered with
    # the sample counts as they may leave the site (`TaskResult.samples`, `datenraum.protocol.samples`)
    SAMPLE_SEARCH = "sample-search"


class TaskState(StrEnum):
    PENDING = "pending"  # created, not yet fetched by the site
    RUNNING = "running"  # fetched by the site, no result yet
    ANSWERED = "answered"
    FAILED = "failed"  # the site reported why it could not answer
    TIMED_OUT = "timed-out"  # no result before the deadline


@dataclass(frozen=True)
class SiteCount:
    """A site's count as it may leave the site: obfuscated, or only "below threshold"."""

    obfuscated: int | None
    below_threshold: bool = False

    def __post_init__(self) -> None:
        if self.below_threshold != (self.obfuscated is None):
            raise ProtocolError("a count is either obfuscated or below threshold")

    def to_json(self) -> dict[str, Any]:
        if self.below_threshold:
            return {"below_threshold": True}
        return {"obfuscated": self.obfuscated}

    @classmethod
    def from_json(cls, body: Any) -> SiteCount:
        if not isinstance(body, dict):
            raise ProtocolError("count: expected an object")
        if body.get("below_threshold") is True:
            return cls(None, True)
        value = body.get("obfuscated")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ProtocolError("count.obfuscated: expected a non-negative integer")
        return cls(value)


def _figure(body: Any, name: str) -> SiteCount | None:
    value = body.get(name)
    return None if value is None else SiteCount.from_json(value)


def _small_int(value: Any, name: str, maximum: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise ProtocolError(f"metadata.{name}: expected an integer from 0 to {maximum}")
    return value


def _text(value: Any, name: str, limit: int = 2000) -> str:
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise ProtocolError(f"{name}: expected a string of at most {limit} characters")
    return value


@dataclass(frozen=True)
class TableDescription:
    """A table of the site store as the catalogue lists it: its columns' names, types and meaning.

    `columns` are (name, datatype, description) triples; nothing in it comes from a patient's data."""

    name: str
    description: str
    columns: tuple[tuple[str, str, str], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "columns": [list(column) for column in self.columns],
        }

    @classmethod
    def from_json(cls, body: Any) -> TableDescription:
        if not isinstance(body, dict) or not isinstance(body.get("columns"), list):
            raise ProtocolError("metadata.tables[]: expected an object with columns")
        columns = []
        for column in body["columns"][:500]:
            if not isinstance(column, list) or len(column) != 3:
                raise ProtocolError("metadata.tables[].columns[]: expected [name, datatype, description]")
            columns.append(tuple(_text(part, "metadata.tables[].columns[]", 500) for part in column))
        return cls(
            _text(body.get("name"), "metadata.tables[].name", 100),
            _text(body.get("description", ""), "metadata.tables[].description"),
            tuple(columns),
        )


@dataclass(frozen=True)
class BiobankListing:
    """A biobank (or collection) of the site as the network directory lists it: its names and ids, and
    the sample categories and storage temperature classes it holds samples of (only those held for at
    least the threshold's number of patients, `privacy.metadata.held_by_enough`); no count."""

    id: str
    name: str
    bbmri_id: str | None
    part_of: str | None
    categories: tuple[str, ...]
    temperatures: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "bbmri_id": self.bbmri_id,
            "part_of": self.part_of,
            "categories": list(self.categories),
            "temperatures": list(self.temperatures),
        }

    @classmethod
    def from_json(cls, body: Any) -> BiobankListing:
        if not isinstance(body, dict):
            raise ProtocolError("metadata.biobanks[]: expected an object")
        categories, temperatures = body.get("categories", []), body.get("temperatures", [])
        if not isinstance(categories, list) or not isinstance(temperatures, list):
            raise ProtocolError("metadata.biobanks[]: categories and temperatures must be lists")
        optional = {
            name: None if body.get(name) is None else _text(body[name], f"metadata.biobanks[].{name}", 300)
            for name in ("bbmri_id", "part_of")
        }
        return cls(
            _text(body.get("id"), "metadata.biobanks[].id", 300),
            _text(body.get("name"), "metadata.biobanks[].name", 300),
            optional["bbmri_id"],
            optional["part_of"],
            tuple(_text(c, "metadata.biobanks[].categories[]", 100) for c in categories[:100]),
            tuple(_text(t, "metadata.biobanks[].temperatures[]", 100) for t in temperatures[:20]),
        )


@dataclass(frozen=True)
class SiteMetadata:
    """What a site tells the catalogue about its data: figures under the same disclosure rules as
    feasibility counts (`privacy.metadata`), and descriptions; nothing about any one patient.

    - `patients`, `records`: distinct patients and stored resources, each rounded, or below threshold
    - `min_age`, `max_age`: the typical ages (5-year bins around the 5th and 95th percentile), if any
    - `first_year`, `last_year`: the first and last calendar year with encounters of enough patients
    - `coding_systems`: the code system URIs the store's data use; `tables`: the store's tables
    - `biobanks`: the site's biobanks that hold samples, for the network directory
    """

    generation: int
    patients: SiteCount | None
    records: SiteCount | None
    min_age: int | None = None
    max_age: int | None = None
    first_year: int | None = None
    last_year: int | None = None
    coding_systems: tuple[str, ...] = ()
    tables: tuple[TableDescription, ...] = ()
    biobanks: tuple[BiobankListing, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "patients": None if self.patients is None else self.patients.to_json(),
            "records": None if self.records is None else self.records.to_json(),
            "min_age": self.min_age,
            "max_age": self.max_age,
            "first_year": self.first_year,
            "last_year": self.last_year,
            "coding_systems": list(self.coding_systems),
            "tables": [table.to_json() for table in self.tables],
            "biobanks": [biobank.to_json() for biobank in self.biobanks],
        }

    @classmethod
    def from_json(cls, body: Any) -> SiteMetadata:
        if not isinstance(body, dict):
            raise ProtocolError("metadata: expected an object")
        generation = body.get("generation")
        if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
            raise ProtocolError("metadata.generation: expected a non-negative integer")
        systems = body.get("coding_systems", [])
        tables = body.get("tables", [])
        biobanks = body.get("biobanks", [])
        if not isinstance(systems, list) or not isinstance(tables, list) or not isinstance(biobanks, list):
            raise ProtocolError("metadata: coding_systems, tables and biobanks must be lists")
        return cls(
            generation,
            _figure(body, "patients"),
            _figure(body, "records"),
            _small_int(body.get("min_age"), "min_age", 150),
            _small_int(body.get("max_age"), "max_age", 150),
            _small_int(body.get("first_year"), "first_year", 9999),
            _small_int(body.get("last_year"), "last_year", 9999),
            tuple(_text(system, "metadata.coding_systems[]", 300) for system in systems[:100]),
            tuple(TableDescription.from_json(table) for table in tables[:100]),
            tuple(BiobankListing.from_json(biobank) for biobank in biobanks[:200]),
        )


@dataclass(frozen=True)
class Task:
    id: str
    type: TaskType
    payload: dict[str, Any]  # feasibility-count: {"query": <structured query JSON>}; site-metadata: {};
    # analysis: {"v", "request"}; indicators: {"definitions", "as_of"}
    deadline: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type.value,
            "payload": self.payload,
            "deadline": self.deadline.isoformat(),
        }

    @classmethod
    def from_json(cls, body: Any) -> Task:
        try:
            return cls(
                id=str(body["id"]),
                type=TaskType(body["type"]),
                payload=dict(body["payload"]),
                deadline=dt.datetime.fromisoformat(body["deadline"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProtocolError(f"task: {error}") from None


LINKAGE_DELIVERED = "delivered"


@dataclass(frozen=True)
class TaskResult:
    """A site's answer to a task: a count (or, for site-metadata, the metadata; for indicators, a cube; for
    analysis, the analysis answer), or a failure with a reason the researcher may read."""

    task_id: str
    state: TaskState
    count: SiteCount | None = None
    reason: str | None = None
    metadata: SiteMetadata | None = None
    cube: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    # an extraction's job summary: counts only (names -> a count, or -> names -> a count), no patient data
    summary: dict[str, Any] | None = None
    # a sample search's answer: the JSON form of `datenraum.protocol.samples.SampleResult`, checked
    samples: dict[str, Any] | None = None
    # A feasibility task with a distinct count: LINKAGE_DELIVERED when the site delivered its cohort's CLKs
    # to the linkage unit, else why not (the researcher may read it, like a reason)
    linkage: str | None = None

    def __post_init__(self) -> None:
        answers = sum(
            value is not None
            for value in (self.count, self.metadata, self.cube, self.analysis, self.summary, self.samples)
        )
        if self.state == TaskState.ANSWERED and answers != 1:
            raise ProtocolError(
                "an answered task needs a count (or, by its type, metadata, a cube, an analysis answer, an "
                "extraction summary or sample counts), and only one of them"
            )
        if answers > 1:
            raise ProtocolError(
                "a result has one of a count, metadata, a cube, an analysis answer, an extraction summary or "
                "sample counts"
            )
        if self.samples is not None:
            from datenraum.protocol.samples import SampleResult  # it builds on this module's SiteCount

            SampleResult.from_json(self.samples)
        if self.summary is not None:
            _check_summary(self.summary, "summary", 0)
        if self.state == TaskState.FAILED and not self.reason:
            raise ProtocolError("a failed task needs a reason")
        if self.state not in (TaskState.ANSWERED, TaskState.FAILED):
            raise ProtocolError(f"a site cannot report state {self.state.value!r}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"task_id": self.task_id, "state": self.state.value}
        if self.count is not None:
            body["count"] = self.count.to_json()
        if self.reason is not None:
            body["reason"] = self.reason
        if self.metadata is not None:
            body["metadata"] = self.metadata.to_json()
        if self.cube is not None:
            body["cube"] = self.cube
        if self.analysis is not None:
            body["analysis"] = self.analysis
        if self.summary is not None:
            body["summary"] = self.summary
        if self.samples is not None:
            body["samples"] = self.samples
        if self.linkage is not None:
            body["linkage"] = self.linkage
        return body

    @classmethod
    def from_json(cls, body: Any) -> TaskResult:
        if not isinstance(body, dict):
            raise ProtocolError("result: expected an object")
        try:
            state = TaskState(body.get("state"))
        except ValueError:
            raise ProtocolError("result.state: expected 'answered' or 'failed'") from None
        count = SiteCount.from_json(body["count"]) if body.get("count") is not None else None
        reason = body.get("reason")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 2000):
            raise ProtocolError("result.reason: expected a string of at most 2000 characters")
        metadata = SiteMetadata.from_json(body["metadata"]) if body.get("metadata") is not None else None
        cube = body.get("cube")
        if cube is not None and not isinstance(cube, dict):
            raise ProtocolError("result.cube: expected an object")
        analysis = body.get("analysis")
        if analysis is not None and (not isinstance(analysis, dict) or analysis.get("v") != 1):
            raise ProtocolError("result.analysis: expected an analysis answer of protocol version 1")
        summary = body.get("summary")
        if summary is not None:
            _check_summary(summary, "result.summary", 0)
        samples = body.get("samples")
        if samples is not None and not isinstance(samples, dict):
            raise ProtocolError("result.samples: expected an object")
        linkage = body.get("linkage")
        if linkage is not None and (not isinstance(linkage, str) or not 0 < len(linkage) <= 2000):
            raise ProtocolError("result.linkage: expected a string of 1 to 2000 characters")
        return cls(
            str(body.get("task_id", "")),
            state,
            count,
            reason,
            metadata=metadata,
            cube=cube,
            analysis=analysis,
            summary=summary,
            samples=samples,
            linkage=linkage,
        )


MAX_SUMMARY_KEYS = 500


def _check_summary(value: Any, path: str, depth: int) -> None:
    """A summary holds counts and names only: an object of at most MAX_SUMMARY_KEYS short names, each
    to a non-negative integer or (two levels deep at most) to such an object; a job id string at the
    top. Nothing else can travel in it."""
    if not isinstance(value, dict) or len(value) > MAX_SUMMARY_KEYS:
        raise ProtocolError(f"{path}: expected an object of at most {MAX_SUMMARY_KEYS} counts")
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= 100:
            raise ProtocolError(f"{path}: keys are names of 1 to 100 characters")
        if depth == 0 and key == "Job-ID":
            if not isinstance(item, str) or len(item) > 64:
                raise ProtocolError(f"{path}.Job-ID: expected a job id")
        elif isinstance(item, dict) and depth < 2:
            _check_summary(item, f"{path}.{key}", depth + 1)
        elif isinstance(item, bool) or not isinstance(item, int) or item < 0:
            raise ProtocolError(f"{path}.{key}: expected a non-negative integer")
