"""The approvals inbox: what waits for the viewer, assembled for ``/approvals``.

Four kinds of item, each still pending:

- tenant onboarding approvals (governance + security) and reactivation
  approvals (governance): ``approval_requests`` that still need a role;
- runbook gates a person may decide (no signal, or a ``manual`` signal gate)
  of runs waiting on them;
- break-glass post-use reviews: the review gate of the break-glass runbook.

Whether the viewer may decide, and if not why, comes from the rules themselves
(``approvals.rules.refusal`` and ``runbooks.engine.gate_refusal``, the same
functions the decisions raise from) plus the API's role table; nothing here
restates a rule. Items the viewer holds a role for but may not decide, and
items they asked for, are "waiting for others", with the reason in words; an
admin or auditor (bound to no tenant) sees every pending item there.

The queries read the approval, run and tenant tables directly (as ``kpis``
does) and only read: pending rows only, at most ``LIMIT`` per source, with a
count of all of them, so the page costs the same with 10,000 tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from tenantops.approvals import rules
from tenantops.approvals import service as approvals
from tenantops.approvals.models import ApprovalDecision, ApprovalRequest
from tenantops.auth.policy import API, may
from tenantops.auth.principal import Principal, Role
from tenantops.breakglass.service import RUNBOOK as BREAK_GLASS_RUNBOOK
from tenantops.errors import AppError, SegregationOfDuties
from tenantops.kit.clock import as_utc, utcnow
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run, RunStep
from tenantops.runbooks.spec import Gate
from tenantops.runbooks.templating import prompt_text, run_context
from tenantops.tenants import service as tenants
from tenantops.tenants.models import Tenant

LIMIT = 200  # items read per source; the count says how many there are in all

ONBOARDING = approvals.ONBOARDING
REACTIVATION = approvals.REACTIVATION
GATE = "gate"
BREAK_GLASS = "breakglass"
KINDS = (ONBOARDING, REACTIVATION, GATE, BREAK_GLASS)
KIND_TITLES = {
    ONBOARDING: "Tenant onboarding approvals",
    REACTIVATION: "Tenant reactivation approvals",
    GATE: "Runbook gates",
    BREAK_GLASS: "Break-glass post-use reviews",
}
KIND_LABELS = {
    ONBOARDING: "Onboarding approval",
    REACTIVATION: "Reactivation approval",
    GATE: "Runbook gate",
    BREAK_GLASS: "Break-glass review",
}

# The API routes these decisions are, whose role table the page applies too.
ONBOARDING_ROUTE = ("POST", f"{API}/tenants/{{tenant}}/approvals")
REACTIVATION_ROUTE = (
    "POST",
    f"{API}/tenants/{{tenant}}/reactivation-requests/{{request_id}}/approvals",
)
GATE_ROUTE = ("POST", f"{API}/runs/{{run_id}}/gates/{{step}}")
ROUTES = {ONBOARDING: ONBOARDING_ROUTE, REACTIVATION: REACTIVATION_ROUTE, GATE: GATE_ROUTE}

PAST = {"approve": "approved", "reject": "rejected"}


@dataclass(frozen=True)
class InboxItem:
    """One thing waiting for a decision, as the page shows it."""

    kind: str
    key: str  # unique on the page (HTML ids)
    what: str
    detail: str | None
    tenant_name: str | None
    requested_by: str
    requested_at: datetime
    waited_seconds: float
    waiting_for: list[str]  # roles whose decision is still missing
    decided: list[str]  # decisions taken so far, in words
    roles: list[str]  # roles the viewer may decide in; empty: they may not
    blocked: str | None  # why the viewer may not decide, in words
    fields: dict[str, str] = field(default_factory=dict)  # hidden form fields

    @property
    def decidable(self) -> bool:
        return bool(self.roles)


@dataclass(frozen=True)
class Inbox:
    """The viewer's items by kind, and the items waiting for someone else."""

    mine: dict[str, list[InboxItem]]
    others: list[InboxItem]
    shown: int
    total: int

    @property
    def empty(self) -> bool:
        return not any(self.mine.values()) and not self.others


def _route_allows(principal: Principal, kind: str) -> bool:
    route = ROUTES[GATE if kind == BREAK_GLASS else kind]
    return may(principal, *route)


def _sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}."


def _role_list(roles: Sequence[str]) -> str:
    return " and ".join(roles) if len(roles) < 3 else ", ".join(roles)


# --- tenant approvals -----------------------------------------------------------------


