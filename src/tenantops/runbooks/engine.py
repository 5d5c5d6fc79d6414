"""The durable runbook engine: runs and steps as rows, advanced in transactions.

Invariants:

- A step is completed by at most one worker: results are recorded with
  ``UPDATE … WHERE lease_token = :token AND status = 'running'``; a worker
  whose lease expired (and was reclaimed) or whose run was cancelled matches no
  row and its result is dropped (fencing).
- Claiming uses ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never
  wait on each other; on SQLite the write transaction (``BEGIN IMMEDIATE``)
  serialises claims.
- The run's next step is activated in the same transaction that completes the
  previous one; a crash between steps loses nothing.
- A gate's signal is a row: one that arrives before the gate opens is kept
  and consumed when the gate activates.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from jinja2 import StrictUndefined
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update
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
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id
from tenantops.runbooks import announcements, windows
from tenantops.runbooks.actions import ActionContext, GateChecks, StepResult
from tenantops.runbooks.models import Run, RunSignal, RunStep, StepAttempt
from tenantops.runbooks.spec import Gate, Loaded, Runbook, Step, seconds

LEASE_GRACE = timedelta(seconds=30)
_STEPS = cast(Table, RunStep.__table__)
_ATTEMPTS = cast(Table, StepAttempt.__table__)
FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class _Templates(SandboxedEnvironment):
    """Jinja where ``a.b`` on a mapping means the key ``b`` before any attribute.

    Plain Jinja prefers the attribute, so an output named ``items``, ``keys``
    or ``values`` would render as a bound ``dict`` method.
    """

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


_templates = _Templates(undefined=StrictUndefined, autoescape=False)
_WHOLE_EXPRESSION = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


_SPECS: dict[str, Runbook] = {}
_SPECS_KEPT = 256


def spec_of(run: Run) -> Runbook:
    """The pinned runbook a run executes (never the file as it is now).

    Parsed once per content hash: the hash pins the document, so every run of
    one runbook version shares one parsed copy (treat it as read-only).
    """
    spec = _SPECS.get(run.runbook_hash)
    if spec is None:
        spec = _keep_spec(run.runbook_hash, run.document)
    return spec


def cached_spec(session: Session, run_id: str, runbook_hash: str) -> Runbook:
    """``spec_of`` for a run known by id and hash: its document is read only on a cache miss."""
    spec = _SPECS.get(runbook_hash)
    if spec is None:
        document = session.execute(select(Run.document).where(Run.id == run_id)).scalar_one()
        spec = _keep_spec(runbook_hash, document)
    return spec


def _keep_spec(runbook_hash: str, document: dict[str, Any]) -> Runbook:
    spec = Runbook.model_validate(document)
    if len(_SPECS) >= _SPECS_KEPT:
        _SPECS.pop(next(iter(_SPECS)))
    _SPECS[runbook_hash] = spec
    return spec


def _check_inputs(runbook: Runbook, inputs: dict[str, Any]) -> None:
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
        "object": dict,
    }
    for name, declared in runbook.inputs.items():
        if name not in inputs:
            if declared.required:
                raise Unprocessable(f"runbook {runbook.id} needs input {name!r}")
            continue
        if not isinstance(inputs[name], types[declared.type]):
            raise Unprocessable(f"input {name!r} of runbook {runbook.id} must be {declared.type}")
    unknown = sorted(set(inputs) - set(runbook.inputs))
    if unknown:
        raise Unprocessable(f"runbook {runbook.id} has no input {', '.join(unknown)}")


def start_run(
    session: Session,
    *,
    loaded: Loaded,
    actor: Principal,
    tenant_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    audited: bool = True,
) -> Run:
    """Create a run pinned to ``loaded``'s version and hash, and activate its first step.

    ``audited=False`` when the caller's own audit entry of the same transaction
    already names the run (a tenant request that starts its onboarding).
    """
    runbook = loaded.runbook
    values = dict(inputs or {})
    _check_inputs(runbook, values)
    if runbook.tenant and tenant_id is None:
        raise Unprocessable(f"runbook {runbook.id} runs against a tenant; name one")
    now = utcnow()
    run = Run(
        id=new_id(),
        runbook_id=runbook.id,
        runbook_version=runbook.version,
        runbook_hash=loaded.hash,
        document=runbook.model_dump(mode="json", exclude_none=True),
        tenant_id=tenant_id,
        status="running",
        inputs=values,
        started_by=actor.subject,
        created_at=now,
        updated_at=now,
    )
    if runbook.sla is not None and runbook.sla.after == "start":
        run.sla_deadline = now + timedelta(seconds=seconds(runbook.sla.within))
    session.add(run)
    started = audit.NewEntry(
        actor=actor,
        action="run.started",
        tenant_id=tenant_id,
        changes={},
        detail={
            "run_id": run.id,
            "runbook": runbook.id,
            "version": runbook.version,
            "hash": loaded.hash,
        },
    )
    first = runbook.steps[0]
    if first.action is not None:
        # Nothing to read or decide: the steps go in with one INSERT, the first
        # already ready (what _activate does to an action step).
        session.flush()  # the run row before its steps (foreign key)
        rows = [_step_row(run.id, position, step) for position, step in enumerate(runbook.steps)]
        rows[0]["status"], rows[0]["wake_at"] = "ready", now
        if first.sla is not None and first.sla.after == "start":
            rows[0]["sla_deadline"] = now + timedelta(seconds=seconds(first.sla.within))
        session.execute(insert(_STEPS), rows)
        if audited:
            audit.record_many(session, [started])
        return run
    steps = [RunStep(**_step_row(run.id, p, step)) for p, step in enumerate(runbook.steps)]
    session.add_all(steps)
    session.flush()
    if audited:
        audit.record_many(session, [started])
    _activate(session, run, runbook, steps[0], now)  # a gate or timer opens after run.started
    return run


def _step_row(run_id: str, position: int, step: Step) -> dict[str, Any]:
    """The columns of a new, pending step row."""
    return {
        "id": new_id(),
        "run_id": run_id,
        "position": position,
        "name": step.name,
        "kind": step.kind,
        "status": "pending",
        "attempt": 0,
        "failures": 0,
        "max_attempts": step.retry.attempts,
        "wake_at": None,
        "idempotency_key": f"{run_id}/{step.name}",
        "sla_deadline": None,
        "maintenance_window": step.window,
    }


def templated(value: Any) -> bool:
    """Whether ``value`` holds a template anywhere (plain values need no context)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, dict):
        return any(templated(v) for v in value.values())
    if isinstance(value, list):
        return any(templated(v) for v in value)
    return False


