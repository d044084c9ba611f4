"""The reference evaluator: feasibility queries answered over raw FHIR resources, plainly.

This is the second, independent implementation of `docs/feasibility-semantics.md` (the contract), next
to the SQL compiler. It exists to be obviously correct, not fast: it reads the FHIR JSON of every
resource as a plain dict, walks the elements the mapping names (its `fhir` fields), and states each
clause of the contract as a few lines of Python that can be read side by side with the contract. It
never looks at the flattened tables or at SQL, so that a mistake in the ViewDefinitions, the loader or
the SQL compiler shows up as a disagreement between the two engines rather than being repeated here.

What it shares with the SQL engine is only the *what*: the mapping (`mapping.json`), the code
hierarchy rule (`terminology.code_match`), the unit table (`units`) and the query model. Everything
else (reading references, choice elements, dateTimes, periods, consent decisions) is written here again
on purpose.

Speed: the whole input is held in memory and every criterion is evaluated patient by patient, resource
by resource. That is fine for test datasets and for a baseline measurement; the site uses SQL.

`patient_ids(resources, query, today=...)` answers one query; `ReferenceEngine(resources)` indexes the
resources once and answers any number of them as an `Engine` (`engines/base.py`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from datenraum.query.check import check_query
from datenraum.query.engines.base import resolve_today
from datenraum.query.mapping import AttributeMapping, ContextMapping, Mapping, PatientTerm, load_mapping
from datenraum.query.model import (
    ComparatorFilter,
    ConceptFilter,
    Criterion,
    RangeFilter,
    ReferenceFilter,
    StructuredQuery,
    TermCode,
    TimeRestriction,
    ValueFilter,
)
from datenraum.query.terminology import code_match
from datenraum.query.units import comparable_units, to_years_factor

__all__ = ["ReferenceEngine", "patient_ids"]

# Where resources of the patient compartment name their patient (Consent uses `patient`).
_PATIENT_ELEMENTS = ("subject", "patient")
# The FHIR types of a choice element `x[x]` that carry a time: a point or a Period.
_TIME_SUFFIXES = ("", "DateTime", "Instant", "Period")
_PATH_STEP = re.compile(r"extension\('([^']*)'\)|(\w+)")


# --- entry point -----------------------------------------------------------------------------------


def patient_ids(
    resources: Iterable[dict],
    query: StructuredQuery,
    *,
    today: dt.date,
    mapping: Mapping | None = None,
) -> set[str]:
    """The ids of the patients in the cohort of `query` among `resources` (contract, section 5).

    Rejects a query the mapping cannot answer with a `QueryError` before looking at any resource, so
    that a malformed query never yields a count (contract, section 6).
    """
    mapping = mapping if mapping is not None else load_mapping()
    check_query(query, mapping)
    return _cohort(_Dataset(resources), query, mapping, today)


class ReferenceEngine:
    """The reference evaluator bound to `resources` (indexed once), as an `Engine`."""

    def __init__(self, resources: Iterable[dict], *, mapping: Mapping | None = None) -> None:
        self._mapping = mapping if mapping is not None else load_mapping()
        self._data = _Dataset(resources)

    def patient_ids(self, query: StructuredQuery, *, today: dt.date | None = None) -> list[str]:
        """The ids of the cohort's patients, sorted; raises QueryError for a query it cannot answer."""
        check_query(query, self._mapping)
        return sorted(_cohort(self._data, query, self._mapping, resolve_today(today)))

    def count(self, query: StructuredQuery, *, today: dt.date | None = None) -> int:
        """The number of the cohort's patients."""
        return len(self.patient_ids(query, today=today))


def _cohort(data: _Dataset, query: StructuredQuery, mapping: Mapping, today: dt.date) -> set[str]:
    """The cohort of a checked `query`: the patients who meet every inclusion group (any of its
    criteria) and no exclusion group (all of its criteria)."""
    evaluator = _Evaluator(data, mapping, today)
    cohort = set()
    for patient_id in data.patients:
        included = all(any(evaluator.holds(c, patient_id) for c in group) for group in query.inclusion)
        excluded = any(all(evaluator.holds(c, patient_id) for c in group) for group in query.exclusion)
        if included and not excluded:
            cohort.add(patient_id)
    return cohort


# --- the input, indexed ----------------------------------------------------------------------------


