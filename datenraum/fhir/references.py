"""Resolving FHIR references to resource ids.

Sites send references in every form FHIR allows: relative (`Patient/123`), absolute
(`https://fhir.example.org/Patient/123/_history/2`), to a Bundle entry (`urn:uuid:...` matched against
the entry's fullUrl), conditional (`Patient?identifier=system|value`, as transaction Bundles written by
ETL jobs often use), or logical (an `identifier` instead of a `reference`). A resolver turns each into
the id of the target. Conditional and logical references to a patient that the Bundle itself does not
contain come back as a `?identifier=...` placeholder, which the ingest resolves against the store once
every file of the load is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from datenraum.fhir.primitives import ElementTypeError

__all__ = [
    "CONDITIONAL_PREFIX",
    "BundleResolver",
    "UnresolvableReference",
    "conditional_reference",
    "identifier_query",
    "resolve_patient_references",
    "resolve_reference",
    "split_reference",
]

CONDITIONAL_PREFIX = "?identifier="
# References that only mean something inside a Bundle, as the fullUrl of one of its entries.
_BUNDLE_ONLY = ("urn:uuid:", "urn:oid:")


class UnresolvableReference(ElementTypeError):
    """A reference that cannot name anything: the resource holding it is rejected."""


def identifier_query(system: str | None, value: str) -> str:
    """The canonical placeholder for a patient known only by an identifier."""
    return f"{CONDITIONAL_PREFIX}{system or ''}|{value}"


def split_reference(reference: str) -> tuple[str, str] | None:
    """(type, id) of a literal relative or absolute reference, else None."""
    if "?" in reference or reference.startswith(("urn:", "#")):
        return None
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-1]:
        return None
    return parts[-2], parts[-1]


def conditional_reference(reference: str) -> tuple[str, str] | None:
    """(type, identifier placeholder) for `Type?identifier=system|value`, else None."""
    resource_type, _, query = reference.partition("?")
    values = parse_qs(query).get("identifier")
    if not resource_type or not values:
        return None
    system, bar, value = values[0].rpartition("|")
    return resource_type, identifier_query(system if bar else None, value)


def _check(element: Any) -> str | None:
    if type(element) is not dict:
        raise ElementTypeError(f"expected a Reference object, got {type(element).__name__}")
    reference = element.get("reference")
    if reference is not None and type(reference) is not str:
        raise ElementTypeError(f"expected Reference.reference to be a string, got {type(reference).__name__}")
    return reference


def _logical(element: dict, resource_type: str) -> str | None:
    identifier = element.get("identifier")
    if type(identifier) is not dict or type(identifier.get("value")) is not str:
        return None
    if element.get("type", resource_type) != resource_type:
        return None
    return identifier_query(identifier.get("system"), identifier["value"])


def resolve_reference(element: Any, resource_type: str) -> str | None:
    """Resolver for resources read outside a Bundle (NDJSON)."""
    if type(element) is dict:
        reference = element.get("reference")
        # The common case first: a relative reference `Type/id`.
        if type(reference) is str:
            head, slash, tail = reference.partition("/")
            if slash and head == resource_type and tail and "/" not in tail and "?" not in tail:
                return tail
    reference = _check(element)
    if reference is None:
        return _logical(element, resource_type)
    if reference.startswith(_BUNDLE_ONLY):
        raise UnresolvableReference(
            f"reference {reference!r} names a Bundle entry, but there is no Bundle here"
        )
    target = split_reference(reference)
    if target is not None:
        return target[1] if target[0] == resource_type else None
    conditional = conditional_reference(reference)
    if conditional is not None and conditional[0] == resource_type:
        return conditional[1]
    return None


class BundleResolver:
    """Resolves references inside one Bundle: fullUrls of its entries and identifiers of its patients."""

    def __init__(self, full_urls: Mapping[str, tuple[str, str]], identifiers: Mapping[str, str]) -> None:
        self.full_urls = full_urls
        self.identifiers = identifiers

    def __call__(self, element: Any, resource_type: str) -> str | None:
        reference = _check(element)
        if reference is not None and reference in self.full_urls:
            target_type, target_id = self.full_urls[reference]
            return target_id if target_type == resource_type else None
        if reference is not None and reference.startswith(_BUNDLE_ONLY):
            raise UnresolvableReference(f"reference {reference!r} names no entry of this Bundle")
        key = resolve_reference(element, resource_type)
        if key is not None and key.startswith(CONDITIONAL_PREFIX):
            return self.identifiers.get(key, key)
        return key


def resolve_patient_references(node: Any, ids: Mapping[str, str]) -> bool:
    """Rewrite, in place, the references to patients whose final id only the whole load knows; whether
    any was. `ids` maps identifier placeholders, and ids a load had to assign before it knew the patient,
    to the final ids. The stored resource must make sense without the load that resolved it."""
    changed = False
    if type(node) is dict:
        for key, value in node.items():
            if key == "reference" and type(value) is str:
                if value.startswith("Patient?"):
                    conditional = conditional_reference(value)
                    key_of_patient = conditional[1] if conditional is not None else None
                else:
                    key_of_patient = value[8:] if value.startswith("Patient/") else None
                if key_of_patient in ids:
                    node[key] = f"Patient/{ids[key_of_patient]}"
                    changed = True
            else:
                changed |= resolve_patient_references(value, ids)
    elif type(node) is list:
        for item in node:
            changed |= resolve_patient_references(item, ids)
    return changed
