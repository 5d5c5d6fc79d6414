"""What the weekly SLA/SLO report carries (the API's JSON form; HTML and CSV render it)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, computed_field

ALL = "*"  # the runbook id of the overall row


class Attainment(BaseModel):
    """Deadlines decided in the week: met (succeeded in time) or missed."""

    met: int = 0
    missed: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def judged(self) -> int:
        return self.met + self.missed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ratio(self) -> float | None:
        return round(self.met / self.judged, 4) if self.judged else None


class RunbookWeek(BaseModel):
    """One runbook's week (``runbook_id`` ``*``: every runbook together)."""

    runbook_id: str
    started: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    runs: Attainment = Attainment()
    steps: Attainment = Attainment()


class Activation(BaseModel):
    """Tenants that became active in the week: second approval -> active.

    ``within_sla``: under the KPI dashboard's provisioning SLA (30 minutes).
    """

    activated: int = 0
    within_sla: int = 0
    p50_seconds: float | None = None
    p90_seconds: float | None = None


class WeekFigures(BaseModel):
    week: str
    start: datetime
    end: datetime
    overall: RunbookWeek
    runbooks: list[RunbookWeek]
    activation: Activation

    def runbook(self, runbook_id: str) -> RunbookWeek:
        if runbook_id == ALL:
            return self.overall
        found = [r for r in self.runbooks if r.runbook_id == runbook_id]
        return found[0] if found else RunbookWeek(runbook_id=runbook_id)


class Change(BaseModel):
    """This week minus the week before, for one runbook (``*``: overall).

    Attainment changes are in percentage points; None when either week judged nothing.
    """

    runbook_id: str
    started: int
    finished: int
    runs_missed: int
    run_attainment_points: float | None
    step_attainment_points: float | None


class Breach(BaseModel):
    """A deadline missed in the week: a run's (``step`` None) or one step's."""

    run_id: str
    runbook_id: str
    step: str | None
    tenant_id: str | None
    tenant_name: str | None
    deadline: datetime
    finished_at: datetime | None
    # The final status, or ``open`` when not finished at the cut-off (what came after
    # the cut-off is not seen: a past week's report does not change).
    status: str
    # At the finish, or at the report's cut-off while still open; None: it failed in time.
    late_seconds: float | None


class ErrorBudget(BaseModel):
    """One tenant's SLO for one runbook over the budget window ending with the week.

    SLO: ``target`` of the runs whose deadline is decided succeed in time. The
    budget is the misses it allows, ``(1 - target) * judged``; ``consumed`` is
    ``missed`` over that (1.0 = spent, above 1 = overspent).
    """

    tenant_id: str | None
    tenant_name: str | None
    runbook_id: str
    judged: int
    missed: int
    target: float
    allowed: float
    consumed: float | None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exhausted(self) -> bool:
        return self.consumed is not None and self.consumed >= 1


class OverdueApproval(BaseModel):
    """An approval gate still open at the cut-off although its SLA deadline had passed."""

    run_id: str
    runbook_id: str
    step: str
    tenant_id: str | None
    tenant_name: str | None
    waiting_since: datetime | None
    deadline: datetime
    overdue_seconds: float


class SlaReport(BaseModel):
    """The weekly SLA/SLO report of one ISO week, for governance."""

    week: str
    start: datetime
    end: datetime
    generated_at: datetime
    cutoff: datetime  # the week's end, or generated_at for a week not over yet
    complete: bool
    slo_target: float
    budget_window_days: int
    this_week: WeekFigures
    previous_week: WeekFigures
    change: list[Change]
    breaches: list[Breach]
    error_budgets: list[ErrorBudget]
    overdue_approvals: list[OverdueApproval]

    @property
    def file_stem(self) -> str:
        return f"sla-report-{self.week}"
