"""Web UI: users signed in through the OIDC issuer, and the first start's marker.

An OIDC user has no password (``password_hash`` becomes nullable) and records
the issuer that vouched for it. ``web_first_start`` holds one row once
``serve`` has dealt with an empty user table, so the first admin is made once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("password_hash", existing_type=sa.String(length=200), nullable=True)
        batch_op.add_column(sa.Column("oidc_issuer", sa.String(length=255), nullable=True))
    op.create_table(
        "web_first_start",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("admin_created", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_first_start")),
    )


def downgrade() -> None:
    op.drop_table("web_first_start")
    # OIDC users have no password: they cannot exist in the 0007 schema.
    op.execute(
        "DELETE FROM web_sessions WHERE user_id IN "
        "(SELECT id FROM users WHERE password_hash IS NULL)"
    )
    op.execute("DELETE FROM users WHERE password_hash IS NULL")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("oidc_issuer")
        batch_op.alter_column("password_hash", existing_type=sa.String(length=200), nullable=False)
