"""Claiming steps: leases, fencing tokens and attempts, set-based where the steps allow.

A worker takes due steps with ``claim`` (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL; the write transaction serialises claims on SQLite), runs them,
keeps their leases with ``renew``, and records them through the engine with the
claim's token. ``take`` leases steps a caller has already locked (the batch
path takes a run's next step in the transaction that completes the last one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from jinja2.exceptions import TemplateError
from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.kit.bulk import UpdateMany, insert_many
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.ids import new_id
from tenantops.runbooks import announcements, windows
from tenantops.runbooks.actions import ActionContext
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.spec import Runbook, Step, seconds
from tenantops.runbooks.templating import context_of, render, templated
from tenantops.runbooks.transitions import (
    ENGINE_ACTOR,
    FINISHED,
    advance,
    cached_spec,
    close_attempt,
    fail_run,
)

LEASE_GRACE = timedelta(seconds=30)
_STEPS = cast(Table, RunStep.__table__)
_ATTEMPTS = cast(Table, StepAttempt.__table__)


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
_TAKE = UpdateMany(
    _STEPS,
    keys=["id"],
    fields=["attempt", "inputs", "lease_token", "lease_expires_at", "started_at"],
    values={
        "status": "running",
        # A step activated and taken at once (batch.complete_many) wakes now.
        "wake_at": func.coalesce(_STEPS.c.wake_at, bindparam("now", type_=_STEPS.c.wake_at.type)),
        "lease_owner": bindparam("owner", type_=_STEPS.c.lease_owner.type),
    },
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
    _TAKE(
        session,
        [
            {
                "id": t.claim.step_id,
                "attempt": t.claim.attempt,
                "inputs": t.claim.params,
                "lease_token": t.claim.token,
                "lease_expires_at": t.expires,
                "started_at": t.started_at,
            }
            for t in taken
        ],
        {"now": now, "owner": worker},
    )
    insert_many(
        session,
        _ATTEMPTS,
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
        close_attempt(session, row, "lost", now, "the worker's lease expired")
    elif step.window is not None:  # held at every start (a retry too), never mid-step
        try:
            opens = windows.hold(session, step.window, now)
        except LookupError as exc:
            row.status, row.error, row.finished_at = "failed", str(exc), now
            fail_run(session, run, row, now)
            return None
        if opens > now:
            _put_off(session, run, row, step.window, opens)
            return None
    if step.wait is not None:
        row.status, row.finished_at = "succeeded", now
        row.output = {"waited": step.wait}
        advance(session, run, runbook, row, now)
        return None
    try:
        params = (
            render(step.params, context_of(session, run)) if templated(step.params) else step.params
        )
        json.dumps(params)  # stored as JSON: a value that is not fails here, not at commit
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        # A template is user input: whatever it does wrong fails this run only,
        # never the claim transaction (which would stall every worker on it).
        row.status, row.error, row.finished_at = "failed", f"params: {exc}", now
        fail_run(session, run, row, now)
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


def _put_off(session: Session, run: Run, row: RunStep, window: str, opens: datetime) -> None:
    """Hold ``row`` until its window ``opens``; said once per opening, audited and so under
    the audit head lock that orders the outbox."""
    if row.wake_at is None or as_utc(row.wake_at) != opens:
        until = opens.isoformat()
        audit.record(
            session,
            actor=ENGINE_ACTOR,
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
