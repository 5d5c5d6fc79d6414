"""Runbook actions of the finops domain: the monthly report chain and the Budget Review.

Their database work happens in ``apply``, inside the transaction that
completes the step, so a step the worker re-runs reads and records exactly
once; the report files they write are named by month and rewritten with the
same bytes (``generated_at`` is the run's start), so a re-run is harmless.

- ``finops.cost_report`` (params ``month``): writes the all-tenant report of a
  month that was over when the run started (else the step fails for good: a
  partial report is never mailed as final); output ``month, total, currency,
  over_budget, html, csv, pdf, digest, sha256``.
- ``finops.next_month`` (params ``month``): the month after, and ``wait``: the
  duration until its report is due (the 1st of the month after it, 06:00 UTC).
- ``finops.schedule_next`` (params ``month``): starts ``monthly-cost-report``
  for that month unless a run for it exists (one run per month); run before
  the month is over (its timer skipped), it fails to be retried.
- ``finops.budget_snapshot`` (params ``month``): a tenant's cost, forecast,
  budget, ratio and top services for the Budget Review.
- ``finops.record_review`` (params ``month``): the review's gate decisions as a
  ledger ``note`` (``ref budget-review:<month>``), with who decided and the
  decision's ``outcome`` (its first word: ``keep``, ``raise`` or ``lower``).
- gate check ``budget_review.decision`` (named by the ``decide`` gate, runbook
  1.1): a finance user's approval is refused (422, nothing recorded) unless its
  comment starts with one of those words — exactly the comments
  ``record_review`` records an outcome for — so a decision the ledger could not
  read is corrected at the gate. No comment at all is accepted (no decision
  written, outcome ``null``), as ``runbooks test`` approves.
- ``finops.set_budget`` (params ``amount``, ``currency``): the tenant's monthly
  budget, set by whoever approved the run's gate (the Budget Change request),
  keeping the tenant's thresholds; a ``budget`` ledger row and its audit entry.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import AppError, Unprocessable
from tenantops.finops import budgets, ledger
from tenantops.finops import service as finops_service
from tenantops.finops.costs import CENT, Month
from tenantops.finops.report_render import BudgetStatus
from tenantops.finops.reports import report_month, write_report
from tenantops.kit.clock import utcnow
from tenantops.runbooks import chains, checklists, engine, spec
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    GateCheck,
    Registry,
    StepFailed,
    StepResult,
)
from tenantops.runbooks.models import Run
from tenantops.tenants.schemas import TenantRead

if TYPE_CHECKING:
    from tenantops.config import Settings

MONTHLY_RUNBOOK = "monthly-cost-report"
REVIEW_RUNBOOK = "budget-review"
REVIEW_OUTCOMES = ("keep", "raise", "lower")
DECISION_CHECK = "budget_review.decision"
DECISION_EXAMPLE = "raise to 3000 EUR: new batch workload"
DUE_HOUR = 6
SCHEDULER = Principal(
    subject="system:finops-scheduler", roles=frozenset({Role.ADMIN}), via="system"
)


def month_after(month: Month) -> Month:
    return Month.parse(month.after.strftime("%Y-%m"))


def due_at(month: Month) -> datetime:
    """When ``month``'s report is due: 06:00 UTC on the 1st of the month after it."""
    return datetime.combine(month.after, time(DUE_HOUR), tzinfo=UTC)


def ensure_over(month: Month, now: datetime | None = None) -> None:
    """A 422 unless ``month`` is over at ``now``: its report would be incomplete."""
    end = datetime.combine(month.after, time(0), tzinfo=UTC)
    chains.ensure_over(month.label, end, unit="month", now=now)


def ensure_begun(month: Month, now: datetime | None = None) -> None:
    """A 422 unless ``month`` has begun at ``now``: a month not begun has no spend to review.

    The current month is reviewable: its month-to-date cost and its forecast to
    month end are what the review's gates ask finance to weigh.
    """
    current = Month.parse(None, now=now)
    if month.first > current.first:
        raise Unprocessable(
            f"{month.label} has not begun, so it has no spend to review; "
            f"review {current.label} (month to date) or an earlier month",
            param="month",
        )


def review_outcome(comment: str | None) -> str | None:
    """The outcome of a Budget Review decision: its first word, ``keep``, ``raise`` or ``lower``.

    Any case, trailing ``:,.;`` allowed (``checklists.decision_word``, which
    ``record_review`` records). ``None`` for no comment at all (no decision
    written); ``Unprocessable`` for a comment that starts with another word, so
    the ``decide`` gate refuses it before it is recorded.
    """
    text = (comment or "").strip()
    if not text:
        return None
    outcome = checklists.decision_word(text, REVIEW_OUTCOMES)
    if outcome is None:
        raise Unprocessable(
            "the decision must start with keep, raise or lower "
            f"(e.g. {DECISION_EXAMPLE!r}), not {text[:60]!r}; nothing was decided"
        )
    return outcome


