"""Secrets inventory: when each secret becomes due soon, and its store's last revocation.

``due_soon_at`` (indexed) makes every rotation status one range query, so a
status filter honours its limit; it is filled for existing rows from
``next_due_at`` and ``rotation_days`` (a quarter of the cycle, 1 to 14 days).
``store_revoked_at`` is the store's last revocation, kept after a restore: a
secret not rotated since is due from then. Existing rows start without one; the
next check fills it from the store.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As ``tenantops.secrets.service.warning`` had it when this revision was written.
MAX_WARNING_DAYS = 14


def upgrade() -> None:
    with op.batch_alter_table("secret_inventory", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_soon_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("store_revoked_at", sa.DateTime(timezone=True), nullable=True)
        )
    inventory = sa.table(
        "secret_inventory",
        sa.column("tenant_id", sa.String),
        sa.column("path", sa.String),
        sa.column("rotation_days", sa.Integer),
        sa.column("next_due_at", sa.DateTime(timezone=True)),
        sa.column("due_soon_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            inventory.c.tenant_id,
            inventory.c.path,
            inventory.c.rotation_days,
            inventory.c.next_due_at,
        )
    ).all()
    for tenant_id, path, days, due in rows:
        warning = timedelta(days=min(MAX_WARNING_DAYS, max(1, days // 4)))
        bind.execute(
            inventory.update()
            .where(inventory.c.tenant_id == tenant_id, inventory.c.path == path)
            .values(due_soon_at=due - warning)
        )
    with op.batch_alter_table("secret_inventory", schema=None) as batch_op:
        batch_op.alter_column("due_soon_at", nullable=False)
        batch_op.create_index(
            batch_op.f("ix_secret_inventory_due_soon_at"), ["due_soon_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("secret_inventory", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_secret_inventory_due_soon_at"))
        batch_op.drop_column("store_revoked_at")
        batch_op.drop_column("due_soon_at")
