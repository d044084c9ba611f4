"""Prospective studies: the study, its sites, arms, visits and their forms, every published form version,
study roles, recruitment status changes, the randomisation scheme with its sealed seed, the allocations
and the sites' enrolment reports.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(64), nullable=False, unique=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("acronym", sa.String(64), nullable=False),
        sa.Column("registry_id", sa.String(64), nullable=True),
        sa.Column("ethics_vote", sa.String(200), nullable=True),
        sa.Column("eligibility", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("definition_version", sa.Integer(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "study_sites",
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), primary_key=True),
    )
    op.create_table(
        "study_arms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.UniqueConstraint("study_id", "code"),
    )
    op.create_index("ix_study_arms_study_id", "study_arms", ["study_id"])
    op.create_table(
        "study_visits",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("arm_id", sa.Integer(), sa.ForeignKey("study_arms.id", ondelete="CASCADE"), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("day_offset", sa.Integer(), nullable=False),
        sa.Column("window_before", sa.Integer(), nullable=False),
        sa.Column("window_after", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.UniqueConstraint("arm_id", "code"),
    )
    op.create_index("ix_study_visits_arm_id", "study_visits", ["arm_id"])
    op.create_table(
        "study_visit_forms",
        sa.Column(
            "visit_id", sa.Integer(), sa.ForeignKey("study_visits.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("url", sa.String(1000), primary_key=True),
        sa.Column("repeating", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
    )
    op.create_table(
        "study_forms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("url", sa.String(1000), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("questionnaire", sa.JSON(), nullable=False),
        sa.Column("published", sa.DateTime(), nullable=False),
        sa.Column("published_by", sa.String(320), nullable=False),
        sa.UniqueConstraint("study_id", "url", "version"),
    )
    op.create_index("ix_study_forms_study_id", "study_forms", ["study_id"])
    op.create_table(
        "study_roles",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=True),
        sa.UniqueConstraint("study_id", "email", "role", "site_id"),
    )
    op.create_index("ix_study_roles_study_id", "study_roles", ["study_id"])
    op.create_index("ix_study_roles_email", "study_roles", ["email"])
    op.create_table(
        "study_status_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("by", sa.String(320), nullable=False),
        sa.Column("from_status", sa.String(20), nullable=True),
        sa.Column("to_status", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_study_status_events_study_id", "study_status_events", ["study_id"])
    op.create_table(
        "study_randomisation",
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), primary_key=True),
        sa.Column("block_sizes", sa.JSON(), nullable=False),
        sa.Column("ratio", sa.JSON(), nullable=False),
        sa.Column("factors", sa.JSON(), nullable=False),
        sa.Column("seed_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("seed_check", sa.String(200), nullable=False),
        sa.Column("set_by", sa.String(320), nullable=False),
        sa.Column("set_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "study_allocations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), nullable=False),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), nullable=False),
        sa.Column("participant", sa.String(64), nullable=False),
        sa.Column("stratum", sa.String(500), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("by", sa.String(200), nullable=False),
        sa.UniqueConstraint("study_id", "participant"),
        sa.UniqueConstraint("study_id", "stratum", "position"),
    )
    op.create_index("ix_study_allocations_study_id", "study_allocations", ["study_id"])
    op.create_table(
        "study_enrolment",
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id"), primary_key=True),
        sa.Column("site_id", sa.Integer(), sa.ForeignKey("sites.id"), primary_key=True),
        sa.Column("enrolled", sa.JSON(), nullable=False),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.Column("received", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "study_enrolment",
        "study_allocations",
        "study_randomisation",
        "study_status_events",
        "study_roles",
        "study_forms",
        "study_visit_forms",
        "study_visits",
        "study_arms",
        "study_sites",
        "studies",
    ):
        op.drop_table(table)
