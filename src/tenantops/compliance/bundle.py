"""The evidence bundle of one tenant and period, read through each domain's service.

Everything an auditor checks in one canonical JSON document: the tenant's
audit entries of the period with their hashes and the verdict on the whole
chain, the approvals with who decided (so segregation of duties is visible),
the runs with the runbook version and content hash each ran, their step
evidence (GitOps commits, manifest digests), SLA breaches, break-glass grants
and their post-use reviews, and the tenant's secrets-rotation status (metadata
only: the inventory holds no values).

A run belongs to the period if it was open at any moment of it; an approval
likewise; an audit entry or an SLA breach if it happened in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal, Role
from tenantops.compliance.periods import Period
from tenantops.kit.clock import as_utc
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run
from tenantops.secrets import service as secrets
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantRead

FORMAT = 1
BREAK_GLASS = "emergency-break-glass"
COLLECTOR = Principal(
    subject="system:compliance-evidence", roles=frozenset({Role.ADMIN}), via="system"
)


def _at(value: datetime | None) -> str | None:
    return None if value is None else as_utc(value).isoformat()


def chain_verdict(session: Session) -> dict[str, Any]:
    """``verify`` over the whole trail (a tenant's entries are links of one chain) and its head."""
    result = audit.verify(session)
    head = audit.head(session)
    return {
        "ok": result.ok,
        "checked": result.checked,
        "bad_seq": result.bad_seq,
        "reason": result.reason,
        "head_seq": head[0] if head else None,
        "head_hash": head[1] if head else None,
    }


def _runs(session: Session, tenant_id: str, period: Period, skip: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for run in engine.runs_of(session, tenant_id=tenant_id):
        if run.id == skip or not period.overlaps(as_utc(run.created_at), _end(run)):
            continue
        found.append(
            {
                "run_id": run.id,
                "runbook": run.runbook_id,
                "version": run.runbook_version,
                "hash": run.runbook_hash,
                "status": run.status,
                "started_by": run.started_by,
                "inputs": {k: v for k, v in (run.inputs or {}).items() if k != "tenant"},
                "created_at": _at(run.created_at),
                "finished_at": _at(run.finished_at),
                "sla_deadline": _at(run.sla_deadline),
                "sla_breached_at": _at(run.sla_breached_at),
                "steps": [
                    {
                        "name": s.name,
                        "kind": s.kind,
                        "status": s.status,
                        "decided_by": s.decided_by,
                        "finished_at": _at(s.finished_at),
                        "sla_deadline": _at(s.sla_deadline),
                        "sla_breached_at": _at(s.sla_breached_at),
                        "evidence": s.evidence or {},
                    }
                    for s in engine.steps_of(session, run.id)
                ],
            }
        )
    return found


def _end(run: Run) -> datetime | None:
    return None if run.finished_at is None else as_utc(run.finished_at)


def _breaches(runs: list[dict[str, Any]], period: Period) -> list[dict[str, Any]]:
    """Every SLA deadline a run or one of its steps missed within the period."""
    found = []
    for run in runs:
        marks = [(None, run["sla_deadline"], run["sla_breached_at"])] + [
            (s["name"], s["sla_deadline"], s["sla_breached_at"]) for s in run["steps"]
        ]
        for step, deadline, breached in marks:
            if breached and period.holds(datetime.fromisoformat(breached)):
                found.append(
                    {
                        "run_id": run["run_id"],
                        "runbook": run["runbook"],
                        "step": step,
                        "deadline": deadline,
                        "breached_at": breached,
                    }
                )
    return found


def _break_glass(runs: list[dict[str, Any]], inputs: dict[str, dict[str, Any]]) -> list[Any]:
    """Each grant with its revocation and the review only someone else may close."""
    grants = []
    for run in runs:
        if run["runbook"] != BREAK_GLASS:
            continue
        steps = {s["name"]: s for s in run["steps"]}
        review = steps.get("review", {})
        given = inputs[run["run_id"]]
        grants.append(
            {
                "run_id": run["run_id"],
                "opened_by": run["started_by"],
                "opened_at": run["created_at"],
                "subject": given.get("subject"),
                "reason": given.get("reason"),
                "incident_ref": given.get("incident_ref"),
                "expires_at": given.get("expires_at"),
                "revoked_at": steps.get("revoke", {}).get("evidence", {}).get("revoked_at"),
                "review": {
                    "status": review.get("status"),
                    "by": review.get("decided_by"),
                    "comment": review.get("evidence", {}).get("comment"),
                    "at": review.get("finished_at"),
                },
            }
        )
    return grants


def _commits(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GitOps commits the tenant's steps made or recorded, as their evidence names them."""
    return [
        {
            "sha": str(s["evidence"]["commit"]),
            "run_id": run["run_id"],
            "runbook": run["runbook"],
            "step": s["name"],
        }
        for run in runs
        for s in run["steps"]
        if s["evidence"].get("commit")
    ]


def _approvals(session: Session, tenant_id: str, period: Period) -> list[dict[str, Any]]:
    found = []
    for request in tenants.list_approvals(session, principal=COLLECTOR, ref=tenant_id):
        decided = None if request.decided_at is None else as_utc(request.decided_at)
        if not period.overlaps(as_utc(request.created_at), decided):
            continue
        deciders = [d.principal for d in request.decisions]
        found.append(
            {
                "id": request.id,
                "kind": request.kind,
                "status": request.status,
                "required_roles": request.required_roles,
                "requested_by": request.requested_by,
                "reason": request.reason,
                "created_at": _at(request.created_at),
                "decided_at": _at(request.decided_at),
                "decisions": [
                    {
                        "role": d.role,
                        "decision": d.decision,
                        "by": d.principal,
                        "comment": d.comment,
                        "risk_ref": d.risk_ref,
                        "at": _at(d.created_at),
                    }
                    for d in request.decisions
                ],
                # Segregation of duties as an auditor reads it: nobody approved their own
                # request, and no one person decided twice.
                "segregated": request.requested_by not in deciders
                and len(deciders) == len(set(deciders)),
            }
        )
    return found


def build(
    session: Session, *, tenant_id: str, period: Period, run_id: str, collected_at: datetime
) -> dict[str, Any]:
    """The bundle's document (plain JSON values); ``run_id`` is the collecting run."""
    tenant = tenants.get_tenant(session, principal=COLLECTOR, ref=tenant_id)
    entries = [
        e
        for e in audit.tenant_trail(session, tenant_id)
        if period.holds(datetime.fromisoformat(e["at"]))
    ]
    runs = _runs(session, tenant_id, period, skip=run_id)
    inputs = {r["run_id"]: r["inputs"] for r in runs}
    return {
        "bundle": "compliance-evidence",
        "format": FORMAT,
        "run_id": run_id,
        "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
        "period": period.as_dict(),
        "collected_at": collected_at.isoformat(),
        "audit": {"chain": chain_verdict(session), "entries": entries},
        "approvals": _approvals(session, tenant_id, period),
        "runs": runs,
        "sla_breaches": _breaches(runs, period),
        "break_glass": _break_glass(runs, inputs),
        "gitops_commits": _commits(runs),
        "manifest_digests": sorted(
            {
                str(s["evidence"]["manifest_digest"])
                for run in runs
                for s in run["steps"]
                if s["evidence"].get("manifest_digest")
            }
        ),
        "secrets": [
            secrets.as_dict(row, collected_at)
            for row in secrets.list_secrets(
                session, principal=COLLECTOR, tenant=tenant_id, status=None
            )
        ],
    }
