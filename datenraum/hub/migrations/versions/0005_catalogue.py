"""The FAIR catalogue: the figures the sites report, harvested catalogues.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalogue_site_reports",
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), primary_key=True),
        sa.Column("task_id", sa.String(36)),
        sa.Column("task_issued", sa.DateTime()),
        sa.Column("answered_task", sa.String(36)),
        sa.Column("reported", sa.DateTime()),
        sa.Column("generation", sa.BigInteger()),
        sa.Column("metadata_json", sa.Text()),
        sa.Column("failure", sa.String(2000)),
    )
    op.create_table(
        "catalogue_harvested",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("url", sa.String(2000), nullable=False, unique=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("harvested", sa.DateTime(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("datasets", sa.Integer(), nullable=False),
        sa.Column("stopped", sa.String(500), nullable=False),
        sa.Column("turtle", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("catalogue_harvested")
    op.drop_table("catalogue_site_reports")
