"""Data delivery: one delivery per proposal, one part per site with its upload's progress.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "data_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), nullable=False, unique=True),
        sa.Column("crtdl", sa.JSON(), nullable=False),
        sa.Column("crtdl_sha256", sa.String(64), nullable=False),
        sa.Column("recipient_key", sa.Text(), nullable=False),
        sa.Column("profile", sa.String(20), nullable=False),
        sa.Column("started_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("fetched", sa.DateTime(), nullable=True),
    )
    op.create_table(
        "delivery_parts",
        sa.Column("task_id", sa.String(36), primary_key=True),
        sa.Column("delivery_id", sa.Integer(), sa.ForeignKey("data_deliveries.id"), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("leased_until", sa.DateTime(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("received", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("package_bytes", sa.BigInteger(), nullable=True),
        sa.Column("package_sha256", sa.String(64), nullable=True),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("delivery_id", "site_id"),
    )
    op.create_index("ix_delivery_parts_site_state", "delivery_parts", ["site_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_delivery_parts_site_state", table_name="delivery_parts")
    op.drop_table("delivery_parts")
    op.drop_table("data_deliveries")
