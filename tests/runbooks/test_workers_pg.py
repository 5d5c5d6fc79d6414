"""Several worker processes share one PostgreSQL database: work spread, nothing done twice.

Three ``python -m tests.runbooks.crash_worker`` processes (the same Worker as
``tenantops worker``) start on a fresh database, then a hundred five-step runs
are started; every step is claimed with ``FOR UPDATE SKIP LOCKED`` by one of
them and recorded complete exactly once.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.migrations import upgrade
from tenantops.runbooks import engine
from tenantops.runbooks.models import Run, RunStep, StepAttempt
from tenantops.runbooks.spec import parse
from tests.conftest import STORES, create_pg_database, drop_pg_database
from tests.runbooks.crash_worker import EffectLog, spawn, stop

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif("postgres" not in STORES, reason="PostgreSQL not in TENANTOPS_TEST_STORES"),
]

PROCESSES = 3
RUNS = 100
STEPS = 5
FIVE_STEPS = parse(
    "id: five\nversion: '1.0'\ntitle: Five steps\ntenant: false\nsteps:\n"
    + "".join(f"  - {{name: s{i}, action: effect, timeout: 30s}}\n" for i in range(STEPS))
)


@pytest.fixture
def pg() -> Iterator[Database]:
    url = create_pg_database()
    db = Database(url)
    upgrade(db.engine)
    yield db
    db.dispose()
    drop_pg_database(url)


def test_three_worker_processes_share_the_runs_and_complete_each_step_once(
    pg: Database, tmp_path: Path
) -> None:
    effects = tmp_path / "effects.db"
    EffectLog(effects)
    workers: list[subprocess.Popen[str]] = []
    try:
        for i in range(PROCESSES):
            workers.append(spawn(pg.url, effects, "--name", f"proc-{i}", "--concurrency", "4"))
        with pg.write() as s:
            actor = Principal("ops", frozenset({Role.OPS_ENGINEER}))
            run_ids = [engine.start_run(s, loaded=FIVE_STEPS, actor=actor).id for _ in range(RUNS)]

        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            with pg.read() as s:
                left = s.execute(
                    select(func.count()).select_from(Run).where(Run.finished_at.is_(None))
                ).scalar_one()
            if left == 0:
                break
            time.sleep(0.1)
        assert all(w.poll() is None for w in workers), "a worker process died"
    finally:
        for w in workers:
            stop(w)

    expected = {(r, f"s{i}") for r in run_ids for i in range(STEPS)}
    with pg.read() as s:
        statuses = Counter(s.execute(select(Run.status)).scalars())
        succeeded = Counter(
            (run_id, name, worker)
            for run_id, name, worker in s.execute(
                select(RunStep.run_id, RunStep.name, StepAttempt.worker)
                .join(StepAttempt, StepAttempt.step_id == RunStep.id)
                .where(StepAttempt.status == "succeeded")
            )
        )
        audited = Counter(
            (e.detail["run_id"], e.detail["step"])
            for e in s.execute(
                select(AuditEntry).where(AuditEntry.action == "run.step.succeeded")
            ).scalars()
        )
        chain = audit.verify(s)
    per_step = Counter((run_id, name) for run_id, name, _ in succeeded)
    per_worker = Counter(worker for _, _, worker in succeeded)
    applied = Counter(EffectLog(effects).query("SELECT run_id, step FROM applied"))

    assert statuses == {"succeeded": RUNS}
    assert set(per_step) == expected
    assert max(per_step.values()) == 1, "a step was completed twice"
    assert set(audited) == expected
    assert max(audited.values()) == 1, "a step was audited complete twice"
    assert set(applied) == expected
    assert max(applied.values()) == 1, "an effect was applied twice"
    assert set(per_worker) == {f"proc-{i}" for i in range(PROCESSES)}, per_worker
    assert chain.ok, chain
