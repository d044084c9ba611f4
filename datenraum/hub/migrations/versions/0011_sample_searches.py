"""The sample locator: sample searches and their `sample-search` tasks, one per site, with the sites'
released answers.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sample_searches",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("query", sa.JSON(), nullable=True),
        sa.Column("sample_filter", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_sample_searches_user_id", "sample_searches", ["user_id"])
    op.create_table(
        "sample_search_tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("search_id", sa.String(36), sa.ForeignKey("sample_searches.id"), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("leased_until", sa.DateTime(), nullable=True),
        sa.Column("finished", sa.DateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
    )
    op.create_index("ix_sample_search_tasks_search_id", "sample_search_tasks", ["search_id"])
    op.create_index("ix_sample_search_tasks_site_state", "sample_search_tasks", ["site_id", "state"])


def downgrade() -> None:
    op.drop_table("sample_search_tasks")
    op.drop_table("sample_searches")