def budget_review_checks() -> dict[str, GateCheck]:
    """``budget_review.decision``: the ``decide`` gate's comment, checked before it is recorded."""

    def decision_check(
        session: Session,
        *,
        run: Run,
        step_name: str,
        decision: str,
        comment: str | None,
        principal: Principal,
    ) -> None:
        """A comment ``record_review`` would record no outcome for is refused at the gate."""
        review_outcome(comment)

    return {DECISION_CHECK: decision_check}


def _month(ctx: ActionContext) -> Month:
    """The step's ``month`` param; a missing or malformed one fails the step for good."""
    text = ctx.params.get("month")
    if not text:
        raise StepFailed(f"{ctx.step_name}: param 'month' (YYYY-MM) is required", retriable=False)
    try:
        return report_month(str(text))
    except AppError as exc:
        raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=False) from None


def _echo_month(ctx: ActionContext) -> StepResult:
    return StepResult(output={"month": _month(ctx).label})


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def month_runs(session: Session, month: str) -> list[Run]:
    """Runs of the monthly report for ``month`` that did not fail or get cancelled."""
    return chains.period_runs(session, MONTHLY_RUNBOOK, "month", month)


def open_monthly_runs(session: Session) -> list[Run]:
    return chains.open_chain_runs(session, MONTHLY_RUNBOOK)


def schedule_month(session: Session, month: Month, *, actor: Principal) -> tuple[Run, bool]:
    """The run reporting ``month``: the existing one, or a new one (True) if none exists.

    A month not over is refused (422), even if a run for it exists: a run reports
    its month once, at its start.
    """
    ensure_over(month)
    return chains.start_once(
        session, runbook_id=MONTHLY_RUNBOOK, key="month", value=month.label, actor=actor
    )


