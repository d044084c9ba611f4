"""A CRTDL compiled against the profiles: what each group loads, keeps and copies (brief R-EXTRACT).

`compile_plan(crtdl, profiles)` checks TORCH's rules on top of the CRTDL's own (exactly one Patient
group; every profile known; every attributeRef an element of its profile; no attributeRef twice in a
group; no mustHave on a standard attribute; a Reference attribute needs linkedGroups; filters the site
can evaluate), each violation with its JSON path and, where the portal has one, its issue code. The
result is a `Plan` of `GroupPlan`s with their compiled element paths, `Selection` and filters.

Filters (TORCH: FHIR search on the group's profile): token filters match any code of any token filter
of the group (OR, as TORCH's one search per code), each code with its descendants for the hierarchical
systems of `datenraum.query.terminology`; a date filter is FHIR's `ge start` and `le end` on the
resource's date: the value's range must reach `start` and begin by `end`.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

from datenraum.extraction.crtdl import AttributeGroup, Crtdl, CrtdlError, Violation
from datenraum.extraction.profiles import ElementPath, Profile, ProfileError, Profiles
from datenraum.extraction.redact import Selection
from datenraum.query.terminology import CodeMatch, code_match

__all__ = ["GroupPlan", "Plan", "compile_plan", "date_range", "values_at"]

# The resource's date for a date filter named `date` (or another search parameter), per type.
DATE_FIELDS = {
    "Observation": "effective",
    "Condition": "recordedDate",
    "Procedure": "performed",
    "Encounter": "period",
    "MedicationAdministration": "effective",
    "MedicationStatement": "effective",
    "MedicationRequest": "authoredOn",
    "Specimen": "collection.collected",
    "DiagnosticReport": "effective",
    "DocumentReference": "date",
    "Consent": "dateTime",
    "ServiceRequest": "authoredOn",
    "List": "date",
    "ImagingStudy": "started",
}
SEARCH_DATE_PARAMETERS = {"recorded-date": "recordedDate", "onset-date": "onset", "authoredon": "authoredOn"}
TOKEN_FIELDS = {
    "MedicationAdministration": ("medicationCodeableConcept",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "MedicationRequest": ("medicationCodeableConcept",),
    "Substance": ("code", "ingredient.substanceCodeableConcept"),
}


def values_at(resource: dict[str, Any], dotted: str) -> list[Any]:
    """The values at a dotted element path; the last name matches a choice element too (`effective` ->
    effectiveDateTime, effectivePeriod)."""
    current: list[Any] = [resource]
    for part in dotted.split("."):
        following = []
        for node in current:
            if not isinstance(node, dict):
                continue
            keys = (
                [part]
                if part in node
                else [k for k in node if k.startswith(part) and k[len(part) : len(part) + 1].isupper()]
            )
            for key in keys:
                value = node[key]
                following.extend(value if isinstance(value, list) else [value])
        current = following
    return current


def _bounds(value: str) -> tuple[dt.date, dt.date] | None:
    try:
        if len(value) == 4:
            return dt.date(int(value), 1, 1), dt.date(int(value), 12, 31)
        if len(value) == 7:
            year, month = int(value[:4]), int(value[5:7])
            following = dt.date(year + month // 12, month % 12 + 1, 1)
            return dt.date(year, month, 1), following - dt.timedelta(days=1)
        day = dt.date.fromisoformat(value[:10])
        return day, day
    except ValueError:
        return None


def date_range(value: Any) -> tuple[dt.date, dt.date] | None:
    """The days a FHIR date, dateTime or Period covers (an open end is unbounded)."""
    if isinstance(value, str):
        return _bounds(value)
    if isinstance(value, dict) and ("start" in value or "end" in value):
        start = _bounds(value["start"]) if isinstance(value.get("start"), str) else None
        end = _bounds(value["end"]) if isinstance(value.get("end"), str) else None
        return (start[0] if start else dt.date.min), (end[1] if end else dt.date.max)
    return None


@dataclass(eq=False)  # a group is itself: compared (and hashed) by identity, not field by field
class GroupPlan:
    group: AttributeGroup
    profile: Profile
    index: int
    attributes: list[tuple[ElementPath, Any]]  # (path, the crtdl Attribute)
    selection: Selection
    codes: list[CodeMatch]
    token_fields: tuple[str, ...]
    date_field: str | None
    start: dt.date | None
    end: dt.date | None

    @property
    def id(self) -> str:
        return self.group.id

    @property
    def type(self) -> str:
        return self.profile.type

    @functools.cached_property
    def is_patient(self) -> bool:
        return self.profile.type == "Patient"

    @functools.cached_property
    def is_core(self) -> bool:
        return not self.is_patient and self.profile.patient_reference is None

    @functools.cached_property
    def must_haves(self) -> list[ElementPath]:
        return [path for path, attribute in self.attributes if attribute.must_have]

    def claims(self, resource: dict[str, Any]) -> bool:
        """The resource claims the group's profile (`_profile:below`: any version of it)."""
        if self.is_patient:
            return resource.get("resourceType") == "Patient"
        if resource.get("resourceType") != self.profile.type:
            return False
        return any(
            isinstance(p, str) and p.split("|")[0] == self.profile.url
            for p in (resource.get("meta") or {}).get("profile", [])
        )

    def passes_filters(self, resource: dict[str, Any]) -> bool:
        if self.is_patient:
            return True
        if self.codes:
            found = False
            for field in self.token_fields:
                for concept in values_at(resource, field):
                    codings = concept.get("coding", []) if isinstance(concept, dict) else []
                    if any(m.matches(c.get("system"), c.get("code")) for c in codings for m in self.codes):
                        found = True
                        break
                if found:
                    break
            if not found:
                return False
        if self.date_field and (self.start or self.end):
            ok = False
            for value in values_at(resource, self.date_field):
                covered = date_range(value)
                if covered is None:
                    continue
                if (self.start is None or covered[1] >= self.start) and (
                    self.end is None or covered[0] <= self.end
                ):
                    ok = True
                    break
            if not ok:
                return False
        return True

    def has_must_haves(self, resource: dict[str, Any]) -> bool:
        return all(path_values(resource, path) for path in self.must_haves)


