"""What a tenant's page shows, assembled with bounded queries.

Every figure comes from the service the JSON API calls for it, as the viewer:
``tenants.service`` (read, approvals), ``runbooks.service`` (runs with their
steps and evidence), ``notifications.service`` (the outbox) and
``finops.reports`` (the cost report of one tenant), ``itil.service`` and
``oncall.service`` (through ``records_view``/``oncall_view``: the tenant's
records and open pages); the actions offered are ``tenant_actions``', the
checklists ``tenant_checklists``'. Which sections a viewer gets is read from
the policy table the API enforces (``auth.policy.may``).

One read goes to a table directly, because no service offers it yet: a
tenant's audit entries newest first (the audit repository pages oldest first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantops.approvals.schemas import ApprovalRequestRead
from tenantops.audit.models import AuditEntry
from tenantops.auth.policy import API, may
from tenantops.auth.principal import Principal
from tenantops.finops import report_charts
from tenantops.finops.costs import Month
from tenantops.finops.report_model import CostReport, format_money, format_ratio
from tenantops.finops.reports import build_report
from tenantops.itil.schemas import RecordRead
from tenantops.kit.clock import as_utc
from tenantops.notifications import service as notifications
from tenantops.notifications.repository import NotificationFilter
from tenantops.notifications.schemas import NotificationRead
from tenantops.oncall.schemas import PageRead
from tenantops.runbooks import service as runs
from tenantops.runbooks.schemas import RunRead
from tenantops.tenants import service as tenants
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantRead
from tenantops.web import oncall_view, records_view
from tenantops.web.tenant_actions import TENANT, TenantAction, available_actions
from tenantops.web.tenant_checklists import ChecklistView, checklist_views

TIMELINE_SIZE = 50
RUNS_SHOWN = 10
COMMITS_SHOWN = 20
NOTIFICATIONS_SHOWN = 20

AUDIT_ROUTE = ("GET", f"{API}/audit")
NOTIFICATIONS_ROUTE = ("GET", f"{API}/notifications")
COSTS_ROUTE = ("GET", f"{TENANT}/costs")


@dataclass(frozen=True)
class TimelineEntry:
    seq: int
    at: datetime
    actor: str
    action: str


@dataclass(frozen=True)
class Commit:
    """A GitOps commit a run step recorded as its evidence."""

    sha: str
    run_id: str
    runbook_id: str
    step: str
    at: datetime | None


@dataclass(frozen=True)
class WaitingGate:
    run_id: str
    runbook_id: str
    step: str
    prompt: str | None
    roles: list[str]


@dataclass(frozen=True)
class CostView:
    """The tenant's month and the months before, with the report's chart geometry."""

    report: CostReport
    cost_mtd: str
    forecast: str
    budget: str
    ratio: str
    has_data: bool
    budget_chart: report_charts.HBarChart | None
    trend_chart: report_charts.LineChart | None
    months_chart: report_charts.VBarChart | None
    geometry: dict[str, float] = field(default_factory=dict)


@dataclass
class TenantPage:
    """Everything the tenant page shows; a section is None when the viewer may not see it."""

    tenant: TenantRead
    actions: list[TenantAction]
    approvals: list[ApprovalRequestRead]
    open_approvals: list[ApprovalRequestRead]
    waiting_gates: list[WaitingGate]
    runs: list[RunRead]
    runs_next_cursor: str | None
    commits: list[Commit]
    timeline: list[TimelineEntry] | None
    timeline_older: int | None
    notifications: list[NotificationRead] | None
    costs: CostView | None
    # Incidents, changes and problems (newest first) and whether there are more; open pages.
    records: list[RecordRead] | None = None
    more_records: bool = False
    open_pages: list[PageRead] | None = None
    # The checklists (Access Review, Budget Review): their open runs, whether to offer a start.
    checklists: list[ChecklistView] = field(default_factory=list)


def _timeline(
    session: Session, tenant_id: str, before: int | None
) -> tuple[list[TimelineEntry], int | None]:
    query = (
        select(AuditEntry.seq, AuditEntry.at, AuditEntry.actor, AuditEntry.action)
        .where(AuditEntry.tenant_id == tenant_id)
        .order_by(AuditEntry.seq.desc())
        .limit(TIMELINE_SIZE + 1)
    )
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    rows = [
        TimelineEntry(seq=int(s), at=as_utc(at), actor=str(who), action=str(what))
        for s, at, who, what in session.execute(query)
    ]
    older = rows[TIMELINE_SIZE - 1].seq if len(rows) > TIMELINE_SIZE else None
    return rows[:TIMELINE_SIZE], older


def evidence_summary(evidence: Mapping[str, Any] | None) -> str:
    """A step's evidence in one short line: hashes cut to 12 characters, lists counted."""
    if not evidence:
        return ""
    parts = []
    for key, value in sorted(evidence.items()):
        if isinstance(value, list | tuple):
            text = f"{len(value)} item{'s' if len(value) != 1 else ''}"
        elif isinstance(value, dict):
            text = f"{len(value)} field{'s' if len(value) != 1 else ''}"
        else:
            text = str(value)
            if len(text) >= 40 and all(c in "0123456789abcdef" for c in text):
                text = text[:12] + "…"  # a SHA or digest: enough to recognise it
            elif len(text) > 60:
                text = text[:57] + "…"
        parts.append(f"{key}: {text}")
    return "; ".join(parts)


