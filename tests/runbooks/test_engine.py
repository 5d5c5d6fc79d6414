"""Engine semantics on both stores: what an operator sees a run do, step by step.

Time is the project clock, moved by the tests; the worker is driven one batch
at a time (``run_once``), so nothing here sleeps for longer than a step
timeout of a few tens of milliseconds.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import Conflict, Forbidden, SegregationOfDuties, Unprocessable
from tenantops.kit.clock import as_utc
from tenantops.runbooks import engine
from tenantops.runbooks import service as runs
from tenantops.runbooks.actions import (
    ActionContext,
    FunctionAction,
    Registry,
    StepFailed,
    StepResult,
    builtin_actions,
)
from tenantops.runbooks.models import Run, RunSignal, RunStep, StepAttempt
from tenantops.runbooks.spec import Loaded, load_library, parse
from tenantops.runbooks.worker import Worker
from tests.conftest import Clock

AMY = Principal("amy", frozenset({Role.OPS_ENGINEER, Role.GOVERNANCE}))  # starts runs
GUS = Principal("gus", frozenset({Role.GOVERNANCE}))
QUINN = Principal("quinn", frozenset({Role.QA}))


def runbook(steps: str, *, extra: str = "") -> Loaded:
    return parse(f"id: t\nversion: '1.0'\ntitle: T\ntenant: false\n{extra}steps:\n{steps}")


def worker(db: Database, actions: Registry | None = None, **kwargs: Any) -> Worker:
    registry = builtin_actions()
    registry.update(actions or {})
    return Worker(db, registry, name=kwargs.pop("name", "w1"), poll_seconds=0.01, **kwargs)


def drain(w: Worker, rounds: int = 50) -> None:
    """Run batches until two in a row claim nothing (a timer completes without a claim)."""
    idle = 0
    for _ in range(rounds):
        idle = idle + 1 if w.run_once() == 0 else 0
        if idle == 2:
            return


def start(db: Database, loaded: Loaded, **inputs: Any) -> str:
    with db.write() as s:
        return engine.start_run(s, loaded=loaded, actor=AMY, inputs=inputs).id


def run_of(db: Database, run_id: str) -> Run:
    with db.read() as s:
        return engine.get_run(s, run_id)


def steps(db: Database, run_id: str) -> dict[str, RunStep]:
    with db.read() as s:
        return {r.name: r for r in engine.steps_of(s, run_id)}


def attempts(db: Database, step_id: str) -> list[StepAttempt]:
    with db.read() as s:
        return list(
            s.execute(
                select(StepAttempt).where(StepAttempt.step_id == step_id).order_by("attempt")
            ).scalars()
        )


def audited(db: Database, action: str, run_id: str) -> list[dict[str, Any]]:
    with db.read() as s:
        found = s.execute(select(AuditEntry).where(AuditEntry.action == action)).scalars()
        return [e.detail for e in found if e.detail.get("run_id") == run_id]


def test_a_run_keeps_its_runbook_after_the_file_changes(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "greet.yaml"
    path.write_text(
        "id: greet\nversion: '1.0'\ntitle: Greet\ntenant: false\nsteps:\n"
        "  - {name: say, action: noop, params: {word: hello}}\n"
    )
    before = load_library(tmp_path)["greet"]
    run_id = start(db, before)
    path.write_text(
        "id: greet\nversion: '1.1'\ntitle: Greet\ntenant: false\nsteps:\n"
        "  - {name: say, action: noop, params: {word: goodbye}}\n"
        "  - {name: more, action: noop}\n"
    )
    after = load_library(tmp_path)["greet"]
    assert after.hash != before.hash

    drain(worker(db))

    run = run_of(db, run_id)
    assert (run.status, run.runbook_version, run.runbook_hash) == ("succeeded", "1.0", before.hash)
    assert engine.spec_of(run) == before.runbook
    assert list(steps(db, run_id)) == ["say"]
    assert steps(db, run_id)["say"].output == {"echo": {"word": "hello"}}


def test_params_are_templated_from_inputs_and_earlier_outputs(db: Database) -> None:
    def produce(ctx: ActionContext) -> StepResult:
        return StepResult(output={"n": 3, "items": ["a", "b"]}, evidence={"sha": "abc123"})

    loaded = runbook(
        "  - {name: one, action: produce}\n"
        "  - name: two\n"
        "    action: noop\n"
        "    params:\n"
        "      greeting: 'hello {{ inputs.who }}'\n"
        "      n: '{{ steps.one.n }}'\n"
        "      items: '{{ steps.one.items }}'\n"
        "      nested: {run: '{{ run.id }}', by: '{{ run.started_by }}'}\n",
        extra="inputs: {who: {type: string}}\n",
    )
    run_id = start(db, loaded, who="world")
    drain(worker(db, {"produce": FunctionAction(produce)}))

    two = steps(db, run_id)["two"]
    assert two.inputs == {
        "greeting": "hello world",
        "n": 3,  # a whole expression keeps its type
        "items": ["a", "b"],
        "nested": {"run": run_id, "by": "amy"},
    }
    assert two.output == {"echo": two.inputs}
    assert steps(db, run_id)["one"].evidence == {"sha": "abc123"}


def test_a_template_naming_nothing_fails_the_run_with_the_reason(db: Database) -> None:
    # An unknown step is refused when the runbook is loaded; an output key is known only here.
    run_id = start(
        db,
        runbook(
            "  - {name: one, action: noop}\n"
            "  - {name: two, action: noop, params: {x: '{{ steps.one.nope.y }}'}}\n"
        ),
    )
    drain(worker(db))
    run = run_of(db, run_id)
    assert run.status == "failed"
    assert (run.error or "").startswith("step two failed: params:")


def test_a_failing_step_is_retried_with_backoff_and_the_same_key(
    db: Database, clock: Clock
) -> None:
    keys: list[tuple[str, int]] = []

    def flaky(ctx: ActionContext) -> StepResult:
        keys.append((ctx.idempotency_key, ctx.attempt))
        if ctx.attempt < 3:
            raise StepFailed(f"try {ctx.attempt} failed")
        return StepResult(output={"ok": True})

    loaded = runbook(
        "  - name: one\n    action: flaky\n    retry: {attempts: 3, backoff: 10s, factor: 2}\n"
    )
    run_id = start(db, loaded)
    w = worker(db, {"flaky": FunctionAction(flaky)})

    assert w.run_once() == 1
    one = steps(db, run_id)["one"]
    assert (one.status, one.failures, one.error) == ("ready", 1, "try 1 failed")
    assert one.wake_at == clock.now + timedelta(seconds=10)
    clock.advance(seconds=9)
    assert w.run_once() == 0  # backing off
    clock.advance(seconds=1)
    assert w.run_once() == 1
    assert steps(db, run_id)["one"].wake_at == clock.now + timedelta(seconds=20)  # doubled
    clock.advance(seconds=19)
    assert w.run_once() == 0
    clock.advance(seconds=1)
    assert w.run_once() == 1

    assert run_of(db, run_id).status == "succeeded"
    one = steps(db, run_id)["one"]
    assert (one.attempt, one.failures, one.output) == (3, 2, {"ok": True})
    assert [(a.attempt, a.status, a.error) for a in attempts(db, one.id)] == [
        (1, "failed", "try 1 failed"),
        (2, "failed", "try 2 failed"),
        (3, "succeeded", None),
    ]
    assert keys == [(f"{run_id}/one", 1), (f"{run_id}/one", 2), (f"{run_id}/one", 3)]
    assert len(audited(db, "run.step.succeeded", run_id)) == 1


def test_a_non_retriable_failure_fails_the_run_at_once(db: Database) -> None:
    loaded = runbook(
        "  - name: one\n    action: fail\n    params: {message: quota exceeded, retriable: false}\n"
        "    retry: {attempts: 5, backoff: 1ms}\n"
        "  - {name: two, action: noop}\n"
    )
    run_id = start(db, loaded)
    drain(worker(db))

    run = run_of(db, run_id)
    assert (run.status, run.error) == ("failed", "step one failed: quota exceeded")
    rows = steps(db, run_id)
    assert (rows["one"].status, rows["one"].attempt) == ("failed", 1)
    assert rows["two"].status == "pending"
    assert [a["step"] for a in audited(db, "run.failed", run_id)] == ["one"]


def test_a_step_past_its_timeout_fails_and_is_retried(db: Database, clock: Clock) -> None:
    release = threading.Event()

    def slow_once(ctx: ActionContext) -> StepResult:
        if ctx.attempt == 1:
            release.wait(5)  # far longer than the step's 50ms timeout
        return StepResult(output={"attempt": ctx.attempt})

    loaded = runbook(
        "  - {name: one, action: slow_once, timeout: 50ms, retry: {attempts: 2, backoff: 1s}}\n"
    )
    run_id = start(db, loaded)
    w = worker(db, {"slow_once": FunctionAction(slow_once)})
    try:
        assert w.run_once() == 1
        one = steps(db, run_id)["one"]
        assert one.status == "ready"
        assert one.error == "timed out after 0.05s"
        clock.advance(seconds=1)
        assert w.run_once() == 1
    finally:
        release.set()

    one = steps(db, run_id)["one"]
    assert run_of(db, run_id).status == "succeeded"
    assert one.output == {"attempt": 2}
    assert [(a.status, a.error) for a in attempts(db, one.id)] == [
        ("failed", "timed out after 0.05s"),
        ("succeeded", None),
    ]


def test_an_expired_lease_is_reclaimed_and_the_first_worker_is_fenced(
    db: Database, clock: Clock
) -> None:
    run_id = start(db, runbook("  - {name: one, action: noop, timeout: 10s}\n"))
    with db.write() as s:
        [first] = engine.claim(s, worker="w1")
    with db.write() as s:
        assert engine.claim(s, worker="w2") == []  # w1 holds the lease

    clock.advance(seconds=10)
    clock.advance(seconds=engine.LEASE_GRACE.total_seconds() + 1)
    with db.write() as s:
        [second] = engine.claim(s, worker="w2")
    assert (second.step_id, second.attempt, second.idempotency_key) == (
        first.step_id,
        2,
        first.idempotency_key,
    )

    with db.write() as s:
        assert engine.complete(s, claim=first, result=StepResult(output={"by": "w1"})) is None
    with db.write() as s:
        assert engine.fail(s, claim=first, error="late") is None
    one = steps(db, run_id)["one"]
    assert (one.status, one.failures, one.lease_owner) == ("running", 0, "w2")

    with db.write() as s:
        assert engine.complete(s, claim=second, result=StepResult(output={"by": "w2"})) is not None
    one = steps(db, run_id)["one"]
    assert (one.status, one.output) == ("succeeded", {"by": "w2"})
    assert [(a.worker, a.status) for a in attempts(db, one.id)] == [
        ("w1", "lost"),
        ("w2", "succeeded"),
    ]
    assert len(audited(db, "run.step.succeeded", run_id)) == 1


def test_a_shorter_lease_grace_reclaims_sooner(db: Database, clock: Clock) -> None:
    start(db, runbook("  - {name: one, action: noop, timeout: 1s}\n"))
    grace = timedelta(milliseconds=200)
    with db.write() as s:
        assert len(engine.claim(s, worker="w1", lease_grace=grace)) == 1
    clock.advance(seconds=1.1)
    with db.write() as s:
        assert engine.claim(s, worker="w2", lease_grace=grace) == []
    clock.advance(seconds=0.2)
    with db.write() as s:
        assert len(engine.claim(s, worker="w2", lease_grace=grace)) == 1


def test_a_renewed_lease_holds_and_a_dead_workers_lapses_after_the_lease(
    db: Database, clock: Clock
) -> None:
    start(db, runbook("  - {name: slow, action: noop, timeout: 5m}\n"))
    lease = timedelta(seconds=20)
    with db.write() as s:
        [held] = engine.claim(s, worker="w1", lease=lease)
    assert held.hold_until == clock.now + timedelta(minutes=5) + engine.LEASE_GRACE

    # While w1 heartbeats, nobody else takes the step, well past one lease.
    for _ in range(6):
        clock.advance(seconds=15)
        with db.write() as s:
            assert engine.renew(s, claims=[held], lease=lease) == 1
        with db.write() as s:
            assert engine.claim(s, worker="w2", lease=lease) == []

    # w1 dies: its lease lapses after one lease, not after the 5-minute timeout.
    clock.advance(seconds=19)
    with db.write() as s:
        assert engine.claim(s, worker="w2", lease=lease) == []
    clock.advance(seconds=1)
    with db.write() as s:
        [taken] = engine.claim(s, worker="w2", lease=lease)
    # The dead worker's token renews nothing and records nothing.
    with db.write() as s:
        assert engine.renew(s, claims=[held], lease=lease) == 0
    with db.write() as s:
        assert engine.complete(s, claim=held, result=StepResult()) is None
    with db.write() as s:
        assert engine.complete(s, claim=taken, result=StepResult()) is not None


def test_renewal_never_holds_a_step_past_its_timeout(db: Database, clock: Clock) -> None:
    start(db, runbook("  - {name: slow, action: noop, timeout: 30s}\n"))
    grace = timedelta(seconds=5)
    lease = timedelta(seconds=20)
    with db.write() as s:
        [held] = engine.claim(s, worker="w1", lease=lease, lease_grace=grace)
    for _ in range(3):
        clock.advance(seconds=12)
        with db.write() as s:
            engine.renew(s, claims=[held], lease=lease)
    # 36 s in: the renewals were capped at 30 s + 5 s grace, so the step is free.
    with db.write() as s:
        assert len(engine.claim(s, worker="w2", lease=lease)) == 1


GATED = (
    "  - {name: one, action: noop}\n"
    "  - {name: approve, gate: {roles: [governance]}}\n"
    "  - {name: two, action: noop}\n"
)


def test_a_gate_waits_as_long_as_it_takes(db: Database, clock: Clock) -> None:
    run_id = start(db, runbook(GATED))
    w = worker(db)
    drain(w)
    assert run_of(db, run_id).status == "waiting"
    assert steps(db, run_id)["approve"].status == "waiting"

    clock.advance(days=45)
    drain(w)
    assert steps(db, run_id)["approve"].status == "waiting"

    with db.write() as s:
        engine.signal(
            s, run_id=run_id, step_name="approve", decision="approve", principal=GUS, comment="ok"
        )
    drain(w)
    assert run_of(db, run_id).status == "succeeded"
    gate = steps(db, run_id)["approve"]
    assert gate.decided_by == "gus"
    assert gate.evidence is not None
    assert (gate.evidence["decision"], gate.evidence["role"], gate.evidence["comment"]) == (
        "approve",
        "governance",
        "ok",
    )


def test_a_signal_before_the_gate_opens_is_kept_and_used(db: Database) -> None:
    run_id = start(db, runbook(GATED))
    with db.write() as s:
        engine.signal(s, run_id=run_id, step_name="approve", decision="approve", principal=GUS)
    assert steps(db, run_id)["approve"].status == "pending"
    assert [a["applied"] for a in audited(db, "run.gate.signal", run_id)] == [False]

    drain(worker(db))

    assert run_of(db, run_id).status == "succeeded"
    assert steps(db, run_id)["approve"].decided_by == "gus"
    with db.read() as s:
        [sig] = s.execute(select(RunSignal).where(RunSignal.run_id == run_id)).scalars()
    assert sig.consumed_at is not None


def test_a_rejection_fails_the_run(db: Database) -> None:
    run_id = start(db, runbook(GATED))
    w = worker(db)
    drain(w)
    with db.write() as s:
        engine.signal(s, run_id=run_id, step_name="approve", decision="reject", principal=GUS)
    drain(w)
    run = run_of(db, run_id)
    assert run.status == "failed"
    assert run.error == "step approve failed: rejected by gus"
    assert steps(db, run_id)["two"].status == "pending"
    with db.write() as s, pytest.raises(Conflict):
        engine.signal(s, run_id=run_id, step_name="approve", decision="approve", principal=GUS)
    # A decision is not retried: a retry would reopen the gate someone closed.
    with db.write() as s, pytest.raises(Conflict) as refused:
        engine.retry(s, run_id=run_id, principal=GUS)
    assert "its gate approve was rejected (rejected by gus)" in refused.value.detail
    assert run_of(db, run_id).status == "failed"


def test_the_starter_cannot_decide_and_a_role_is_required(db: Database) -> None:
    run_id = start(db, runbook(GATED))
    drain(worker(db))
    with db.write() as s, pytest.raises(SegregationOfDuties):
        engine.signal(s, run_id=run_id, step_name="approve", decision="approve", principal=AMY)
    with db.write() as s, pytest.raises(Forbidden) as refused:
        engine.signal(s, run_id=run_id, step_name="approve", decision="approve", principal=QUINN)
    assert not isinstance(refused.value, SegregationOfDuties)
    with db.read() as s:
        assert list(s.execute(select(RunSignal)).scalars()) == []
    assert steps(db, run_id)["approve"].status == "waiting"
    assert audited(db, "run.gate.signal", run_id) == []


CHECKED = (
    "  - {name: one, action: noop}\n"
    "  - name: approve\n"
    "    gate: {roles: [governance], signal: done, manual: true, check: t.ticket}\n"
    "  - {name: two, action: noop}\n"
)


def ticket_named(
    session: Any, *, run: Run, step_name: str, decision: str, comment: str | None, **_: Any
) -> None:
    """A gate check: the approval's comment must name a ticket."""
    if not (comment or "").startswith("CHG"):
        raise Unprocessable(f"{step_name}: name the change ticket (CHG…), not {comment!r}")


