"""Sites, users, queries and their tasks.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("credential_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime()),
        sa.Column("agent_version", sa.String(100)),
        sa.Column("generation", sa.BigInteger()),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "queries",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, index=True),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "query_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("query_id", sa.String(36), sa.ForeignKey("queries.id"), nullable=False, index=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("reused", sa.Boolean(), nullable=False),
        sa.Index("ix_query_requests_user_created", "user_id", "created"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("query_id", sa.String(36), sa.ForeignKey("queries.id"), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=False),
        sa.Column("leased_until", sa.DateTime()),
        sa.Column("finished", sa.DateTime()),
        sa.Column("obfuscated", sa.BigInteger()),
        sa.Column("below_threshold", sa.Boolean()),
        sa.Column("reason", sa.Text()),
        sa.UniqueConstraint("query_id", "site_id"),
        sa.Index("ix_tasks_site_state", "site_id", "state"),
        sa.Index("ix_tasks_state_deadline", "state", "deadline"),
    )


def downgrade() -> None:
    for table in ("tasks", "query_requests", "queries", "users", "sites"):
        op.drop_table(table)
