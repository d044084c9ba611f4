"""An extraction job on the store: cohort, batches, selection, consent, references, redaction, files.

`run_extraction(store_path, crtdl_json, out_dir, ...)` validates everything first (CRTDL, profiles,
cohort, consent request): bad input raises `ExtractionError` before anything is written. Then:

1. cohort: the CRTDL's cohort on the store (feasibility on the job's engine) or the given patients;
2. core groups (resources of no patient, e.g. Medication) are loaded once;
3. per batch of patients: their resources of the groups' types; consent (explanation record per
   patient); direct load per group (profile claim, filters; reference-only groups are reached only
   through links); reference resolution through linkedGroups (recursive; a mustHave link must reach a
   resource of a linked group); mustHave per resource and per group (a patient without a resource that
   passes an active group is excluded); cascading delete to a fixpoint; copy + redaction; one
   transaction Bundle per patient, a Provenance per group;
4. core.ndjson (core resources directly loaded or referenced by a surviving patient), reports, tables.

Files (see `output.py`) are written to temporary names and renamed; each batch is one file, and a job
killed at any point resumes from `job.json` with the batches it has (same inputs, same files).
Generated ids are deterministic: Bundle and Provenance ids are UUIDv5 of the job id and the patient
(or group); the job id is a hash of the CRTDL, the patients, `today` and the store generation unless
given. Provenance.recorded is the job's start time, kept in job.json.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import hashlib
import itertools
import re
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from datenraum.extraction.consent import ConsentConfigError, ConsentRules, requested_consent_codes
from datenraum.extraction.crtdl import Crtdl, CrtdlError, Violation, crtdl_to_json, parse_crtdl
from datenraum.extraction.plan import GroupPlan, Plan, compile_plan, path_values
from datenraum.extraction.profiles import Profiles
from datenraum.extraction.redact import redact, select

if TYPE_CHECKING:
    from datenraum.site.engines import EngineSettings
    from datenraum.site.extraction.source import Candidates

__all__ = ["ExtractionError", "ExtractionOutOfMemory", "JobOptions", "prepare", "run_extraction"]

PROGRAM_SYSTEM = "https://www.medizininformatik-initiative.de/fhir/fdpg/NamingSystem/program"
GROUP_SYSTEM = "https://www.medizininformatik-initiative.de/fhir/fdpg/NamingSystem/attribute_group"
# What DuckDB may hold while it sorts the job's candidates by patient; beyond, it spills to disk. The
# sort is the job's one scan: this caps its memory whatever the cohort's size (2GB cost 2.4 GB RSS at
# 250,000 patients; at 256MB DuckDB's sort of that store's 726,000 candidates failed to pin a block).
SORT_MEMORY_LIMIT = "512MB"
MEMORY_SIZE = re.compile(r"[0-9]+(\.[0-9]+)?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)")
EXTRACTION_SYSTEM = "https://www.medizininformatik-initiative.de/fhir/fdpg/NamingSystem/extraction_id"
# A job decodes millions of small JSON objects that live for one batch and form no cycles; at Python's
# default threshold (a collection per 700 new objects) the cyclic collector runs thousands of times over
# them for nothing (about a fifth of a job's CPU time in bench/bench_extract.py). While jobs run, it
# runs once per this many.
GC_THRESHOLD = 50_000


class ExtractionError(ValueError):
    """Input the job cannot run: every violation with its JSON path."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        super().__init__("; ".join(str(v) for v in violations))


class ExtractionOutOfMemory(RuntimeError):
    """DuckDB needed more than the job's memory limit; the text is one line naming the limit. The
    batches finished before are kept, so the same job run again with more memory resumes."""


@dataclass
class JobOptions:
    today: dt.date | None = None
    patients: list[str] | None = None
    batch_size: int = 500
    mode: str = "legacy"
    profile_dirs: tuple[Path, ...] = ()
    job_id: str | None = None
    encounter_shift: bool = True
    tables: bool = True
    #: The engine that reads the store (DuckDB when None); the output does not depend on it.
    engine: EngineSettings | None = None
    #: What DuckDB may hold (a DuckDB size: "512MB", "2GB"); the job id does not depend on it.
    memory_limit: str = SORT_MEMORY_LIMIT

    def __post_init__(self) -> None:
        if not MEMORY_SIZE.fullmatch(self.memory_limit):  # it goes into a SET statement
            raise ValueError(f"memory limit {self.memory_limit!r}: not a size such as 512MB or 2GB")


