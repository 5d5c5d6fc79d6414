"""Runbook actions of the weekly SLA/SLO report chain (``weekly-sla-report``).

- ``reports.sla_report`` (params ``week``, default: the last full week at the
  run's start): writes the week's report (HTML, CSV
  and a ``.sha256`` list) under ``data_dir/reports/<week>``; output ``week``,
  the headline figures, ``html``, ``csv``, ``sha256`` and ``links``. A week
  not over at the run's start fails the step for good: what is mailed is final.
- ``reports.next_week`` (params ``week``): the week after, and ``wait``: the
  duration until its report is due (the Monday after it, 06:00 UTC).
- ``reports.schedule_next`` (params ``week``): starts ``weekly-sla-report`` for
  that week unless a run for it exists (one run per week).

The files are named by week and rewritten with the same bytes on a re-run
(``generated_at`` is the run's start), as the monthly cost report's are.

Only a week that is over is scheduled (``schedule_week``): the chain starts each
next run once its week is over, and the first run, like the monthly cost
report's, reports at once, so a week not over would be mailed incomplete and
never replaced.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import AppError
from tenantops.kit.clock import utcnow
from tenantops.reports.service import write_report
from tenantops.reports.weeks import IsoWeek, last_full_week
from tenantops.runbooks import chains, engine
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
)
from tenantops.runbooks.models import Run

if TYPE_CHECKING:
    from tenantops.config import Settings

WEEKLY_RUNBOOK = "weekly-sla-report"
DUE_HOUR = 6
SCHEDULER = Principal(
    subject="system:reports-scheduler", roles=frozenset({Role.ADMIN}), via="system"
)


def due_at(week: IsoWeek) -> datetime:
    """When ``week``'s report is due: 06:00 UTC on the Monday after it."""
    return datetime.combine(week.end.date(), time(DUE_HOUR), tzinfo=UTC)


def _week(ctx: ActionContext) -> IsoWeek:
    """The step's ``week`` param; a missing or malformed one fails the step for good."""
    text = ctx.params.get("week")
    if not text:
        raise StepFailed(f"{ctx.step_name}: param 'week' (YYYY-Www) is required", retriable=False)
    try:
        return IsoWeek.parse(str(text))
    except AppError as exc:
        raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=False) from None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def open_weekly_runs(session: Session) -> list[Run]:
    return chains.open_chain_runs(session, WEEKLY_RUNBOOK)


def ensure_over(week: IsoWeek, now: datetime | None = None) -> None:
    """A 422 unless ``week`` is over at ``now``: its report would be incomplete."""
    chains.ensure_over(week.label, week.end, unit="week", now=now)


def schedule_week(session: Session, week: IsoWeek, *, actor: Principal) -> tuple[Run, bool]:
    """The run reporting ``week``: the existing one, or a new one (True) if none exists.

    A week not over is refused (422), even if a run for it exists: a run reports
    its week once, at its start.
    """
    ensure_over(week)
    return chains.start_once(
        session, runbook_id=WEEKLY_RUNBOOK, key="week", value=week.label, actor=actor
    )


def report_actions(settings: Settings, db: Database) -> Registry:
    """The report actions, bound to ``settings`` (data directory, links) and ``db``."""

    def report_run(ctx: ActionContext) -> StepResult:
        # Read-only and outside the step's write transaction, as the cost report:
        # the files are byte-stable for the run (generated_at = its start).
        with db.read() as session:
            started = _aware(engine.get_run(session, ctx.run_id).created_at)
            # A run started by hand without a week reports the last full one.
            week = _week(ctx) if ctx.params.get("week") else last_full_week(started)
            try:
                ensure_over(week, started)
            except AppError as exc:
                raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=False) from None
            written = write_report(settings, session, week, now=started)
        report = written.report
        overall = report.this_week.overall
        figures = {
            "week": written.week,
            "runs_started": overall.started,
            "runs_finished": overall.finished,
            "runs_met": overall.runs.met,
            "runs_judged": overall.runs.judged,
            "attainment": "–" if overall.runs.ratio is None else f"{overall.runs.ratio:.2%}",
            "breaches": len(report.breaches),
            "budgets_spent": sum(1 for e in report.error_budgets if e.exhausted),
            "overdue_approvals": len(report.overdue_approvals),
            **{fmt: str(path) for fmt, path in written.paths.items()},
            "sha256": written.sha256,
        }
        base = settings.notify.dashboard_url.rstrip("/")
        result = StepResult(output=dict(figures), evidence=dict(figures))
        # The notifier sends no attachments: governance gets the file and the API address.
        result.output["links"] = {
            fmt: f"{path} ({base}/api/v1/reports/sla?week={written.week}&format={fmt})"
            for fmt, path in written.paths.items()
        }
        return result

    def next_run(ctx: ActionContext) -> StepResult:
        following = _week(ctx).next()
        due = due_at(following)
        wait = max(0, int((due - utcnow()).total_seconds()))
        return StepResult(
            output={"week": following.label, "due": due.isoformat(), "wait": f"{wait}s"},
            evidence={"week": following.label, "due": due.isoformat()},
        )

    def echo_week(ctx: ActionContext) -> StepResult:
        week = _week(ctx)
        try:
            ensure_over(week)
        except AppError as exc:
            # The wait before this step ends when the week is over; a step run early
            # (its timer skipped) waits for the next retry rather than mail a partial report.
            raise StepFailed(f"{ctx.step_name}: {exc.detail}", retriable=True) from None
        return StepResult(output={"week": week.label})

    def schedule_apply(session: Session, ctx: ActionContext, result: StepResult) -> None:
        run, started = schedule_week(session, _week(ctx), actor=SCHEDULER)
        result.output.update({"run_id": run.id, "started": started})
        result.evidence.update({"run_id": run.id, "started": started})

    return {
        "reports.sla_report": FunctionAction(report_run),
        "reports.next_week": FunctionAction(next_run),
        "reports.schedule_next": FunctionAction(echo_week, schedule_apply),
    }
