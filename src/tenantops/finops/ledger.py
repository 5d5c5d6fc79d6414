"""The tenant ledger: append-only, one row per cost line and per budget change, alert, action.

Other domains record what they did for a tenant with ``append`` (alerts, the
cost-overrun and resource-exhaustion playbooks, reports), inside their own
transaction; each append writes an audit entry in that same transaction, so
a ledger row and its audit entry exist together or not at all. Cost lines are
written by the importer in bulk and audited once per import.

Nothing here updates or deletes a ledger row. A superseded import's lines
stay; queries read cost through ``cost_daily`` of current imports.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import NotFound, Unprocessable
from tenantops.finops.models import LedgerEntry
from tenantops.kit.canonical import canonical_json, jsonable
from tenantops.kit.clock import utcnow
from tenantops.tenants import repository as tenants

MAX_DATA_BYTES = 16_384


class LedgerKind(StrEnum):
    """What a ledger row records. ``cost`` rows come only from imports."""

    COST = "cost"
    BUDGET = "budget"
    ALERT = "alert"
    RATE_LIMIT = "rate_limit"
    FOLLOW_UP = "follow_up"
    ACTION = "action"
    REPORT = "report"
    NOTE = "note"


def append(
    session: Session,
    tenant_id: str,
    kind: LedgerKind | str,
    *,
    actor: Principal,
    ref: str | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    data: dict[str, Any] | None = None,
) -> LedgerEntry:
    """Record one event of a tenant in the ledger and the audit trail (caller's transaction).

    ``ref`` points at the thing recorded (an alert fingerprint, a run id, a
    ticket); ``data`` is small JSON context (at most 16 KiB), never a secret.
    """
    try:
        kind = LedgerKind(kind)
    except ValueError as exc:
        raise Unprocessable(
            f"unknown ledger kind {kind!r}; one of: "
            + ", ".join(k.value for k in LedgerKind if k is not LedgerKind.COST),
            param="kind",
        ) from exc
    if kind is LedgerKind.COST:
        raise Unprocessable("cost lines enter the ledger only through a FOCUS import")
    tenant = tenants.get(session, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    body = jsonable(data) if data is not None else None
    if body is not None and len(canonical_json(body).encode()) > MAX_DATA_BYTES:
        raise Unprocessable(f"ledger data is limited to {MAX_DATA_BYTES} bytes of JSON")
    entry = LedgerEntry(
        tenant_id=tenant.id,
        kind=kind.value,
        at=utcnow(),
        amount=amount,
        currency=currency,
        actor=actor.subject,
        ref=ref,
        data=body,
    )
    session.add(entry)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=f"finops.ledger.{kind.value}",
        tenant_id=tenant.id,
        changes={},
        detail={
            "ledger_seq": entry.seq,
            "ref": ref,
            "amount": None if amount is None else str(amount),
            "currency": currency,
            "data": body or {},
        },
    )
    return entry


def entries(
    session: Session,
    *,
    tenant_id: str,
    before: int | None = None,
    kinds: list[str] | None = None,
    limit: int = 50,
) -> tuple[list[LedgerEntry], int | None]:
    """A tenant's ledger, newest first; the second value is the cursor of the next page."""
    query = (
        select(LedgerEntry)
        .where(LedgerEntry.tenant_id == tenant_id)
        .order_by(LedgerEntry.seq.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(LedgerEntry.seq < before)
    if kinds:
        query = query.where(LedgerEntry.kind.in_(kinds))
    rows = list(session.execute(query).scalars())
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].seq
    return rows, None
