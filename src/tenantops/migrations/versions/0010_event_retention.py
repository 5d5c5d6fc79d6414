"""Outbox retention: deliveries indexed by their event.

Retention (``events.retention``) deletes old deliveries by event and then
events that no delivery points at; both look deliveries up by ``event_seq``,
and so does PostgreSQL's foreign-key check on each deleted event. Without this
index each of those is a scan of every delivery.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_event_deliveries_event_seq", "event_deliveries", ["event_seq"])


def downgrade() -> None:
    op.drop_index("ix_event_deliveries_event_seq", table_name="event_deliveries")