class _Dataset:
    """The resources, by key and by patient. A resource given twice counts once: the later one wins,
    as in a load (a later version of a resource replaces the earlier)."""

    def __init__(self, resources: Iterable[dict]) -> None:
        self.by_key: dict[tuple[str, str], dict] = {}
        for resource in resources:
            if isinstance(resource, dict) and resource.get("resourceType") and resource.get("id"):
                self.by_key[(resource["resourceType"], resource["id"])] = resource
        self.patients = {rid: r for (rtype, rid), r in self.by_key.items() if rtype == "Patient"}
        # "system|value" and "|value" of every patient identifier, for conditional and logical references
        self.identifiers: dict[str, str] = {}
        for patient_id, patient in self.patients.items():
            for identifier in _list(patient.get("identifier")):
                if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
                    self.identifiers.setdefault(
                        f"{identifier.get('system') or ''}|{identifier['value']}", patient_id
                    )
                    self.identifiers.setdefault(f"|{identifier['value']}", patient_id)
        self.by_patient: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for (resource_type, _id), resource in self.by_key.items():
            if resource_type == "Patient":
                continue
            for element in _PATIENT_ELEMENTS:
                if resource.get(element) is not None:
                    patient_id = self.resolve(resource[element], "Patient")
                    # Resources of patients that are not in the input are nobody's (contract, section 1).
                    if patient_id in self.patients:
                        self.by_patient[(patient_id, resource_type)].append(resource)
                    break

    def resources(self, patient_id: str, resource_type: str) -> list[dict]:
        return self.by_patient.get((patient_id, resource_type), [])

    def resolve(self, reference: Any, resource_type: str) -> str | None:
        """The id of the `resource_type` resource that a FHIR Reference points to, else None.

        Literal references may be relative (`Patient/1`), absolute (`https://x/fhir/Patient/1`) or
        versioned (`.../Patient/1/_history/2`); a patient may also be named by identifier, either in a
        conditional reference (`Patient?identifier=system|value`) or in a logical one.
        """
        if not isinstance(reference, dict):
            return None
        text = reference.get("reference")
        if isinstance(text, str):
            if "?" in text:
                target_type, _, query = text.partition("?")
                token = unquote(query.split("&")[0].removeprefix("identifier="))
                if target_type != resource_type or not query.startswith("identifier="):
                    return None
                return self.identifiers.get(token if "|" in token else f"|{token}")
            parts = text.rstrip("/").split("/")
            if len(parts) >= 4 and parts[-2] == "_history":
                parts = parts[:-2]
            if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
                return parts[-1]
            return None
        identifier = reference.get("identifier")
        if (
            resource_type == "Patient"
            and isinstance(identifier, dict)
            and isinstance(identifier.get("value"), str)
        ):
            if reference.get("type", "Patient") != "Patient":
                return None
            return self.identifiers.get(f"{identifier.get('system') or ''}|{identifier['value']}")
        return None


# --- reading FHIR elements -------------------------------------------------------------------------


def _list(value: Any) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _walk(nodes: list, path: str) -> list:
    """The values a simple FHIRPath (`a.b.c`, `extension('url').valueX`) yields, flattened in order."""
    for match in _PATH_STEP.finditer(path):
        url, name = match.groups()
        found = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            if url is not None:
                found += [
                    e for e in _list(node.get("extension")) if isinstance(e, dict) and e.get("url") == url
                ]
            else:
                found += _list(node.get(name))
        nodes = found
    return nodes


def _choice(resource: dict, path: str) -> list[Any]:
    """The values of a possibly-choice element: `onset` finds onsetDateTime or onsetPeriod (a resource
    carries at most one type of a choice), `recordedDate` finds recordedDate."""
    parent_path, _, name = path.rpartition(".")
    parents = _walk([resource], parent_path) if parent_path else [resource]
    values = []
    for parent in parents:
        if isinstance(parent, dict):
            for suffix in _TIME_SUFFIXES:
                values += _list(parent.get(name + suffix))
    return values


def _codings(values: list) -> list[dict]:
    """The codings of CodeableConcepts, Codings and plain codes (a `code` is a coding without system)."""
    codings = []
    for value in values:
        if isinstance(value, str):
            codings.append({"code": value})
        elif isinstance(value, dict) and "coding" in value:
            codings += [c for c in _list(value["coding"]) if isinstance(c, dict)]
        elif isinstance(value, dict) and ("code" in value or "system" in value):
            codings.append(value)
    return codings


def _instant(text: Any) -> dt.datetime | None:
    """A FHIR date, dateTime or instant as a naive UTC datetime; a partial value is its first instant."""
    if not isinstance(text, str):
        return None
    if len(text) == 4:
        return dt.datetime(int(text), 1, 1)
    if len(text) == 7:
        return dt.datetime(int(text[:4]), int(text[5:7]), 1)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment


def _birth_date(text: Any) -> dt.date | None:
    moment = _instant(text)
    return moment.date() if moment is not None else None


