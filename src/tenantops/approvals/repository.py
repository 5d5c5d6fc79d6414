"""Queries over approval requests and decisions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.approvals.models import ApprovalDecision, ApprovalRequest


def pending(session: Session, tenant_id: str, kind: str) -> ApprovalRequest | None:
    query = select(ApprovalRequest).where(
        ApprovalRequest.tenant_id == tenant_id,
        ApprovalRequest.kind == kind,
        ApprovalRequest.status == "pending",
    )
    return session.execute(query).scalars().first()


def for_tenant(session: Session, tenant_id: str) -> Sequence[ApprovalRequest]:
    query = (
        select(ApprovalRequest)
        .where(ApprovalRequest.tenant_id == tenant_id)
        .order_by(ApprovalRequest.created_at, ApprovalRequest.id)
    )
    return session.execute(query).scalars().all()


def decisions(session: Session, request_ids: Sequence[str]) -> Sequence[ApprovalDecision]:
    if not request_ids:
        return []
    query = (
        select(ApprovalDecision)
        .where(ApprovalDecision.request_id.in_(request_ids))
        .order_by(ApprovalDecision.created_at, ApprovalDecision.id)
    )
    return session.execute(query).scalars().all()
