"""Secrets rotation: the inventory of tenants' secrets, and when a local secret was rotated.

``secret_inventory`` holds metadata only (owner, purpose, cycle, last rotation,
next due date, the last due notice); no column could hold a value.
``secret_paths.rotated_at`` is when the local store's current version began;
rows from before this revision have none and count from ``created_at``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "secret_inventory",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("path", sa.String(length=300), nullable=False),
        sa.Column("tenant_name", sa.String(length=63), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("purpose", sa.String(length=300), nullable=True),
        sa.Column("rotation_days", sa.Integer(), nullable=False),
        sa.Column("registered_by", sa.String(length=200), nullable=True),
        sa.Column("store_status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("store_rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attested_by", sa.String(length=200), nullable=True),
        sa.Column("evidence", sa.String(length=500), nullable=True),
        sa.Column("last_rotated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("announced", sa.String(length=40), nullable=True),
        sa.Column("notified", sa.String(length=40), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "path", name=op.f("pk_secret_inventory")),
    )
    with op.batch_alter_table("secret_inventory", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_secret_inventory_next_due_at"), ["next_due_at"], unique=False
        )
    with op.batch_alter_table("secret_paths", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("secret_paths", schema=None) as batch_op:
        batch_op.drop_column("rotated_at")
    with op.batch_alter_table("secret_inventory", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secret_inventory_next_due_at"))
    op.drop_table("secret_inventory")