def test_a_gate_check_refuses_an_approval_before_anything_is_written(db: Database) -> None:
    run_id = start(db, runbook(CHECKED))
    w = worker(db)
    drain(w)
    checks = {"t.ticket": ticket_named}

    def signal(decision: str, comment: str | None, **kwargs: Any) -> None:
        with db.write() as s:
            engine.signal(
                s,
                run_id=run_id,
                step_name="approve",
                decision=decision,
                principal=kwargs.pop("principal", GUS),
                comment=comment,
                **kwargs,
            )

    with pytest.raises(Unprocessable, match="name the change ticket"):
        signal("approve", "looks fine", checks=checks)
    # Not installed where the approval arrives: refused too, never accepted unchecked.
    with pytest.raises(Unprocessable, match=r"needs the check 't\.ticket', which is not installed"):
        signal("approve", "CHG42")
    with db.read() as s:
        assert list(s.execute(select(RunSignal)).scalars()) == []
    assert audited(db, "run.gate.signal", run_id) == []
    assert (run_of(db, run_id).status, steps(db, run_id)["approve"].status) == (
        "waiting",
        "waiting",
    )

    signal("approve", "CHG42", checks=checks)
    drain(w)
    assert run_of(db, run_id).status == "succeeded"
    assert steps(db, run_id)["approve"].evidence["comment"] == "CHG42"  # type: ignore[index]


