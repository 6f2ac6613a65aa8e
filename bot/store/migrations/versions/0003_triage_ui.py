"""the triage UI: users, login sessions and throttling, audit log, notes, viewers;
items.is_spam/in_crisis/resolved_at, assignments.priority/assigned_by

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("is_spam", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("in_crisis", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("resolved_at", TS, nullable=True))
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(
            sa.Column("priority", sa.String(length=10), nullable=False, server_default="normal")
        )
        batch.add_column(sa.Column("assigned_by", sa.String(length=300), nullable=True))
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(length=300), nullable=False, unique=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("expert_id", sa.Integer(), sa.ForeignKey("experts.id"), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_login_at", TS, nullable=True),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=False),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_login_attempts_key_at", "login_attempts", ["key", "at"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=True),
        sa.Column("actor", sa.String(length=300), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", TS, nullable=False),
    )
    op.create_index("ix_audit_log_item_at", "audit_log", ["item_id", "at"])
    op.create_table(
        "item_notes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_item_notes_item_id", "item_notes", ["item_id"])
    op.create_table(
        "item_viewers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("seen_at", TS, nullable=False),
        sa.UniqueConstraint("item_id", "user_id"),
    )
    op.create_index("ix_item_viewers_item_id", "item_viewers", ["item_id"])


def downgrade() -> None:
    for table in ("item_viewers", "item_notes", "audit_log", "login_attempts", "web_sessions", "users"):
        op.drop_table(table)
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("assigned_by")
        batch.drop_column("priority")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("resolved_at")
        batch.drop_column("in_crisis")
        batch.drop_column("is_spam")
