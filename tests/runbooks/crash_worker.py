"""A worker process the crash and multi-worker tests start, kill and restart.

    python -m tests.runbooks.crash_worker --db URL --effects PATH [--name NAME]
        [--concurrency 4] [--lease-grace 0.2] [--poll 0.02] [--actions MODULE:FACTORY]
        [--take-over]

It prints ``ready`` on stdout once it is about to claim work, then serves
until SIGTERM (or SIGKILL, which is the point). ``--actions`` names a factory
``(db, effects_path) -> Registry``; the default installs ``effect``, an action
with a real side effect recorded in an :class:`EffectLog`. To run the harness
against another runbook, pass a factory that installs that runbook's actions:
``onboarding_actions`` installs the product's own (``wiring.build_actions``
with the ``TENANTOPS_*`` settings of the environment).

``--take-over`` (with ``--name``) is for a process restarted under the name of
one the harness killed and waited for: it first ends the leases that name
still holds, as if they had run out. A lease lasts the step's timeout plus the
grace, and the shipped runbooks have timeouts of minutes; this lets the
restarted worker reclaim its dead predecessor's steps now, through the
engine's own reclaim path (the attempt closed ``lost``, the step run again
under a new lease token), without waiting those minutes. It must never be
used while a process of that name may still be alive.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.kit.clock import utcnow
from tenantops.logs import configure_logging
from tenantops.runbooks.actions import ActionContext, FunctionAction, Registry, StepResult
from tenantops.runbooks.models import RunStep
from tenantops.runbooks.worker import Worker
from tenantops.wiring import build_actions

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tries (key TEXT, run_id TEXT, step TEXT, attempt INT, worker TEXT);
CREATE TABLE IF NOT EXISTS checks (key TEXT, found INT);
CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS applied (key TEXT, run_id TEXT, step TEXT, worker TEXT);
"""


class EffectLog:
    """A driver's own record of side effects, in a SQLite file of its own.

    ``tries``: every execution of the action. ``checks``: every attempt to
    apply the effect, and whether its idempotency key was already there.
    ``applied``: one row per time the effect really happened, with no unique
    constraint, so an effect applied twice shows up as two rows.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def tried(self, ctx: ActionContext, worker: str) -> None:
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO tries VALUES (?, ?, ?, ?, ?)",
                (ctx.idempotency_key, ctx.run_id, ctx.step_name, ctx.attempt, worker),
            )

    def apply_once(self, ctx: ActionContext, worker: str) -> bool:
        """Apply the effect unless its key is already recorded; True if it was applied now."""
        with self._tx() as conn:
            found = conn.execute(
                "SELECT 1 FROM effects WHERE key = ?", (ctx.idempotency_key,)
            ).fetchone()
            conn.execute(
                "INSERT INTO checks VALUES (?, ?)", (ctx.idempotency_key, found is not None)
            )
            if found is not None:
                return False
            conn.execute("INSERT INTO effects VALUES (?)", (ctx.idempotency_key,))
            conn.execute(
                "INSERT INTO applied VALUES (?, ?, ?, ?)",
                (ctx.idempotency_key, ctx.run_id, ctx.step_name, worker),
            )
            return True

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            return list(conn.execute(sql, args).fetchall())
        finally:
            conn.close()


def effect_actions(db: Database, effects: Path, *, max_sleep_ms: int = 8) -> Registry:
    """``effect``: record the try, nap, apply once by idempotency key, nap again.

    The naps (a few random milliseconds) make a kill likely to land inside a
    step: before the effect, and between the effect and the step's completion.
    """
    log = EffectLog(effects)
    worker = f"pid{os.getpid()}"

    def nap() -> None:
        time.sleep(random.uniform(0, max_sleep_ms) / 1000)

    def run(ctx: ActionContext) -> StepResult:
        log.tried(ctx, worker)
        nap()
        applied_now = log.apply_once(ctx, worker)
        nap()
        return StepResult(
            output={"key": ctx.idempotency_key},
            evidence={"applied_now": applied_now, "attempt": ctx.attempt},
        )

    return {"effect": FunctionAction(run)}


# How long an onboarding action waits after its effect before the worker may
# record it. The engine records a step within milliseconds of its end, so a
# random kill would seldom land between a driver's effect and its record; this
# keeps that window open long enough for the kills to find it (the case the
# crash test must show: the re-run finds the effect already applied).
AFTER_EFFECT_SECONDS = 0.03


def _after_effect_pause(action: Any) -> Any:
    if not isinstance(action, FunctionAction):
        return action

    def run(ctx: ActionContext) -> StepResult:
        result = action.run_fn(ctx)
        time.sleep(AFTER_EFFECT_SECONDS)
        return result

    return replace(action, run_fn=run)


def onboarding_actions(db: Database, effects: Path) -> Registry:
    """The product's actions and local drivers, as ``tenantops worker`` has them,
    each pausing briefly after its effect (``AFTER_EFFECT_SECONDS``).

    Settings come from the ``TENANTOPS_*`` environment (data directory, GitOps
    repository, health URL); the database is the one given. The drivers keep
    their own effect logs, so ``effects`` is not used.
    """
    actions = build_actions(Settings(database_url=db.url), db)
    return {name: _after_effect_pause(action) for name, action in actions.items()}


def take_over(db: Database, name: str) -> int:
    """End the leases ``name`` still holds (its process is dead); how many there were."""
    with db.write() as session:
        ended = session.execute(
            update(RunStep)
            .where(RunStep.lease_owner == name, RunStep.status == "running")
            .values(lease_expires_at=utcnow())
        )
        return int(getattr(ended, "rowcount", 0) or 0)


def spawn(
    db_url: str, effects: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a worker process and wait (bounded) until it says ``ready``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", __name__, "--db", db_url, "--effects", str(effects), *extra],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        raise RuntimeError(f"worker did not start (exit {proc.returncode}, said {line!r})")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it does not go within a few seconds."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _factory(spec: str) -> Callable[[Database, Path], Registry]:
    module, _, name = spec.partition(":")
    found: Callable[[Database, Path], Registry] = getattr(importlib.import_module(module), name)
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", required=True)
    parser.add_argument("--effects", required=True, type=Path)
    parser.add_argument("--name")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease-grace", type=float, default=0.2)
    parser.add_argument("--poll", type=float, default=0.02)
    parser.add_argument("--actions", default=f"{__name__}:effect_actions")
    parser.add_argument("--take-over", action="store_true")
    args = parser.parse_args(argv)
    if args.take_over and not args.name:
        parser.error("--take-over needs --name")

    configure_logging("WARNING", json=False)
    db = Database(args.db)
    if args.take_over:
        take_over(db, args.name)
    worker = Worker(
        db,
        _factory(args.actions)(db, args.effects),
        name=args.name,
        concurrency=args.concurrency,
        poll_seconds=args.poll,
        lease_grace=timedelta(seconds=args.lease_grace),
    )
    signal.signal(signal.SIGTERM, lambda *_: worker.stop(timeout=0))
    print("ready", flush=True)  # the protocol with the test
    worker.serve()
    db.dispose()
    sys.exit(0)


if __name__ == "__main__":
    main()
