"""Reading a FHIR Bundle as a sequence of store operations (upsert or delete), in entry order.

Transaction and batch Bundles carry a `request` per entry (PUT, POST, DELETE); collection, searchset and
document Bundles carry none and are read as upserts. A POST without an id gets a deterministic one
(the uuid of its `urn:uuid:` fullUrl, else a uuid5 of its content), so that loading the same Bundle
twice replaces rather than duplicates. References to other entries (`urn:uuid:` fullUrls) and
conditional references to patients of the same Bundle are rewritten to `Type/id` in the stored JSON,
because the stored resource must make sense outside its Bundle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from datenraum.fhir.references import (
    CONDITIONAL_PREFIX,
    BundleResolver,
    conditional_reference,
    identifier_query,
    split_reference,
)

__all__ = ["BundleEntryError", "Operation", "read_bundle"]

_NAMESPACE = uuid.UUID("6f0c1f43-6b7e-4c55-9d25-0c5f3f7d6a11")


class BundleEntryError(ValueError):
    pass


@dataclass(frozen=True)
class Operation:
    """One entry of a Bundle: `resource` to upsert, or (`delete_type`, `delete_key`) to delete."""

    position: int
    resource: dict | None = None
    delete_type: str | None = None
    delete_key: str | None = None
    error: str | None = None
    entry: Any = None  # the entry as given, kept for the rejects file when `error` is set
    # A conditional update (`PUT Patient?identifier=...` of a patient without id): the identifier
    # placeholder. Its id is provisional; the load gives it the id of the one patient that matches.
    condition: str | None = None


def _patient_identifiers(resource: dict) -> Iterator[tuple[str, bool]]:
    """The identifier queries that find this patient, each with whether it is an exact match.

    `Patient?identifier=value` (no system) matches the value in any system, but a patient whose
    identifier has no system at all matches it exactly and wins.
    """
    identifiers = resource.get("identifier")
    if isinstance(identifiers, list):
        for identifier in identifiers:
            if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
                system = identifier.get("system")
                system = system if isinstance(system, str) else None
                yield identifier_query(system, identifier["value"]), True
                if system is not None:
                    yield identifier_query(None, identifier["value"]), False  # value alone matches any system


def _request_url(entry: dict) -> Any:
    request = entry.get("request")
    return request.get("url") if isinstance(request, dict) else None


def _update_condition(entry: dict, resource: dict, method: str) -> str | None:
    """The identifier placeholder of a conditional update of a patient without id, else None."""
    url = _request_url(entry)
    if method != "PUT" or resource.get("id") is not None or not isinstance(url, str):
        return None
    conditional = conditional_reference(url)
    if conditional is None or conditional[0] != "Patient" or resource.get("resourceType") != "Patient":
        return None
    return conditional[1]


def _assign_id(entry: dict, resource: dict, method: str) -> str | None:
    """The id a resource gets in the store; None where the entry is inconsistent."""
    url = _request_url(entry)
    resource_id = resource.get("id")
    if method == "PUT" and isinstance(url, str):
        target = split_reference(url)
        if target is not None:
            if resource_id is not None and resource_id != target[1]:
                return None
            return target[1]
        if resource_id is None and url.partition("?")[2]:
            return str(uuid.uuid5(_NAMESPACE, url))  # conditional update: one id per condition
    if resource_id is not None:
        return resource_id
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
        return full_url.removeprefix("urn:uuid:")
    return str(uuid.uuid5(_NAMESPACE, orjson.dumps(resource, option=orjson.OPT_SORT_KEYS).decode()))


def _rewrite_references(node: Any, resolver: BundleResolver) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                if value in resolver.full_urls:
                    target_type, target_id = resolver.full_urls[value]
                    node[key] = f"{target_type}/{target_id}"
                elif "?" in value:
                    target_type = value.partition("?")[0]
                    resolved = resolver({"reference": value}, target_type)
                    if resolved is not None and not resolved.startswith(CONDITIONAL_PREFIX):
                        node[key] = f"{target_type}/{resolved}"
            else:
                _rewrite_references(value, resolver)
    elif isinstance(node, list):
        for item in node:
            _rewrite_references(item, resolver)


def read_bundle(bundle: dict) -> tuple[list[Operation], BundleResolver]:
    """The Bundle's operations in entry order, and the resolver for references between its entries."""
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise BundleEntryError("Bundle.entry must be an array")
    full_urls: dict[str, tuple[str, str]] = {}
    identifiers: dict[str, str] = {}
    prepared: list[tuple[int, dict, dict | None, str, str | None]] = []  # ..., problem, condition
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            prepared.append((position, entry, None, "entry is not an object", None))
            continue
        request = entry.get("request")
        method = request.get("method", "PUT") if isinstance(request, dict) else "PUT"
        resource = entry.get("resource")
        if method == "DELETE":
            prepared.append((position, entry, None, "DELETE", None))
            continue
        if method not in ("PUT", "POST"):
            prepared.append((position, entry, None, f"request.method {method!r} is not supported", None))
            continue
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            prepared.append((position, entry, None, "entry has no resource with a resourceType", None))
            continue
        condition = _update_condition(entry, resource, method)
        resource_id = _assign_id(entry, resource, method)
        if resource_id is None:
            prepared.append((position, entry, None, "request.url names another id than resource.id", None))
            continue
        resource["id"] = resource_id
        if isinstance(entry.get("fullUrl"), str):
            full_urls[entry["fullUrl"]] = (resource["resourceType"], resource_id)
        if resource["resourceType"] == "Patient":
            for query, exact in _patient_identifiers(resource):
                if exact or query not in identifiers:
                    identifiers[query] = resource_id
        prepared.append((position, entry, resource, "", condition))

    resolver = BundleResolver(full_urls, identifiers)
    operations = []
    for position, entry, resource, problem, condition in prepared:
        if resource is not None:
            _rewrite_references(resource, resolver)
            operations.append(Operation(position, resource=resource, condition=condition))
        elif problem == "DELETE":
            operations.append(_delete(position, entry, resolver))
        else:
            operations.append(Operation(position, error=problem, entry=entry))
    return operations, resolver


def _delete(position: int, entry: dict, resolver: BundleResolver) -> Operation:
    url = _request_url(entry)
    if not isinstance(url, str):
        return Operation(position, error="DELETE without request.url", entry=entry)
    target = split_reference(url)
    if target is not None:
        return Operation(position, delete_type=target[0], delete_key=target[1])
    resource_type = url.partition("?")[0]
    resolved = resolver({"reference": url}, resource_type) if resource_type == "Patient" else None
    if resolved is None:
        return Operation(
            position,
            error=f"conditional DELETE {url!r} is only supported for Patient?identifier=",
            entry=entry,
        )
    return Operation(position, delete_type=resource_type, delete_key=resolved)
