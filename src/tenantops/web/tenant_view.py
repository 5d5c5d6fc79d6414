"""What the tenants list and a tenant's page show, assembled with bounded queries.

Every figure comes from the service the JSON API calls for it, as the viewer:
``tenants.service`` (list, read, approvals, the lifecycle actions),
``runbooks.service`` (runs with their steps and evidence),
``notifications.service`` (the outbox) and ``finops.reports`` (the cost report
of one tenant). Which sections and actions a viewer gets is read from the same
tables the API enforces — ``auth.policy.allowed_roles`` for the routes,
``tenants.service.STEP_ROLES`` for recorded steps and
``tenants.lifecycle.allowed_events`` for the state — never from a list of its own.

Two reads go to tables directly, because no service offers them yet: the count
of matching tenants (the registry pages without one) and a tenant's audit
entries newest first (the audit repository pages oldest first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from tenantops.approvals.schemas import ApprovalRequestRead
from tenantops.audit.models import AuditEntry
from tenantops.auth.policy import API, allowed_roles, may
from tenantops.auth.principal import Principal, Role
from tenantops.errors import Forbidden, NotFound, Unprocessable
from tenantops.finops import report_charts
from tenantops.finops.costs import Month
from tenantops.finops.report_model import CostReport, format_money, format_ratio
from tenantops.finops.reports import build_report
from tenantops.kit.clock import as_utc
from tenantops.kit.cursor import decode_cursor
from tenantops.notifications import service as notifications
from tenantops.notifications.repository import NotificationFilter
from tenantops.notifications.schemas import NotificationRead
from tenantops.runbooks import service as runs
from tenantops.runbooks.schemas import RunRead
from tenantops.tenants import service as tenants
from tenantops.tenants.lifecycle import TenantEvent, TenantState, allowed_events
from tenantops.tenants.models import Tenant
from tenantops.tenants.repository import TenantFilter
from tenantops.tenants.schemas import (
    STEP_EVENTS,
    LifecycleEventCreate,
    OffboardRequest,
    ReactivationRequestCreate,
    SuspendRequest,
    TenantRead,
)
from tenantops.web.pagekit import form_version

PAGE_SIZE = 50
TIMELINE_SIZE = 50
RUNS_SHOWN = 10
COMMITS_SHOWN = 20
NOTIFICATIONS_SHOWN = 20

TENANT = f"{API}/tenants/{{tenant}}"
AUDIT_ROUTE = ("GET", f"{API}/audit")
NOTIFICATIONS_ROUTE = ("GET", f"{API}/notifications")
COSTS_ROUTE = ("GET", f"{TENANT}/costs")


# --------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class ListQuery:
    """The list's search box, filters and page (``cursor`` from the previous page)."""

    q: str | None = None
    state: str | None = None
    region: str | None = None
    tier: str | None = None
    cursor: str | None = None

    def params(self, **changes: str | None) -> dict[str, str]:
        """The query string of this list with ``changes``, empty values left out."""
        values = {
            "q": self.q,
            "state": self.state,
            "region": self.region,
            "tier": self.tier,
            "cursor": self.cursor,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class TenantList:
    """One page of the tenants list: rows, how many match, where this page starts."""

    items: list[TenantRead]
    total: int
    start: int
    next_cursor: str | None
    query: ListQuery
    states: list[str]


def _conditions(filters: TenantFilter) -> list[ColumnElement[bool]]:
    """The filters of ``tenants.repository.list_page``, for counting the same rows."""
    where: list[ColumnElement[bool]] = []
    if filters.state:
        where.append(Tenant.state == filters.state)
    if filters.region:
        where.append(Tenant.region == filters.region)
    if filters.tier:
        where.append(Tenant.tier == filters.tier)
    if filters.only is not None:
        where.append(or_(Tenant.id == filters.only, Tenant.name == filters.only))
    if filters.q:
        text = filters.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{text}%"
        where.append(
            or_(
                Tenant.name.like(pattern, escape="\\"),
                Tenant.display_name.ilike(pattern, escape="\\"),
                Tenant.business_owner.like(pattern, escape="\\"),
            )
        )
    return where


def _count(session: Session, where: Sequence[ColumnElement[bool]]) -> int:
    return int(session.execute(select(func.count()).select_from(Tenant).where(*where)).scalar_one())


def list_tenants(session: Session, *, principal: Principal, query: ListQuery) -> TenantList:
    """A page of the tenants ``principal`` may see (``tenants.service.list_tenants``), counted."""
    filters = TenantFilter(state=query.state, region=query.region, tier=query.tier, q=query.q)
    rows, next_cursor = tenants.list_tenants(
        session, principal=principal, filters=filters, cursor=query.cursor, limit=PAGE_SIZE
    )
    if principal.tenant_scoped:
        # The service's own scope: nothing without a tenant, else that one tenant.
        if principal.tenant is None:
            return TenantList([], 0, 0, None, query, [s.value for s in TenantState])
        filters = TenantFilter(**{**filters.__dict__, "only": principal.tenant})
    where = _conditions(filters)
    total = _count(session, where)
    start = 1
    if query.cursor:
        # Ids are time-ordered and the list is newest first: the rows before this page
        # are the matching ones from the cursor's (the last row shown) upwards.
        start += _count(session, [*where, Tenant.id >= decode_cursor(query.cursor)])
    return TenantList(
        items=[TenantRead.model_validate(t) for t in rows],
        total=total,
        start=start,
        next_cursor=next_cursor,
        query=query,
        states=[s.value for s in TenantState],
    )


# ------------------------------------------------------------------------ the actions


@dataclass(frozen=True)
class FormField:
    """One text input of an action's form."""

    name: str
    label: str
    required: bool = False


REASON = FormField("reason", "Reason", required=True)


@dataclass(frozen=True)
class TenantAction:
    """A lifecycle action a page can post: its event, its API route, its form.

    Who may take it is the API's: the roles of ``route`` in the policy table,
    narrowed by ``step_roles`` (``tenants.service.STEP_ROLES``) for a recorded step.
    """

    name: str
    label: str
    event: TenantEvent
    route: tuple[str, str]
    fields: tuple[FormField, ...]
    schema: type[BaseModel]
    step_roles: frozenset[Role] | None = None

    def roles(self) -> frozenset[Role]:
        roles = allowed_roles(*self.route)
        return roles if self.step_roles is None else roles & self.step_roles


STEP_LABELS = {
    TenantEvent.START_PROVISIONING: "Record: provisioning started",
    TenantEvent.PROVISIONED: "Record: provisioned",
    TenantEvent.PROVISIONING_FAILED: "Record: provisioning failed",
    TenantEvent.VERIFIED: "Record: verified",
    TenantEvent.VERIFICATION_FAILED: "Record: verification failed",
    TenantEvent.ARCHIVE: "Record: archived",
}

ACTIONS: dict[str, TenantAction] = {
    a.name: a
    for a in (
        TenantAction(
            "suspend",
            "Suspend",
            TenantEvent.SUSPEND,
            ("POST", f"{TENANT}/suspend"),
            (REASON, FormField("incident_ref", "Incident reference")),
            SuspendRequest,
        ),
        TenantAction(
            "request-reactivation",
            "Request reactivation",
            TenantEvent.REACTIVATE,
            ("POST", f"{TENANT}/reactivation-requests"),
            (REASON,),
            ReactivationRequestCreate,
        ),
        TenantAction(
            "offboard",
            "Offboard",
            TenantEvent.OFFBOARD,
            ("POST", f"{TENANT}/offboard"),
            (REASON, FormField("ticket_ref", "Ticket reference")),
            OffboardRequest,
        ),
        *(
            TenantAction(
                event.value,
                STEP_LABELS[event],
                event,
                ("POST", f"{TENANT}/lifecycle-events"),
                (FormField("note", "Note"), FormField("evidence_ref", "Evidence reference")),
                LifecycleEventCreate,
                tenants.STEP_ROLES[event],
            )
            for event in STEP_EVENTS
        ),
    )
}


def available_actions(
    principal: Principal, state: str, approvals: Sequence[ApprovalRequestRead]
) -> list[TenantAction]:
    """The actions ``principal`` may take on a tenant in ``state`` now.

    The state must allow the action's event (the lifecycle table) and the viewer
    must hold one of its roles (the API's). A reactivation already asked for
    waits for governance in the approvals inbox, so it is not offered again.
    """
    events = set(allowed_events(TenantState(state)))
    pending = {a.kind for a in approvals if a.status == "pending"}
    return [
        a
        for a in ACTIONS.values()
        if a.event in events
        and principal.roles & a.roles()
        and not (a.event is TenantEvent.REACTIVATE and "reactivation" in pending)
    ]


def _payload(action: TenantAction, form: Mapping[str, str]) -> BaseModel:
    values: dict[str, Any] = {f.name: form.get(f.name, "").strip() or None for f in action.fields}
    if action.schema is LifecycleEventCreate:
        values["event"] = action.event.value
    values = {k: v for k, v in values.items() if v is not None}
    try:
        return action.schema.model_validate(values)
    except ValidationError as exc:
        labels = {f.name: f.label for f in action.fields}
        problems = []
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            problems.append(f"{labels.get(where, where)}: {error['msg']}")
        raise Unprocessable("; ".join(problems)) from exc


def perform(
    session: Session, *, principal: Principal, ref: str, name: str, form: Mapping[str, str]
) -> Tenant:
    """Take action ``name`` on tenant ``ref`` through the service its API route calls.

    Raises what the API would: ``NotFound`` for a tenant the viewer may not see,
    ``Forbidden`` without one of the route's roles, ``Unprocessable`` for a bad
    form, ``Conflict``/``InvalidTransition`` for the state, ``PreconditionFailed``
    when the tenant changed since the form was shown (its ``version``).
    """
    tenant = tenants.get_tenant(session, principal=principal, ref=ref)
    action = ACTIONS.get(name)
    if action is None:
        raise NotFound(f"no action {name!r}")
    roles = action.roles()
    if not principal.roles & roles:
        allowed = " or ".join(sorted(r.value for r in roles)) or "nobody"
        raise Forbidden(f"{action.label.lower()} needs the {allowed} role")
    version = form_version(form)
    data = _payload(action, form)
    if isinstance(data, SuspendRequest):
        return tenants.suspend_tenant(
            session, principal=principal, ref=tenant.id, data=data, if_match=version
        )
    if isinstance(data, OffboardRequest):
        return tenants.offboard_tenant(
            session, principal=principal, ref=tenant.id, data=data, if_match=version
        )
    if isinstance(data, LifecycleEventCreate):
        return tenants.record_step(
            session, principal=principal, ref=tenant.id, data=data, if_match=version
        )
    if isinstance(data, ReactivationRequestCreate):
        # The API takes no If-Match here (a request changes no field); the state decides.
        tenants.request_reactivation(session, principal=principal, ref=tenant.id, data=data)
        return tenants.get_tenant(session, principal=principal, ref=tenant.id)
    raise AssertionError(f"no service for {action.name}")  # pragma: no cover


# -------------------------------------------------------------------------- the page


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

    return TenantPage(
        tenant=tenant,
        actions=available_actions(principal, tenant.state, approvals),
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
    )
