"""A run that failed pages on-call once; an old failure does not."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tenantops.auth.principal import Principal, Role
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.oncall import watch
from tenantops.oncall.models import Page
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, FunctionAction, StepFailed, StepResult
from tenantops.runbooks.spec import parse
from tenantops.runbooks.worker import Worker
from tests.conftest import Clock
from tests.flows import drain

OLI = Principal("oli", frozenset({Role.OPS_ENGINEER}))
BROKEN = parse(
    "id: broken-report\nversion: '1.0'\ntitle: Broken\ntenant: false\n"
    "steps:\n  - {name: report, action: explode}\n"
)


def explode(ctx: ActionContext) -> StepResult:
    raise StepFailed("the cost export is missing", retriable=False)


def fail_a_run(db: Database) -> str:
    with db.write() as session:
        run_id = engine.start_run(session, loaded=BROKEN, actor=OLI, inputs={}).id
    drain(Worker(db, {"explode": FunctionAction(explode)}, poll_seconds=0.01))
    with db.read() as session:
        assert engine.get_run(session, run_id).status == "failed"
    return run_id


def pages(db: Database) -> list[Page]:
    with db.read() as session:
        return list(session.execute(select(Page)).scalars())


def test_a_failed_run_pages_once(db: Database, clock: Clock) -> None:
    run_id = fail_a_run(db)
    assert watch.page_failed_runs(db, clock.now) == 1
    assert watch.page_failed_runs(db, clock.now) == 0  # the next sweep: the same page
    [page] = pages(db)
    assert page.key.startswith(f"run:{run_id}:failed:")
    assert page.severity == "high"
    assert page.status == "triggered"
    assert "broken-report" in page.summary
    assert "the cost export is missing" in page.summary


def test_a_failure_older_than_the_look_back_does_not_page(db: Database, clock: Clock) -> None:
    fail_a_run(db)
    later = clock.now + watch.LOOK_BACK + timedelta(minutes=1)
    assert watch.page_failed_runs(db, later) == 0
    assert pages(db) == []


def test_the_worker_pages_for_a_failed_run(db: Database, settings: Settings) -> None:
    from tenantops.wiring import build_worker

    run_id = fail_a_run(db)
    worker = build_worker(settings, db)
    [job] = [j for j in worker.jobs if j.name == "oncall-failed-runs"]
    job.run(lambda: False)
    assert [p.key.rsplit(":", 1)[0] for p in pages(db)] == [f"run:{run_id}:failed"]


def test_a_retried_run_resolves_its_page_and_failing_again_pages_again(
    db: Database, clock: Clock
) -> None:
    run_id = fail_a_run(db)
    assert watch.page_failed_runs(db, clock.now) == 1
    clock.advance(minutes=5)
    with db.write() as session:
        engine.retry(session, run_id=run_id, principal=OLI)
    assert watch.page_failed_runs(db, clock.now) == 0
    [page] = pages(db)
    assert page.status == "resolved"  # the run is running again: nobody need be woken
    drain(Worker(db, {"explode": FunctionAction(explode)}, poll_seconds=0.01))
    assert watch.page_failed_runs(db, clock.now) == 1  # a new failure, a new page
    assert sorted(p.status for p in pages(db)) == ["resolved", "triggered"]


def test_closing_a_failed_run_resolves_its_page_and_a_closed_run_pages_nobody(
    db: Database, clock: Clock
) -> None:
    run_id = fail_a_run(db)
    assert watch.page_failed_runs(db, clock.now) == 1
    with db.write() as session:
        engine.close(session, run_id=run_id, principal=OLI, reason="export fixed by hand")
    assert watch.page_failed_runs(db, clock.now) == 0
    [page] = pages(db)
    assert page.status == "resolved"  # closed: nobody is to act on it any more
    quiet = fail_a_run(db)
    with db.write() as session:
        engine.close(session, run_id=quiet, principal=OLI, reason="known, left")
    assert watch.page_failed_runs(db, clock.now) == 0  # closed before the sweep saw it


def test_a_rejected_gate_is_a_decision_not_a_failure(db: Database, clock: Clock) -> None:
    gated = parse(
        "id: gated\nversion: '1.0'\ntitle: G\ntenant: false\n"
        "steps:\n  - {name: approval, gate: {roles: [governance]}}\n"
    )
    with db.write() as session:
        run_id = engine.start_run(session, loaded=gated, actor=OLI, inputs={}).id
    gus = Principal("gus", frozenset({Role.GOVERNANCE}))
    with db.write() as session:
        engine.signal(
            session, run_id=run_id, step_name="approval", decision="reject", principal=gus
        )
    with db.read() as session:
        assert engine.get_run(session, run_id).status == "failed"
    assert watch.page_failed_runs(db, clock.now) == 0
    assert pages(db) == []
