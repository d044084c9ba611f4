"""The delivery tables: one delivery per proposal, one part per agreed site (its extraction task)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base, UtcDateTime

__all__ = ["DataDeliveryRow", "DeliveryPartRow"]


class DataDeliveryRow(Base):
    """A project's delivery: what every site is asked to extract (the CRTDL, pinned by its SHA-256),
    for whom it is sealed (the project's public key: the private key never reaches the hub), and by when."""

    __tablename__ = "data_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id"), unique=True)
    crtdl: Mapped[dict] = mapped_column(sa.JSON)
    crtdl_sha256: Mapped[str] = mapped_column(sa.String(64))
    recipient_key: Mapped[str] = mapped_column(sa.Text)  # PEM, public
    profile: Mapped[str] = mapped_column(sa.String(20))
    started_by: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    created: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    deadline: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    fetched: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class DeliveryPartRow(Base):
    """One site's part of a delivery; `task_id` is its extraction task at the agent. `received` counts
    the bytes of the upload acknowledged so far (written and synced): the offset a resumed upload
    continues at."""

    __tablename__ = "delivery_parts"
    __table_args__ = (
        sa.UniqueConstraint("delivery_id", "site_id"),
        sa.Index("ix_delivery_parts_site_state", "site_id", "state"),
    )

    task_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("data_deliveries.id"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id"))
    state: Mapped[str] = mapped_column(sa.String(20))
    leased_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    summary: Mapped[dict | None] = mapped_column(sa.JSON)  # counts only (the protocol's summary)
    reason: Mapped[str | None] = mapped_column(sa.Text)
    received: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    package_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    package_sha256: Mapped[str | None] = mapped_column(sa.String(64))
    updated: Mapped[dt.datetime] = mapped_column(UtcDateTime)
