"""Workers: claim due steps, run their actions with a timeout, record the outcome.

A worker holds no state that matters: everything is in the run and step rows.
Kill it at any point and another (or the same, restarted) picks up the steps
whose lease expired; drivers see the same idempotency key again.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import structlog

from tenantops.db import Database
from tenantops.errors import AppError
from tenantops.kit.ids import new_id
from tenantops.runbooks import engine
from tenantops.runbooks.actions import Registry, StepFailed, StepResult

log = structlog.get_logger("tenantops.worker")

# How long a claimed step stays ours without a heartbeat: the steps of a worker
# that died are taken over after this, not after their whole timeout.
LEASE = timedelta(seconds=20)


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0
    fenced: int = 0


@dataclass
class _Running:
    """One action running on its own thread, and when the worker stops waiting for it."""

    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    result: StepResult | None = None
    error: BaseException | None = None


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
        lease_grace: timedelta = engine.LEASE_GRACE,
        lease: timedelta = LEASE,
        on_breach: Callable[[engine.Breach], None] | None = None,
    ) -> None:
        self.db = db
        self.actions = actions
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{new_id()[-6:]}"
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.deadline_check_seconds = deadline_check_seconds
        self.lease_grace = lease_grace
        self.lease = lease
        self.on_breach = on_breach
        self.stats = WorkerStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        """Look for work now (a run was started or a gate decided in this process)."""
        self._wake.set()

    def run_once(self) -> int:
        """Claim and run one batch; returns how many steps were claimed."""
        with self.db.write() as session:
            claims = engine.claim(
                session,
                worker=self.name,
                limit=self.concurrency,
                lease_grace=self.lease_grace,
                lease=self.lease,
            )
        # Record each step as soon as it ends (or times out), not in claim
        # order: a quick step must not wait behind a slow one until its own
        # lease expires and another worker runs it again.
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        pending = {i: (c, self._start(c, partial(finished.put, i))) for i, c in enumerate(claims)}
        heartbeat = self.lease.total_seconds() / 3
        renew_at = time.monotonic() + heartbeat
        while pending:
            nearest = min(min(run.deadline for _, run in pending.values()), renew_at)
            try:
                ready = [finished.get(timeout=max(0.0, nearest - time.monotonic()))]
            except queue.Empty:
                now = time.monotonic()
                ready = [i for i, (_, run) in pending.items() if run.deadline <= now]
            for i in ready:
                if i in pending:  # a step may end just as its deadline passes
                    self._record_safely(*pending.pop(i))
            if pending and time.monotonic() >= renew_at:
                self._renew([claim for claim, _ in pending.values()])
                renew_at = time.monotonic() + heartbeat
        return len(claims)

    def _renew(self, claims: list[engine.Claim]) -> None:
        """Heartbeat: keep the leases of steps still running, so a dead worker's lapse soon."""
        try:
            with self.db.write() as session:
                engine.renew(session, claims=claims, lease=self.lease)
        except Exception:
            # The lease may lapse and the step run again elsewhere; the fencing
            # token keeps this worker from recording over it.
            log.exception("could not renew leases", steps=[c.step_name for c in claims])

    def _record_safely(self, claim: engine.Claim, run: _Running) -> None:
        try:
            self._record(claim, run)
        except Exception:
            # Recording failed (database down?): the lease will expire and the
            # step will be claimed again; the other steps of the batch still count.
            log.exception("could not record a step", run_id=claim.run_id, step=claim.step_name)

    def _start(self, claim: engine.Claim, on_done: Callable[[], None]) -> _Running:
        """Run the action on a thread of its own (daemon).

        Not a pool: a thread cannot be killed, so an action that hangs past its
        timeout would hold a pool slot for good and starve later steps; a
        daemon thread also never keeps the process from exiting.
        """
        run = _Running(deadline=time.monotonic() + claim.timeout)

        def target() -> None:
            try:
                run.result = self._execute(claim)
            except BaseException as exc:  # handed to the recording thread
                run.error = exc
            finally:
                run.done.set()
                on_done()

        threading.Thread(target=target, name=f"step-{claim.step_name}", daemon=True).start()
        return run

    def _execute(self, claim: engine.Claim) -> StepResult:
        action = self.actions.get(claim.action)
        if action is None:
            raise StepFailed(f"no action named {claim.action!r} is installed", retriable=False)
        return action.run(claim.context())

    def _record(self, claim: engine.Claim, run: _Running) -> None:
        if not run.done.is_set():
            self._fail(claim, f"timed out after {claim.timeout:g}s", retriable=True)
            return
        if isinstance(run.error, StepFailed):
            self._fail(claim, str(run.error), retriable=run.error.retriable)
            return
        if run.error is not None or run.result is None:
            exc = run.error
            log.error("action crashed", action=claim.action, run_id=claim.run_id, exc_info=exc)
            self._fail(claim, f"{type(exc).__name__}: {exc}", retriable=True)
            return
        result = run.result
        apply = getattr(self.actions[claim.action], "apply", None)
        ctx = claim.context()
        try:
            with self.db.write() as session:
                row = engine.complete(
                    session,
                    claim=claim,
                    result=result,
                    apply=(lambda s: apply(s, ctx, result)) if apply else None,
                )
        except StepFailed as exc:
            self._fail(claim, str(exc), retriable=exc.retriable)
            return
        except AppError as exc:  # the control plane refused the change: a retry cannot help
            self._fail(claim, f"{exc.title}: {exc}", retriable=False)
            return
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
            if self.on_breach is not None:
                try:
                    self.on_breach(b)
                except Exception:  # a notifier outage must not stop deadline checks
                    log.exception("could not raise the sla breach", run_id=b.run_id, step=b.step)
        return len(breaches)

    def serve(self) -> None:
        """Loop until ``stop()``: run work, sleep ``poll_seconds`` or until woken."""
        next_deadline_check = time.monotonic()
        while not self._stop.is_set():
            try:
                claimed = self.run_once()
                # By the clock, not by idle polls: a busy worker checks too.
                if time.monotonic() >= next_deadline_check:
                    self.check_deadlines()
                    next_deadline_check = time.monotonic() + self.deadline_check_seconds
            except Exception:
                log.exception("worker loop error")
                claimed = 0
            if claimed == 0:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def start(self) -> None:
        """Serve in a background thread (the in-process worker of ``tenantops serve``)."""
        self._thread = threading.Thread(target=self.serve, name=f"worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
