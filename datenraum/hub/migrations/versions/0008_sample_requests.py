"""Biosample requests inside a proposal: one item per (site, biobank) with the access form's fields and
its state, and the items' append-only history.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proposal_sample_items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("biobank", sa.String(200), nullable=False),
        sa.Column("donors", sa.Integer(), nullable=False),
        sa.Column("samples_per_donor", sa.Integer(), nullable=False),
        sa.Column("sample_types", sa.JSON(), nullable=False),
        sa.Column("volume", sa.String(500), nullable=False),
        sa.Column("collection", sa.String(20), nullable=False),
        sa.Column("storage", sa.String(500), nullable=False),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("moved", sa.DateTime(), nullable=False),
        sa.Column("reminded", sa.DateTime()),
    )
    op.create_index("ix_proposal_sample_items_proposal", "proposal_sample_items", ["proposal_id"])
    op.create_table(
        "proposal_sample_item_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("proposal_sample_items.id"), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("from_state", sa.String(40), nullable=False),
        sa.Column("to_state", sa.String(40), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_proposal_sample_item_history_item", "proposal_sample_item_history", ["item_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_proposal_sample_item_history_item", table_name="proposal_sample_item_history")
    op.drop_table("proposal_sample_item_history")
    op.drop_index("ix_proposal_sample_items_proposal", table_name="proposal_sample_items")
    op.drop_table("proposal_sample_items")
