"""Distinct-person counts (issue 23): a query's count id at the linkage unit and the count it released;
each task's linkage status (delivered, or why not).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queries") as batch:
        batch.add_column(sa.Column("linkage_count_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("distinct_count", sa.JSON(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("linkage", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("linkage")
    with op.batch_alter_table("queries") as batch:
        batch.drop_column("distinct_count")
        batch.drop_column("linkage_count_id")
