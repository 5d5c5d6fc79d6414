"""Outbox retention's mark: the highest event sequence it has deleted.

``GET /api/v1/events`` reports it, so a consumer paging with ``after=`` can
tell it fell behind the retention window (gaps in ``seq`` alone are normal).
One row, ``outbox``, starting at 0 (nothing deleted).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "event_retention",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column(
            "pruned_through", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_event_retention")),
    )
    op.bulk_insert(table, [{"name": "outbox", "pruned_through": 0}])


def downgrade() -> None:
    op.drop_table("event_retention")