def test_a_gate_check_is_not_asked_of_a_rejection_or_a_system_signal(db: Database) -> None:
    rejected, signalled = start(db, runbook(CHECKED)), start(db, runbook(CHECKED))
    w = worker(db)
    drain(w)
    system = Principal("system:tickets", via="system")
    with db.write() as s:
        engine.signal(
            s, run_id=rejected, step_name="approve", decision="reject", principal=GUS, comment="no"
        )
        engine.signal(
            s, run_id=signalled, step_name="approve", decision="approve", principal=system
        )
    drain(w)
    assert run_of(db, rejected).status == "failed"
    assert run_of(db, signalled).status == "succeeded"


def test_a_gate_check_is_of_a_person_so_a_signal_gate_needs_manual() -> None:
    with pytest.raises(Unprocessable, match="a signal gate needs manual: true"):
        runbook(CHECKED.replace(", manual: true", ""))


def test_a_timer_step_is_not_claimable_before_it_wakes(db: Database, clock: Clock) -> None:
    loaded = runbook(
        "  - {name: one, action: noop}\n  - {name: nap, wait: 1h}\n  - {name: two, action: noop}\n"
    )
    run_id = start(db, loaded)
    opened = clock.now
    w = worker(db)
    drain(w)
    nap = steps(db, run_id)["nap"]
    assert (nap.status, nap.wake_at) == ("ready", opened + timedelta(hours=1))

    clock.advance(minutes=59, seconds=59)
    drain(w)
    assert steps(db, run_id)["nap"].status == "ready"
    assert steps(db, run_id)["two"].status == "pending"

    clock.advance(seconds=1)
    drain(w)
    assert run_of(db, run_id).status == "succeeded"
    nap = steps(db, run_id)["nap"]
    assert (nap.started_at, nap.finished_at) == (opened, opened + timedelta(hours=1))


