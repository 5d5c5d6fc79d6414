"""Local drivers: identity groups, secret references, queue access, health, notification outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _effects(table: str) -> None:
    op.create_table(
        table,
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f(f"pk_{table}")),
    )
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_tenant_id"), ["tenant_id"], unique=False)


def upgrade() -> None:
    op.create_table(
        "identity_groups",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_name", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_identity_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_identity_groups_name")),
    )
    with op.batch_alter_table("identity_groups", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_groups_tenant_name"), ["tenant_name"], unique=False
        )
    op.create_table(
        "identity_members",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=False),
        sa.Column("permission", sa.String(length=16), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["identity_groups.tenant_id"],
            name=op.f("fk_identity_members_tenant_id_identity_groups"),
        ),
        sa.PrimaryKeyConstraint("tenant_id", "subject", name=op.f("pk_identity_members")),
    )
    _effects("identity_effects")

    op.create_table(
        "secret_stores",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_name", sa.String(length=63), nullable=False),
        sa.Column("store_ref", sa.String(length=200), nullable=False),
        sa.Column("prefix", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_secret_stores")),
        sa.UniqueConstraint("prefix", name=op.f("uq_secret_stores_prefix")),
    )
    with op.batch_alter_table("secret_stores", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_secret_stores_tenant_name"), ["tenant_name"], unique=False
        )
    op.create_table(
        "secret_paths",
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["secret_stores.tenant_id"],
            name=op.f("fk_secret_paths_tenant_id_secret_stores"),
        ),
        sa.PrimaryKeyConstraint("path", name=op.f("pk_secret_paths")),
    )
    with op.batch_alter_table("secret_paths", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_secret_paths_tenant_id"), ["tenant_id"], unique=False)
    _effects("secret_effects")

    op.create_table(
        "access_tenants",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_name", sa.String(length=63), nullable=False),
        sa.Column("queues_paused", sa.Boolean(), nullable=False),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rate", sa.Float(), nullable=True),
        sa.Column("burst", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_access_tenants")),
    )
    with op.batch_alter_table("access_tenants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_access_tenants_tenant_name"), ["tenant_name"], unique=False
        )
    _effects("access_effects")

    op.create_table(
        "health_results",
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_health_results")),
    )
    with op.batch_alter_table("health_results", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_health_results_tenant_id"), ["tenant_id"], unique=False
        )
    op.create_table(
        "health_probe_values",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_health_probe_values")),
    )

    op.create_table(
        "notifications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("tenant_name", sa.String(length=63), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("template", sa.String(length=63), nullable=False),
        sa.Column("audience", sa.String(length=32), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_notifications_idempotency_key")),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_notifications_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    for table in (
        "notifications",
        "health_probe_values",
        "health_results",
        "access_effects",
        "access_tenants",
        "secret_effects",
        "secret_paths",
        "secret_stores",
        "identity_effects",
        "identity_members",
        "identity_groups",
    ):
        op.drop_table(table)
