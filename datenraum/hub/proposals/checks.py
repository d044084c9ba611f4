"""What a proposal's values must be before they are stored: `check_draft`.

Each check raises `Invalid` with a text that starts with the offending field.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from datenraum.hub.db import SiteRow, UserRow
from datenraum.hub.errors import Invalid
from datenraum.hub.limits import MAX_COUNT
from datenraum.hub.proposals.values import (
    KDS_MODULES,
    MAX_TEXT,
    Analysis,
    CohortQuery,
    Draft,
    ProjectRole,
)
from datenraum.hub.text import clean_text
from datenraum.query.model import QueryError, parse_query

__all__ = ["check_draft"]


def check_draft(session: Session, draft: Draft) -> None:
    """Raise Invalid, naming the field, for anything that cannot be stored as it is."""
    clean_text(draft.title, "title", max_length=300, required=False)
    clean_text(draft.abstract, "abstract", max_length=MAX_TEXT, required=False)
    clean_text(draft.biosamples, "biosamples", max_length=MAX_TEXT, required=False)
    for index, question in enumerate(draft.questions):
        clean_text(question, f"questions[{index}]", max_length=MAX_TEXT)
    for index, cohort in enumerate(draft.cohort):
        _check_cohort(f"cohort[{index}]", cohort)
    if len(set(draft.modules)) != len(draft.modules):
        raise Invalid("modules: lists a module twice")
    unknown = sorted(set(draft.modules) - KDS_MODULES)
    if unknown:
        raise Invalid(f"modules: not a module of the core data set: {', '.join(unknown)}")
    for first, last, name in ((draft.data_from, draft.data_to, "data_to"), (draft.start, draft.end, "end")):
        if first is not None and last is not None and last < first:
            raise Invalid(f"{name}: {last} is before {first}")
    if draft.analysis is not None:
        try:
            Analysis(draft.analysis)
        except ValueError:
            raise Invalid(f"analysis: must be one of {', '.join(Analysis)}") from None
    _check_ids(session, "site_ids", SiteRow, draft.site_ids)
    _check_ids(session, "team", UserRow, [member.user_id for member in draft.team])
    for index, member in enumerate(draft.team):
        try:
            ProjectRole(member.project_role)
        except ValueError:
            raise Invalid(f"team[{index}].project_role: must be one of {', '.join(ProjectRole)}") from None


def _check_cohort(where: str, cohort: CohortQuery) -> None:
    clean_text(cohort.name, f"{where}.name", max_length=200)
    try:
        parse_query(dict(cohort.query))
    except QueryError as error:
        raise Invalid(f"{where}.query: {error}") from None
    except (TypeError, ValueError):
        raise Invalid(f"{where}.query: not a structured query object") from None
    counts = {
        "total": cohort.total,
        **{f"site_counts[{name!r}]": n for name, n in cohort.site_counts.items()},
    }
    for name, count in counts.items():
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT
        ):
            raise Invalid(f"{where}.{name}: must be a count from 0 to {MAX_COUNT} or empty")


def _check_ids(session: Session, name: str, table: type[SiteRow] | type[UserRow], ids: Sequence[int]) -> None:
    if len(set(ids)) != len(ids):
        raise Invalid(f"{name}: lists an entry twice")
    known = set(session.scalars(sa.select(table.id).where(table.id.in_(list(ids))))) if ids else set()
    unknown = sorted(set(ids) - known)
    if unknown:
        raise Invalid(f"{name}: unknown id {', '.join(map(str, unknown))}")
