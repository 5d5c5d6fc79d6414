"""ITIL records: an index on (kind, tenant_id, state) for the KPIs' incident counts.

The dashboard counts every tenant's incident records, and the open ones, in one
grouped pass (decision 0041); with this index both stores answer it from the
index alone (a covering range on ``kind = 'incident'``) instead of reading each
record row through the ``tenant_id`` index.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.create_index(
            "ix_itil_records_kind_tenant_id_state", ["kind", "tenant_id", "state"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.drop_index("ix_itil_records_kind_tenant_id_state")
