"""The batch path records what the step-by-step path records, on both stores.

``batch.complete_many`` takes plain steps set-based and routes every other
step (apply hooks, gates, timers, SLA clocks, templates) to ``engine.complete``
and ``engine.claim``. The reference here is the step-by-step path itself: the
same runs, finished the same way, must leave the same rows, audit entries and
next claims whichever path recorded them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.errors import Unprocessable
from tenantops.kit.clock import as_utc
from tenantops.runbooks import batch, engine
from tenantops.runbooks.actions import StepResult
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.spec import Loaded, parse
from tenantops.runbooks.worker import Worker
from tests.conftest import Clock, wipe

AMY = Principal("amy", frozenset({Role.OPS_ENGINEER, Role.GOVERNANCE}))
LEASE = timedelta(seconds=20)
HOLDER = batch.Holder(worker="w1", lease=LEASE)


def runbook(rid: str, steps: str, *, extra: str = "") -> Loaded:
    return parse(f"id: {rid}\nversion: '1.0'\ntitle: T\ntenant: false\n{extra}steps:\n{steps}")


NOOP2 = "  - {name: one, action: noop}\n  - {name: two, action: noop}\n"
# What follows the first step of each: the plain case and every case the
# batch must hand to the step-by-step path.
MIX: dict[str, Loaded] = {
    "plain": runbook("plain", NOOP2),
    "plain-b": runbook("plain-b", NOOP2 + "  - {name: three, action: noop}\n"),
    "last": runbook("last", "  - {name: one, action: noop, params: {k: v}}\n"),
    "gate": runbook(
        "gate", "  - {name: one, action: noop}\n  - {name: g, gate: {roles: [governance]}}\n"
    ),
    "timer": runbook("timer", "  - {name: one, action: noop}\n  - {name: w, wait: 1h}\n"),
    "step-sla": runbook(
        "step-sla",
        "  - {name: one, action: noop}\n"
        "  - {name: two, action: noop, sla: {within: 30m, after: one}}\n",
    ),
    "start-sla": runbook(
        "start-sla",
        "  - {name: one, action: noop}\n  - {name: two, action: noop, sla: {within: 10m}}\n",
    ),
    "run-sla": runbook("run-sla", NOOP2, extra="sla: {within: 1h, after: one}\n"),
    "templated": runbook(
        "templated",
        "  - {name: one, action: noop, params: {n: 7}}\n"
        "  - {name: two, action: noop, params: {got: '{{ steps.one.echo.n }}'}}\n",
    ),
    "bad-template": runbook(
        "bad-template",
        "  - {name: one, action: noop}\n"
        "  - {name: two, action: noop, params: {x: '{{ nope.y }}'}}\n",
    ),
    "applied": runbook("applied", NOOP2),
    "cancelled": runbook("cancelled", NOOP2),
}


def _apply(session: Any) -> None:
    audit.record(session, actor=AMY, action="test.applied", tenant_id=None, changes={}, detail={})


Recorder = Callable[[Database, list[batch.Finished]], list[engine.Claim]]


def by_batch(db: Database, finished: list[batch.Finished]) -> list[engine.Claim]:
    with db.write() as s:
        return batch.complete_many(s, finished, holder=HOLDER).chained


def step_by_step(db: Database, finished: list[batch.Finished]) -> list[engine.Claim]:
    """What the worker did before the batch path: complete each, then claim their runs."""
    with db.write() as s:
        advanced = [
            f.claim.run_id
            for f in finished
            if engine.complete(s, claim=f.claim, result=f.result, apply=f.apply) is not None
        ]
        return engine.claim(s, worker="w1", limit=len(advanced), lease=LEASE, runs=advanced)


def play(db: Database, record: Recorder) -> dict[str, Any]:
    """Start one run of each MIX runbook, claim and finish their first steps, record them."""
    wipe(db)
    names: dict[str, str] = {}
    with db.write() as s:
        for name, loaded in MIX.items():
            names[engine.start_run(s, loaded=loaded, actor=AMY).id] = name
    with db.write() as s:
        claims = engine.claim(s, worker="w1", limit=len(MIX), lease=LEASE)
    assert sorted(names[c.run_id] for c in claims) == sorted(MIX)
    cancelled = next(c for c in claims if names[c.run_id] == "cancelled")
    with db.write() as s:
        engine.cancel(s, run_id=cancelled.run_id, principal=AMY, reason="test")
    finished = [
        batch.Finished(
            c,
            StepResult(output={"echo": c.params}, evidence={"run": names[c.run_id]}),
            _apply if names[c.run_id] == "applied" else None,
        )
        for c in claims
    ]
    chained = record(db, finished)
    return snapshot(db, names, chained)


def snapshot(db: Database, names: dict[str, str], chained: list[engine.Claim]) -> dict[str, Any]:
    """Everything an operator or auditor could see, keyed by runbook name, not by id."""
    with db.read() as s:
        runs = {
            names[r.id]: (r.status, r.sla_deadline, r.finished_at, r.error, r.updated_at)
            for r in s.execute(select(Run)).scalars()
        }
        steps = {
            (names[r.run_id], r.name): (
                r.status,
                r.attempt,
                r.lease_owner,
                r.lease_token is not None,
                r.lease_expires_at,
                r.wake_at,
                r.started_at,
                r.finished_at,
                r.sla_deadline,
                r.inputs,
                r.output,
                r.evidence,
                r.error,
            )
            for r in s.execute(select(RunStep)).scalars()
        }
        step_of = {r.id: (names[r.run_id], r.name) for r in s.execute(select(RunStep)).scalars()}
        attempts = sorted(
            (*step_of[a.step_id], a.attempt, a.worker, a.status, a.finished_at is not None)
            for a in s.execute(select(StepAttempt)).scalars()
        )
        trail = Counter(
            (e.action, names.get(e.detail.get("run_id", ""), ""), e.detail.get("step"))
            for e in s.execute(select(AuditEntry)).scalars()
        )
        with audit.snapshot(db) as snap:
            verified = audit.verify(snap)
    return {
        "runs": runs,
        "steps": steps,
        "attempts": attempts,
        "trail": trail,
        "chain_ok": verified.ok,
        "chained": sorted(
            (names[c.run_id], c.step_name, c.attempt, repr(c.params), c.hold_until) for c in chained
        ),
    }


def test_a_mixed_batch_records_what_the_step_by_step_path_records(
    db: Database, clock: Clock
) -> None:
    expected = play(db, step_by_step)
    got = play(db, by_batch)
    assert got == expected
    # And the reference itself is what the runbooks say (not two equal mistakes).
    runs, steps = got["runs"], got["steps"]
    assert runs["last"][:3] == ("succeeded", None, clock.now)
    assert runs["cancelled"][0] == "cancelled"
    assert runs["gate"][0] == "waiting"
    assert runs["bad-template"][0] == "failed"
    assert runs["run-sla"][1] == clock.now + timedelta(hours=1)
    assert steps[("step-sla", "two")][8] == clock.now + timedelta(minutes=30)
    assert steps[("start-sla", "two")][8] == clock.now + timedelta(minutes=10)
    assert steps[("timer", "w")][:1] == ("ready",)
    assert steps[("timer", "w")][5] == clock.now + (timedelta(hours=1))
    assert steps[("templated", "two")][9] == {"got": 7}
    assert got["trail"][("test.applied", "", None)] == 1
    assert got["trail"][("run.step.succeeded", "cancelled", "one")] == 0
    assert got["chain_ok"]
    assert sorted((n, s) for n, s, *_ in got["chained"]) == [
        ("applied", "two"),
        ("plain", "two"),
        ("plain-b", "two"),
        ("run-sla", "two"),
        ("start-sla", "two"),
        ("step-sla", "two"),
        ("templated", "two"),
    ]


def test_a_fenced_step_in_a_batch_records_nothing_and_the_good_one_counts(
    db: Database, clock: Clock
) -> None:
    with db.write() as s:
        lost = engine.start_run(s, loaded=MIX["plain"], actor=AMY).id
        kept = engine.start_run(s, loaded=MIX["plain"], actor=AMY).id
    with db.write() as s:
        first = {c.run_id: c for c in engine.claim(s, worker="w1", limit=2, lease=LEASE)}
    clock.advance(LEASE + timedelta(seconds=1))  # both leases lapse; w2 takes one over
    with db.write() as s:
        [taken] = engine.claim(s, worker="w2", lease=LEASE, runs=[lost])
        s.execute(  # the other is still w1's (as if renewed)
            RunStep.__table__.update()
            .where(RunStep.id == first[kept].step_id)
            .values(lease_expires_at=clock.now + LEASE)
        )
    with db.write() as s:
        done = batch.complete_many(
            s,
            [batch.Finished(first[r], StepResult(output={"by": "w1"})) for r in (lost, kept)],
            holder=HOLDER,
        )
    assert [c.run_id for c in done.fenced] == [lost]
    assert [c.run_id for c in done.completed] == [kept]
    assert [(c.run_id, c.step_name) for c in done.chained] == [(kept, "two")]
    with db.read() as s:
        one_lost = next(r for r in engine.steps_of(s, lost) if r.name == "one")
        assert (one_lost.status, one_lost.lease_owner, one_lost.output) == ("running", "w2", None)
        assert one_lost.lease_token == taken.token
        rows = {r.name: r for r in engine.steps_of(s, kept)}
        assert (rows["one"].status, rows["one"].output) == ("succeeded", {"by": "w1"})
        assert (rows["two"].status, rows["two"].lease_owner) == ("running", "w1")
        succeeded = [
            e.detail["run_id"]
            for e in s.execute(
                select(AuditEntry).where(AuditEntry.action == "run.step.succeeded")
            ).scalars()
        ]
        assert succeeded == [kept]
    with audit.snapshot(db) as s:
        assert audit.verify(s).ok


def test_two_claims_of_one_step_in_a_batch_complete_it_once(db: Database, clock: Clock) -> None:
    with db.write() as s:
        run_id = engine.start_run(s, loaded=MIX["last"], actor=AMY).id
    with db.write() as s:
        [stale] = engine.claim(s, worker="w1", lease=LEASE)
    clock.advance(LEASE + timedelta(seconds=1))
    with db.write() as s:
        [fresh] = engine.claim(s, worker="w1", lease=LEASE)
    with db.write() as s:
        done = batch.complete_many(
            s,
            [batch.Finished(c, StepResult(output={"token": c.token})) for c in (stale, fresh)],
            holder=HOLDER,
        )
    assert (done.fenced, done.completed) == ([stale], [fresh])
    with db.read() as s:
        [row] = engine.steps_of(s, run_id)
        assert row.output == {"token": fresh.token}
        assert engine.get_run(s, run_id).status == "succeeded"
        actions = [
            e.action for e in s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        ]
        assert actions.count("run.step.succeeded") == 1
        assert actions.count("run.succeeded") == 1


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen.append(sql.split()[0])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_recording_plain_steps_costs_the_same_statements_for_two_or_eight(
    db: Database, clock: Clock
) -> None:
    """The point of the batch path: statements per batch, not per step."""
    cost: dict[int, int] = {}
    for k in (2, 8):
        wipe(db)
        with db.write() as s:
            for _ in range(k):
                engine.start_run(s, loaded=MIX["plain-b"], actor=AMY)
        with db.write() as s:
            claims = engine.claim(s, worker="w1", limit=k, lease=LEASE)
        with statements(db) as seen, db.write() as s:
            done = batch.complete_many(
                s, [batch.Finished(c, StepResult()) for c in claims], holder=HOLDER
            )
        assert (len(done.completed), len(done.chained)) == (k, k)
        cost[k] = len(seen)
    assert cost[2] == cost[8]


def test_a_worker_drains_plain_runs_in_batches_with_a_valid_trail(db: Database) -> None:
    loaded = runbook("five", "".join(f"  - {{name: s{i}, action: noop}}\n" for i in range(5)))
    with db.write() as s:
        ids = [engine.start_run(s, loaded=loaded, actor=AMY).id for _ in range(12)]
    from tenantops.runbooks.actions import builtin_actions

    w = Worker(db, builtin_actions(), name="w1", concurrency=6, poll_seconds=0.01)
    for _ in range(20):
        if w.run_once() == 0:
            break
    assert w.stats.completed == 60
    assert w.stats.fenced == 0
    with db.read() as s:
        assert {engine.get_run(s, r).status for r in ids} == {"succeeded"}
        attempts = s.execute(select(StepAttempt)).scalars().all()
        assert len(attempts) == 60
        assert {a.status for a in attempts} == {"succeeded"}
    with audit.snapshot(db) as s:
        result = audit.verify(s)
    assert result.ok
    assert result.checked == 12 * (1 + 5 + 1)  # started, five steps, succeeded


FIRST_SLA = runbook(
    "first-sla",
    "  - {name: one, action: noop, sla: {within: 10m}}\n  - {name: two, action: noop}\n",
    extra="sla: {within: 1h}\ninputs:\n  n: {type: integer}\n",
)
GATE_FIRST = runbook(
    "gate-first", "  - {name: g, gate: {roles: [governance]}}\n  - {name: one, action: noop}\n"
)


def shape(db: Database, run_id: str) -> dict[str, Any]:
    """A run as start_run leaves it, without its ids: run fields, steps, its audit entries."""
    with db.read() as s:
        run = engine.get_run(s, run_id)
        made = run.created_at
        after = lambda at: None if at is None else as_utc(at) - as_utc(made)  # noqa: E731
        steps = [
            (r.name, r.status, after(r.wake_at), after(r.sla_deadline), r.idempotency_key)
            for r in engine.steps_of(s, run_id)
        ]
        entries = s.execute(select(AuditEntry).order_by(AuditEntry.seq)).scalars()
        actions = [e.action for e in entries if (e.detail or {}).get("run_id") == run_id]
    return {
        "run": (run.status, run.runbook_hash, run.inputs, run.started_by, after(run.sla_deadline)),
        "steps": [(n, st, w, d, key.replace(run_id, "RUN")) for n, st, w, d, key in steps],
        "audit": actions,
    }


def test_runs_started_together_are_the_runs_start_run_makes(db: Database, clock: Clock) -> None:
    for loaded, inputs in ((FIRST_SLA, {"n": 1}), (GATE_FIRST, {})):
        with db.write() as s:
            alone = engine.start_run(s, loaded=loaded, actor=AMY, inputs=inputs).id
        with db.write() as s:
            new = [engine.NewRun(inputs=inputs) for _ in range(3)]
            together = [r.id for r in engine.start_runs(s, loaded=loaded, actor=AMY, runs=new)]
        assert len(set(together)) == 3
        for run_id in together:
            assert shape(db, run_id) == shape(db, alone), loaded.runbook.id
    with audit.snapshot(db) as s:
        result = audit.verify(s)
    assert result.ok
    assert result.checked == 8  # run.started of each


def test_one_bad_run_starts_none_of_them(db: Database) -> None:
    tenanted = parse(
        "id: tenanted\nversion: '1.0'\ntitle: T\ntenant: true\nsteps:\n"
        "  - {name: one, action: noop}\n"
    )
    bad = [
        (FIRST_SLA, [engine.NewRun(inputs={"n": 1}), engine.NewRun(inputs={"n": "two"})]),
        (FIRST_SLA, [engine.NewRun(inputs={"n": 1}), engine.NewRun(inputs={"m": 2})]),
        (tenanted, [engine.NewRun(tenant_id="t-1"), engine.NewRun()]),
    ]
    for loaded, new in bad:
        with pytest.raises(Unprocessable), db.write() as s:
            engine.start_runs(s, loaded=loaded, actor=AMY, runs=new)
    with db.read() as s:
        assert s.execute(select(Run)).first() is None
        assert s.execute(select(AuditEntry)).first() is None


def test_starting_runs_together_costs_the_same_statements_for_two_or_twenty(
    db: Database,
) -> None:
    cost: dict[int, int] = {}
    for k in (2, 20):
        with statements(db) as seen, db.write() as s:
            new = [engine.NewRun(inputs={"n": i}) for i in range(k)]
            assert len(engine.start_runs(s, loaded=FIRST_SLA, actor=AMY, runs=new)) == k
        cost[k] = len(seen)
    assert cost[2] == cost[20]