@dataclass(frozen=True)
class _Interval:
    start: dt.datetime | None  # None: unbounded
    end: dt.datetime | None

    def overlaps(self, restriction: TimeRestriction) -> bool:
        """Contract 2: overlaps [afterDate 00:00, beforeDate + 1 day 00:00)."""
        before, after = restriction.before, restriction.after
        starts_in_time = (
            before is None or self.start is None or self.start < _midnight(before + dt.timedelta(days=1))
        )
        ends_in_time = after is None or self.end is None or self.end >= _midnight(after)
        return starts_in_time and ends_in_time


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def _resource_time(resource: dict, elements: tuple[str, ...]) -> _Interval | None:
    """Contract 2: start = the first present of the elements (a point, or a Period's start); end = the
    first present of them read as end (a point, or a Period's end falling back to its start)."""
    starts, ends = [], []
    for element in elements:
        for value in _choice(resource, element):
            if isinstance(value, str):
                starts.append(value)
                ends.append(value)
            elif isinstance(value, dict):
                if value.get("start") is not None:
                    starts.append(value["start"])
                if value.get("end") is not None:
                    ends.append(value["end"])
                elif value.get("start") is not None:
                    ends.append(value["start"])
    if not starts and not ends:
        return None
    return _Interval(_instant(starts[0]) if starts else None, _instant(ends[0]) if ends else None)


# --- evaluating criteria ---------------------------------------------------------------------------


def _compare(value: float, value_filter: ComparatorFilter | RangeFilter, bound_factor: float = 1.0) -> bool:
    if isinstance(value_filter, RangeFilter):
        return value_filter.min_value * bound_factor <= value <= value_filter.max_value * bound_factor
    limit = value_filter.value * bound_factor
    return {
        "gt": value > limit,
        "ge": value >= limit,
        "lt": value < limit,
        "le": value <= limit,
        "eq": value == limit,
        "ne": value != limit,
    }[value_filter.comparator]


