"""Crash safety, proven: SIGKILL the worker anywhere, restart it, nothing lost or done twice.

Runs are started, then a worker process is started and killed after a random
(seeded) delay, over and over; the action naps a few random milliseconds
before and after its side effect, so kills land between steps, inside a step
before its effect, and after the effect but before the step is recorded. At
the end every run has succeeded, every step was recorded complete once, and
the driver's own effect log shows each effect applied exactly once.

The runbook and the actions are parameters of :func:`crash_until_done`; to
run the harness against another runbook, give it that runbook and an actions
factory (see ``tests/runbooks/crash_worker.py``); ``test_crash_onboarding.py``
does so with the shipped ``tenant-onboarding`` runbook and the real drivers.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.spec import Loaded, parse
from tests.runbooks.crash_worker import EffectLog, spawn, stop

RUNS = 200
SEED = 20_301
STARTER = Principal("ops", frozenset({Role.OPS_ENGINEER}))

# A short timeout keeps a killed worker's lease short: timeout + the 0.2s grace.
EFFECT_RUNBOOK = parse(
    """
id: crash-effects
version: "1.0"
title: Two steps, each with a side effect
tenant: false
steps:
  - {name: reserve, action: effect, timeout: 1s, retry: {attempts: 50, backoff: 10ms}}
  - {name: commit, action: effect, timeout: 1s, retry: {attempts: 50, backoff: 10ms}}
"""
)


@dataclass
class Outcome:
    kills: int
    steps_interrupted: int  # attempts a killed worker left behind
    effects_found_on_rerun: int  # re-executions that found their effect already applied


def _unfinished(db: Database) -> int:
    with db.read() as s:
        return s.execute(
            select(func.count()).select_from(Run).where(Run.finished_at.is_(None))
        ).scalar_one()


def _interrupted(db: Database) -> int:
    with db.read() as s:
        return s.execute(
            select(func.count())
            .select_from(StepAttempt)
            .where(StepAttempt.status.in_(["lost", "running"]))
        ).scalar_one()


def crash_until_done(
    db: Database,
    effects: Path,
    *,
    rng: random.Random,
    worker_args: tuple[str, ...] = ("--concurrency", "8"),
    min_kills: int = 8,
    max_kills: int = 40,
    budget_seconds: float = 120,
) -> Outcome:
    """Kill and restart the worker until every run has finished.

    Killing goes on past ``min_kills`` until kills were seen to land inside
    steps (an interrupted attempt, and a re-run finding its effect applied),
    up to ``max_kills``; then a last worker is left to finish.
    """
    log = EffectLog(effects)
    kills = 0
    give_up = time.monotonic() + budget_seconds
    while _unfinished(db) and time.monotonic() < give_up:
        proc = spawn(db.url, effects, *worker_args)
        try:
            found_on_rerun = log.query("SELECT count(*) FROM checks WHERE found")[0][0]
            enough = kills >= min_kills and _interrupted(db) > 0 and found_on_rerun > 0
            if enough or kills >= max_kills:
                while _unfinished(db) and time.monotonic() < give_up:
                    time.sleep(0.1)
                break
            time.sleep(rng.uniform(0.02, 0.5))
            proc.kill()
            proc.wait()
            kills += 1
        finally:
            if proc.poll() is None:
                stop(proc)
            elif proc.stdout is not None:
                proc.stdout.close()
    return Outcome(
        kills=kills,
        steps_interrupted=_interrupted(db),
        effects_found_on_rerun=log.query("SELECT count(*) FROM checks WHERE found")[0][0],
    )


def start_runs(db: Database, loaded: Loaded, count: int) -> list[str]:
    with db.write() as s:
        return [engine.start_run(s, loaded=loaded, actor=STARTER).id for _ in range(count)]


def test_killed_workers_finish_every_run_with_every_effect_once(
    db: Database, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.db"
    run_ids = start_runs(db, EFFECT_RUNBOOK, RUNS)
    step_names = [s.name for s in EFFECT_RUNBOOK.runbook.steps]
    expected = {(r, name) for r in run_ids for name in step_names}

    outcome = crash_until_done(db, effects, rng=random.Random(SEED))

    with db.read() as s:
        statuses = Counter(s.execute(select(Run.status)).scalars())
        succeeded_attempts = Counter(
            (run_id, name)
            for run_id, name in s.execute(
                select(RunStep.run_id, RunStep.name)
                .join(StepAttempt, StepAttempt.step_id == RunStep.id)
                .where(StepAttempt.status == "succeeded")
            )
        )
        recorded = Counter(
            (e.detail["run_id"], e.detail["step"])
            for e in s.execute(
                select(AuditEntry).where(AuditEntry.action == "run.step.succeeded")
            ).scalars()
        )
        chain = audit.verify(s)
    applied = Counter(EffectLog(effects).query("SELECT run_id, step FROM applied"))

    assert statuses == {"succeeded": RUNS}, outcome
    assert set(succeeded_attempts) == expected
    assert max(succeeded_attempts.values()) == 1, "a step was recorded complete twice"
    assert set(recorded) == expected
    assert max(recorded.values()) == 1, "a step was audited complete twice"
    assert set(applied) == expected, "an effect is missing"
    assert max(applied.values()) == 1, "an effect was applied twice"
    assert chain.ok, chain
    # The kills did land inside steps, and re-executions did not repeat effects.
    assert outcome.kills >= 8
    assert outcome.steps_interrupted > 0, outcome
    assert outcome.effects_found_on_rerun > 0, outcome