def _context(session: Session, run: Run) -> dict[str, Any]:
    outputs = {
        name: output or {}
        for name, output in session.execute(
            select(RunStep.name, RunStep.output).where(
                RunStep.run_id == run.id, RunStep.status == "succeeded"
            )
        )
    }
    return {
        "run": {
            "id": run.id,
            "runbook": run.runbook_id,
            "tenant_id": run.tenant_id,
            "started_by": run.started_by,
        },
        "inputs": run.inputs,
        "steps": outputs,
    }


def render(value: Any, context: dict[str, Any]) -> Any:
    """Render templated strings in ``value`` (recursively) with ``context``."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        whole = _WHOLE_EXPRESSION.fullmatch(value)
        if whole is not None:  # "{{ x }}" alone keeps x's type (a list stays a list)
            return _templates.compile_expression(whole.group(1))(**context)
        return _templates.from_string(value).render(context)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value


def _deadline_for(sla_after: str, trigger: str, within: str, now: datetime) -> datetime | None:
    return now + timedelta(seconds=seconds(within)) if sla_after == trigger else None


def _activate(session: Session, run: Run, runbook: Runbook, row: RunStep, now: datetime) -> None:
    step = runbook.step(row.name)
    row.status, row.wake_at = "ready", now
    if step.action is None:  # a gate or timer starts when it opens; an action when claimed
        row.started_at = now
    if step.sla is not None and step.sla.after == "start":
        # An SLA keyed on an earlier step was set when that step finished.
        row.sla_deadline = _deadline_for(step.sla.after, "start", step.sla.within, now)
    if step.wait is not None:
        try:
            delay = seconds(str(render(step.wait, _context(session, run))))
        except (TemplateError, ValueError) as exc:
            row.status, row.error, row.finished_at = "failed", f"wait: {exc}", now
            _fail_run(session, run, row, now)
            return
        row.wake_at = now + timedelta(seconds=delay)
    if step.gate is not None:
        row.status, row.wake_at = "waiting", None
        run.status = "waiting"
        pending = (
            session.execute(
                select(RunSignal)
                .where(
                    RunSignal.run_id == run.id,
                    RunSignal.step_name == row.name,
                    RunSignal.consumed_at.is_(None),
                )
                .order_by(RunSignal.created_at)
            )
            .scalars()
            .first()
        )
        if pending is not None:
            _decide_gate(session, run, runbook, row, pending, now)
    run.updated_at = now


def _advance(session: Session, run: Run, runbook: Runbook, done: RunStep, now: datetime) -> None:
    """After ``done`` succeeded: start SLA clocks keyed on it and activate the next step."""
    if runbook.sla is not None and run.sla_deadline is None:
        run.sla_deadline = _deadline_for(runbook.sla.after, done.name, runbook.sla.within, now)
    clocked = [s for s in runbook.steps if s.sla is not None and s.sla.after == done.name]
    if clocked:  # steps whose SLA clock starts when ``done`` finished
        keyed = session.execute(
            select(RunStep).where(
                RunStep.run_id == run.id,
                RunStep.name.in_([s.name for s in clocked]),
                RunStep.sla_deadline.is_(None),
                RunStep.status.not_in(FINISHED),
            )
        ).scalars()
        for row in keyed:
            sla = runbook.step(row.name).sla
            assert sla is not None
            row.sla_deadline = now + timedelta(seconds=seconds(sla.within))
    following = (
        session.execute(
            select(RunStep)
            .where(
                RunStep.run_id == run.id,
                RunStep.position > done.position,
                RunStep.status == "pending",
            )
            .order_by(RunStep.position)
            .limit(1)
        )
        .scalars()
        .first()
    )
    run.status = "running"
    if following is not None:
        _activate(session, run, runbook, following, now)
    else:
        run.status, run.finished_at = "succeeded", now
        audit.record(
            session,
            actor=_system(run),
            action="run.succeeded",
            tenant_id=run.tenant_id,
            changes={},
            detail={"run_id": run.id},
        )
        _announce_run(session, run, "succeeded")
    run.updated_at = now


def _system(run: Run) -> Principal:
    return Principal(subject="system:engine", via="system")


@dataclass(frozen=True)
class Claim:
    """A step a worker now holds: run it, then ``complete`` or ``fail`` with ``token``."""

    step_id: str
    token: str
    run_id: str
    step_name: str
    action: str
    params: dict[str, Any]
    idempotency_key: str
    attempt: int
    timeout: float
    tenant_id: str | None
    actor: str
    inputs: dict[str, Any]
    hold_until: datetime | None = None

    def context(self) -> ActionContext:
        """What the claimed step's action is told."""
        return ActionContext(
            run_id=self.run_id,
            step_name=self.step_name,
            tenant_id=self.tenant_id,
            params=self.params,
            idempotency_key=self.idempotency_key,
            attempt=self.attempt,
            actor=self.actor,
            inputs=self.inputs,
        )


