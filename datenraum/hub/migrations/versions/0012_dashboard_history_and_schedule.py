"""The dashboard's release history per series (what each cell has shown, the merged federal states) and
its daily schedule (one row per day a scheduled run was started).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_release_history",
        sa.Column("disease", sa.String(40), primary_key=True),
        sa.Column("indicator", sa.String(40), primary_key=True),
        sa.Column("history", sa.JSON(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "dashboard_schedule",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("started", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dashboard_schedule")
    op.drop_table("dashboard_release_history")
