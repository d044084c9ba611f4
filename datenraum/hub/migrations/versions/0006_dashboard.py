"""The crisis dashboard: crisis-mode definitions, indicators tasks, deliveries, first-published values.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dashboard_definitions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ident", sa.String(40), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id")),
        sa.UniqueConstraint("kind", "ident", name="uq_dashboard_definitions_ident"),
    )
    op.create_table(
        "dashboard_tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("run_id", sa.String(36), nullable=False, index=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("as_of", sa.String(10), nullable=False),
        sa.Column("definitions", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("leased_until", sa.DateTime()),
        sa.Column("finished", sa.DateTime()),
        sa.Column("reason", sa.Text()),
    )
    op.create_index("ix_dashboard_tasks_site_state", "dashboard_tasks", ["site_id", "state"])
    op.create_table(
        "dashboard_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("task_id", sa.String(36), nullable=False, unique=True),
        sa.Column("received", sa.DateTime(), nullable=False),
        sa.Column("data_as_of", sa.String(10), nullable=False),
        sa.Column("definitions_version", sa.String(40), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=False),
        sa.Column("problems", sa.Text()),
        sa.Column("cube", sa.JSON()),
    )
    op.create_index("ix_dashboard_deliveries_site_received", "dashboard_deliveries", ["site_id", "received"])
    op.create_table(
        "dashboard_published",
        sa.Column("disease", sa.String(40), primary_key=True),
        sa.Column("indicator", sa.String(40), primary_key=True),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("value", sa.Integer()),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("n_sites", sa.Integer(), nullable=False),
        sa.Column("published", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in ("dashboard_published", "dashboard_deliveries", "dashboard_tasks", "dashboard_definitions"):
        op.drop_table(table)
