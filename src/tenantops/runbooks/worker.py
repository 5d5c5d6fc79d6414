"""Workers: claim due steps, run their actions with a timeout, record the outcome.

A worker holds no state that matters: everything is in the run and step rows.
Kill it at any point and another (or the same, restarted) picks up the steps
whose lease expired; drivers see the same idempotency key again.
"""

from __future__ import annotations

import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import structlog

from tenantops.db import Database
from tenantops.kit.ids import new_id
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext, Registry, StepFailed, StepResult

log = structlog.get_logger("tenantops.worker")


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0
    fenced: int = 0


class Worker:
    """Runs steps from the database until stopped; several may share one database."""

    def __init__(
        self,
        db: Database,
        actions: Registry,
        *,
        name: str | None = None,
        concurrency: int = 4,
        poll_seconds: float = 0.5,
        deadline_check_seconds: float = 15.0,
    ) -> None:
        self.db = db
        self.actions = actions
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.deadline_check_seconds = deadline_check_seconds
        self.stats = WorkerStats()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="step")
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Look for work now (a run was started or a gate decided in this process)."""
        self._wake.set()

    def run_once(self) -> int:
        """Claim and run one batch; returns how many steps were claimed."""
        with self.db.write() as session:
            claims = engine.claim(session, worker=self.name, limit=self.concurrency)
        futures = [(c, self._pool.submit(self._execute, c)) for c in claims]
        for claim, future in futures:
            self._record(claim, future)
        return len(claims)

    def _execute(self, claim: engine.Claim) -> StepResult:
        action = self.actions.get(claim.action)
        if action is None:
            raise StepFailed(f"no action named {claim.action!r} is installed", retriable=False)
        ctx = ActionContext(
            run_id=claim.run_id,
            step_name=claim.step_name,
            tenant_id=claim.tenant_id,
            params=claim.params,
            idempotency_key=claim.idempotency_key,
            attempt=claim.attempt,
            actor=claim.actor,
            inputs=claim.inputs,
        )
        return action.run(ctx)

    def _record(self, claim: engine.Claim, future: Future[StepResult]) -> None:
        try:
            result = future.result(timeout=claim.timeout)
        except FutureTimeout:
            self._fail(claim, f"timed out after {claim.timeout:g}s", retriable=True)
            return
        except StepFailed as exc:
            self._fail(claim, str(exc), retriable=exc.retriable)
            return
        except Exception as exc:
            log.exception("action crashed", action=claim.action, run_id=claim.run_id)
            self._fail(claim, f"{type(exc).__name__}: {exc}", retriable=True)
            return
        action = self.actions[claim.action]
        apply = getattr(action, "apply", None)
        ctx = ActionContext(
            run_id=claim.run_id,
            step_name=claim.step_name,
            tenant_id=claim.tenant_id,
            params=claim.params,
            idempotency_key=claim.idempotency_key,
            attempt=claim.attempt,
            actor=claim.actor,
            inputs=claim.inputs,
        )
        with self.db.write() as session:
            row = engine.complete(
                session,
                claim=claim,
                result=result,
                apply=(lambda s: apply(s, ctx, result)) if apply else None,
            )
        if row is None:
            self.stats.fenced += 1
            log.warning("lease lost; result dropped", run_id=claim.run_id, step=claim.step_name)
        else:
            self.stats.completed += 1

    def _fail(self, claim: engine.Claim, error: str, *, retriable: bool) -> None:
        with self.db.write() as session:
            row = engine.fail(session, claim=claim, error=error, retriable=retriable)
        if row is None:
            self.stats.fenced += 1
        else:
            self.stats.failed += 1
            log.info(
                "step failed",
                run_id=claim.run_id,
                step=claim.step_name,
                error=error,
                will_retry=row.status == "ready",
            )

    def check_deadlines(self) -> int:
        with self.db.write() as session:
            breaches = engine.check_deadlines(session)
        for b in breaches:
            log.warning(
                "sla breached",
                run_id=b.run_id,
                step=b.step,
                tenant_id=b.tenant_id,
                deadline=b.deadline.isoformat(),
            )
        return len(breaches)

    def serve(self) -> None:
        """Loop until ``stop()``: run work, sleep ``poll_seconds`` or until woken."""
        since_deadline_check = self.deadline_check_seconds
        while not self._stop.is_set():
            try:
                claimed = self.run_once()
                if since_deadline_check >= self.deadline_check_seconds:
                    self.check_deadlines()
                    since_deadline_check = 0.0
            except Exception:
                log.exception("worker loop error")
                claimed = 0
            if claimed == 0:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
                since_deadline_check += self.poll_seconds

    def start(self) -> None:
        """Serve in a background thread (the in-process worker of ``tenantops serve``)."""
        self._thread = threading.Thread(target=self.serve, name=f"worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