def path_values(resource: dict[str, Any], path: ElementPath) -> list[Any]:
    """The values of a compiled element path (slices applied)."""
    from datenraum.extraction.redact import _matches

    current: list[Any] = [resource]
    for step in path.steps:
        following = []
        for node in current:
            if not isinstance(node, dict):
                continue
            for key in step.keys:
                if key not in node:
                    continue
                value = node[key]
                for item in value if isinstance(value, list) else [value]:
                    if not step.where or _matches(item, step.where):
                        following.append(item)
        current = following
    return current


@dataclass
class Plan:
    crtdl: Crtdl
    groups: list[GroupPlan]
    warnings: list[str]

    @functools.cached_property
    def patient_group(self) -> GroupPlan:
        return next(g for g in self.groups if g.is_patient)

    def group(self, group_id: str) -> GroupPlan:
        return self._by_id[group_id]

    @functools.cached_property
    def _by_id(self) -> dict[str, GroupPlan]:
        found: dict[str, GroupPlan] = {}
        for group in self.groups:
            found.setdefault(group.id, group)
        return found


def compile_plan(crtdl: Crtdl, profiles: Profiles) -> Plan:
    """The plan, or CrtdlError with every violation of TORCH's rules (JSON paths into the CRTDL)."""
    from datenraum.query.mapping import load_mapping

    hierarchies = load_mapping().hierarchies
    violations: list[Violation] = []
    warnings: list[str] = list(crtdl.warnings)
    plans = []
    for index, group in enumerate(crtdl.groups):
        path = f"$.dataExtraction.attributeGroups[{index}]"
        profile = profiles.get(group.group_reference)
        if profile is None:
            violations.append(
                Violation(
                    f"{path}.groupReference",
                    f"unknown profile {group.group_reference!r} (the site knows {len(profiles.urls())} profiles; add its StructureDefinition with --profiles)",
                    2000001,
                )
            )
            continue
        attributes = []
        seen: dict[str, int] = {}
        standard = set(profile.standard_refs())
        for a_index, attribute in enumerate(group.attributes):
            a_path = f"{path}.attributes[{a_index}]"
            if attribute.ref in seen:
                violations.append(
                    Violation(
                        f"{a_path}.attributeRef",
                        f"{attribute.ref!r} appears twice in the group (first at attributes[{seen[attribute.ref]}])",
                    )
                )
                continue
            seen[attribute.ref] = a_index
            try:
                compiled = profile.compile(attribute.ref)
            except ProfileError as error:
                violations.append(Violation(f"{a_path}.attributeRef", str(error), error.code or 2000002))
                continue
            if attribute.ref in standard:
                if attribute.must_have:
                    violations.append(
                        Violation(
                            f"{a_path}.mustHave",
                            f"{attribute.ref} is a standard attribute: it cannot be mustHave",
                        )
                    )
                else:
                    warnings.append(f"{a_path}: {attribute.ref} is a standard attribute, added anyway")
                continue
            if compiled.is_reference and not attribute.linked_groups and compiled.types == ("Reference",):
                violations.append(
                    Violation(
                        f"{a_path}.linkedGroups",
                        f"{attribute.ref} is a Reference: it needs linkedGroups",
                        2000005,
                    )
                )
                continue
            attributes.append((compiled, attribute))
        selection = Selection.of(
            [profile.compile(ref) for ref in profile.standard_refs()] + [p for p, _ in attributes]
        )
        codes: list[CodeMatch] = []
        token_fields: tuple[str, ...] = ()
        date_field = None
        start = end = None
        for f_index, filt in enumerate(group.filters):
            f_path = f"{path}.filter[{f_index}]"
            if profile.type == "Patient":
                warnings.append(f"{f_path}: the Patient group ignores filters (as TORCH)")
                continue
            if filt.type == "token":
                fields = TOKEN_FIELDS.get(profile.type, ("code",)) if filt.name == "code" else (filt.name,)
                if filt.name != "code" and not _known_element(profile, filt.name):
                    violations.append(
                        Violation(
                            f"{f_path}.name",
                            f"{profile.type} has no token search parameter {filt.name!r}",
                            2000004,
                        )
                    )
                    continue
                token_fields = tuple(dict.fromkeys([*token_fields, *fields]))
                codes.extend(code_match(c.system, c.code, hierarchies) for c in filt.codes)
            elif filt.type == "date":
                if filt.name == "date":
                    date_field = DATE_FIELDS.get(profile.type)
                else:
                    date_field = SEARCH_DATE_PARAMETERS.get(filt.name) or (
                        filt.name if _known_element(profile, filt.name) else None
                    )
                if date_field is None:
                    violations.append(
                        Violation(
                            f"{f_path}.name",
                            f"{profile.type} has no date search parameter {filt.name!r}",
                            2000007,
                        )
                    )
                    continue
                start, end = filt.start, filt.end
        plans.append(
            GroupPlan(
                group, profile, index, attributes, selection, codes, token_fields, date_field, start, end
            )
        )
    patient_groups = [g for g in plans if g.is_patient]
    if len(patient_groups) != 1 and not any(v.code == 2000001 for v in violations):
        violations.append(
            Violation(
                "$.dataExtraction.attributeGroups",
                f"exactly one Patient group is required, found {len(patient_groups)}",
            )
        )
    if violations:
        raise CrtdlError(violations)
    return Plan(crtdl, plans, warnings)


def _known_element(profile: Profile, name: str) -> bool:
    from datenraum.extraction.profiles import element_model

    children = element_model().children(profile.type) or {}
    return name in children or f"{name}[x]" in children
