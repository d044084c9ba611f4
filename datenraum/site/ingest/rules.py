"""What both NDJSON readers check and how both batch: one definition for the strict reader and the
row-by-row reader, so that a line is judged the same whichever of them reads it.

The patient of a resource is not decided here but in `fhir/viewdef` (`compile_json.patient_of` for the
row-by-row reader, `compile_shaped.compile_patient` for the strict one), both generated from one rule.
"""

from __future__ import annotations

from datenraum.fhir.primitives import ID_CHARACTERS, MAX_ID_LENGTH
from datenraum.fhir.resource_types import R4_RESOURCE_TYPES

__all__ = [
    "BATCH_RESOURCES",
    "BOM",
    "MAX_RESOURCE_BYTES",
    "ROWS_PER_BATCH",
    "ROWS_PER_ROW_GROUP",
    "STORED_TYPES",
    "is_valid_id",
]

# The longest NDJSON line (one resource) accepted, unless the load says otherwise.
MAX_RESOURCE_BYTES = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"  # editors on Windows start UTF-8 files with it; JSON parsers refuse it
# The resource types stored, each mapped to one canonical str object; Bundles are read as files only.
STORED_TYPES = {name: name for name in R4_RESOURCE_TYPES if name != "Bundle"}

# Rows go to Arrow in small batches, so that the memory of freshly parsed values is reused while it is
# still in the CPU cache: the row-by-row reader converts a table's rows this many at a time ...
ROWS_PER_BATCH = 8192
# ... and the strict reader a type's rows this many resources at a time.
BATCH_RESOURCES = 4096
# Rows per row group of the staging Parquet files, which the commit reads once. (The store's own files
# have store.ROW_GROUP_ROWS: that is the store's layout, which the store defines.)
ROWS_PER_ROW_GROUP = 100_000


def is_valid_id(value: object) -> bool:
    """Whether `value` is a FHIR id: 1 to MAX_ID_LENGTH of A-Z a-z 0-9 - ."""
    return type(value) is str and not value.strip(ID_CHARACTERS) and 0 < len(value) <= MAX_ID_LENGTH