def claim(
    session: Session,
    *,
    worker: str,
    limit: int = 1,
    lease_grace: timedelta = LEASE_GRACE,
    lease: timedelta | None = None,
    runs: Sequence[str] | None = None,
) -> list[Claim]:
    """Take up to ``limit`` due steps: ready ones, and running ones whose lease expired.

    With ``runs``, only steps of those runs: a worker that just completed steps
    takes the next ones of the same runs in the completing transaction, so a run
    of quick steps goes on without a claim transaction or a poll between steps.

    A lease can never outlast the step's timeout plus ``lease_grace`` (its
    ``hold_until``). With ``lease`` it is shorter and the worker renews it
    while the action runs (``renew``), so the steps of a worker that died are
    taken over after ``lease``, not after the whole timeout. Claiming never waits
    on a lock (on PostgreSQL both the step and its run are taken with ``SKIP
    LOCKED``), so it cannot deadlock with a gate decision or a cancel that
    holds the run.

    Ready action steps with plain params are taken set-based (one ``UPDATE``
    and one ``INSERT`` for all); a timer, a templated step, a step with a
    maintenance window (held until it opens) or a lapsed lease goes through the
    step-by-step path.
    """
    if runs is not None and not runs:
        return []
    now = utcnow()
    if runs is None:
        rows = session.execute(_DUE, {"now": now, "limit": limit}).all()
    else:
        rows = session.execute(_DUE_OF, {"now": now, "limit": limit, "runs": list(runs)}).all()
    if not rows:
        return []
    # Locked by a decision or a cancel: skipped, taken next time.
    owners = {
        run.id: run
        for run in session.execute(_OWNERS, {"ids": sorted({row.run_id for row in rows})})
    }
    claims: list[Claim] = []
    taken: list[Taken] = []
    for row in rows:
        run = owners.get(row.run_id)
        if run is None or run.status in FINISHED:
            continue
        runbook = cached_spec(session, run.id, run.runbook_hash)
        step = runbook.step(row.name)
        plain = step.window is None and not templated(step.params)
        if row.status == "ready" and step.action is not None and plain:
            held = Taken.of(
                step_id=row.id,
                run_id=run.id,
                step=step,
                params=step.params,
                idempotency_key=row.idempotency_key,
                attempt=row.attempt + 1,
                tenant_id=run.tenant_id,
                actor=run.started_by,
                inputs=run.inputs,
                started_at=row.started_at,
                now=now,
                lease=lease,
                lease_grace=lease_grace,
            )
            taken.append(held)
            claims.append(held.claim)
            continue
        one = _claim_one(
            session,
            session.get_one(RunStep, row.id),
            session.get_one(Run, run.id),
            runbook,
            worker=worker,
            now=now,
            lease=lease,
            lease_grace=lease_grace,
        )
        if one is not None:
            claims.append(one)
    take(session, taken, worker=worker, now=now)
    return claims


