"""Record a batch of finished steps in a constant number of statements.

A worker that ran k steps records them in one transaction. Recording each with
``engine.complete`` costs about a dozen statements per step; most steps are
plain (an action with no ``apply``, whose end starts no SLA clock, followed by
another plain action or by the end of the run), and for those ``complete_many``
does the same writes set-based: the runs locked with one ``SELECT … FOR
UPDATE`` in id order, the steps fenced with one ``SELECT``, the step, attempt
and run rows written with one executemany ``UPDATE`` each, the audit entries
appended with one head lock (``audit.record_many``), and the runs' next steps
activated — and claimed for the worker, when it chains — in bulk.

Every other step (an ``apply`` hook, a gate, a timer or an SLA clock next, a
templated next step, two steps of one run in the batch) goes through
``engine.complete`` / ``engine.claim`` in the same transaction, so its
semantics are those of the per-step path by construction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.events import outbox
from tenantops.kit.bulk import UpdateMany
from tenantops.kit.clock import utcnow
from tenantops.runbooks import announcements, engine
from tenantops.runbooks.actions import StepResult
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.spec import Runbook, Step
from tenantops.runbooks.transitions import ENGINE_ACTOR

_STEPS = cast(Table, RunStep.__table__)
_ATTEMPTS = cast(Table, StepAttempt.__table__)
_RUNS = cast(Table, Run.__table__)

_NOW = bindparam("now", type_=_STEPS.c.finished_at.type)
_SUCCEED = UpdateMany(
    _STEPS,
    keys=["id"],
    fields=["output", "evidence"],
    values={
        "status": "succeeded",
        "finished_at": _NOW,
        "error": None,
        "lease_token": None,
        "lease_owner": None,
        "lease_expires_at": None,
    },
)
_CLOSE_ATTEMPT = UpdateMany(
    _ATTEMPTS,
    keys=["step_id", "attempt"],
    fields=[],
    values={"status": "succeeded", "finished_at": _NOW, "error": None},
    where=[_ATTEMPTS.c.status == "running"],
)
_MAKE_READY = UpdateMany(
    _STEPS,
    keys=["id"],
    fields=[],
    values={"status": "ready", "wake_at": _NOW},
    where=[_STEPS.c.status == "pending"],
)
# Built once: statement construction is a visible share of a batch's CPU.
_LOCK_RUNS = (
    select(Run.id, Run.runbook_hash)
    .where(Run.id.in_(bindparam("ids", expanding=True)))
    .order_by(Run.id)
    .with_for_update()
)
_FENCE_AND_NEXT = (
    select(
        RunStep.id,
        RunStep.run_id,
        RunStep.position,
        RunStep.name,
        RunStep.status,
        RunStep.attempt,
        RunStep.lease_token,
        RunStep.idempotency_key,
        RunStep.started_at,
    )
    .where(
        RunStep.run_id.in_(bindparam("runs", expanding=True)),
        or_(RunStep.id.in_(bindparam("steps", expanding=True)), RunStep.status == "pending"),
    )
    .with_for_update()
)
_RUN_MOVED = UpdateMany(
    _RUNS, keys=["id"], fields=["status", "finished_at"], values={"updated_at": _NOW}
)


@dataclass(frozen=True)
class Finished:
    """A step whose action returned: its claim, its result and its ``apply`` hook."""

    claim: engine.Claim
    result: StepResult
    apply: Callable[[Session], None] | None = None


@dataclass(frozen=True)
class Holder:
    """Who takes the next steps of the batch's runs, and for how long (see ``engine.claim``)."""

    worker: str
    lease: timedelta | None = None
    lease_grace: timedelta = engine.LEASE_GRACE


@dataclass
class Recorded:
    """What ``complete_many`` did: recorded and fenced claims, and the next steps taken."""

    completed: list[engine.Claim] = field(default_factory=list)
    fenced: list[engine.Claim] = field(default_factory=list)
    chained: list[engine.Claim] = field(default_factory=list)


@dataclass(frozen=True)
class _Shape:
    """What the batch path must know of one step of one pinned runbook."""

    ends_plainly: bool  # its end starts no SLA clock
    starts_plainly: bool  # an action with no window whose start starts no clock, gate or timer
    templated: bool  # its params need the run's context


