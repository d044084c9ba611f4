"""Portal accounts: registration, passwords, roles, web sessions, password resets, login attempts, the
audit log, the outbox and saved queries.

Users created before this migration (by `datenraum hub create-user`) keep their API token and their
role, now as a row of `user_roles`; they count as approved.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_roles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id", ondelete="CASCADE")),
        sa.UniqueConstraint("user_id", "role", "site_id"),
    )
    op.execute("INSERT INTO user_roles (user_id, role) SELECT id, role FROM users")
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("name", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("institution", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("status", sa.String(20), nullable=False, server_default="approved"))
        batch.add_column(sa.Column("password_hash", sa.String(200)))
        batch.add_column(sa.Column("oidc_subject", sa.String(300)))
        batch.add_column(sa.Column("language", sa.String(5)))
        batch.alter_column("token_hash", existing_type=sa.String(64), nullable=True)
        batch.drop_column("role")
        batch.create_unique_constraint("uq_users_oidc_subject", ["oidc_subject"])
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False, index=True),
    )
    op.create_table(
        "password_resets",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("expires", sa.DateTime(), nullable=False),
        sa.Column("used", sa.DateTime()),
    )
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Index("ix_login_attempts_email_at", "email", "at"),
        sa.Index("ix_login_attempts_ip_at", "ip", "at"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL")),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Index("ix_audit_log_at", "at"),
        sa.Index("ix_audit_log_action_at", "action", "at"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sent", sa.DateTime()),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "saved_queries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("query", sa.JSON(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.Column("updated", sa.DateTime(), nullable=False),
        sa.Column("last_query_id", sa.String(36), sa.ForeignKey("queries.id")),
    )


def downgrade() -> None:
    for table in (
        "saved_queries",
        "outbox",
        "audit_log",
        "login_attempts",
        "password_resets",
        "web_sessions",
    ):
        op.drop_table(table)
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(20), nullable=False, server_default="researcher"))
    op.execute(
        "UPDATE users SET role = COALESCE((SELECT MIN(role) FROM user_roles WHERE user_roles.user_id = users.id),"
        " 'researcher')"
    )
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_oidc_subject", type_="unique")
        for column in ("name", "institution", "status", "password_hash", "oidc_subject", "language"):
            batch.drop_column(column)
    op.drop_table("user_roles")
