"""The database tables of the sample locator; created by migration 0009.

`sample_searches`: one search (its cohort, its sample filter, who asked). `sample_search_tasks`: one
`sample-search` task per site asked, with the site's released answer once it came (`result`, the JSON of
`protocol.samples.SampleResult`, checked before it is stored).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = ["SampleSearchRow", "SampleTaskRow"]


class SampleSearchRow(Base):
    __tablename__ = "sample_searches"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), index=True)
    query: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    sample_filter: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class SampleTaskRow(Base):
    __tablename__ = "sample_search_tasks"
    __table_args__ = (sa.Index("ix_sample_search_tasks_site_state", "site_id", "state"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    search_id: Mapped[str] = mapped_column(sa.ForeignKey("sample_searches.id"), index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    state: Mapped[str] = mapped_column(sa.String(20))
    deadline: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