_SHAPES: dict[tuple[str, str], _Shape] = {}
_SHAPES_KEPT = 4096


def _shape(runbook_hash: str, runbook: Runbook, step: Step) -> _Shape:
    key = (runbook_hash, step.name)
    shape = _SHAPES.get(key)
    if shape is None:
        name = step.name
        shape = _Shape(
            ends_plainly=not (runbook.sla is not None and runbook.sla.after == name)
            and not any(s.sla is not None and s.sla.after == name for s in runbook.steps),
            starts_plainly=step.action is not None
            and step.window is None
            and (step.sla is None or step.sla.after != "start"),
            templated=engine.templated(step.params),
        )
        if len(_SHAPES) >= _SHAPES_KEPT:
            _SHAPES.pop(next(iter(_SHAPES)))
        _SHAPES[key] = shape
    return shape


@dataclass
class _Plain:
    """A finished step on the batch path, with what its run does next."""

    done: Finished
    run_id: str
    runbook: Runbook
    runbook_hash: str
    attempt: int = 0
    following: Any = None  # the run's next pending step row, if any


def complete_many(
    session: Session, finished: Sequence[Finished], *, holder: Holder | None = None
) -> Recorded:
    """Record ``finished`` and activate their runs' next steps, in the caller's transaction.

    With ``holder``, each next step that is an action is also claimed for
    ``holder.worker`` (returned in ``chained``), as ``engine.claim(runs=…)``
    would. A claim whose lease was lost is fenced: nothing of it is recorded.
    Raises whatever an ``apply`` hook raises (the caller rolls back).
    """
    recorded = Recorded()
    if not finished:
        return recorded
    now = utcnow()
    per_run: dict[str, int] = defaultdict(int)
    for f in finished:
        per_run[f.claim.run_id] += 1
    # Every run of the batch, locked in id order before any step or the audit
    # head: the order signal() and cancel() lock in, and no two workers'
    # batches can wait on each other's runs in a cycle.
    runs = {row.id: row for row in session.execute(_LOCK_RUNS, {"ids": sorted(per_run)})}
    plain: list[_Plain] = []
    slow: list[Finished] = []
    for f in finished:
        run = runs.get(f.claim.run_id)
        if run is None or f.apply is not None or per_run[f.claim.run_id] > 1:
            slow.append(f)
            continue
        spec = engine.cached_spec(session, run.id, run.runbook_hash)
        if not _shape(run.runbook_hash, spec, spec.step(f.claim.step_name)).ends_plainly:
            slow.append(f)
            continue
        plain.append(_Plain(f, run.id, spec, run.runbook_hash))

    chain_runs: list[str] = []
    if plain:
        chain_runs += _complete_plain(session, plain, slow, recorded, holder, now)
    for f in slow:
        row = engine.complete(session, claim=f.claim, result=f.result, apply=f.apply)
        if row is None:
            recorded.fenced.append(f.claim)
        else:
            recorded.completed.append(f.claim)
            chain_runs.append(f.claim.run_id)
    if holder is not None and chain_runs:
        recorded.chained += engine.claim(
            session,
            worker=holder.worker,
            limit=len(chain_runs),
            lease_grace=holder.lease_grace,
            lease=holder.lease,
            runs=chain_runs,
        )
    return recorded