# Built once (statement construction is a visible share of a claim's CPU).
_DUE = (
    select(
        RunStep.id,
        RunStep.run_id,
        RunStep.name,
        RunStep.status,
        RunStep.attempt,
        RunStep.idempotency_key,
        RunStep.started_at,
    )
    .where(
        or_(
            and_(RunStep.status == "ready", RunStep.wake_at <= bindparam("now")),
            and_(RunStep.status == "running", RunStep.lease_expires_at <= bindparam("now")),
        )
    )
    .order_by(RunStep.wake_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_DUE_OF = _DUE.where(RunStep.run_id.in_(bindparam("runs", expanding=True)))
_OWNERS = (
    select(Run.id, Run.status, Run.runbook_hash, Run.tenant_id, Run.started_by, Run.inputs)
    .where(Run.id.in_(bindparam("ids", expanding=True)))
    .with_for_update(skip_locked=True)
)
# Bound names start with b_: a bind may not share its column's name in SET.
_TAKE = (
    update(_STEPS)
    .where(_STEPS.c.id == bindparam("b_id"))
    .values(
        status="running",
        # A step activated and taken at once (batch.complete_many) wakes now.
        wake_at=func.coalesce(_STEPS.c.wake_at, bindparam("b_now", type_=_STEPS.c.wake_at.type)),
        attempt=bindparam("b_attempt", type_=_STEPS.c.attempt.type),
        inputs=bindparam("b_inputs", type_=_STEPS.c.inputs.type),
        lease_owner=bindparam("b_owner", type_=_STEPS.c.lease_owner.type),
        lease_token=bindparam("b_token", type_=_STEPS.c.lease_token.type),
        lease_expires_at=bindparam("b_expires", type_=_STEPS.c.lease_expires_at.type),
        started_at=bindparam("b_started", type_=_STEPS.c.started_at.type),
    )
)


@dataclass(frozen=True)
class Taken:
    """A step about to be leased set-based: its claim and the step row's new lease columns."""

    claim: Claim
    expires: datetime
    started_at: datetime

    @classmethod
    def of(
        cls,
        *,
        step_id: str,
        run_id: str,
        step: Step,
        params: dict[str, Any],
        idempotency_key: str,
        attempt: int,
        tenant_id: str | None,
        actor: str,
        inputs: dict[str, Any],
        started_at: datetime | None,
        now: datetime,
        lease: timedelta | None,
        lease_grace: timedelta,
    ) -> Taken:
        timeout = seconds(step.timeout)
        hold_until = now + timedelta(seconds=timeout) + lease_grace
        return cls(
            claim=Claim(
                step_id=step_id,
                token=new_id(),
                run_id=run_id,
                step_name=step.name,
                action=step.action or "",
                params=params,
                idempotency_key=idempotency_key,
                attempt=attempt,
                timeout=timeout,
                tenant_id=tenant_id,
                actor=actor,
                inputs=inputs,
                hold_until=hold_until,
            ),
            expires=min(hold_until, now + lease) if lease else hold_until,
            started_at=started_at or now,
        )


def take(session: Session, taken: Sequence[Taken], *, worker: str, now: datetime) -> None:
    """Lease ``taken`` steps (rows the caller has locked) to ``worker``: one ``UPDATE``, one
    ``INSERT`` of their attempts, whatever their number."""
    if not taken:
        return
    session.execute(
        _TAKE,
        [
            {
                "b_id": t.claim.step_id,
                "b_attempt": t.claim.attempt,
                "b_inputs": t.claim.params,
                "b_owner": worker,
                "b_now": now,
                "b_token": t.claim.token,
                "b_expires": t.expires,
                "b_started": t.started_at,
            }
            for t in taken
        ],
    )
    session.execute(
        insert(_ATTEMPTS),
        [
            {
                "id": new_id(),
                "step_id": t.claim.step_id,
                "attempt": t.claim.attempt,
                "worker": worker,
                "status": "running",
                "started_at": now,
                "finished_at": None,
                "error": None,
            }
            for t in taken
        ],
    )


def _claim_one(
    session: Session,
    row: RunStep,
    run: Run,
    runbook: Runbook,
    *,
    worker: str,
    now: datetime,
    lease: timedelta | None,
    lease_grace: timedelta,
) -> Claim | None:
    """Claim one step the step-by-step way: a timer ends, params are rendered, a lapsed
    lease is closed ``lost``, a step outside its maintenance window is put off until it
    opens. ``None`` if the step needed no worker, was put off or failed its run."""
    step = runbook.step(row.name)
    if row.status == "running":
        _close_attempt(session, row, "lost", now, "the worker's lease expired")
    elif step.window is not None:  # held at every start (a retry too), never mid-step
        try:
            opens = windows.hold(session, step.window, now)
        except LookupError as exc:
            row.status, row.error, row.finished_at = "failed", str(exc), now
            _fail_run(session, run, row, now)
            return None
        if opens > now:
            _put_off(session, run, row, step.window, opens)
            return None
    if step.wait is not None:
        row.status, row.finished_at = "succeeded", now
        row.output = {"waited": step.wait}
        _advance(session, run, runbook, row, now)
        return None
    try:
        params = (
            render(step.params, _context(session, run)) if templated(step.params) else step.params
        )
        json.dumps(params)  # stored as JSON: a value that is not fails here, not at commit
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        # A template is user input: whatever it does wrong fails this run only,
        # never the claim transaction (which would stall every worker on it).
        row.status, row.error, row.finished_at = "failed", f"params: {exc}", now
        _fail_run(session, run, row, now)
        return None
    row.attempt += 1
    row.status, row.inputs = "running", params
    row.lease_owner, row.lease_token = worker, new_id()
    timeout = seconds(step.timeout)
    hold_until = now + timedelta(seconds=timeout) + lease_grace
    row.lease_expires_at = min(hold_until, now + lease) if lease else hold_until
    row.started_at = row.started_at or now
    session.add(
        StepAttempt(
            id=new_id(),
            step_id=row.id,
            attempt=row.attempt,
            worker=worker,
            status="running",
            started_at=now,
        )
    )
    return Claim(
        step_id=row.id,
        token=row.lease_token,
        run_id=run.id,
        step_name=row.name,
        action=step.action or "",
        params=params,
        idempotency_key=row.idempotency_key,
        attempt=row.attempt,
        timeout=timeout,
        tenant_id=run.tenant_id,
        actor=run.started_by,
        inputs=run.inputs,
        hold_until=hold_until,
    )


def renew(session: Session, *, claims: Sequence[Claim], lease: timedelta) -> int:
    """Extend the leases a worker still holds by ``lease`` (never past ``hold_until``).

    A claim whose lease was lost (taken over, cancelled) matches no row and is
    not renewed. Returns how many were.
    """
    now = utcnow()
    renewed = 0
    for held in claims:
        expires = now + lease if held.hold_until is None else min(held.hold_until, now + lease)
        result = session.execute(
            update(RunStep)
            .where(
                RunStep.id == held.step_id,
                RunStep.lease_token == held.token,
                RunStep.status == "running",
            )
            .values(lease_expires_at=expires)
        )
        renewed += int(getattr(result, "rowcount", 0) or 0)
    return renewed


def _close_attempt(
    session: Session, row: RunStep, status: str, now: datetime, error: str | None = None
) -> None:
    session.execute(
        update(StepAttempt)
        .where(
            StepAttempt.step_id == row.id,
            StepAttempt.attempt == row.attempt,
            StepAttempt.status == "running",
        )
        .values(status=status, finished_at=now, error=error)
    )


def _fenced(session: Session, step_id: str, token: str) -> RunStep | None:
    """The step if ``token`` still holds its lease, locked; ``None`` if it was lost."""
    return (
        session.execute(
            select(RunStep)
            .where(RunStep.id == step_id, RunStep.lease_token == token, RunStep.status == "running")
            .with_for_update()
        )
        .scalars()
        .first()
    )


def complete(
    session: Session,
    *,
    claim: Claim,
    result: StepResult,
    apply: Callable[[Session], None] | None = None,
) -> RunStep | None:
    """Record success; ``None`` if the lease was lost (the result is then dropped).

    ``apply`` runs in the same transaction, after the fencing check, so what a
    step means to the control plane is recorded exactly once.
    """
    # The run first, then the step: the order signal() and cancel() lock in.
    run = session.get(Run, claim.run_id, with_for_update=True)
    row = _fenced(session, claim.step_id, claim.token)
    if run is None or row is None:
        return None
    if apply is not None:
        apply(session)
    now = utcnow()
    row.status, row.output, row.evidence = "succeeded", result.output, result.evidence
    row.finished_at, row.error = now, None
    row.lease_token = row.lease_owner = None
    row.lease_expires_at = None
    _close_attempt(session, row, "succeeded", now)
    audit.record(
        session,
        actor=_system(run),
        action="run.step.succeeded",
        tenant_id=run.tenant_id,
        changes={},
        detail={
            "run_id": run.id,
            "step": row.name,
            "attempt": row.attempt,
            "evidence": result.evidence,
        },
    )
    _announce_step(session, run, row)
    _advance(session, run, spec_of(run), row, now)
    return row


def fail(session: Session, *, claim: Claim, error: str, retriable: bool = True) -> RunStep | None:
    """Record a failed try: retry after backoff, or fail the run. ``None`` if fenced."""
    run = session.get(Run, claim.run_id, with_for_update=True)
    row = _fenced(session, claim.step_id, claim.token)
    if run is None or row is None:
        return None
    now = utcnow()
    step = spec_of(run).step(row.name)
    row.failures += 1
    row.error = error
    row.lease_token = row.lease_owner = None
    row.lease_expires_at = None
    _close_attempt(session, row, "failed", now, error)
    if retriable and row.failures < row.max_attempts:
        row.status, row.wake_at = "ready", now + step.retry.delay(row.failures)
        run.updated_at = now
        return row
    row.status, row.finished_at = "failed", now
    _fail_run(session, run, row, now)
    return row


def _put_off(session: Session, run: Run, row: RunStep, window: str, opens: datetime) -> None:
    """Hold ``row`` until its window ``opens``; said once per opening, audited and so under
    the audit head lock that orders the outbox."""
    if row.wake_at is None or as_utc(row.wake_at) != opens:
        until = opens.isoformat()
        audit.record(
            session,
            actor=_system(run),
            action="run.step.held",
            tenant_id=run.tenant_id,
            changes={},
            detail={"run_id": run.id, "step": row.name, "window": window, "until": until},
        )
        announcements.emit(
            session,
            announcements.step_held(
                run_id=run.id,
                runbook=run.runbook_id,
                tenant_id=run.tenant_id,
                inputs=run.inputs,
                step=row.name,
                window=window,
                until=until,
            ),
        )
    row.wake_at = opens


def _fail_run(session: Session, run: Run, row: RunStep, now: datetime) -> None:
    run.status, run.finished_at, run.updated_at = "failed", now, now
    run.error = f"step {row.name} failed: {row.error}"
    audit.record(
        session,
        actor=_system(run),
        action="run.failed",
        tenant_id=run.tenant_id,
        changes={},
        detail={"run_id": run.id, "step": row.name, "error": row.error, "attempts": row.attempt},
    )
    _announce_step(session, run, row, error=row.error or "failed")
    _announce_run(session, run, "failed")


def _announce_step(session: Session, run: Run, row: RunStep, error: str | None = None) -> None:
    announcements.emit(
        session,
        announcements.step_finished(
            run_id=run.id,
            runbook=run.runbook_id,
            tenant_id=run.tenant_id,
            inputs=run.inputs,
            step=row.name,
            attempt=row.attempt,
            evidence=row.evidence,
            error=error,
        ),
    )


def _announce_run(session: Session, run: Run, status: str, actor: str | None = None) -> None:
    announcements.emit(
        session,
        announcements.run_finished(
            run_id=run.id,
            runbook=run.runbook_id,
            version=run.runbook_version,
            tenant_id=run.tenant_id,
            inputs=run.inputs,
            status=status,
            actor=actor or announcements.ENGINE,
            error=run.error,
        ),
    )


def get_run(session: Session, run_id: str, *, for_update: bool = False) -> Run:
    run = session.get(Run, run_id, with_for_update=for_update)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run


def open_runs(
    session: Session, *, tenant_id: str, runbook_id: str | None = None, lock: bool = True
) -> list[Run]:
    """The tenant's unfinished runs (of one runbook, if given), oldest first; locked
    unless ``lock`` is false (a page that only shows them)."""
    query = (
        select(Run)
        .where(Run.tenant_id == tenant_id, Run.finished_at.is_(None))
        .order_by(Run.created_at)
    )
    if lock:
        query = query.with_for_update()
    if runbook_id is not None:
        query = query.where(Run.runbook_id == runbook_id)
    return list(session.execute(query).scalars())


def runs_of(session: Session, *, tenant_id: str | None) -> list[Run]:
    """Every run of a tenant (``None``: the runs bound to no tenant), oldest first."""
    query = select(Run).where(Run.tenant_id == tenant_id).order_by(Run.created_at, Run.id)
    return list(session.execute(query).scalars())


def steps_of(session: Session, run_id: str) -> list[RunStep]:
    return list(
        session.execute(
            select(RunStep).where(RunStep.run_id == run_id).order_by(RunStep.position)
        ).scalars()
    )


def end_wait(session: Session, *, run_id: str, step_name: str, now: datetime) -> bool:
    """End the timer of step ``step_name`` now, if it is the step the run is waiting on.

    For a wait whose reason went away early (a break-glass grant revoked before
    its expiry): the next claim finds the timer over and the run goes on. ``False``
    when the step is no timer or is not the one waiting (done, or not reached).
    """
    run = get_run(session, run_id, for_update=True)
    step = next((s for s in spec_of(run).steps if s.name == step_name), None)
    if step is None or step.wait is None:
        return False
    row = session.execute(
        select(RunStep).where(RunStep.run_id == run_id, RunStep.name == step_name)
    ).scalar_one()
    if row.status != "ready" or row.wake_at is None or as_utc(row.wake_at) <= now:
        return False
    row.wake_at = now
    run.updated_at = now
    return True


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
        _decide_gate(session, run, runbook, row, sig, now)
    return sig


def _decide_gate(
    session: Session, run: Run, runbook: Runbook, row: RunStep, sig: RunSignal, now: datetime
) -> None:
    sig.consumed_at = now
    row.decided_by, row.finished_at = sig.principal, now
    row.evidence = {
        "decision": sig.decision,
        "by": sig.principal,
        "role": sig.role,
        "comment": sig.comment,
        "signalled_at": as_utc(sig.created_at).isoformat(),
    }
    if sig.decision == "approve":
        row.status = "succeeded"
        _advance(session, run, runbook, row, now)
    else:
        row.status, row.error = "failed", f"rejected by {sig.principal}"
        _fail_run(session, run, row, now)


def cancel(
    session: Session, *, run_id: str, principal: Principal, reason: str, audited: bool = True
) -> Run:
    """Stop a run: open steps are cancelled; a worker still busy is fenced off."""
    run = get_run(session, run_id, for_update=True)
    if run.status in FINISHED:
        raise Conflict(f"run {run.id} is already {run.status}")
    now = utcnow()
    for row in steps_of(session, run.id):
        if row.status not in FINISHED:
            if row.status == "running":
                _close_attempt(session, row, "cancelled", now)
            row.status, row.finished_at = "cancelled", now
            row.lease_token = row.lease_owner = None
    run.status, run.finished_at, run.updated_at, run.error = "cancelled", now, now, reason
    # Announced even when the caller's own audit entry names the run.
    _announce_run(session, run, "cancelled", principal.subject)
    if not audited:
        return run
    audit.record(
        session,
        actor=principal,
        action="run.cancelled",
        tenant_id=run.tenant_id,
        changes={},
        detail={"run_id": run.id, "reason": reason},
    )
    return run


def retry(session: Session, *, run_id: str, principal: Principal) -> Run:
    """Resume a failed run from its failed step, with a fresh set of attempts."""
    run = get_run(session, run_id, for_update=True)
    if run.status != "failed":
        raise Conflict(f"only a failed run can be retried; run {run.id} is {run.status}")
    now = utcnow()
    failed = next((r for r in steps_of(session, run.id) if r.status == "failed"), None)
    if failed is None:
        raise Conflict(f"run {run.id} has no failed step to retry from")
    failed.failures, failed.finished_at, failed.error = 0, None, None
    run.status, run.finished_at, run.error = "running", None, None
    _activate(session, run, spec_of(run), failed, now)
    audit.record(
        session,
        actor=principal,
        action="run.retried",
        tenant_id=run.tenant_id,
        changes={},
        detail={"run_id": run.id, "from_step": failed.name},
    )
    return run


@dataclass(frozen=True)
class Breach:
    run_id: str
    tenant_id: str | None
    step: str | None
    deadline: datetime


def check_deadlines(session: Session) -> list[Breach]:
    """Record every SLA deadline passed by an unfinished run or step, once."""
    now = utcnow()
    breaches: list[Breach] = []
    runs = (
        session.execute(
            select(Run)
            .where(
                Run.sla_deadline <= now, Run.sla_breached_at.is_(None), Run.finished_at.is_(None)
            )
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    for run in runs:
        run.sla_breached_at = now
        breaches.append(Breach(run.id, run.tenant_id, None, as_utc(run.sla_deadline or now)))
    rows = (
        session.execute(
            select(RunStep)
            .join(Run, Run.id == RunStep.run_id)
            .where(
                RunStep.sla_deadline <= now,
                RunStep.sla_breached_at.is_(None),
                RunStep.finished_at.is_(None),
                Run.finished_at.is_(None),
            )
            .with_for_update(skip_locked=True, of=RunStep)
        )
        .scalars()
        .all()
    )
    for row in rows:
        row.sla_breached_at = now
        owner = session.get(Run, row.run_id)
        breaches.append(
            Breach(
                row.run_id,
                owner.tenant_id if owner else None,
                row.name,
                as_utc(row.sla_deadline or now),
            )
        )
    for b in breaches:
        audit.record(
            session,
            actor=Principal(subject="system:engine", via="system"),
            action="run.sla_breached",
            tenant_id=b.tenant_id,
            changes={},
            detail={"run_id": b.run_id, "step": b.step, "deadline": b.deadline.isoformat()},
        )
        breached = session.get(Run, b.run_id)
        assert breached is not None
        announcements.emit(
            session,
            announcements.sla_breached(
                run_id=b.run_id,
                runbook=breached.runbook_id,
                tenant_id=b.tenant_id,
                inputs=breached.inputs,
                step=b.step,
                deadline=b.deadline.isoformat(),
            ),
        )
    return breaches