@dataclass
class Prepared:
    crtdl: Crtdl
    plan: Plan
    consent_codes: list[str]
    rules: ConsentRules
    today: dt.date


def prepare(crtdl_json: Any, options: JobOptions) -> Prepared:
    """Every check that needs no store; raises ExtractionError."""
    try:
        crtdl = parse_crtdl(crtdl_json, mode=options.mode)
        plan = compile_plan(crtdl, Profiles(options.profile_dirs))
    except CrtdlError as error:
        raise ExtractionError(error.violations) from None
    rules = ConsentRules(encounter_shift=options.encounter_shift)
    try:
        codes = rules.check_request(requested_consent_codes(crtdl.cohort))
    except ConsentConfigError as error:
        raise ExtractionError([Violation(error.path, str(error).split(": ", 1)[1])]) from None
    return Prepared(crtdl, plan, codes, rules, options.today or dt.date.today())


def _ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


@dataclass
class BatchResult:
    bundles: list[dict[str, Any]]
    consent_bundles: list[dict[str, Any]]
    patient_exclusions: list[tuple[str, str]]  # (stage, patient)
    resource_exclusions: list[tuple[str, str, str, str, str]]  # (reason, group, attribute, resource, patient)
    core_refs: list[str]
    explanations: list[dict[str, Any]]
    inclusions: dict[str, int] = field(default_factory=dict)  # resource type -> entries written
    rows: dict[str, list[list[str | None]]] = field(default_factory=dict)  # group -> table rows


