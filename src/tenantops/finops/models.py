"""Tables of the finops domain, in schema ``finops`` on PostgreSQL (see ``store``).

``tenant_ledger`` is append-only: rows are inserted, never updated or deleted.
A newer import of the same (billing account, billing period) marks the older
one ``superseded_by``; queries read cost through ``cost_daily`` joined to the
imports that are still current, so the superseded lines stay as evidence.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tenantops.db import Base
from tenantops.finops.store import SCHEMA

# SQLite numbers rows only through INTEGER PRIMARY KEY (its rowid).
Seq = BigInteger().with_variant(Integer(), "sqlite")
# Costs: 12 decimals is finer than any provider bills; never a float.
Money = Numeric(24, 12)
Total = Numeric(30, 12)


class CostImport(Base):
    """One imported FOCUS file: its checksum, billing scope and summary."""

    __tablename__ = "cost_imports"
    __table_args__ = (
        Index("ix_cost_imports_scope", "billing_account_id", "billing_period_start"),
        {"schema": SCHEMA},
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    filename: Mapped[str] = mapped_column(String(500))
    format: Mapped[str] = mapped_column(String(10))
    billing_account_id: Mapped[str] = mapped_column(String(200))
    billing_period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    billing_period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    rows: Mapped[int] = mapped_column(BigInteger)
    allocated_rows: Mapped[int] = mapped_column(BigInteger)
    unallocated_rows: Mapped[int] = mapped_column(BigInteger)
    billed_cost: Mapped[Decimal] = mapped_column(Total)
    effective_cost: Mapped[Decimal] = mapped_column(Total)
    unallocated_cost: Mapped[Decimal] = mapped_column(Total)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    imported_by: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    superseded_by: Mapped[str | None] = mapped_column(String(36))


class LedgerEntry(Base):
    """One line of a tenant's ledger: a cost line, or a budget change, alert, action, note.

    ``tenant_id`` is null for cost lines no allocation rule matched.
    """

    __tablename__ = "tenant_ledger"
    __table_args__ = (
        Index("ix_tenant_ledger_tenant", "tenant_id", "seq"),
        # The month's non-cost entries of every tenant (the all-tenant report's actions).
        Index("ix_tenant_ledger_kind_at", "kind", "at"),
        {"schema": SCHEMA},
    )

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    charge_day: Mapped[date | None] = mapped_column(Date)
    service_name: Mapped[str | None] = mapped_column(String(200))
    resource_id: Mapped[str | None] = mapped_column(Text)
    billed_cost: Mapped[Decimal | None] = mapped_column(Money)
    effective_cost: Mapped[Decimal | None] = mapped_column(Money)
    amount: Mapped[Decimal | None] = mapped_column(Money)
    currency: Mapped[str | None] = mapped_column(String(3))
    import_id: Mapped[str | None] = mapped_column(String(36))
    source_line: Mapped[int | None] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    ref: Mapped[str | None] = mapped_column(String(200))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class CostDaily(Base):
    """Cost per (import, tenant, day, service, currency), written with the import's lines.

    The month queries read this, not the ledger: 30 days × services per tenant
    instead of every line.
    """

    __tablename__ = "cost_daily"
    __table_args__ = (
        Index("ix_cost_daily_day", "day", "tenant_id"),
        Index("ix_cost_daily_tenant", "tenant_id", "day"),
        {"schema": SCHEMA},
    )

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    day: Mapped[date] = mapped_column(Date)
    service_name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    billed_cost: Mapped[Decimal] = mapped_column(Total)
    effective_cost: Mapped[Decimal] = mapped_column(Total)
    lines: Mapped[int] = mapped_column(BigInteger)


class CostMonthly(Base):
    """Cost per (import, tenant, calendar month, currency): what the all-tenant queries read.

    Ten thousand tenants' month is ten thousand rows here instead of 300,000
    in ``cost_daily``: ``/metrics`` and ``GET /finops/costs`` stay cheap.
    """

    __tablename__ = "cost_monthly"
    __table_args__ = (
        Index("ix_cost_monthly_month", "month", "tenant_id"),
        {"schema": SCHEMA},
    )

    seq: Mapped[int] = mapped_column(Seq, primary_key=True, autoincrement=True)
    import_id: Mapped[str] = mapped_column(String(36))
    tenant_id: Mapped[str | None] = mapped_column(String(36))
    month: Mapped[date] = mapped_column(Date)
    currency: Mapped[str] = mapped_column(String(3))
    billed_cost: Mapped[Decimal] = mapped_column(Total)
    effective_cost: Mapped[Decimal] = mapped_column(Total)
    lines: Mapped[int] = mapped_column(BigInteger)


class Budget(Base):
    """A tenant's monthly budget and the thresholds (percent) that raise alerts."""

    __tablename__ = "budgets"
    __table_args__ = ({"schema": SCHEMA},)

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    currency: Mapped[str] = mapped_column(String(3))
    thresholds: Mapped[list[int]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    version: Mapped[int] = mapped_column(Integer)

    __mapper_args__: dict[str, Any] = {"version_id_col": version}
