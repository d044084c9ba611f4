"""A proposal's timeline entry may have no person as its actor: what a site's agent or the hub itself
did (an extraction started, a package refused, a delivery complete) is recorded as theirs, not as the
act of the office member who started the delivery.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("proposal_events") as batch:
        batch.alter_column("actor_id", existing_type=sa.Integer(), nullable=True)


def downgrade() -> None:
    raise NotImplementedError("entries without a person cannot be given one back")