# Who oversees the approvals rather than deciding them: they see every pending item,
# under "waiting for others", so "nothing waits for your decision" never hides a queue.
OVERSEERS = frozenset({Role.ADMIN, Role.AUDITOR})


def _oversees(principal: Principal) -> bool:
    return not principal.tenant_scoped and bool(principal.roles & OVERSEERS)


def _approval_scope(principal: Principal) -> ColumnElement[bool]:
    """Pending requests that need a role the viewer holds, or that they asked for or decided;
    every one for an admin or auditor bound to no tenant."""
    if _oversees(principal):
        return true()
    held = set(principal.role_names())
    decided_by_viewer = exists().where(
        ApprovalDecision.request_id == ApprovalRequest.id,
        ApprovalDecision.principal == principal.subject,
    )
    clauses: list[ColumnElement[bool]] = [
        ApprovalRequest.requested_by == principal.subject,
        decided_by_viewer,
    ]
    needed = {role for roles in approvals.REQUIRED_ROLES.values() for role in roles}
    for role in sorted(needed & held):
        kinds = [k for k, roles in approvals.REQUIRED_ROLES.items() if role in roles]
        undecided = ~exists().where(
            ApprovalDecision.request_id == ApprovalRequest.id, ApprovalDecision.role == role
        )
        clauses.append(and_(ApprovalRequest.kind.in_(kinds), undecided))
    return or_(*clauses)


def _approval_refusal(
    request: ApprovalRequest,
    prior: list[rules.PriorDecision],
    viewer: str,
    roles: list[str],
    role: str,
) -> AppError | None:
    return rules.refusal(
        requested_by=request.requested_by,
        required_roles=request.required_roles,
        prior=prior,
        decider=viewer,
        decider_roles=roles,
        role=role,
    )


def _approval_blocked(
    request: ApprovalRequest,
    prior: list[rules.PriorDecision],
    principal: Principal,
    open_roles: list[str],
) -> str:
    """Why the viewer may not decide a pending request, in words, from the rules' refusal."""
    noun = "tenant" if request.kind == ONBOARDING else "reactivation"
    waiting = f"waiting for {_role_list(open_roles)}"
    if not _route_allows(principal, request.kind):
        return f"Your roles cannot decide this; {waiting}."
    held = [r for r in open_roles if r in principal.role_names()]
    for role in held or open_roles:
        # Lacking every open role, would the SoD rules still stop the viewer? Ask as a holder.
        roles = principal.role_names() if held else [role]
        refused = _approval_refusal(request, prior, principal.subject, roles, role)
        if isinstance(refused, SegregationOfDuties):
            rule = refused.extra.get("rule")
            if rule == "requester-not-approver":
                return (
                    f"You requested this {noun}: a different person must approve it "
                    f"(segregation of duties); {waiting}."
                )
            if rule == "distinct-approvers":
                mine = next(p for p in prior if p.principal == principal.subject)
                return (
                    f"Already {PAST.get(mine.decision, mine.decision)} by you as {mine.role}; "
                    f"{_role_list(open_roles)} must approve, from a different person "
                    "(segregation of duties)."
                )
            return f"{refused.detail} (segregation of duties)."
        if refused is not None and held:
            return _sentence(refused.detail)
    return f"Your roles cannot decide this; {waiting}."


