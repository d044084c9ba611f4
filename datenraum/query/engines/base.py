"""The one interface every feasibility engine offers: which patients meet a structured query, and how many.

An engine is bound to its data when it is constructed (`ReferenceEngine(resources)` over raw FHIR dicts,
`datenraum.site.feasibility.StoreEngine(snapshot)` over a site store), so a caller, and the spec suite in
`tests/spec/`, asks every engine the same two questions the same way. Both answer by
`docs/feasibility-semantics.md` and raise `QueryError` (with the JSON path) for a query the mapping cannot
answer, before looking at any data.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol, runtime_checkable

from datenraum.query.model import StructuredQuery

__all__ = ["Engine", "resolve_today"]


@runtime_checkable
class Engine(Protocol):
    """Answers structured queries over the data it was constructed with."""

    def patient_ids(self, query: StructuredQuery, *, today: dt.date | None = None) -> list[str]:
        """The ids of the cohort's patients, sorted."""
        ...

    def count(self, query: StructuredQuery, *, today: dt.date | None = None) -> int:
        """The exact number of the cohort's patients (no obfuscation: that is the hub's job)."""
        ...


def resolve_today(today: dt.date | None) -> dt.date:
    """The day ages and time restrictions are measured from: `today`, or the current UTC date."""
    return today if today is not None else dt.datetime.now(dt.UTC).date()
