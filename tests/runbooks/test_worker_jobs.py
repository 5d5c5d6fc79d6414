"""A worker's periodic jobs run on their own thread: a step that runs for a long time never
holds up a job's turn (an on-call page), and a long job never holds up claiming steps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, FunctionAction, StepResult, builtin_actions
from tenantops.runbooks.spec import parse
from tenantops.runbooks.worker import Periodic, Worker

AMY = Principal("amy", frozenset({Role.OPS_ENGINEER, Role.GOVERNANCE}))
WAIT = 10.0  # a generous bound for a thread, never an assertion on timing


def start_run(db: Database, action: str) -> str:
    loaded = parse(
        "id: t\nversion: '1.0'\ntitle: T\ntenant: false\n"
        f"steps:\n  - {{name: one, action: {action}, timeout: 60s}}\n"
    )
    with db.write() as s:
        return engine.start_run(s, loaded=loaded, actor=AMY).id


def status(db: Database, run_id: str) -> str:
    with db.read() as s:
        return engine.get_run(s, run_id).status


def test_a_worker_busy_with_a_step_still_runs_its_periodic_job(db: Database) -> None:
    running, release = threading.Event(), threading.Event()

    def blocking(ctx: ActionContext) -> StepResult:
        running.set()
        release.wait(WAIT * 3)
        return StepResult()

    turns: list[bool] = []
    ran_while_busy = threading.Event()

    def job(_stopping: object) -> None:
        turns.append(running.is_set() and not release.is_set())
        if turns.count(True) >= 3:
            ran_while_busy.set()

    actions = builtin_actions() | {"block": FunctionAction(blocking)}
    run_id = start_run(db, "block")
    worker = Worker(db, actions, poll_seconds=0.01, jobs=[Periodic("tick", 0.01, job)])
    worker.start()
    try:
        assert running.wait(WAIT)  # the worker is inside the step (run_once blocks)
        assert ran_while_busy.wait(WAIT)  # ... and the job kept its turns meanwhile
        assert status(db, run_id) == "running"
    finally:
        release.set()
        worker.stop()
    assert status(db, run_id) == "succeeded"
    after = len(turns)
    time.sleep(0.1)
    assert len(turns) == after  # stop() ended the jobs' thread too


def test_a_long_job_does_not_hold_up_the_steps(db: Database) -> None:
    in_job, release = threading.Event(), threading.Event()

    def sweep(_stopping: object) -> None:
        in_job.set()
        release.wait(WAIT * 3)

    worker = Worker(db, builtin_actions(), poll_seconds=0.01, jobs=[Periodic("slow", 0.01, sweep)])
    worker.start()
    try:
        assert in_job.wait(WAIT)
        run_id = start_run(db, "noop")
        worker.wake()
        deadline = time.monotonic() + WAIT
        while status(db, run_id) != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert status(db, run_id) == "succeeded"  # claimed and run while the job runs
    finally:
        release.set()
        worker.stop()


def test_a_worker_busy_with_a_step_still_raises_an_sla_breach(db: Database) -> None:
    running, release = threading.Event(), threading.Event()
    breached = threading.Event()

    def blocking(ctx: ActionContext) -> StepResult:
        running.set()
        release.wait(WAIT * 3)
        return StepResult()

    loaded = parse(
        "id: t\nversion: '1.0'\ntitle: T\ntenant: false\nsla: {within: 1s}\n"
        "steps:\n  - {name: one, action: block, timeout: 60s}\n"
    )
    with db.write() as s:
        engine.start_run(s, loaded=loaded, actor=AMY)
    actions = builtin_actions() | {"block": FunctionAction(blocking)}
    worker = Worker(
        db,
        actions,
        poll_seconds=0.01,
        deadline_check_seconds=0.05,
        on_breach=lambda breach: breached.set(),
    )
    worker.start()
    try:
        assert running.wait(WAIT)  # the step loop is inside the step for as long as it lasts
        assert breached.wait(WAIT)  # ... and the run's deadline passing was raised meanwhile
    finally:
        release.set()
        worker.stop()


def test_a_job_is_told_when_the_worker_stops(db: Database) -> None:
    in_job, seen = threading.Event(), []

    def sweep(stopping: Callable[[], bool]) -> None:
        seen.append(stopping())
        in_job.set()
        deadline = time.monotonic() + WAIT
        while not stopping() and time.monotonic() < deadline:  # a sweep of many pages
            time.sleep(0.01)
        seen.append(stopping())

    worker = Worker(db, builtin_actions(), poll_seconds=0.01, jobs=[Periodic("sweep", 60, sweep)])
    worker.start()
    assert in_job.wait(WAIT)
    worker.stop()
    assert seen == [False, True]  # the sweep saw the stop and ended between two items


def test_a_job_blocked_in_a_slow_call_holds_up_no_other_job_nor_an_sla_breach(
    db: Database,
) -> None:
    # A mirror refresh waiting on a slow ITSM tool must not keep the escalator from its turns
    # (a P1 would page nobody meanwhile), nor an SLA breach from being raised.
    in_call, release = threading.Event(), threading.Event()
    escalated, breached = threading.Event(), threading.Event()
    turns: list[bool] = []

    def slow_refresh(_stopping: object) -> None:
        in_call.set()
        release.wait(WAIT * 3)

    def escalator(_stopping: object) -> None:
        turns.append(in_call.is_set() and not release.is_set())
        if turns.count(True) >= 3:
            escalated.set()

    loaded = parse(
        "id: t\nversion: '1.0'\ntitle: T\ntenant: false\nsla: {within: 1s}\n"
        "steps:\n  - {name: one, action: block, timeout: 60s}\n"
    )
    with db.write() as s:
        engine.start_run(s, loaded=loaded, actor=AMY)
    running = threading.Event()

    def blocking(ctx: ActionContext) -> StepResult:
        running.set()
        release.wait(WAIT * 3)
        return StepResult()

    worker = Worker(
        db,
        builtin_actions() | {"block": FunctionAction(blocking)},
        poll_seconds=0.01,
        deadline_check_seconds=0.05,
        on_breach=lambda breach: breached.set(),
        # The slow job comes first: on one shared thread the others would wait behind it.
        jobs=[Periodic("refresh", 0.01, slow_refresh), Periodic("escalator", 0.01, escalator)],
    )
    worker.start()
    try:
        assert in_call.wait(WAIT)
        assert escalated.wait(WAIT)  # the escalator took its turns while the refresh waited
        assert breached.wait(WAIT)  # ... and the run's deadline passing was raised meanwhile
    finally:
        release.set()
        worker.stop()


def test_each_job_runs_one_at_a_time_and_is_closed_once_after_its_last_run(
    db: Database,
) -> None:
    events: list[str] = []
    started, release = threading.Event(), threading.Event()
    lock = threading.Lock()
    running = 0
    overlapped = False

    def job(_stopping: object) -> None:
        nonlocal running, overlapped
        with lock:
            running += 1
            overlapped = overlapped or running > 1
        events.append("run")
        job_threads.add(threading.current_thread())
        started.set()
        release.wait(0.05)  # short turns back to back, never two at once
        events.append("run-end")
        with lock:
            running -= 1

    job_threads: set[threading.Thread] = set()
    closed_on: list[threading.Thread] = []

    def close() -> None:
        closed_on.append(threading.current_thread())
        events.append("close")

    worker = Worker(
        db,
        builtin_actions(),
        poll_seconds=0.01,
        jobs=[Periodic("job", 0.0, job, close=close)],
    )
    worker.start()
    assert started.wait(WAIT)
    worker.stop()
    assert not overlapped
    assert events.count("close") == 1
    # After its last run had ended, never under it; on the job's own thread.
    assert events[-2:] == ["run-end", "close"]
    assert events.count("run") == events.count("run-end") >= 1
    assert len(job_threads) == 1
    assert closed_on == list(job_threads)


def test_a_stopped_worker_refuses_to_start_again_and_closes_its_jobs_once(
    db: Database,
) -> None:
    closes: list[str] = []
    ran = threading.Event()

    def job(_stopping: object) -> None:
        ran.set()

    worker = Worker(
        db,
        builtin_actions(),
        poll_seconds=0.01,
        jobs=[Periodic("job", 60, job, close=lambda: closes.append("close"))],
    )
    worker.start()
    assert ran.wait(WAIT)
    worker.stop()
    assert closes == ["close"]
    with pytest.raises(RuntimeError, match="a stopped worker cannot be started again"):
        worker.start()
    worker.serve()  # serving a stopped worker again ends at once, and closes nothing twice
    worker.serve_job(worker.jobs[0])
    assert closes == ["close"]


def test_two_jobs_of_one_name_are_refused(db: Database) -> None:
    def job(_stopping: object) -> None:
        return None

    with pytest.raises(ValueError, match="unique"):
        Worker(db, builtin_actions(), jobs=[Periodic("a", 1, job), Periodic("a", 2, job)])
