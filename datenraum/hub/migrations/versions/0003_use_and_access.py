"""Use & Access proposals and the network directory.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _proposal_id() -> sa.Column:
    return sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), primary_key=True)


def upgrade() -> None:
    op.create_table(
        "proposals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False, index=True),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("abstract", sa.Text(), nullable=False),
        sa.Column("questions", sa.JSON(), nullable=False),
        sa.Column("modules", sa.JSON(), nullable=False),
        sa.Column("data_from", sa.Date()),
        sa.Column("data_to", sa.Date()),
        sa.Column("biosamples", sa.Text(), nullable=False),
        sa.Column("analysis", sa.String(30)),
        sa.Column("start", sa.Date()),
        sa.Column("end", sa.Date()),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.Column("submitted", sa.DateTime()),
        sa.Index("ix_proposals_state", "state"),
    )
    op.create_table(
        "proposal_cohorts",
        _proposal_id(),
        sa.Column("position", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("total", sa.BigInteger()),
        sa.Column("site_counts", sa.JSON(), nullable=False),
        sa.Column("frozen", sa.DateTime()),
    )
    op.create_table(
        "proposal_sites",
        _proposal_id(),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), primary_key=True),
        sa.Column("agreed", sa.Boolean()),
        sa.Column("reason", sa.Text()),
        sa.Column("decided_by", sa.Integer(), sa.ForeignKey("users.id")),
        sa.Column("decided", sa.DateTime()),
        sa.Index("ix_proposal_sites_site", "site_id"),
    )
    op.create_table(
        "proposal_team",
        _proposal_id(),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("project_role", sa.String(40), nullable=False),
        sa.Index("ix_proposal_team_user", "user_id"),
    )
    op.create_table(
        "proposal_votes",
        _proposal_id(),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), primary_key=True),
        sa.Column("in_favour", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "proposal_documents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), nullable=False),
        sa.Column("uploaded_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("media_type", sa.String(100), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("storage_id", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Index("ix_proposal_documents_proposal", "proposal_id"),
    )
    op.create_table(
        "proposal_publications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("reference", sa.String(500), nullable=False),
        sa.Column("added_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Index("ix_proposal_publications_proposal", "proposal_id"),
    )
    op.create_table(
        "proposal_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("from_state", sa.String(30), nullable=False),
        sa.Column("to_state", sa.String(30), nullable=False),
        sa.Column("text", sa.Text()),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id")),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Index("ix_proposal_events_proposal", "proposal_id", "id"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("read", sa.DateTime()),
        sa.Index("ix_notifications_user_read", "user_id", "read"),
    )
    op.create_table(
        "directory_sites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(60), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("city", sa.String(100), nullable=False),
        sa.Column("consortium", sa.String(40)),
        sa.Column("data_integration_centre", sa.String(200)),
        sa.Column("contact", sa.String(300), nullable=False),
    )
    op.create_table(
        "directory_entries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(60), nullable=False, unique=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("acronym", sa.String(40), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
    )
    op.create_table(
        "directory_participations",
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("directory_sites.id"), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("directory_entries.id"), primary_key=True),
        sa.Column("role", sa.String(200)),
        sa.Index("ix_directory_participations_entry", "entry_id"),
    )


def downgrade() -> None:
    for table in (
        "directory_participations",
        "directory_entries",
        "directory_sites",
        "notifications",
        "proposal_events",
        "proposal_publications",
        "proposal_documents",
        "proposal_votes",
        "proposal_team",
        "proposal_sites",
        "proposal_cohorts",
        "proposals",
    ):
        op.drop_table(table)