def _tenant_approvals(
    session: Session, principal: Principal, own_tenant: str | None, now: datetime
) -> tuple[list[InboxItem], int]:
    where: list[ColumnElement[bool]] = [
        ApprovalRequest.status == "pending",
        _approval_scope(principal),
    ]
    if principal.tenant_scoped:
        where.append(Tenant.id == own_tenant if own_tenant is not None else false())
    base = select(ApprovalRequest, Tenant.name, Tenant.version).join(
        Tenant, Tenant.id == ApprovalRequest.tenant_id
    )
    rows = session.execute(
        base.where(*where).order_by(ApprovalRequest.created_at, ApprovalRequest.id).limit(LIMIT)
    ).all()
    total = session.execute(
        select(func.count())
        .select_from(ApprovalRequest)
        .join(Tenant, Tenant.id == ApprovalRequest.tenant_id)
        .where(*where)
    ).scalar_one()
    ids = [row[0].id for row in rows]
    prior_of: dict[str, list[rules.PriorDecision]] = {i: [] for i in ids}
    if ids:
        decisions = session.execute(
            select(ApprovalDecision)
            .where(ApprovalDecision.request_id.in_(ids))
            .order_by(ApprovalDecision.created_at, ApprovalDecision.id)
        ).scalars()
        for d in decisions:
            prior_of[d.request_id].append(rules.PriorDecision(d.role, d.principal, d.decision))
    items = []
    for request, tenant_name, version in rows:
        prior = prior_of[request.id]
        open_roles = [r for r in request.required_roles if r not in {p.role for p in prior}]
        roles = (
            [
                r
                for r in open_roles
                if _approval_refusal(request, prior, principal.subject, principal.role_names(), r)
                is None
            ]
            if _route_allows(principal, request.kind)
            else []
        )
        created = as_utc(request.created_at)
        items.append(
            InboxItem(
                kind=request.kind,
                key=f"a-{request.id}",
                what=(
                    f"Onboarding of tenant {tenant_name}"
                    if request.kind == ONBOARDING
                    else f"Reactivation of suspended tenant {tenant_name}"
                ),
                detail=request.reason,
                tenant_name=tenant_name,
                requested_by=request.requested_by,
                requested_at=created,
                waited_seconds=(now - created).total_seconds(),
                waiting_for=open_roles,
                decided=[
                    f"{p.role}: {PAST.get(p.decision, p.decision)} by {p.principal}" for p in prior
                ],
                roles=roles,
                blocked=None if roles else _approval_blocked(request, prior, principal, open_roles),
                fields={
                    "kind": request.kind,
                    "tenant": request.tenant_id,
                    "request_id": request.id,
                    "version": str(version),
                },
            )
        )
    return items, int(total)


# --- runbook gates and break-glass reviews ----------------------------------------------


@dataclass(frozen=True)
class _GateKind:
    runbook_hash: str
    step: str
    gate: Gate
    title: str
    step_title: str


def _as_holder(principal: Principal, roles: Sequence[str]) -> Principal:
    """The viewer as if they held ``roles``: would the SoD rules still stop them?"""
    known = {r.value for r in Role}
    return replace(principal, roles=frozenset(Role(r) for r in roles if r in known))


def _gate_blocked(kind: str, gate: Gate, step: str, started_by: str, principal: Principal) -> str:
    """Why the viewer may not decide a gate, in words, from the engine's refusal."""
    waiting = f"waiting for {_role_list(gate.roles)}"
    holds = any(r in principal.role_names() for r in gate.roles)
    refused = engine.gate_refusal(
        gate=gate,
        step_name=step,
        started_by=started_by,
        principal=principal if holds else _as_holder(principal, gate.roles),
    )
    if isinstance(refused, SegregationOfDuties):
        if kind == BREAK_GLASS:
            return (
                "You used this emergency access: a different person must review it "
                f"(segregation of duties); {waiting}."
            )
        return (
            "You started this run: a different person must decide its gate "
            f"(segregation of duties); {waiting}."
        )
    if refused is not None and holds:
        return _sentence(refused.detail)
    return f"Your roles cannot decide this; {waiting}."


def _gate_kinds(session: Session, scope: list[ColumnElement[bool]]) -> list[_GateKind]:
    """The distinct (runbook version, gate) pairs people may decide among the waiting gates."""
    pairs = session.execute(
        select(Run.runbook_hash, RunStep.name, func.min(Run.id))
        .join(Run, Run.id == RunStep.run_id)
        .where(*scope)
        .group_by(Run.runbook_hash, RunStep.name)
    ).all()
    kinds = []
    for runbook_hash, step_name, run_id in pairs:
        runbook = engine.cached_spec(session, run_id, runbook_hash)
        step = runbook.step(step_name)
        if step.gate is None or (step.gate.signal is not None and not step.gate.manual):
            continue  # a gate only the control plane opens is nobody's to decide here
        kinds.append(
            _GateKind(runbook_hash, step_name, step.gate, runbook.title, step.title or step_name)
        )
    return kinds


def _pair(kind: _GateKind) -> ColumnElement[bool]:
    return and_(Run.runbook_hash == kind.runbook_hash, RunStep.name == kind.step)