def test_sla_breaches_are_recorded_once_per_run_and_step(db: Database, clock: Clock) -> None:
    loaded = runbook(
        "  - {name: one, action: noop}\n"
        "  - {name: approve, gate: {roles: [governance]}, sla: {within: 10m}}\n"
        "  - {name: two, action: noop, sla: {within: 2h, after: approve}}\n",
        extra="sla: {within: 1h, after: one}\n",
    )
    run_id = start(db, loaded)
    began = clock.now
    drain(worker(db))
    run = run_of(db, run_id)
    assert run.sla_deadline == began + timedelta(hours=1)
    assert steps(db, run_id)["approve"].sla_deadline == began + timedelta(minutes=10)
    assert steps(db, run_id)["two"].sla_deadline is None  # its clock starts at the approval

    clock.advance(minutes=10)
    with db.write() as s:
        assert [(b.run_id, b.step) for b in engine.check_deadlines(s)] == [(run_id, "approve")]
    with db.write() as s:
        assert engine.check_deadlines(s) == []
    clock.advance(minutes=50)
    with db.write() as s:
        assert [(b.run_id, b.step) for b in engine.check_deadlines(s)] == [(run_id, None)]
    with db.write() as s:
        assert engine.check_deadlines(s) == []

    assert run_of(db, run_id).sla_breached_at == began + timedelta(hours=1)
    assert steps(db, run_id)["approve"].sla_breached_at == began + timedelta(minutes=10)
    assert [a["step"] for a in audited(db, "run.sla_breached", run_id)] == ["approve", None]