def _commits(shown: Sequence[RunRead]) -> list[Commit]:
    found = [
        Commit(
            sha=str(step.evidence["commit"]),
            run_id=run.id,
            runbook_id=run.runbook_id,
            step=step.title or step.name,
            at=step.finished_at,
        )
        for run in shown
        for step in run.steps
        if step.evidence and step.evidence.get("commit")
    ]
    found.sort(key=lambda c: (c.at is not None, c.at), reverse=True)
    return found[:COMMITS_SHOWN]


def _costs(
    session: Session, tenant: Tenant, *, cost_column: str, default_thresholds: list[int]
) -> CostView:
    report = build_report(
        session,
        month=Month.parse(None),
        tenant_id=tenant.id,
        cost_column=cost_column,
        default_thresholds=default_thresholds,
    )
    mine = report.tenants[0]
    has_data = report.has_cost_data or bool(report.monthly_totals)
    cur = report.currency
    return CostView(
        report=report,
        cost_mtd=format_money(mine.cost_mtd, cur),
        forecast=format_money(mine.forecast, cur),
        budget="no budget" if mine.budget is None else format_money(mine.budget, cur),
        ratio=format_ratio(mine),
        has_data=has_data,
        budget_chart=report_charts.cost_chart(report) if report.has_cost_data else None,
        trend_chart=report_charts.trend_chart(report) if report.has_cost_data else None,
        months_chart=report_charts.months_chart(report) if has_data else None,
        geometry={
            "width": report_charts.SVG_WIDTH,
            "label_w": report_charts.LABEL_W,
            "bar_x0": report_charts.BAR_X0,
            "bar_w": report_charts.BAR_W,
            "left": report_charts.PLOT_LEFT,
            "top": report_charts.PLOT_TOP,
            "plot_w": report_charts.PLOT_W,
            "plot_h": report_charts.PLOT_H,
        },
    )


def build_page(
    session: Session,
    *,
    principal: Principal,
    ref: str,
    older: int | None = None,
    runs_cursor: str | None = None,
    cost_column: str = "EffectiveCost",
    default_thresholds: list[int] | None = None,
) -> TenantPage:
    """The tenant page of ``ref`` (id or name) as ``principal`` may see it; 404 otherwise."""
    row = tenants.get_tenant(session, principal=principal, ref=ref)
    tenant = TenantRead.model_validate(row)
    approvals = tenants.list_approvals(session, principal=principal, ref=row.id)

    page = runs.list_runs(
        session,
        principal=principal,
        tenant=row.id,
        runbook_id=None,
        status=None,
        cursor=runs_cursor,
        limit=RUNS_SHOWN,
    )
    read: dict[str, RunRead] = {}

    def run(run_id: str) -> RunRead:
        if run_id not in read:
            read[run_id] = runs.read_run(session, principal=principal, run_id=run_id)
        return read[run_id]

    shown = [run(r.id) for r in page.items]
    waiting = runs.list_runs(
        session,
        principal=principal,
        tenant=row.id,
        runbook_id=None,
        status="waiting",
        cursor=None,
        limit=RUNS_SHOWN,
    )
    gates = [
        WaitingGate(
            run_id=r.id,
            runbook_id=r.runbook_id,
            step=s.title or s.name,
            prompt=s.gate.prompt if s.gate else None,
            roles=s.gate.roles if s.gate else [],
        )
        for r in (run(w.id) for w in waiting.items)
        for s in r.steps
        if s.kind == "gate" and s.status == "waiting"
    ]

    timeline: list[TimelineEntry] | None = None
    timeline_older = None
    if may(principal, *AUDIT_ROUTE):
        timeline, timeline_older = _timeline(session, row.id, older)

    messages: list[NotificationRead] | None = None
    if may(principal, *NOTIFICATIONS_ROUTE):
        rows, _ = notifications.list_notifications(
            session,
            principal=principal,
            filters=NotificationFilter(tenant=row.id),
            cursor=None,
            limit=NOTIFICATIONS_SHOWN,
        )
        messages = [NotificationRead.model_validate(m) for m in rows]

    costs = None
    if may(principal, *COSTS_ROUTE):
        costs = _costs(
            session,
            row,
            cost_column=cost_column,
            default_thresholds=list(default_thresholds or []),
        )

    records = records_view.tenant_records(session, principal=principal, tenant_id=row.id)
    return TenantPage(
        tenant=tenant,
        actions=available_actions(
            principal,
            tenant.state,
            approvals,
            reactivating=tenants.reactivation_run(session, row.id) is not None,
        ),
        approvals=approvals,
        open_approvals=[a for a in approvals if a.status == "pending"],
        waiting_gates=gates,
        runs=shown,
        runs_next_cursor=page.next_cursor,
        commits=_commits(shown),
        timeline=timeline,
        timeline_older=timeline_older,
        notifications=messages,
        costs=costs,
        records=None if records is None else records[0],
        more_records=records is not None and records[1],
        open_pages=oncall_view.tenant_open_pages(session, principal=principal, tenant_id=row.id),
        checklists=checklist_views(session, principal=principal, tenant_id=row.id),
    )