class _Decoded:
    """Resources by `Type/id` kept as JSON text and decoded when first asked for (the core resources:
    all are read, few are used)."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.decoded: dict[str, dict[str, Any]] = {}

    def __contains__(self, ref: str) -> bool:
        return ref in self.texts

    def __getitem__(self, ref: str) -> dict[str, Any]:
        found = self.decoded.get(ref)
        if found is None:
            found = self.decoded[ref] = orjson.loads(self.texts[ref])
        return found

    def get(self, ref: str) -> dict[str, Any] | None:
        return self[ref] if ref in self.texts else None

    def peek(self, ref: str) -> dict[str, Any]:
        """The resource decoded, not kept (for a look at every one of them)."""
        found = self.decoded.get(ref)
        return found if found is not None else orjson.loads(self.texts[ref])

    def forget(self) -> None:
        """Drop the decoded resources (after a batch: what the next batch uses is decoded again, so
        that the decoded part stays the size of a batch's references, not of the store's core)."""
        self.decoded = {}


class Extractor:
    def __init__(self, prepared: Prepared, source: Any, job_id: str, recorded: str) -> None:
        self.p = prepared
        self.plan = prepared.plan
        self.source = source
        self.job_id = job_id
        self.recorded = recorded
        self.patient_candidates = candidates(self.plan, core=False, consent=bool(prepared.consent_codes))
        self.core_candidates = candidates(self.plan, core=True, consent=False)
        from datenraum.site.extraction.output import table_specs

        self.tables = table_specs(self.plan)  # compiled once per job
        self.core = _Decoded()
        self.core_members: dict[str, set[str]] = defaultdict(set)  # group -> refs (direct load)

    # --- membership -------------------------------------------------------------------------

    def load_core(self) -> None:
        for kind, ident, text in self.source.core_candidates(self.core_candidates):
            self.core.texts[f"{kind}/{ident}"] = text
        for group in self.plan.groups:
            if group.is_core and not group.group.include_reference_only:
                prefix = group.type + "/"
                for ref in self.core.texts:
                    if ref.startswith(prefix):
                        resource = self.core.peek(ref)
                        if group.claims(resource) and group.passes_filters(resource):
                            self.core_members[group.id].add(ref)

    def _links(self, group: GroupPlan, resource: dict[str, Any]) -> list[tuple[Any, list[str], list[str]]]:
        """(attribute, linked groups, referenced Type/id) of each linked attribute."""
        out = []
        for path, attribute in group.attributes:
            if not attribute.linked_groups:
                continue
            refs = []
            for value in path_values(resource, path):
                if isinstance(value, dict) and isinstance(value.get("reference"), str):
                    refs.append(value["reference"])
            out.append((attribute, list(attribute.linked_groups), refs))
        return out

    def batches(self, batches: list[list[str]], skip: set[int]):
        """Per batch: its patients' candidate resources, (patient) -> [(type, id, JSON text)]."""
        ordered = all(a < b for a, b in itertools.pairwise(p for batch in batches for p in batch))
        if ordered:
            yield from self.source.patient_batches(batches, self.patient_candidates, skip)
            return
        for index, batch in enumerate(batches):  # ids the store does not sort as Python does
            found: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
            if index not in skip:
                for patient, kind, ident, text in self.source.patient_rows(batch, self.patient_candidates):
                    found[patient].append((kind, ident, text))
            yield found

    def run_batch(self, patient_ids: list[str], rows: dict[str, list[tuple[str, str, str]]]) -> BatchResult:
        from datenraum.site.extraction.output import bundle_rows

        result = BatchResult([], [], [], [], [], [])
        core_refs: set[str] = set()
        loads = orjson.loads
        inclusions: dict[str, int] = defaultdict(int)
        for patient in patient_ids:
            resources = {f"{kind}/{ident}": loads(text) for kind, ident, text in rows.get(patient, ())}
            outcome = self._patient(patient, resources, result)
            if outcome is not None:
                bundle, refs = outcome
                result.bundles.append(bundle)
                core_refs |= refs
                for entry in bundle["entry"]:
                    inclusions[entry["resource"]["resourceType"]] += 1
                bundle_rows(bundle, self.tables, result.rows)
        result.core_refs = sorted(core_refs)
        result.inclusions = dict(inclusions)
        self.core.forget()
        return result

    def _patient(self, patient: str, resources: dict[str, dict[str, Any]], result: BatchResult):
        plan = self.plan
        patient_ref = f"Patient/{patient}"
        if patient_ref not in resources:
            result.patient_exclusions.append(("DIRECT_LOAD", patient))
            return None
        decision = self.p.rules.evaluate(
            patient,
            self.p.consent_codes,
            [r for r in resources.values() if r["resourceType"] == "Consent"],
            [r for r in resources.values() if r["resourceType"] == "Encounter"],
            self.p.today,
        )
        result.explanations.append(decision.record)
        if decision.excluded:
            result.patient_exclusions.append(("CONSENT", patient))
            return None
        consented: dict[str, bool] = {}

        def consent_ok(ref: str, group_id: str) -> bool:
            if ref not in consented:
                resource = resources[ref]
                field_path = self.p.rules.field_for(resource["resourceType"])
                kept, reason, value = decision.check(resource, field_path)
                consented[ref] = kept
                if not kept:
                    decision.drop(resource, field_path, reason, value)
                    result.resource_exclusions.append(("CONSENT", group_id, "", ref, patient))
            return consented[ref]

        def lookup(ref: str) -> dict[str, Any] | None:
            return resources.get(ref) or self.core.get(ref)

        # The links of a resource in a group are asked for by resolution, by every round of mustHave
        # and by the core references: read once.
        read_links: dict[tuple[int, str], list[tuple[Any, list[str], list[str]]]] = {}

        def links(
            group: GroupPlan, ref: str, resource: dict[str, Any]
        ) -> list[tuple[Any, list[str], list[str]]]:
            found = read_links.get((group.index, ref))
            if found is None:
                found = read_links[(group.index, ref)] = self._links(group, resource)
            return found

        # direct load (a group looks at the resources of its type only)
        of_type: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for ref, resource in resources.items():
            of_type[resource["resourceType"]].append((ref, resource))
        members: dict[str, set[str]] = defaultdict(set)
        for group in plan.groups:
            if group.is_patient:
                members[group.id].add(patient_ref)
                continue
            if group.is_core:
                continue
            if group.group.include_reference_only:
                continue
            for ref, resource in of_type.get(group.type, ()):
                if group.claims(resource) and group.passes_filters(resource) and consent_ok(ref, group.id):
                    members[group.id].add(ref)

        def eligible(group: GroupPlan, ref: str) -> bool:
            resource = lookup(ref)
            if resource is None or not group.claims(resource) or not group.passes_filters(resource):
                return False
            if group.is_core:
                return True
            if ref in resources and ref != patient_ref:
                return consent_ok(ref, group.id)
            return group.is_patient and ref == patient_ref

        # reference resolution (recursive) and mustHave, to a fixpoint with cascading delete
        core_members: dict[str, set[str]] = defaultdict(set)
        queue = [(g.id, ref) for g in plan.groups for ref in sorted(members[g.id])]
        for group in plan.groups:
            if group.is_core:
                for ref in self.core_members[group.id]:
                    core_members[group.id].add(ref)
        seen = set(queue)
        while queue:
            group_id, ref = queue.pop()
            group = plan.group(group_id)
            resource = lookup(ref)
            if resource is None:
                continue
            for _attribute, linked, refs in links(group, ref, resource):
                for target in refs:
                    for linked_id in linked:
                        linked_group = plan.group(linked_id)
                        if eligible(linked_group, target):
                            bucket = core_members if linked_group.is_core else members
                            if target not in bucket[linked_id]:
                                bucket[linked_id].add(target)
                            if (linked_id, target) not in seen:
                                seen.add((linked_id, target))
                                queue.append((linked_id, target))

        def alive_in(group_id: str) -> set[str]:
            group = plan.group(group_id)
            return core_members[group_id] if group.is_core else members[group_id]

        changed = True
        while changed:
            changed = False
            for group in plan.groups:
                if group.is_core:
                    continue
                for ref in sorted(members[group.id]):
                    resource = lookup(ref)
                    ok = resource is not None and group.has_must_haves(resource)
                    reason = "MUST_HAVE"
                    if ok:
                        for attribute, linked, refs in links(group, ref, resource):
                            if attribute.must_have and not any(
                                t in alive_in(lg) for t in refs for lg in linked
                            ):
                                ok, reason = False, "CASCADING_DELETE" if refs else "MUST_HAVE"
                                break
                    if not ok and ref != patient_ref:
                        members[group.id].discard(ref)
                        result.resource_exclusions.append((reason, group.id, "", ref, patient))
                        changed = True
            for group in plan.groups:
                if group.must_haves or any(a.must_have and a.linked_groups for _, a in group.attributes):
                    if group.is_patient:
                        if patient_ref not in members[group.id]:
                            break
                    elif (
                        not group.is_core and not members[group.id] and not group.group.include_reference_only
                    ):
                        result.patient_exclusions.append(("MUST_HAVE", patient))
                        return None
        patient_group = plan.patient_group
        if patient_group.must_haves and not patient_group.has_must_haves(resources[patient_ref]):
            result.patient_exclusions.append(("MUST_HAVE", patient))
            return None

        # copy + redact
        selected: dict[str, list[GroupPlan]] = defaultdict(list)
        for group in plan.groups:
            if not group.is_core:
                for ref in members[group.id]:
                    selected[ref].append(group)
        core_refs = {ref for group_refs in core_members.values() for ref in group_refs}
        final = set(selected) | core_refs | {patient_ref}
        entries = []
        for ref in sorted(selected, key=lambda r: (r.split("/", 1)[1], r)):
            entries.append(self._extract(resources[ref], selected[ref], final))
        provenances = [
            self._provenance(g, sorted(r for r in selected if g in selected[r]), patient)
            for g in plan.groups
            if not g.is_core and any(g in gs for gs in selected.values())
        ]
        bundle = self._bundle(entries + provenances, f"patient/{patient}")
        # referenced core resources (only those a surviving patient resource references)
        referenced = self._referenced_core(selected, resources, core_members, links)
        if self.p.consent_codes:
            result.consent_bundles.append(self._consent_bundle(patient, resources))
        return bundle, referenced

    def _referenced_core(self, selected, resources, core_members, links) -> set[str]:
        refs: set[str] = set()
        for ref in selected:
            resource = resources[ref]
            for group in selected[ref]:
                for _attribute, linked, targets in links(group, ref, resource):
                    for target in targets:
                        if any(target in core_members.get(lg, ()) for lg in linked):
                            refs.add(target)
        return refs

    def _extract(self, resource: dict[str, Any], groups: list[GroupPlan], final: set[str]) -> dict[str, Any]:
        selection = groups[0].selection
        for group in groups[1:]:
            selection = selection.merged(group.selection)
        copied = select(resource, selection)
        profiles = [g.profile for g in groups]
        if resource["resourceType"] == "Patient":
            copied["meta"] = {"profile": [self.plan.patient_group.profile.url]}
        else:
            urls = {p.url for p in profiles}
            claimed = [p for p in (resource.get("meta") or {}).get("profile", []) if p.split("|")[0] in urls]
            copied["meta"] = {"profile": sorted(dict.fromkeys(claimed))}
        return redact(copied, profiles[0], profiles=profiles[1:], reference_allowed=final.__contains__)

    def _provenance(self, group: GroupPlan, targets: list[str], key: str) -> dict[str, Any]:
        return {
            "resourceType": "Provenance",
            "id": "torch-" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.job_id}/{key}/{group.id}")),
            "target": [{"reference": t} for t in targets],
            "occurredPeriod": {"start": self.recorded},
            "recorded": self.recorded,
            "agent": [{"who": {"identifier": {"system": PROGRAM_SYSTEM, "value": "torch"}}}],
            "entity": [
                {"role": "source", "what": {"identifier": {"system": GROUP_SYSTEM, "value": group.id}}},
                {
                    "role": "source",
                    "what": {"identifier": {"system": EXTRACTION_SYSTEM, "value": self.job_id}},
                },
            ],
        }

    def _bundle(self, resources: list[dict[str, Any]], key: str, kind: str = "transaction") -> dict[str, Any]:
        entries = []
        for resource in resources:
            entry: dict[str, Any] = {"fullUrl": _ref(resource), "resource": resource}
            if kind == "transaction":
                entry["request"] = {"method": "PUT", "url": _ref(resource)}
            entries.append(entry)
        return {
            "resourceType": "Bundle",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.job_id}/{key}")),
            "type": kind,
            "entry": entries,
        }

    def _consent_bundle(self, patient: str, resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
        minimal = []
        for resource in resources.values():
            if resource["resourceType"] == "Consent":
                keep = ("id", "meta", "patient", "provision", "dateTime", "status")
            elif resource["resourceType"] == "Encounter":
                keep = ("id", "meta", "subject", "period")
            else:
                continue
            minimal.append(
                {"resourceType": resource["resourceType"], **{k: resource[k] for k in keep if k in resource}}
            )
        return self._bundle(sorted(minimal, key=_ref), f"consent/{patient}", kind="collection")

    def core_bundle(self, referenced: set[str]) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        """core.ndjson's Bundle: directly loaded core resources and those referenced by survivors, closed
        under the core groups' links; None when there are none."""
        plan = self.plan
        members: dict[str, set[str]] = defaultdict(set)
        for group_id, refs in self.core_members.items():
            members[group_id] |= refs
        for ref in referenced:
            for group in plan.groups:
                if (
                    group.is_core
                    and ref in self.core
                    and group.claims(self.core[ref])
                    and group.passes_filters(self.core[ref])
                ):
                    members[group.id].add(ref)
        queue = [(g, r) for g, refs in members.items() for r in refs]
        while queue:
            group_id, ref = queue.pop()
            group = plan.group(group_id)
            for _attribute, linked, targets in self._links(group, self.core[ref]):
                for target in targets:
                    for linked_id in linked:
                        lg = plan.group(linked_id)
                        resolvable = lg.is_core and target in self.core and target not in members[linked_id]
                        if (
                            resolvable
                            and lg.claims(self.core[target])
                            and lg.passes_filters(self.core[target])
                        ):
                            members[linked_id].add(target)
                            queue.append((linked_id, target))
        selected: dict[str, list[GroupPlan]] = defaultdict(list)
        for group in plan.groups:
            for ref in members.get(group.id, ()):
                selected[ref].append(group)
        if not selected:
            return None, {}
        final = set(selected)
        entries = [
            self._extract(self.core[ref], selected[ref], final)
            for ref in sorted(selected, key=lambda r: (r.split("/", 1)[1], r))
        ]
        groups_used = [g for g in plan.groups if g.is_core and members.get(g.id)]
        provenances = [self._provenance(g, sorted(members[g.id]), "core") for g in groups_used]
        by_ref = {_ref(e): e for e in entries}
        rows = {g.id: [by_ref[r] for r in sorted(members[g.id])] for g in groups_used}
        return self._bundle(entries + provenances, "core"), rows


def candidates(plan: Plan, *, core: bool, consent: bool) -> Candidates:
    """What the job can use of the store (a superset: see `Candidates`): for each group of the kind
    (core or patient), the resources of its type that name its profile and, if it filters on codes,
    one of the codes (a descendant of a code contains it; an ICD block range has no such substring);
    every Patient; every Consent and Encounter when consent is enforced."""
    from datenraum.site.extraction.source import Candidates

    needles: dict[str, set[tuple[str, ...]] | None] = {}
    if not core:
        needles["Patient"] = None
        if consent:
            needles["Consent"] = needles["Encounter"] = None
    for group in plan.groups:
        if group.is_patient or group.is_core != core:
            continue
        if group.type in needles and needles[group.type] is None:
            continue
        url = group.profile.url
        if group.codes and all(c.category_range is None for c in group.codes):
            found = {(url, c.code) for c in group.codes}
        else:
            found = {(url,)}
        needles[group.type] = needles.get(group.type, set()) | found  # type: ignore[operator]
    return Candidates({k: None if v is None else tuple(sorted(v)) for k, v in needles.items()})


def job_identity(crtdl: Crtdl, patients: list[str] | None, today: dt.date, generation: int) -> str:
    digest = hashlib.sha256(
        orjson.dumps(
            {
                "crtdl": crtdl_to_json(crtdl),
                "patients": patients,
                "today": today.isoformat(),
                "generation": generation,
            },
            option=orjson.OPT_SORT_KEYS,
        )
    ).hexdigest()
    return str(uuid.UUID(digest[:32]))


_collection_lock = threading.Lock()
_collection_jobs = 0
_collection_default: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def _rare_collections() -> Iterator[None]:
    """GC_THRESHOLD for the process while at least one job runs (jobs may run in threads: the last one
    out restores the threshold the first one found)."""
    global _collection_jobs, _collection_default
    with _collection_lock:
        if _collection_jobs == 0:
            _collection_default = gc.get_threshold()
            gc.set_threshold(GC_THRESHOLD, *_collection_default[1:])
        _collection_jobs += 1
    try:
        yield
    finally:
        with _collection_lock:
            _collection_jobs -= 1
            if _collection_jobs == 0:
                gc.set_threshold(*_collection_default)


def run_extraction(
    store_path: Path | str,
    crtdl_json: Any,
    out_dir: Path | str,
    options: JobOptions | None = None,
    *,
    progress=None,
) -> dict[str, Any]:
    """Run (or resume) a job; returns the job summary. Raises ExtractionError for bad input and
    ExtractionOutOfMemory when DuckDB needs more than `options.memory_limit`."""
    import duckdb

    from datenraum.site.store import Store

    options = options or JobOptions()
    prepared = prepare(crtdl_json, options)
    try:
        return _run(Store(store_path), prepared, Path(out_dir), options, progress)
    except duckdb.OutOfMemoryException as error:
        # DuckDB's text goes on with advice about its threads and settings a site does not set.
        reason = str(error).splitlines()[0].removeprefix("Out of Memory Error: ")
        raise ExtractionOutOfMemory(
            f"the store's engine (DuckDB) ran out of memory at its limit of {options.memory_limit} ({reason});"
            " the finished batches are kept: run the job again with more memory to resume it"
        ) from None


def _run(store: Any, prepared: Prepared, out_dir: Path, options: JobOptions, progress: Any) -> dict[str, Any]:
    from datenraum.query.model import QueryError, parse_query
    from datenraum.site.engines import feasibility_engine, open_engine
    from datenraum.site.extraction.output import JobFolder
    from datenraum.site.extraction.source import StoreSource

    with (
        _rare_collections(),
        store.snapshot() as snapshot,
        tempfile.TemporaryDirectory(prefix="datenraum-extract-") as spill,
        open_engine(snapshot, options.engine) as engine,
    ):
        if engine.dialect == "duckdb":
            snapshot.connection.execute(f"SET memory_limit = '{options.memory_limit}'")
            snapshot.connection.execute(f"SET temp_directory = '{spill}'")
            snapshot.connection.execute("SET enable_progress_bar = false")  # stdout is the CLI's summary
        started = time.monotonic()
        if options.patients is not None:
            cohort = sorted(dict.fromkeys(options.patients))
        else:
            try:
                query = parse_query(prepared.crtdl.cohort)
                cohort = feasibility_engine(engine).patient_ids(query, today=prepared.today)
            except QueryError as error:
                raise ExtractionError(
                    [Violation(f"$.cohortDefinition{error.path.removeprefix('$')}", error.problem)]
                ) from None
        cohort_ms = int((time.monotonic() - started) * 1000)
        generation = store.current_generation()
        job_id = options.job_id or job_identity(prepared.crtdl, options.patients, prepared.today, generation)
        folder = JobFolder(out_dir)
        job = folder.open(job_id, prepared, cohort, options, cohort_ms)
        extractor = Extractor(prepared, StoreSource(engine), job_id, job["recorded"])
        extractor.load_core()
        batches = [cohort[i : i + options.batch_size] for i in range(0, len(cohort), options.batch_size)]
        done = {i for i in range(len(batches)) if folder.has_batch(folder.batch_id(job_id, i))}
        for index, (batch, rows) in enumerate(zip(batches, extractor.batches(batches, done), strict=True)):
            if index in done:
                continue
            folder.write_batch(folder.batch_id(job_id, index), extractor.run_batch(batch, rows))
            if progress:
                progress(index + 1, len(batches))
        return folder.finish(job_id, extractor, batches, cohort_ms)
