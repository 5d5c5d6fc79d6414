"""Approval gates: who may decide one, and a decision kept until its gate opens.

The rules of a gate live in ``gate_refusal`` (the approvals inbox shows them in
words); ``signal`` records a decision as a row, applies it when the gate is
already open and otherwise leaves it for ``transitions.activate`` to consume.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import (
    AppError,
    Conflict,
    Forbidden,
    NotFound,
    SegregationOfDuties,
    Unprocessable,
)
from tenantops.kit.clock import utcnow
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import GateChecks
from tenantops.runbooks.models import RunSignal
from tenantops.runbooks.spec import Gate
from tenantops.runbooks.transitions import FINISHED, decide_gate, get_run, spec_of, steps_of


def gate_refusal(
    *, gate: Gate, step_name: str, started_by: str, principal: Principal
) -> AppError | None:
    """Why ``principal`` may not decide the gate ``step_name``, or ``None``; changes nothing.

    The gate rules in one place: ``signal`` raises what this returns, and the
    approvals inbox shows it in words. The system (a control-plane signal) is
    never refused; a person needs one of the gate's roles, may not decide a gate
    that only a signal opens, and may not decide a gate of a run they started
    (``SegregationOfDuties`` with ``rule="requester-not-approver"``).
    """
    if principal.via == "system":
        return None
    if gate.signal is not None and not gate.manual:
        return Conflict(
            f"gate {step_name!r} opens on the {gate.signal} signal; "
            f"{gate.prompt or 'it cannot be decided here'}"
        )
    if not any(r in principal.role_names() for r in gate.roles):
        return Forbidden(f"deciding {step_name!r} needs one of: {', '.join(gate.roles)}")
    if principal.subject == started_by:
        return SegregationOfDuties(
            f"you started this run, so you cannot decide its {step_name!r} gate",
            rule="requester-not-approver",
        )
    return None


def signal(
    session: Session,
    *,
    run_id: str,
    step_name: str,
    decision: str,
    principal: Principal,
    role: str | None = None,
    comment: str | None = None,
    audited: bool = True,
    checks: GateChecks | None = None,
) -> RunSignal:
    """A decision on a gate. Kept if the gate is not open yet; applied if it is.

    A gate with a ``signal`` name is opened by the control plane (e.g. the
    tenant approvals, which apply their own SoD rules), never by a person here.
    A person's approval of a gate naming a ``check`` must pass that check from
    ``checks``; one that is not there refuses the approval (fail closed).
    """
    run = get_run(session, run_id, for_update=True)
    if run.status in FINISHED:
        raise Conflict(f"run {run.id} is {run.status}")
    runbook = spec_of(run)
    if step_name not in {s.name for s in runbook.steps}:
        raise NotFound(f"runbook {runbook.id} has no step {step_name!r}")
    gate = runbook.step(step_name).gate
    if gate is None:
        raise Unprocessable(f"step {step_name!r} is not an approval gate")
    if decision not in ("approve", "reject"):
        raise Unprocessable("decision must be approve or reject")
    refused = gate_refusal(
        gate=gate, step_name=step_name, started_by=run.started_by, principal=principal
    )
    if refused is not None:
        raise refused
    if principal.via != "system":
        role = role or next(r for r in gate.roles if r in principal.role_names())
    row = next(r for r in steps_of(session, run.id) if r.name == step_name)
    if row.status in FINISHED:  # checked before anything is written: a refusal leaves no row
        raise Conflict(f"gate {step_name!r} was already decided")
    if gate.check is not None and decision == "approve" and principal.via != "system":
        check = (checks or {}).get(gate.check)
        if check is None:  # never accepted unchecked
            raise Unprocessable(
                f"gate {step_name!r} needs the check {gate.check!r}, which is not installed"
                " here; nothing was decided"
            )
        check(
            session,
            run=run,
            step_name=step_name,
            decision=decision,
            comment=comment,
            principal=principal,
        )
    now = utcnow()
    sig = RunSignal(
        id=new_id(),
        run_id=run.id,
        step_name=step_name,
        decision=decision,
        principal=principal.subject,
        role=role,
        comment=comment,
        created_at=now,
    )
    session.add(sig)
    session.flush()
    if audited:
        # Recorded before it is applied, so the trail reads decision -> what followed.
        audit.record(
            session,
            actor=principal,
            action="run.gate.signal",
            tenant_id=run.tenant_id,
            changes={},
            detail={
                "run_id": run.id,
                "step": step_name,
                "decision": decision,
                "comment": comment,
                "applied": row.status == "waiting",
                # The approver's tenant binding: a check after the fact reads it here.
                "approver_tenant": principal.tenant,
            },
        )
    if row.status == "waiting":
        decide_gate(session, run, runbook, row, sig, now)
    return sig
