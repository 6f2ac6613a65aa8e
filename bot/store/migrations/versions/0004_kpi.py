"""KPIs and digest (issue #9): kpi_events.business_seconds, digest runs, inline email images,
crisis incidents

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("kpi_events") as batch:
        batch.add_column(sa.Column("business_seconds", sa.Float(), nullable=True))
    op.create_index("ix_kpi_events_item_id", "kpi_events", ["item_id"])
    op.create_index("ix_items_source_created", "items", ["source", "created_time"])
    op.create_table(
        "digest_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("week", sa.String(length=10), nullable=False, unique=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("emails", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "email_parts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email_id", sa.Integer(), sa.ForeignKey("emails.id"), nullable=False),
        sa.Column("cid", sa.String(length=100), nullable=False),
        sa.Column("content_type", sa.String(length=50), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_email_parts_email_id", "email_parts", ["email_id"])
    op.create_table(
        "crisis_incidents",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("scope_key", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("last_item_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
    )
    op.create_index("ix_crisis_incidents_scope", "crisis_incidents", ["scope", "scope_key", "status"])
    op.create_table(
        "crisis_incident_items",
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("crisis_incidents.id"), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("crisis_incident_items")
    op.drop_index("ix_crisis_incidents_scope", table_name="crisis_incidents")
    op.drop_table("crisis_incidents")
    op.drop_index("ix_email_parts_email_id", table_name="email_parts")
    op.drop_table("email_parts")
    op.drop_table("digest_runs")
    op.drop_index("ix_items_source_created", table_name="items")
    op.drop_index("ix_kpi_events_item_id", table_name="kpi_events")
    with op.batch_alter_table("kpi_events") as batch:
        batch.drop_column("business_seconds")
