"""Builders of FOCUS cost files and tenants for the finops tests (and the benchmark)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from tenantops.auth.principal import SYSTEM
from tenantops.finops.focus import REQUIRED_COLUMNS
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantCreate
from tests.factories import tenant_body

PERIOD = ("2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z")


def line(**overrides: Any) -> dict[str, Any]:
    """One valid FOCUS row (all required columns), January 2030, EUR."""
    row: dict[str, Any] = {
        "BilledCost": "10.00",
        "BillingAccountId": "acct-1",
        "BillingAccountName": "Platform",
        "BillingCurrency": "EUR",
        "BillingPeriodStart": PERIOD[0],
        "BillingPeriodEnd": PERIOD[1],
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": "compute",
        "ChargePeriodStart": "2030-01-01T00:00:00Z",
        "ChargePeriodEnd": "2030-01-02T00:00:00Z",
        "ContractedCost": "10.00",
        "EffectiveCost": "10.00",
        "InvoiceIssuerName": "Cloud Inc",
        "ListCost": "12.00",
        "PricingQuantity": "1",
        "PricingUnit": "Hours",
        "ProviderName": "Cloud Inc",
        "PublisherName": "Cloud Inc",
        "ServiceCategory": "Compute",
        "ServiceName": "Virtual Machines",
        "ResourceId": "",
        "RegionId": "eu-central-1",
        "SkuId": "sku-1",
        "Tags": "{}",
    }
    row.update(overrides)
    return row


def tagged(tenant: str, cost: str = "10.00", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"BilledCost": cost, "EffectiveCost": cost, **overrides}
    return line(Tags=json.dumps({"tenant": tenant}), **values)


def write_csv(path: Path, rows: Iterable[dict[str, Any]], columns: list[str] | None = None) -> Path:
    cols = columns or list(REQUIRED_COLUMNS)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Typed Parquet: decimals, timestamps, strings (as a provider would write it)."""
    from datetime import datetime
    from decimal import Decimal

    def ts(v: str) -> datetime:
        return datetime.fromisoformat(v)

    data: dict[str, pa.Array] = {}
    for col in REQUIRED_COLUMNS:
        values = [r[col] for r in rows]
        if col.endswith("Cost"):
            data[col] = pa.array([Decimal(v) for v in values], pa.decimal128(20, 6))
        elif col in (
            "BillingPeriodStart",
            "BillingPeriodEnd",
            "ChargePeriodStart",
            "ChargePeriodEnd",
        ):
            data[col] = pa.array([ts(v) for v in values], pa.timestamp("us", tz="UTC"))
        else:
            data[col] = pa.array([v if v != "" else None for v in values], pa.string())
    pq.write_table(pa.table(data), path)
    return path


def make_tenant(session: Session, name: str, **overrides: Any) -> str:
    tenant, _ = tenants.create_tenant(
        session, principal=SYSTEM, data=TenantCreate(**tenant_body(name=name, **overrides))
    )
    return tenant.id
