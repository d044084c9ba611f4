"""The database tables of prospective studies; created by migration 0013.

`studies`: one study (its code is the id sites know it by). `study_sites`: the hub sites (agents) that take
part. `study_arms` -> `study_visits` -> `study_visit_forms`: the design. `study_forms`: every published
version of every form, never updated once written. `study_roles`: who does what, by e-mail (site staff may
have no hub account; the site EDC matches its local accounts by e-mail). `study_status_events`: every
recruitment status change. `study_randomisation`: the statistician's scheme and the sealed seed;
`study_allocations`: one row per participant ever allocated (unique: a second request gets the same row).
`study_enrolment`: each site's latest enrolment report.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = [
    "AllocationRow",
    "ArmRow",
    "EnrolmentRow",
    "FormVersionRow",
    "RandomisationRow",
    "StatusEventRow",
    "StudyRoleRow",
    "StudyRow",
    "StudySiteRow",
    "VisitFormRow",
    "VisitRow",
]


class StudyRow(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    title: Mapped[str] = mapped_column(sa.String(500))
    acronym: Mapped[str] = mapped_column(sa.String(64))
    registry_id: Mapped[str | None] = mapped_column(sa.String(64))
    ethics_vote: Mapped[str | None] = mapped_column(sa.String(200))
    eligibility: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(20))
    # raised on every change a site would see, so that a site knows its copy is stale
    definition_version: Mapped[int] = mapped_column(sa.Integer)
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class StudySiteRow(Base):
    __tablename__ = "study_sites"

    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)


class ArmRow(Base):
    __tablename__ = "study_arms"
    __table_args__ = (sa.UniqueConstraint("study_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), index=True)
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(500))
    position: Mapped[int] = mapped_column(sa.Integer)


class VisitRow(Base):
    __tablename__ = "study_visits"
    __table_args__ = (sa.UniqueConstraint("arm_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    arm_id: Mapped[int] = mapped_column(sa.ForeignKey("study_arms.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(500))
    day_offset: Mapped[int] = mapped_column(sa.Integer)
    window_before: Mapped[int] = mapped_column(sa.Integer)
    window_after: Mapped[int] = mapped_column(sa.Integer)
    position: Mapped[int] = mapped_column(sa.Integer)


class VisitFormRow(Base):
    __tablename__ = "study_visit_forms"

    visit_id: Mapped[int] = mapped_column(
        sa.ForeignKey("study_visits.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str] = mapped_column(sa.String(1000), primary_key=True)
    repeating: Mapped[bool] = mapped_column(sa.Boolean)
    position: Mapped[int] = mapped_column(sa.Integer)


class FormVersionRow(Base):
    __tablename__ = "study_forms"
    __table_args__ = (sa.UniqueConstraint("study_id", "url", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), index=True)
    url: Mapped[str] = mapped_column(sa.String(1000))
    version: Mapped[str] = mapped_column(sa.String(64))
    number: Mapped[int] = mapped_column(sa.Integer)  # 1, 2, ... per url: the order of publication
    title: Mapped[str] = mapped_column(sa.String(500))
    questionnaire: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    published: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    published_by: Mapped[str] = mapped_column(sa.String(320))


class StudyRoleRow(Base):
    __tablename__ = "study_roles"
    __table_args__ = (sa.UniqueConstraint("study_id", "email", "role", "site_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), index=True)
    email: Mapped[str] = mapped_column(sa.String(320), index=True)
    role: Mapped[str] = mapped_column(sa.String(20))
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id"))  # None: a study-wide role


class StatusEventRow(Base):
    __tablename__ = "study_status_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    by: Mapped[str] = mapped_column(sa.String(320))
    from_status: Mapped[str | None] = mapped_column(sa.String(20))
    to_status: Mapped[str] = mapped_column(sa.String(20))
    reason: Mapped[str] = mapped_column(sa.Text)


class RandomisationRow(Base):
    __tablename__ = "study_randomisation"

    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), primary_key=True)
    block_sizes: Mapped[list[int]] = mapped_column(sa.JSON)
    ratio: Mapped[dict[str, int]] = mapped_column(sa.JSON)  # arm code -> its share of a block
    factors: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)  # [{"name", "levels"}]
    seed_sealed: Mapped[bytes] = mapped_column(sa.LargeBinary)  # the seed, encrypted with the hub's key
    seed_check: Mapped[str] = mapped_column(sa.String(200))  # scrypt of the seed: checks a typed one
    set_by: Mapped[str] = mapped_column(sa.String(320))
    set_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class AllocationRow(Base):
    __tablename__ = "study_allocations"
    __table_args__ = (
        sa.UniqueConstraint("study_id", "participant"),
        sa.UniqueConstraint("study_id", "stratum", "position"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), index=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    participant: Mapped[str] = mapped_column(sa.String(64))
    stratum: Mapped[str] = mapped_column(sa.String(500))  # the site and the factor levels, as text
    position: Mapped[int] = mapped_column(sa.Integer)  # the draw's number within its stratum, from 0
    arm: Mapped[str] = mapped_column(sa.String(64))
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    by: Mapped[str] = mapped_column(sa.String(200))  # the site whose agent asked


class EnrolmentRow(Base):
    __tablename__ = "study_enrolment"

    study_id: Mapped[int] = mapped_column(sa.ForeignKey("studies.id"), primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"), primary_key=True)
    enrolled: Mapped[dict[str, int]] = mapped_column(sa.JSON)
    reported_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    received: Mapped[dt.datetime] = mapped_column(UtcDateTime)
