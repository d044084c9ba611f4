"""The person acting in the EDC: their account and their role in the study at hand."""

from __future__ import annotations

from dataclasses import dataclass

from datenraum.protocol.studies import StudyRole

__all__ = ["Staff"]


@dataclass(frozen=True)
class Staff:
    email: str
    name: str
    study_id: str
    role: StudyRole | None  # None: not on this study's roster for this site