def test_a_finished_run_breaches_no_sla(db: Database, clock: Clock) -> None:
    loaded = runbook(
        "  - {name: one, action: noop}\n"
        "  - {name: two, action: fail, params: {retriable: false}}\n"
        "  - {name: three, action: noop, sla: {within: 5m, after: one}}\n",
    )
    run_id = start(db, loaded)
    drain(worker(db))
    assert run_of(db, run_id).status == "failed"
    clock.advance(hours=1)
    with db.write() as s:
        assert engine.check_deadlines(s) == []


def test_cancel_fences_a_running_step(db: Database) -> None:
    run_id = start(db, runbook("  - {name: one, action: noop}\n  - {name: two, action: noop}\n"))
    with db.write() as s:
        [held] = engine.claim(s, worker="w1")
    with db.write() as s:
        engine.cancel(s, run_id=run_id, principal=GUS, reason="wrong tenant")

    with db.write() as s:
        assert engine.complete(s, claim=held, result=StepResult()) is None
    run = run_of(db, run_id)
    assert (run.status, run.error) == ("cancelled", "wrong tenant")
    rows = steps(db, run_id)
    assert [r.status for r in rows.values()] == ["cancelled", "cancelled"]
    assert [a.status for a in attempts(db, rows["one"].id)] == ["cancelled"]
    assert audited(db, "run.step.succeeded", run_id) == []
    with db.write() as s:
        assert engine.claim(s, worker="w2") == []
    with db.write() as s, pytest.raises(Conflict):
        engine.cancel(s, run_id=run_id, principal=GUS, reason="again")


