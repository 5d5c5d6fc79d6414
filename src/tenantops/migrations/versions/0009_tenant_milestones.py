"""Tenant milestones: when a tenant was approved and first became active.

Set from now on by the transition that reaches them; filled here from the
audit trail (the first ``tenant.approved`` and ``tenant.step.verified`` entry
of each tenant), so the KPIs of tenants onboarded before stay the same. The
dashboard reads them from the tenant row instead of grouping the audit log
(decision 0028).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

MILESTONES = {"approved_at": "tenant.approved", "activated_at": "tenant.step.verified"}


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        for column in MILESTONES:
            batch_op.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    tenants = sa.table("tenants", sa.column("id"), *(sa.column(c) for c in MILESTONES))
    audit = sa.table("audit_log", sa.column("tenant_id"), sa.column("action"), sa.column("at"))
    op.execute(
        tenants.update().values(
            {
                column: sa.select(sa.func.min(audit.c.at))
                .where(audit.c.tenant_id == tenants.c.id, audit.c.action == action)
                .scalar_subquery()
                for column, action in MILESTONES.items()
            }
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        for column in MILESTONES:
            batch_op.drop_column(column)
