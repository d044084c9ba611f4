"""The study's eligibility at enrolment: its CCDL structured query, run on the site store for one patient.

The hub sends the eligibility with the study definition (`StudyDefinition.eligibility`, None when the
study has none). The site answers it as it answers a feasibility query (`datenraum.site.feasibility`, the
same compiled SQL), so "eligible" at enrolment means what the feasibility count counted. The cohort is
streamed and the search stops at the patient; a study's eligibility is asked once per enrolment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from datenraum.query.mapping import UnsupportedCriterion
from datenraum.query.model import QueryError, parse_query
from datenraum.site.feasibility import iter_patient_ids
from datenraum.site.store import Store

__all__ = ["EligibilityUnanswerable", "is_eligible"]


class EligibilityUnanswerable(ValueError):
    """The study's eligibility query cannot be run at this site; the text says why."""


def is_eligible(store: Store, eligibility: Mapping[str, Any], patient_id: str, day: dt.date) -> bool:
    """Whether the patient is in the eligibility query's cohort on `day` (age and time criteria)."""
    try:
        query = parse_query(dict(eligibility))
    except QueryError as error:
        raise EligibilityUnanswerable(
            f"the study's eligibility is not a valid structured query: {error}"
        ) from None
    with store.snapshot() as snapshot:
        try:
            return any(found == patient_id for found in iter_patient_ids(snapshot, query, today=day))
        except (QueryError, UnsupportedCriterion) as error:
            raise EligibilityUnanswerable(
                f"the study's eligibility cannot be answered here: {error}"
            ) from None