def test_retry_resumes_from_the_failed_step(db: Database) -> None:
    broken = {"yes": True}
    calls: list[str] = []

    def record(ctx: ActionContext) -> StepResult:
        calls.append(ctx.step_name)
        if ctx.step_name == "two" and broken["yes"]:
            raise StepFailed("driver down", retriable=False)
        return StepResult(output={"step": ctx.step_name})

    loaded = runbook(
        "  - {name: one, action: record}\n"
        "  - {name: two, action: record}\n"
        "  - {name: three, action: record}\n"
    )
    run_id = start(db, loaded)
    w = worker(db, {"record": FunctionAction(record)})
    drain(w)
    assert run_of(db, run_id).status == "failed"
    broken["yes"] = False
    with db.write() as s:
        engine.retry(s, run_id=run_id, principal=GUS)
    drain(w)

    run = run_of(db, run_id)
    assert (run.status, run.error) == ("succeeded", None)
    assert calls == ["one", "two", "two", "three"]  # one is not run again
    two = steps(db, run_id)["two"]
    assert (two.status, two.error, two.attempt) == ("succeeded", None, 2)
    assert [a.status for a in attempts(db, two.id)] == ["failed", "succeeded"]
    assert [a["from_step"] for a in audited(db, "run.retried", run_id)] == ["two"]


