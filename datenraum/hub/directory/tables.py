"""The database tables of the network directory; created by migration 0003.

Every entry has a `slug`, a stable readable key: pages link to it (`/directory/sites/uk-aachen`), and
the seed finds its rows again by it, which is what makes loading the seed twice change nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from datenraum.hub.db import Base

__all__ = ["DirectoryEntryRow", "DirectorySiteRow", "ParticipationRow"]


class DirectorySiteRow(Base):
    """A university hospital location of the network."""

    __tablename__ = "directory_sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    city: Mapped[str] = mapped_column(sa.String(100))
    consortium: Mapped[str | None] = mapped_column(sa.String(40))  # MII consortium, where known
    data_integration_centre: Mapped[str | None] = mapped_column(sa.String(200))
    contact: Mapped[str] = mapped_column(sa.String(300))  # a role address, never a person


class DirectoryEntryRow(Base):
    """A research infrastructure or a project that sites take part in."""

    __tablename__ = "directory_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(60), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(20))  # infrastructure | project
    acronym: Mapped[str] = mapped_column(sa.String(40))
    name: Mapped[str] = mapped_column(sa.String(300))
    description: Mapped[str] = mapped_column(sa.Text)


class ParticipationRow(Base):
    __tablename__ = "directory_participations"
    __table_args__ = (sa.Index("ix_directory_participations_entry", "entry_id"),)

    site_id: Mapped[int] = mapped_column(sa.ForeignKey("directory_sites.id"), primary_key=True)
    entry_id: Mapped[int] = mapped_column(sa.ForeignKey("directory_entries.id"), primary_key=True)
    role: Mapped[str | None] = mapped_column(sa.String(200))
