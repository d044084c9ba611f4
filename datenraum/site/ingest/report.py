"""What a load reports: the `LoadReport`, its rejects, and the one line a reject leaves in the rejects file.

Rejects are recorded where they are found: by the workers, resource by resource as they read, and by the
commit, which rejects what only the whole load shows (dangling patient references, ambiguous conditional
updates, deletes of unknown patients). Both write the same record, `reject_line`, to the load's
`rejects/<load>.ndjson`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

__all__ = ["MAX_REPORTED_REJECTS", "IngestError", "LoadReport", "LoadWarning", "Reject", "reject_line"]

# Rejects beyond this many are counted and written to the rejects file, but not kept in the report.
MAX_REPORTED_REJECTS = 1000


class IngestError(RuntimeError):
    pass


@dataclass(frozen=True)
class Reject:
    location: str
    reason: str


@dataclass(frozen=True)
class LoadWarning:
    """Something stored that the load reports as doubtful (ingest/checks.py), with where it was read."""

    location: str
    message: str


def reject_line(location: str, reason: str, resource: str) -> bytes:
    """The rejects file's line for one reject: where, why, and the resource's text as it was read."""
    return orjson.dumps({"location": location, "reason": reason, "resource": resource}) + b"\n"


@dataclass
class LoadReport:
    load_id: str
    generation: int = 0
    added: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    rejects_file: str | None = None
    resources_read: int = 0
    seconds: float = 0.0
    # Resources a site-registered view read leniently or not at all (site/views.py); they are stored.
    site_view_notes: list[str] = field(default_factory=list)
    warnings: list[LoadWarning] = field(default_factory=list)  # the first MAX_REPORTED_REJECTS
    warned: int = 0

    def total(self, kind: str) -> int:
        return sum(getattr(self, kind).values())

    def to_dict(self) -> dict:
        return {
            "load_id": self.load_id,
            "generation": self.generation,
            "seconds": round(self.seconds, 3),
            "resources_read": self.resources_read,
            "added": self.added,
            "replaced": self.replaced,
            "deleted": self.deleted,
            "rejected": self.rejected,
            "rejects_file": self.rejects_file,
            "rejects": [{"location": r.location, "reason": r.reason} for r in self.rejects],
            "site_view_notes": self.site_view_notes,
            "warned": self.warned,
            "warnings": [{"location": w.location, "message": w.message} for w in self.warnings],
        }