def test_a_step_whose_retries_are_spent_says_it_gave_up_and_each_try_keeps_its_error(
    db: Database, clock: Clock
) -> None:
    refused = "GET http://t/healthz: Connection refused (retriable)"  # as DriverError words it

    def down(ctx: ActionContext) -> StepResult:
        raise StepFailed(refused)

    loaded = runbook("  - {name: one, action: down, retry: {attempts: 2, backoff: 10s}}\n")
    run_id = start(db, loaded)
    w = worker(db, {"down": FunctionAction(down)})
    assert w.run_once() == 1
    assert steps(db, run_id)["one"].error == refused  # a retry follows: the verdict holds
    clock.advance(seconds=10)
    assert w.run_once() == 1

    gave_up = "GET http://t/healthz: Connection refused — gave up after 2 tries"
    one = steps(db, run_id)["one"]
    assert (one.status, one.error) == ("failed", gave_up)
    run = run_of(db, run_id)
    assert (run.status, run.error) == ("failed", f"step one failed: {gave_up}")
    assert [a["error"] for a in audited(db, "run.failed", run_id)] == [gave_up]
    assert [a.error for a in attempts(db, one.id)] == [refused, refused]


def test_a_retried_step_restarts_its_clock_and_counts_tries_per_round(
    db: Database, clock: Clock
) -> None:
    broken = {"yes": True}

    def flaky(ctx: ActionContext) -> StepResult:
        if broken["yes"]:
            raise StepFailed("disk full")
        return StepResult(output={})

    loaded = runbook("  - {name: one, action: flaky, retry: {attempts: 2, backoff: 1s}}\n")
    run_id = start(db, loaded)
    w = worker(db, {"flaky": FunctionAction(flaky)})
    assert w.run_once() == 1
    clock.advance(seconds=1)
    assert w.run_once() == 1
    with db.read() as s:
        (failed,) = runs.read_run(s, principal=AMY, run_id=run_id).steps
    assert (failed.status, failed.tries, failed.attempt, failed.max_attempts) == ("failed", 2, 2, 2)

    clock.advance(hours=3)  # the run waits for an operator
    broken["yes"] = False
    with db.write() as s:
        engine.retry(s, run_id=run_id, principal=GUS)
    one = steps(db, run_id)["one"]
    assert one.started_at is not None
    assert as_utc(one.started_at) == clock.now
    with db.read() as s:
        (ready,) = runs.read_run(s, principal=AMY, run_id=run_id).steps
    assert (ready.status, ready.tries, ready.attempt) == ("ready", 0, 2)

    clock.advance(seconds=5)
    assert w.run_once() == 1
    with db.read() as s:
        (done,) = runs.read_run(s, principal=AMY, run_id=run_id).steps
    assert (done.status, done.tries, done.attempt, done.max_attempts) == ("succeeded", 1, 3, 2)
    assert done.duration_seconds == 5  # the last round, not the three hours before it


def test_a_succeeded_run_cannot_be_retried(db: Database) -> None:
    run_id = start(db, runbook("  - {name: one, action: noop}\n"))
    drain(worker(db))
    with db.write() as s, pytest.raises(Conflict):
        engine.retry(s, run_id=run_id, principal=GUS)