class _Evaluator:
    def __init__(self, data: _Dataset, mapping: Mapping, today: dt.date) -> None:
        self.data = data
        self.mapping = mapping
        self.today = today

    def holds(self, criterion: Criterion, patient_id: str) -> bool:
        """Contract 5: a negated criterion holds exactly when the criterion itself does not."""
        context = self.mapping.context(criterion)
        if context.kind == "patient":
            found = self._patient_holds(criterion, context, self.data.patients[patient_id])
        elif context.kind == "consent":
            found = self._consent_holds(criterion, context, patient_id)
        else:
            found = any(
                self._resource_matches(criterion, context, resource)
                for resource in self.data.resources(patient_id, context.resource)
            )
        return found != criterion.negated

    # -- standard contexts (contract 2): one resource must satisfy everything at once

    def _resource_matches(self, criterion: Criterion, context: ContextMapping, resource: dict) -> bool:
        if not self._code_matches(criterion.term_codes, context, resource):
            return False
        if criterion.value_filter is not None and not self._value_matches(criterion.value_filter, resource):
            return False
        for attribute_filter in criterion.attribute_filters:
            attribute = context.attribute(attribute_filter.attribute)
            if not self._attribute_matches(attribute, attribute_filter.filter, resource):
                return False
        if criterion.time_restriction is not None:
            interval = _resource_time(resource, context.time.fhir) if context.time else None
            if interval is None or not interval.overlaps(criterion.time_restriction):
                return False
        return True

    def _resource_codings(self, context: ContextMapping, resource: dict) -> list[dict]:
        if context.code.medication_column is not None:
            # Medication contexts: medication[x] is a CodeableConcept on the resource, or a Reference
            # to a Medication whose own `code` holds the codings.
            codings = _codings(_list(resource.get("medicationCodeableConcept")))
            reference = resource.get("medicationReference")
            if reference is not None:
                medication_id = self.data.resolve(reference, "Medication")
                medication = self.data.by_key.get(("Medication", medication_id))
                if medication is not None:
                    codings += _codings(_list(medication.get("code")))
            return codings
        return _codings(_walk([resource], context.code.fhir))

    def _code_matches(
        self, term_codes: tuple[TermCode, ...], context: ContextMapping, resource: dict
    ) -> bool:
        codings = self._resource_codings(context, resource)
        for term in term_codes:
            rule = code_match(term.system, term.code, self.mapping.hierarchies)
            for coding in codings:
                # Without a system column (Procedure Category) the stored system is not compared.
                system = coding.get("system") if context.code.system_column is not None else term.system
                if rule.matches(system, coding.get("code")):
                    return True
        return False

    def _value_matches(self, value_filter: ValueFilter, resource: dict) -> bool:
        if isinstance(value_filter, ConceptFilter):
            # Only the first coding of the value counts, and it must match exactly (no hierarchy).
            codings = _codings(_list(resource.get("valueCodeableConcept")))
            if not codings:
                return False
            first = codings[0]
            return any(
                first.get("system") == c.system and first.get("code") == c.code for c in value_filter.concepts
            )
        quantity = resource.get("valueQuantity")
        if isinstance(quantity, dict) and isinstance(quantity.get("value"), int | float):
            value, unit = float(quantity["value"]), quantity.get("code")
        elif isinstance(resource.get("valueInteger"), int) and not isinstance(resource["valueInteger"], bool):
            value, unit = float(resource["valueInteger"]), None
        else:
            return False
        if value_filter.unit is None:
            return _compare(value, value_filter)
        # A value in another dimension (HbA1c in mmol/mol against a filter in %), or without a unit,
        # is not comparable and so does not match.
        for comparable in comparable_units(value_filter.unit.code):
            if comparable.unit == unit:
                return _compare(value * comparable.factor, value_filter)
        return False

    def _attribute_matches(self, attribute: AttributeMapping, attribute_filter: Any, resource: dict) -> bool:
        if isinstance(attribute_filter, ReferenceFilter):
            for reference in _walk([resource], attribute.fhir):
                target_context = self.mapping.contexts[attribute.target_context]
                target_id = self.data.resolve(reference, target_context.resource)
                target = self.data.by_key.get((target_context.resource, target_id))
                if target is not None and any(
                    self._resource_matches(c, self.mapping.context(c), target)
                    for c in attribute_filter.criteria
                ):
                    return True
            return False
        codings = _codings(_walk([resource], attribute.fhir))
        if not codings:
            return False
        first = codings[0]
        for concept in attribute_filter.concepts:
            if first.get("code") != concept.code:
                continue
            if (
                attribute.system_column is None
                or first.get("system") is None
                or first["system"] == concept.system
            ):
                return True
        return False

    # -- the Patient context (contract 3)

    def _patient_holds(self, criterion: Criterion, context: ContextMapping, patient: dict) -> bool:
        return any(
            self._patient_term_holds(context.patient_term(term), criterion.value_filter, patient)
            for term in criterion.term_codes
        )

    def _patient_term_holds(self, term: PatientTerm, value_filter: ValueFilter | None, patient: dict) -> bool:
        if term.kind == "age":
            born = _birth_date(patient.get("birthDate"))
            if born is None:
                return False
            today = self.today
            # Whole completed years: one less while this year's birthday is still to come.
            age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
            unit = value_filter.unit.code if value_filter.unit is not None else None
            return _compare(float(age), value_filter, to_years_factor(unit))
        if term.kind == "gender":
            return patient.get("gender") in {c.code for c in value_filter.concepts}
        if term.kind == "deceased":
            return patient.get("deceasedBoolean") is True or patient.get("deceasedDateTime") is not None
        raise AssertionError(f"unknown patient term kind {term.kind!r}")

    # -- consent (contract 4)

    def _consent_holds(self, criterion: Criterion, context: ContextMapping, patient_id: str) -> bool:
        consents = [
            c for c in self.data.resources(patient_id, context.resource) if c.get("status") == "active"
        ]
        system = context.combined.provision_system
        for term in criterion.term_codes:
            # A provision code requires itself; a combined code ("yes-yes-no-no") requires the
            # provision codes the mapping gives for its answers.
            required = context.combined.required_provisions(term)
            if all(self._permitted(system, code, consents, criterion.time_restriction) for code in required):
                return True
        return False

    def _permitted(
        self, system: str, code: str, consents: list[dict], restriction: TimeRestriction | None
    ) -> bool:
        deciding = [(c, list(_provisions_coded(c, system, code))) for c in consents]
        deciding = [(c, p) for c, p in deciding if p]
        if not deciding:
            return False
        # The most recent decision counts: a withdrawal dated after a permit overrides it. A consent
        # without dateTime sorts before every dated one.
        dates = [_instant(c.get("dateTime")) for c, _ in deciding]
        latest = max((d for d in dates if d is not None), default=None)
        provisions = [p for (_c, ps), d in zip(deciding, dates, strict=True) if d == latest for p in ps]
        window = restriction if restriction is not None else TimeRestriction(self.today, self.today)
        for provision in provisions:
            if provision.get("type") != "permit":
                return False  # deny wins on a tie
            period = provision.get("period") if isinstance(provision.get("period"), dict) else {}
            interval = _Interval(_instant(period.get("start")), _instant(period.get("end")))
            if not interval.overlaps(window):
                return False
        return True


def _provisions_coded(consent: dict, system: str, code: str) -> Iterator[dict]:
    """The nested provisions (`provision.provision[]`) of a consent that carry the provision code."""
    for provision in _walk([consent], "provision.provision"):
        if isinstance(provision, dict) and any(
            c.get("system") == system and c.get("code") == code
            for c in _codings(_list(provision.get("code")))
        ):
            yield provision
