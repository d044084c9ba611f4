"""The row-by-row reader: one parsed resource at a time, checked and flattened by the views compiled
over dicts (fhir/viewdef.py); and JSON files, a Bundle or a single resource.

It is the reference of the two NDJSON readers: it reads what the strict reader (strict.py) leaves, says
why it rejects what it rejects (`_reject_invalid`, `_explain`), and reads what FHIR JSON allows but the
strict shape does not (a single object where an array belongs, references to resolve). Bundles are read
only here, with their conditional references, conditional updates and deletes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from datenraum.fhir.bundle import BundleEntryError, read_bundle
from datenraum.fhir.primitives import MAX_ID_LENGTH
from datenraum.fhir.references import CONDITIONAL_PREFIX, resolve_reference
from datenraum.fhir.viewdef.compile_json import CompiledView, patient_of, standard_views
from datenraum.fhir.viewdef.steps import PATIENT_ELEMENTS, Resolver
from datenraum.site.ingest.plan import Piece
from datenraum.site.ingest.rules import BOM, ROWS_PER_BATCH, STORED_TYPES, is_valid_id

if TYPE_CHECKING:
    from datenraum.site.ingest.worker import Staging, TableBuffer

__all__ = ["MAX_BUNDLE_BYTES", "RowReader", "read_json"]

MAX_BUNDLE_BYTES = 1024 * 1024 * 1024


class RowReader:
    """Validates and flattens resources, one at a time, into a task's staging buffers."""

    def __init__(self, staging: Staging) -> None:
        self.staging = staging
        self.result = staging.result
        self.raw = staging.raw
        self.views: dict[str, list[tuple[CompiledView, TableBuffer]]] = {}
        for view in standard_views().values():
            self.views.setdefault(view.resource, []).append((view, staging.buffers[view.name]))

    def read_lines(self, piece: Piece, lines: Iterable[tuple[int, bytes | None]], limit: int) -> None:
        """Parse and accept NDJSON lines (line number, line; None for a line over `limit` bytes)."""
        loads, decode_error, reject = orjson.loads, orjson.JSONDecodeError, self.staging.reject
        for line_number, line in lines:
            if line is None:
                reject(piece.location(line_number), f"line is longer than the limit of {limit} bytes", b"")
                continue
            if not line or line.isspace():
                continue
            try:
                resource = loads(line)
            except decode_error as error:
                reject(piece.location(line_number), f"malformed JSON: {error}", line)
                continue
            self.accept(resource, line.rstrip(b"\r\n"), line_number, resolve_reference)

    def accept(self, resource: Any, raw: bytes, line: int, resolve: Resolver) -> None:
        """Validate and flatten one parsed resource; `raw` is its JSON text as stored."""
        staging = self.staging
        if type(resource) is not dict:
            staging.reject(staging.piece.location(line), "a resource must be a JSON object", raw)
            return
        given_type = resource.get("resourceType")
        # The canonical str object: the type column then holds one object many times, which Arrow reads fastest.
        resource_type = STORED_TYPES.get(given_type) if type(given_type) is str else None
        resource_id = resource.get("id")
        if resource_type is None or not is_valid_id(resource_id):
            self._reject_invalid(resource, raw, line)
            return
        seq = staging.seq_base + line
        try:
            patient_id = resource_id if resource_type == "Patient" else patient_of(resource, resolve)
            flattened = [
                (buffer, view.rows(resource, resolve, (seq,)))
                for view, buffer in self.views.get(resource_type, ())
            ]
        except Exception:
            staging.reject(staging.piece.location(line), self._explain(resource, resolve), raw, resource_type)
            return
        for buffer, rows in flattened:
            buffer.rows += rows
            if len(buffer.rows) >= ROWS_PER_BATCH:
                buffer.convert()
        raw_rows = self.raw.rows
        raw_rows.append((resource_type, resource_id, patient_id, staging.piece.path, line, seq, raw))
        if len(raw_rows) >= ROWS_PER_BATCH:
            self.raw.convert()
        accepted = self.result.accepted
        accepted[resource_type] = accepted.get(resource_type, 0) + 1
        if patient_id is not None and patient_id.startswith(CONDITIONAL_PREFIX):
            self.result.conditional_references.add(patient_id)

    def _reject_invalid(self, resource: Any, raw: bytes, line: int) -> None:
        """Reject a resource whose type or id is missing or not valid, saying which."""
        resource_type = resource.get("resourceType")
        resource_id = resource.get("id")
        if type(resource_type) is not str:
            reason, resource_type = "resource has no resourceType", "(unknown)"
        elif resource_type == "Bundle":
            reason = "a Bundle inside NDJSON is not supported; give Bundles as .json files"
        elif resource_type not in STORED_TYPES:
            reason = f"unknown resource type {resource_type!r} (not a FHIR R4 resource)"
        elif resource_id is None:
            reason = "resource has no id"
        else:
            reason = (
                f"id {resource_id!r:.80} is not a valid FHIR id (1 to {MAX_ID_LENGTH} of A-Z a-z 0-9 - .)"
            )
        self.staging.reject(self.staging.piece.location(line), reason, raw, resource_type)

    def _explain(self, resource: dict, resolve: Resolver) -> str:
        for element in PATIENT_ELEMENTS:
            value = resource.get(element)
            if value is not None:
                try:
                    resolve(value, "Patient")
                except Exception as error:
                    return f"{resource['resourceType']}.{element}: {error}"
        for view, _buffer in self.views.get(resource["resourceType"], ()):
            try:
                view.rows(resource, resolve)
            except Exception:
                return view.explain(resource, resolve)
        return "resource could not be read"


def read_json(piece: Piece, staging: Staging, rows: RowReader) -> None:
    """Read a JSON file: a Bundle (its entries, deletes and conditional updates), or one resource."""
    path = Path(piece.path)
    size = path.stat().st_size
    if size > MAX_BUNDLE_BYTES:
        staging.reject(
            piece.path, f"JSON file of {size} bytes is over {MAX_BUNDLE_BYTES}; send NDJSON instead", b""
        )
        return
    data = path.read_bytes().removeprefix(BOM)
    if not data.strip():
        staging.reject(piece.path, "the file is empty (a .json file must hold a Bundle or a resource)", b"")
        return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        staging.reject(
            f"{piece.path}:{error.lineno}:{error.colno}", f"malformed JSON: {error.msg}", data[:1_000_000]
        )
        return
    if not isinstance(document, dict) or document.get("resourceType") != "Bundle":
        rows.accept(document, orjson.dumps(document), 0, resolve_reference)  # line 0: the whole file
        return
    try:
        operations, resolver = read_bundle(document)
    except BundleEntryError as error:
        staging.reject(piece.path, str(error), b"")
        return
    except RecursionError:
        staging.reject(piece.path, "the Bundle is nested too deeply to be read", b"")
        return
    for operation in operations:
        line = operation.position + 1
        if operation.error is not None:
            staging.reject(piece.location(line), operation.error, orjson.dumps(operation.entry))
        elif operation.resource is not None:
            rows.accept(operation.resource, orjson.dumps(operation.resource), line, resolver)
            if operation.condition is not None:
                staging.conditional_update(operation.resource["id"], operation.condition, line)
        else:
            staging.delete(operation.delete_type, operation.delete_key, line)
