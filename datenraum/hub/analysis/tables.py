"""The database table of federated analysis: one row per analysis call (created by migration 0007).

The rounds themselves live in the hub's memory (`rounds`): an analysis is driven by the hub process
that received it, and a restarted hub could not continue one anyway. What is kept is who asked what of
which sites of which project, and how it ended (the request without the researcher's data, the errors'
rules and sites, never a released value), for the audit and the custodians.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = ["AnalysisRunRow"]


class AnalysisRunRow(Base):
    __tablename__ = "analysis_runs"
    __table_args__ = (sa.Index("ix_analysis_runs_proposal", "proposal_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"))
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    operation: Mapped[str] = mapped_column(sa.String(30))
    request: Mapped[dict] = mapped_column(sa.JSON)
    sites: Mapped[list] = mapped_column(sa.JSON)  # the site names, fixed for the whole call
    state: Mapped[str] = mapped_column(sa.String(20))  # ok, refused, no-answer, failed
    errors: Mapped[list] = mapped_column(sa.JSON)  # [{site, code, rule, threshold}]
    rounds: Mapped[int] = mapped_column(default=0)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    seconds: Mapped[float] = mapped_column(sa.Float)