def _gates(
    session: Session, principal: Principal, own_tenant: str | None, now: datetime
) -> tuple[list[InboxItem], int]:
    scope: list[ColumnElement[bool]] = [
        RunStep.status == "waiting",
        RunStep.kind == "gate",
        Run.status == "waiting",
    ]
    if principal.tenant_scoped:
        scope.append(Run.tenant_id == own_tenant if own_tenant is not None else false())
    kinds = _gate_kinds(session, scope)
    if not kinds:
        return [], 0
    held = set(principal.role_names())
    mine = [k for k in kinds if held & set(k.gate.roles)]
    relevant: list[ColumnElement[bool]] = [Run.started_by == principal.subject]
    if _oversees(principal):
        relevant.append(true())
    if mine:
        relevant.append(or_(*[_pair(k) for k in mine]))
    where = [*scope, or_(*[_pair(k) for k in kinds]), or_(*relevant)]
    columns = (
        Run.id,
        Run.runbook_id,
        Run.runbook_hash,
        Run.started_by,
        Run.created_at,
        Run.inputs,
        Run.tenant_id,
        RunStep.name,
        RunStep.started_at,
        Tenant.name,
    )
    rows = session.execute(
        select(*columns)
        .select_from(RunStep)
        .join(Run, Run.id == RunStep.run_id)
        .outerjoin(Tenant, Tenant.id == Run.tenant_id)
        .where(*where)
        .order_by(RunStep.started_at, RunStep.id)
        .limit(LIMIT)
    ).all()
    total = session.execute(
        select(func.count()).select_from(RunStep).join(Run, Run.id == RunStep.run_id).where(*where)
    ).scalar_one()
    by_pair = {(k.runbook_hash, k.step): k for k in kinds}
    items = []
    for row in rows:
        (
            run_id,
            runbook_id,
            runbook_hash,
            started_by,
            created_at,
            inputs,
            _tenant_id,
            step,
            opened,
            tenant,
        ) = row
        info = by_pair[(runbook_hash, step)]
        kind = BREAK_GLASS if runbook_id == BREAK_GLASS_RUNBOOK else GATE
        refused = engine.gate_refusal(
            gate=info.gate, step_name=step, started_by=started_by, principal=principal
        )
        may = refused is None and _route_allows(principal, kind)
        since = as_utc(opened) if opened is not None else as_utc(created_at)
        items.append(
            InboxItem(
                kind=kind,
                key=f"g-{run_id}-{step}",
                what=_gate_what(kind, info, inputs),
                detail=prompt_text(info.gate.prompt, run_context(row))
                if info.gate.prompt
                else None,
                tenant_name=tenant,
                requested_by=started_by,
                requested_at=as_utc(created_at),
                waited_seconds=(now - since).total_seconds(),
                waiting_for=list(info.gate.roles),
                decided=[],
                roles=[r for r in info.gate.roles if r in held][:1] if may else [],
                blocked=None
                if may
                else _gate_blocked(kind, info.gate, step, started_by, principal),
                fields={"kind": kind, "run_id": run_id, "step": step},
            )
        )
    return items, int(total)


REQUEST_SHOWN = 400  # characters of a request's fields shown in its inbox item


def _gate_what(kind: str, info: _GateKind, inputs: dict[str, Any]) -> str:
    if kind == BREAK_GLASS:
        subject = inputs.get("subject", "")
        incident = inputs.get("incident_ref", "")
        reason = inputs.get("reason", "")
        return f"Review of emergency access {subject} ({incident}): {reason}"
    what = f"{info.title}: {info.step_title}"
    asked = inputs.get("request")
    if isinstance(asked, dict) and asked:
        # A self-service request: the approver sees what exactly is asked, and why.
        parts = [
            f"{str(k).replace('_', ' ')}: {v}"
            for k, v in asked.items()
            if isinstance(v, str | int | float) and v != ""
        ]
        detail = "; ".join(parts)
        what += f" — {detail[:REQUEST_SHOWN]}{'…' if len(detail) > REQUEST_SHOWN else ''}"
    return what


# --- the inbox --------------------------------------------------------------------------


def build_inbox(session: Session, *, principal: Principal) -> Inbox:
    """What waits for ``principal``: theirs to decide by kind, then what waits for others."""
    now = utcnow()
    own_tenant = tenants.own_tenant_id(session, principal) if principal.tenant_scoped else None
    tenant_items, tenant_total = _tenant_approvals(session, principal, own_tenant, now)
    gate_items, gate_total = _gates(session, principal, own_tenant, now)
    everything = tenant_items + gate_items
    mine: dict[str, list[InboxItem]] = {kind: [] for kind in KINDS}
    others: list[InboxItem] = []
    for item in everything:
        (mine[item.kind] if item.decidable else others).append(item)
    others.sort(key=lambda i: i.requested_at)
    return Inbox(mine=mine, others=others, shown=len(everything), total=tenant_total + gate_total)