def _complete_plain(
    session: Session,
    plain: list[_Plain],
    slow: list[Finished],
    recorded: Recorded,
    holder: Holder | None,
    now: datetime,
) -> list[str]:
    """The set-based half of ``complete_many``; returns runs left for ``engine.claim``."""
    # One read fences the finished steps and finds the runs' pending steps.
    rows = session.execute(
        _FENCE_AND_NEXT,
        {"runs": [p.run_id for p in plain], "steps": [p.done.claim.step_id for p in plain]},
    ).all()
    by_id = {row.id: row for row in rows}
    pending: dict[str, list[Any]] = defaultdict(list)
    for found in rows:
        if found.status == "pending":
            pending[found.run_id].append(found)

    live: list[_Plain] = []
    for p in plain:
        claim = p.done.claim
        row = by_id.get(claim.step_id)
        if row is None or row.status != "running" or row.lease_token != claim.token:
            recorded.fenced.append(claim)
            continue
        later = [r for r in pending[p.run_id] if r.position > row.position]
        p.attempt = row.attempt
        p.following = min(later, key=lambda r: r.position) if later else None
        if p.following is not None:
            step = p.runbook.step(p.following.name)
            if not _shape(p.runbook_hash, p.runbook, step).starts_plainly:
                slow.append(p.done)  # a gate, timer or clock opens next: the ORM path
                continue
        live.append(p)
    if not live:
        return []

    _SUCCEED(
        session,
        [
            {
                "id": p.done.claim.step_id,
                "output": p.done.result.output,
                "evidence": p.done.result.evidence,
            }
            for p in live
        ],
        {"now": now},
    )
    _CLOSE_ATTEMPT(
        session,
        [{"step_id": p.done.claim.step_id, "attempt": p.attempt} for p in live],
        {"now": now},
    )
    left = _start_next(session, [p for p in live if p.following is not None], recorded, holder, now)
    _RUN_MOVED(
        session,
        [
            {
                "id": p.run_id,
                "status": "running" if p.following is not None else "succeeded",
                "finished_at": None if p.following is not None else now,
            }
            for p in live
        ],
        {"now": now},
    )
    entries: list[audit.NewEntry] = []
    announced: list[outbox.Event] = []
    for p in live:
        claim = p.done.claim
        announced.append(
            announcements.step_finished(
                run_id=claim.run_id,
                runbook=p.runbook.id,
                tenant_id=claim.tenant_id,
                inputs=claim.inputs,
                step=claim.step_name,
                attempt=p.attempt,
                evidence=p.done.result.evidence,
            )
        )
        if p.following is None:
            announced.append(
                announcements.run_finished(
                    run_id=claim.run_id,
                    runbook=p.runbook.id,
                    version=p.runbook.version,
                    tenant_id=claim.tenant_id,
                    inputs=claim.inputs,
                    status="succeeded",
                )
            )
        entries.append(
            audit.NewEntry(
                actor=ENGINE_ACTOR,
                action="run.step.succeeded",
                tenant_id=claim.tenant_id,
                changes={},
                detail={
                    "run_id": claim.run_id,
                    "step": claim.step_name,
                    "attempt": p.attempt,
                    "evidence": p.done.result.evidence,
                },
            )
        )
        if p.following is None:
            entries.append(
                audit.NewEntry(
                    actor=ENGINE_ACTOR,
                    action="run.succeeded",
                    tenant_id=claim.tenant_id,
                    changes={},
                    detail={"run_id": claim.run_id},
                )
            )
    audit.record_many(session, entries)
    outbox.emit_many(session, announced)
    recorded.completed += [p.done.claim for p in live]
    return left


def _start_next(
    session: Session,
    moving: list[_Plain],
    recorded: Recorded,
    holder: Holder | None,
    now: datetime,
) -> list[str]:
    """Activate each run's next step; claim it for ``holder`` when its params are plain.

    Returns the runs whose next step is ready but templated: ``engine.claim``
    renders those (and fails the run if the template is wrong).
    """
    ready: list[_Plain] = []
    taken: list[engine.Taken] = []
    for p in moving:
        row = p.following
        step = p.runbook.step(row.name)
        if holder is None or _shape(p.runbook_hash, p.runbook, step).templated:
            ready.append(p)
            continue
        done = p.done.claim
        taken.append(
            engine.Taken.of(
                step_id=row.id,
                run_id=p.run_id,
                step=step,
                params=step.params,
                idempotency_key=row.idempotency_key,
                attempt=row.attempt + 1,
                tenant_id=done.tenant_id,
                actor=done.actor,
                inputs=done.inputs,
                started_at=row.started_at,
                now=now,
                lease=holder.lease,
                lease_grace=holder.lease_grace,
            )
        )
    if ready:
        _MAKE_READY(session, [{"id": p.following.id} for p in ready], {"now": now})
    if holder is not None and taken:
        engine.take(session, taken, worker=holder.worker, now=now)
        recorded.chained += [t.claim for t in taken]
    return [p.run_id for p in ready] if holder is not None else []