def finops_actions(settings: Settings, db: Database) -> Registry:
    """The finops actions, bound to ``settings`` (data directory, cost column) and ``db``."""

    def report_run(ctx: ActionContext) -> StepResult:
        # Read-only and outside the step's write transaction: rendering 10,000 tenants
        # takes seconds, which must not hold SQLite's write lock. The files are
        # byte-stable for the run (generated_at = its start), so a re-run rewrites them.
        with db.read() as session:
            run = engine.get_run(session, ctx.run_id)
            month = _month(ctx)
            try:
                ensure_over(month, _aware(run.created_at))
            except AppError as exc:
                raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=False) from None
            written = write_report(
                settings,
                session,
                month,
                tenant_id=ctx.params.get("tenant") or None,
                now=_aware(run.created_at),
            )
        result = StepResult()
        report = written.report
        figures = {
            "month": written.month,
            "total": str(report.total_cost),
            "currency": report.currency,
            "tenants": len(report.tenants),
            "over_budget": report.count(BudgetStatus.OVER),
            **{fmt: str(path) for fmt, path in written.paths.items()},
            "digest": written.sha256.get("pdf", ""),
            "sha256": written.sha256,
        }
        # The notifier sends no attachments: finance gets the file and the API address.
        base = settings.notify.dashboard_url.rstrip("/")
        result.output.update(figures)
        result.output["links"] = {
            fmt: f"{path} ({base}/api/v1/finops/reports/cost?month={written.month}&format={fmt})"
            for fmt, path in written.paths.items()
        }
        result.evidence.update(figures)
        return result

    def next_run(ctx: ActionContext) -> StepResult:
        following = month_after(_month(ctx))
        due = due_at(following)
        wait = max(0, int((due - utcnow()).total_seconds()))
        return StepResult(
            output={"month": following.label, "due": due.isoformat(), "wait": f"{wait}s"},
            evidence={"month": following.label, "due": due.isoformat()},
        )

    def echo_month(ctx: ActionContext) -> StepResult:
        month = _month(ctx)
        try:
            ensure_over(month)
        except AppError as exc:
            # The wait before this step ends when the month is over; a step run early
            # (its timer skipped) waits for the next retry rather than mail a partial report.
            raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=True) from None
        return StepResult(output={"month": month.label})

    def schedule_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        run, started = schedule_month(session, _month(ctx), actor=SCHEDULER)
        result.output.update({"run_id": run.id, "started": started})
        result.evidence.update({"run_id": run.id, "started": started})

    def snapshot_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        if ctx.tenant_id is None:
            raise StepFailed("finops.budget_snapshot needs a run against a tenant", retriable=False)
        status = budgets.budget_status(
            session,
            ctx.tenant_id,
            _month(ctx),
            cost_column=settings.finops.cost_column,
            default_thresholds=settings.finops.default_thresholds,
        )
        figures = {
            "month": status.month,
            "currency": status.currency,
            "cost": str(status.cost),
            "forecast": str(status.forecast),
            "budget": str(status.budget),
            "ratio": None if status.ratio is None else str(status.ratio),
            "forecast_ratio": None if status.forecast_ratio is None else str(status.forecast_ratio),
            "crossed": status.crossed,
            "top_services": [[s, str(c.quantize(CENT))] for s, c in status.top_services],
        }
        result.output.update(figures)
        result.evidence.update(figures)

    def record_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        if ctx.tenant_id is None:
            raise StepFailed("finops.record_review needs a run against a tenant", retriable=False)
        month = _month(ctx)
        gates = checklists.gate_decisions(session, ctx.run_id)
        decision = gates.get("decide") or (list(gates.values())[-1] if gates else {})
        decider = str(decision.get("by") or ctx.actor)
        comment = str(decision.get("comment") or "")
        # Tolerant: a run pinned to runbook 1.0 had no gate check, so its comment may be no
        # decision; it is recorded as given, with no outcome (the trail is not edited).
        outcome = checklists.decision_word(comment, REVIEW_OUTCOMES)
        data = {
            "month": month.label,
            "review_run": ctx.run_id,
            "decided_by": decider,
            "decision": comment,
            "outcome": outcome,
            "gates": gates,
            "summary": f"budget review {month.label}: {comment or 'completed'}",
        }
        entry = ledger.append(
            session,
            ctx.tenant_id,
            ledger.LedgerKind.NOTE,
            # The ledger names the finance user who decided; the engine only carried it out.
            actor=Principal(subject=decider, roles=frozenset({Role.FINANCE}), via="runbook"),
            ref=f"budget-review:{month.label}",
            data=data,
        )
        result.output.update({"ledger_seq": entry.seq, "decided_by": decider, "outcome": outcome})
        result.evidence.update(
            {"ledger_seq": entry.seq, "decided_by": decider, "decision": comment}
        )

    def budget_run(ctx: ActionContext) -> StepResult:
        try:
            amount = Decimal(str(ctx.params.get("amount")))
        except InvalidOperation:
            raise StepFailed(
                f"{ctx.step_name}: param 'amount' must be a number", retriable=False
            ) from None
        currency = str(ctx.params.get("currency") or "").upper()
        if not amount.is_finite() or amount < 0 or not currency:
            raise StepFailed(
                f"{ctx.step_name}: needs a non-negative 'amount' and a 'currency'", retriable=False
            )
        figures = {"amount": str(amount.quantize(CENT)), "currency": currency}
        return StepResult(output=dict(figures), evidence=dict(figures))

    def budget_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        if ctx.tenant_id is None:
            raise StepFailed("finops.set_budget needs a run against a tenant", retriable=False)
        approvers = [
            str((row.evidence or {}).get("by"))
            for row in engine.steps_of(session, ctx.run_id)
            if row.kind == "gate" and row.status == "succeeded" and (row.evidence or {}).get("by")
        ]
        # The ledger names the finance user who approved; the engine only carried it out.
        approver = approvers[-1] if approvers else ctx.actor
        current = budgets.get_budget(
            session, ctx.tenant_id, default_thresholds=settings.finops.default_thresholds
        )
        budget = budgets.set_budget(
            session,
            principal=Principal(subject=approver, roles=frozenset({Role.FINANCE}), via="runbook"),
            tenant_ref=ctx.tenant_id,
            amount=Decimal(result.output["amount"]),
            currency=result.output["currency"],
            thresholds=current.thresholds,
        )
        figures = {"version": budget.version, "approved_by": approver}
        result.output.update(figures)
        result.evidence.update(figures)

    return {
        "finops.set_budget": FunctionAction(budget_run, budget_apply),
        "finops.cost_report": FunctionAction(report_run),
        "finops.next_month": FunctionAction(next_run),
        "finops.schedule_next": FunctionAction(echo_month, schedule_apply),
        "finops.budget_snapshot": FunctionAction(_echo_month, snapshot_apply),
        "finops.record_review": FunctionAction(_echo_month, record_apply),
    }


def start_budget_review(
    session: Session, *, principal: Principal, ref: str, month: str | None
) -> Run:
    """Start the Budget Review checklist of a tenant's month (409 while one is open).

    The month defaults to the current one (reviewed month to date, with its
    forecast); a month not begun yet is refused (422): it has no spend. Whoever
    starts it cannot tick its gates (segregation of duties): another finance
    user completes it.
    """
    tenant = finops_service.visible_tenant(session, principal, ref)
    period = report_month(month) if month else Month.parse(None)
    ensure_begun(period)
    # Locked, so two starts at once cannot both find no open review and both start one.
    session.refresh(tenant, with_for_update=True)
    checklists.refuse_second_open_run(
        session,
        tenant_id=tenant.id,
        runbook_id=REVIEW_RUNBOOK,
        what=f"the budget review of {tenant.name} for {period.label}",
        same=lambda r: (r.inputs or {}).get("month") == period.label,
    )
    return engine.start_run(
        session,
        loaded=spec.get(spec.shipped(), REVIEW_RUNBOOK),
        actor=principal,
        tenant_id=tenant.id,
        inputs={
            "tenant": TenantRead.model_validate(tenant).model_dump(mode="json"),
            "month": period.label,
        },
    )
