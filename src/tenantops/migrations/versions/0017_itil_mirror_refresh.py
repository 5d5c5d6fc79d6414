"""ITIL records: ``refreshed_at``, when the ITSM tool was last asked for a mirrored ticket.

The mirror refresh (``tenantops.itil.refresh``, decision 0043) asks the tool for
the open mirror rows oldest-refreshed first, and claims a row by moving this
column with a conditional UPDATE, so two workers never ask for one ticket at
once. NULL (every row before this revision, and every record of our own) sorts
first: existing mirrors are asked at the first turn.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_itil_records_refreshed_at"), ["refreshed_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("itil_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_itil_records_refreshed_at"))
        batch_op.drop_column("refreshed_at")
