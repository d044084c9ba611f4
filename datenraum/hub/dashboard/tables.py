"""The database tables of the crisis dashboard; created by migration 0006.

`dashboard_definitions`: diseases and indicators the coordination office added in crisis mode (the
shipped registry is code). `dashboard_tasks`: one indicators task per site and run. `dashboard_deliveries`:
every cube a site delivered, accepted or rejected with the problems found, kept for the "updated" series
and for audit. `dashboard_published`: the first released value of each pooled total ("as first
published", RKI's "fixiert"), never changed afterwards. Migration 0012: `dashboard_release_history`, per
series what it has released so far (`datenraum.indicators.release.History`, against differencing);
`dashboard_schedule`, the days the daily run was started (so two hub processes start it once).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = [
    "DashboardTaskRow",
    "DefinitionRow",
    "DeliveryRow",
    "PublishedRow",
    "ReleaseHistoryRow",
    "ScheduledRunRow",
]


class DefinitionRow(Base):
    __tablename__ = "dashboard_definitions"
    __table_args__ = (sa.UniqueConstraint("kind", "ident", name="uq_dashboard_definitions_ident"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))  # disease | indicator
    ident: Mapped[str] = mapped_column(sa.String(40))
    body: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id"))


class DashboardTaskRow(Base):
    __tablename__ = "dashboard_tasks"
    __table_args__ = (sa.Index("ix_dashboard_tasks_site_state", "site_id", "state"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(36), index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    state: Mapped[str] = mapped_column(sa.String(20))
    as_of: Mapped[str] = mapped_column(sa.String(10))
    definitions: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    deadline: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    finished: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str | None] = mapped_column(sa.Text)


class DeliveryRow(Base):
    __tablename__ = "dashboard_deliveries"
    __table_args__ = (sa.Index("ix_dashboard_deliveries_site_received", "site_id", "received"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    task_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    received: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    data_as_of: Mapped[str] = mapped_column(sa.String(10))
    definitions_version: Mapped[str] = mapped_column(sa.String(40))
    accepted: Mapped[bool] = mapped_column()
    problems: Mapped[str | None] = mapped_column(sa.Text)
    cube: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class PublishedRow(Base):
    __tablename__ = "dashboard_published"

    disease: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    value: Mapped[int | None] = mapped_column()
    suppressed: Mapped[bool] = mapped_column()
    n_sites: Mapped[int] = mapped_column()
    published: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ReleaseHistoryRow(Base):
    __tablename__ = "dashboard_release_history"

    disease: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    indicator: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    history: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    updated: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class ScheduledRunRow(Base):
    __tablename__ = "dashboard_schedule"

    day: Mapped[str] = mapped_column(sa.String(10), primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.String(36))
    started: Mapped[dt.datetime] = mapped_column(UtcDateTime)