def test_every_step_records_inputs_outputs_evidence_attempts_and_timings(
    db: Database, clock: Clock
) -> None:
    def render(ctx: ActionContext) -> StepResult:
        clock.advance(seconds=2)  # the step takes two seconds of project time
        return StepResult(
            output={"path": f"tenants/{ctx.params['name']}.yaml"},
            evidence={"digest": "sha256:feed", "commit": "c0ffee"},
        )

    loaded = runbook(
        "  - {name: render, action: render, params: {name: '{{ inputs.name }}'}}\n",
        extra="inputs: {name: {type: string}}\n",
    )
    began = clock.now
    run_id = start(db, loaded, name="acme")
    drain(worker(db, {"render": FunctionAction(render)}, name="w-evidence"))

    row = steps(db, run_id)["render"]
    assert row.inputs == {"name": "acme"}
    assert row.output == {"path": "tenants/acme.yaml"}
    assert row.evidence == {"digest": "sha256:feed", "commit": "c0ffee"}
    assert (row.started_at, row.finished_at) == (began, began + timedelta(seconds=2))
    [attempt] = attempts(db, row.id)
    assert (attempt.worker, attempt.status, attempt.started_at, attempt.finished_at) == (
        "w-evidence",
        "succeeded",
        began,
        began + timedelta(seconds=2),
    )
    [entry] = audited(db, "run.step.succeeded", run_id)
    assert entry["evidence"] == {"digest": "sha256:feed", "commit": "c0ffee"}
    assert run_of(db, run_id).finished_at == began + timedelta(seconds=2)


def test_a_refused_apply_fails_its_step_and_the_batch_still_records(db: Database) -> None:
    from tenantops.errors import InvalidTransition

    def refuse(session: Any, ctx: ActionContext, result: StepResult) -> None:
        raise InvalidTransition("tenant is archived")

    def ok(ctx: ActionContext) -> StepResult:
        return StepResult()

    loaded = runbook("  - {name: one, action: picky}\n")
    refused = start(db, loaded)
    fine = start(db, runbook("  - {name: one, action: noop}\n"))
    w = worker(db, {"picky": FunctionAction(ok, refuse)}, concurrency=2)
    assert w.run_once() == 2

    assert run_of(db, refused).status == "failed"
    assert "tenant is archived" in (run_of(db, refused).error or "")
    assert run_of(db, fine).status == "succeeded"


def test_a_param_that_is_not_data_fails_its_run_and_not_the_queue(db: Database) -> None:
    bad = start(db, runbook("  - {name: one, action: noop, params: {x: '{{ inputs.get }}'}}\n"))
    good = start(db, runbook("  - {name: one, action: noop}\n"))
    drain(worker(db))
    assert run_of(db, bad).status == "failed"
    assert (run_of(db, bad).error or "").startswith("step one failed: params:")
    assert run_of(db, good).status == "succeeded"


def test_a_quick_step_is_recorded_without_waiting_for_a_slow_one(db: Database) -> None:
    """Recorded in the order steps end, so a quick step's lease cannot run out behind a slow one."""
    release = threading.Event()

    def slow(ctx: ActionContext) -> StepResult:
        release.wait(10)
        return StepResult()

    slow_run = start(db, runbook("  - {name: one, action: slow, timeout: 30s}\n"))
    quick_run = start(db, runbook("  - {name: one, action: noop, timeout: 30s}\n"))
    w = worker(db, {"slow": FunctionAction(slow)}, concurrency=2)
    batch = threading.Thread(target=w.run_once)
    batch.start()
    try:
        for _ in range(500):  # bounded polling: up to ~5 s
            if run_of(db, quick_run).status == "succeeded":
                break
            threading.Event().wait(0.01)
        assert run_of(db, quick_run).status == "succeeded"
        assert run_of(db, slow_run).status == "running"
    finally:
        release.set()
        batch.join(10)
    assert run_of(db, slow_run).status == "succeeded"


def test_a_step_sla_keyed_on_an_earlier_step_keeps_its_clock(db: Database, clock: Clock) -> None:
    loaded = runbook(
        "  - {name: one, action: noop}\n"
        "  - {name: two, action: fail, params: {retriable: true},"
        " retry: {attempts: 5, backoff: 1h}, sla: {within: 30m, after: one}}\n",
    )
    run_id = start(db, loaded)
    finished_one = clock.now
    drain(worker(db))
    assert steps(db, run_id)["two"].sla_deadline == finished_one + timedelta(minutes=30)
    clock.advance(minutes=30)
    with db.write() as s:
        assert [(b.run_id, b.step) for b in engine.check_deadlines(s)] == [(run_id, "two")]
