"""Runs: ``closed_at`` and ``closed_reason``, a failed run that will not be retried.

A failed run stays ``failed`` (its reports and SLA verdicts do not change); a
closed one is refused by ``runs retry``. A tenant's lifecycle change closes its
failed lifecycle runs, offboarding every failed run of the tenant (decision
0047). This revision applies that rule to the failed runs already there, so a
tenant offboarded or reactivated before it is covered too: a failed run of a
tenant being offboarded or archived (but its offboarding), and a failed
onboarding, suspension or reactivation run of a tenant that had a later
suspension, reactivation or offboarding run. Runs ended by a rejected gate (a
person's decision) are left as they are.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-28
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_LIFECYCLE_FAILED = ("tenant-onboarding", "tenant-suspension", "tenant-reactivation")
_LIFECYCLE_LATER = ("tenant-suspension", "tenant-reactivation", "tenant-offboarding")


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("closed_reason", sa.Text(), nullable=True))
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # SQLite keeps UTC wall time (tenantops.db)
    op.execute(
        sa.text(
            "UPDATE runs SET closed_at = :now, closed_reason = 'tenant offboarded' "
            "WHERE status = 'failed' AND closed_at IS NULL "
            "AND runbook_id <> 'tenant-offboarding' AND tenant_id IN "
            "(SELECT id FROM tenants WHERE state IN ('offboarding', 'archived')) "
            # not a run a person ended by rejecting its gate
            "AND NOT EXISTS (SELECT 1 FROM run_steps s WHERE s.run_id = runs.id "
            "AND s.kind = 'gate' AND s.status = 'failed')"
        ).bindparams(now=now)
    )
    op.execute(
        sa.text(
            "UPDATE runs SET closed_at = :now, "
            "closed_reason = 'superseded by a later lifecycle change' "
            "WHERE status = 'failed' AND closed_at IS NULL "
            "AND runbook_id IN :failed AND EXISTS (SELECT 1 FROM runs later "
            "WHERE later.tenant_id = runs.tenant_id AND later.runbook_id IN :later "
            "AND later.created_at > runs.created_at) "
            # not a run a person ended by rejecting its gate
            "AND NOT EXISTS (SELECT 1 FROM run_steps s WHERE s.run_id = runs.id "
            "AND s.kind = 'gate' AND s.status = 'failed')"
        ).bindparams(
            sa.bindparam("failed", value=list(_LIFECYCLE_FAILED), expanding=True),
            sa.bindparam("later", value=list(_LIFECYCLE_LATER), expanding=True),
            now=now,
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("closed_reason")
        batch_op.drop_column("closed_at")
