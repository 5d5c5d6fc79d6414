"""Runbook actions of the Cost Overrun playbook: assess, report, record, follow up.

``finops.assess``     the month's cost, burn-rate forecast, budget and ratio, the hotspot
                      services (the daily cost aggregate of the ledger's cost lines) and
                      the rate-limit policy to apply; the
                      ``notice`` output is what the notifications show
``finops.report``     the tenant's cost report for the month written as HTML, CSV and PDF
                      under the data directory; paths and SHA-256 digests are evidence
``finops.record``     one ``action`` entry in the tenant ledger with the measures taken
``finops.follow_up``  one ``follow_up`` entry with an owner and a due date

Reads happen in ``run``; ledger entries are written in ``apply``, inside the
transaction that records the step, so a re-run step never books twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.finops import ledger
from tenantops.finops.budgets import BudgetStatus, budget_status
from tenantops.finops.ledger import LedgerKind
from tenantops.kit.clock import utcnow
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
)


def _tenant_id(ctx: ActionContext) -> str:
    if ctx.tenant_id is None:
        raise StepFailed(f"{ctx.step_name}: runs against a tenant", retriable=False)
    return ctx.tenant_id


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _assessment(status: BudgetStatus, settings: Settings) -> dict[str, Any]:
    ratio_pct = None if status.ratio is None else f"{status.ratio * 100:.0f}"
    hotspots = [{"service": s, "cost": _money(c)} for s, c in status.top_services[:5]]
    limit = {"rate": settings.finops.overrun_rate_limit, "burst": settings.finops.overrun_burst}
    return {
        "month": status.month,
        "currency": status.currency,
        "cost": _money(status.cost),
        "forecast": _money(status.forecast),
        "budget": _money(status.budget),
        "ratio": None if status.ratio is None else str(status.ratio),
        "ratio_pct": ratio_pct,
        "thresholds_crossed": status.crossed,
        "hotspots": hotspots,
        "rate_limit": limit,
        "notice": {
            "cost": _money(status.cost),
            "forecast": _money(status.forecast),
            "budget": _money(status.budget),
            "currency": status.currency,
            "ratio_pct": ratio_pct or "?",
            "hotspots": hotspots,
            "measures": f"a rate limit of {limit['rate']:g} requests/s "
            f"(burst {limit['burst']}) until the cost is back within budget",
        },
    }


def playbook_actions(settings: Settings, db: Database) -> Registry:
    """The Cost Overrun actions, reading the ledger of ``db``."""
    system = Principal(subject="system:runbook-engine", via="system")

    def assess(ctx: ActionContext) -> StepResult:
        with db.read() as session:
            status = budget_status(
                session,
                _tenant_id(ctx),
                str(ctx.params["month"]) if ctx.params.get("month") else None,
                cost_column=settings.finops.cost_column,
                default_thresholds=settings.finops.default_thresholds,
            )
        result = _assessment(status, settings)
        evidence = {k: v for k, v in result.items() if k != "notice"}
        return StepResult(output=result, evidence=evidence)

    def report(ctx: ActionContext) -> StepResult:
        from tenantops.finops.costs import Month
        from tenantops.finops.reports import write_report

        month = Month.parse(str(ctx.params["month"]) if ctx.params.get("month") else None)
        with db.read() as session:
            written = write_report(settings, session, month, tenant_id=_tenant_id(ctx))
        result: dict[str, Any] = {fmt: str(path) for fmt, path in written.paths.items()}
        result.update(month=month.label, digest=dict(written.sha256))
        return StepResult(output=result, evidence=result)

    def book(kind: LedgerKind) -> Callable[[Session, ActionContext, StepResult], None]:
        """Append the step's output to the tenant's ledger as ``kind``, once per step."""

        def apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
            entry = ledger.append(
                session, _tenant_id(ctx), kind, actor=system, ref=ctx.run_id, data=result.output
            )
            result.evidence["ledger_seq"] = entry.seq

        return apply

    def record_run(ctx: ActionContext) -> StepResult:
        summary = str(ctx.params.get("summary") or ctx.step_name)
        measures = ctx.params.get("measures")
        data: dict[str, Any] = {"summary": summary, "run_id": ctx.run_id}
        if isinstance(measures, dict):
            data["measures"] = measures
        return StepResult(output=data, evidence={"summary": summary})

    def follow_up_run(ctx: ActionContext) -> StepResult:
        days = int(ctx.params.get("due_in_days") or settings.finops.follow_up_days)
        if not 1 <= days <= 365:
            raise StepFailed(f"{ctx.step_name}: due_in_days must be 1..365", retriable=False)
        # The due date counts from when the step ran the first time: the output is kept.
        due = (utcnow() + timedelta(days=days)).date().isoformat()
        data = {
            "summary": str(ctx.params.get("summary") or "follow up the cost overrun"),
            "owner": str(ctx.params.get("owner") or "finance"),
            "due": due,
            "run_id": ctx.run_id,
            "status": "open",
        }
        return StepResult(output=data, evidence={"due": due, "owner": data["owner"]})

    return {
        "finops.assess": FunctionAction(assess),
        "finops.report": FunctionAction(report),
        "finops.record": FunctionAction(record_run, book(LedgerKind.ACTION)),
        "finops.follow_up": FunctionAction(follow_up_run, book(LedgerKind.FOLLOW_UP)),
    }
