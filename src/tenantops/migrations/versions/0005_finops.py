"""FinOps: the tenant ledger, cost imports, budgets (schema finops on PostgreSQL).

SQLite has no schemas: there the tables live in the main database, and the
application maps schema ``finops`` away (``tenantops.finops.store``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(24, 12)
TOTAL = sa.Numeric(30, 12)


def _schema() -> str | None:
    return None if op.get_bind().dialect.name == "sqlite" else "finops"


def upgrade() -> None:
    schema = _schema()
    if schema is not None:
        op.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
    op.create_table(
        "cost_imports",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=500), nullable=False),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("billing_account_id", sa.String(length=200), nullable=False),
        sa.Column("billing_period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("billing_period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("allocated_rows", sa.BigInteger(), nullable=False),
        sa.Column("unallocated_rows", sa.BigInteger(), nullable=False),
        sa.Column("billed_cost", TOTAL, nullable=False),
        sa.Column("effective_cost", TOTAL, nullable=False),
        sa.Column("unallocated_cost", TOTAL, nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("superseded_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cost_imports")),
        sa.UniqueConstraint("sha256", name=op.f("uq_cost_imports_sha256")),
        schema=schema,
    )
    op.create_index(
        "ix_cost_imports_scope",
        "cost_imports",
        ["billing_account_id", "billing_period_start"],
        schema=schema,
    )
    op.create_table(
        "tenant_ledger",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("charge_day", sa.Date(), nullable=True),
        sa.Column("service_name", sa.String(length=200), nullable=True),
        sa.Column("resource_id", sa.Text(), nullable=True),
        sa.Column("billed_cost", MONEY, nullable=True),
        sa.Column("effective_cost", MONEY, nullable=True),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("import_id", sa.String(length=36), nullable=True),
        sa.Column("source_line", sa.BigInteger(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=True),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_tenant_ledger")),
        schema=schema,
    )
    op.create_index("ix_tenant_ledger_tenant", "tenant_ledger", ["tenant_id", "seq"], schema=schema)
    op.create_index("ix_tenant_ledger_kind_at", "tenant_ledger", ["kind", "at"], schema=schema)
    op.create_table(
        "cost_daily",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("service_name", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("billed_cost", TOTAL, nullable=False),
        sa.Column("effective_cost", TOTAL, nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_cost_daily")),
        schema=schema,
    )
    op.create_index("ix_cost_daily_day", "cost_daily", ["day", "tenant_id"], schema=schema)
    op.create_index("ix_cost_daily_tenant", "cost_daily", ["tenant_id", "day"], schema=schema)
    op.create_table(
        "cost_monthly",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("import_id", sa.String(length=36), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("billed_cost", TOTAL, nullable=False),
        sa.Column("effective_cost", TOTAL, nullable=False),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_cost_monthly")),
        schema=schema,
    )
    op.create_index("ix_cost_monthly_month", "cost_monthly", ["month", "tenant_id"], schema=schema)
    op.create_table(
        "budgets",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_budgets_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_budgets")),
        schema=schema,
    )


def downgrade() -> None:
    schema = _schema()
    op.drop_table("budgets", schema=schema)
    op.drop_index("ix_cost_monthly_month", table_name="cost_monthly", schema=schema)
    op.drop_table("cost_monthly", schema=schema)
    op.drop_index("ix_cost_daily_tenant", table_name="cost_daily", schema=schema)
    op.drop_index("ix_cost_daily_day", table_name="cost_daily", schema=schema)
    op.drop_table("cost_daily", schema=schema)
    op.drop_index("ix_tenant_ledger_kind_at", table_name="tenant_ledger", schema=schema)
    op.drop_index("ix_tenant_ledger_tenant", table_name="tenant_ledger", schema=schema)
    op.drop_table("tenant_ledger", schema=schema)
    op.drop_index("ix_cost_imports_scope", table_name="cost_imports", schema=schema)
    op.drop_table("cost_imports", schema=schema)
    if schema is not None:
        op.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema}"))
