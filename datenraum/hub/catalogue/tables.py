"""The catalogue's tables (migration 0005): what each site last reported, and harvested catalogues."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = ["HarvestedCatalogueRow", "SiteReportRow"]


class SiteReportRow(Base):
    """A site's site-metadata task in flight (`task_id`), and the figures of its last answer."""

    __tablename__ = "catalogue_site_reports"

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    task_id: Mapped[str | None] = mapped_column(sa.String(36))  # issued, not answered yet
    task_issued: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    answered_task: Mapped[str | None] = mapped_column(sa.String(36))  # the task `metadata` answers
    reported: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    generation: Mapped[int | None] = mapped_column(sa.BigInteger)
    metadata_json: Mapped[str | None] = mapped_column(sa.Text)  # protocol.SiteMetadata JSON
    failure: Mapped[str | None] = mapped_column(sa.String(2000))  # why the last task failed


class HarvestedCatalogueRow(Base):
    """Another DCAT catalogue, as harvested last: its graph (Turtle) and where it came from."""

    __tablename__ = "catalogue_harvested"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(sa.String(2000), unique=True)
    title: Mapped[str] = mapped_column(sa.String(300))
    harvested: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    pages: Mapped[int] = mapped_column()
    datasets: Mapped[int] = mapped_column()
    stopped: Mapped[str] = mapped_column(sa.String(500))
    turtle: Mapped[str] = mapped_column(sa.Text)
