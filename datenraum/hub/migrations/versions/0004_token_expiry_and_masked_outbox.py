"""API tokens expire; the outbox keeps no live reset link; team invitations by address.

Tokens issued before get 90 days from now (the default `token_days`). Reset links stored in the outbox
before are masked; the mails sent with them still work until they expire (an hour), but nobody can read
them at the hub any more.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SECRETS = re.compile(r"(?<=token=)[^\s&#]+|\bdr[psuw]_[A-Za-z0-9_-]{6,}")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("token_expires", sa.DateTime()))
    connection = op.get_bind()
    expires = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=90)
    connection.execute(
        sa.text("UPDATE users SET token_expires = :expires WHERE token_hash IS NOT NULL"),
        {"expires": expires},
    )
    outbox = sa.table("outbox", sa.column("id", sa.Integer()), sa.column("body", sa.Text()))
    for message_id, body in connection.execute(sa.select(outbox.c.id, outbox.c.body)).all():
        masked = _SECRETS.sub("[hidden]", body)
        if masked != body:
            connection.execute(outbox.update().where(outbox.c.id == message_id).values(body=masked))
    op.create_table(
        "proposal_invitations",
        sa.Column("proposal_id", sa.Integer(), sa.ForeignKey("proposals.id"), primary_key=True),
        sa.Column("email", sa.String(320), primary_key=True),
        sa.Column("project_role", sa.String(40), nullable=False),
    )
    op.create_index("ix_proposal_invitations_email", "proposal_invitations", ["email"])


def downgrade() -> None:
    op.drop_index("ix_proposal_invitations_email", "proposal_invitations")
    op.drop_table("proposal_invitations")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_expires")
