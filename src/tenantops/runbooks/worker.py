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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial

import structlog
from sqlalchemy.orm import Session

from tenantops.db import Database
from tenantops.errors import AppError
from tenantops.kit.ids import new_id
from tenantops.runbooks import batch, engine
from tenantops.runbooks.actions import FunctionAction, Registry, StepFailed, StepResult

log = structlog.get_logger("tenantops.worker")

# How long a claimed step stays ours without a heartbeat: the steps of a worker
# that died are taken over after this, not after their whole timeout.
LEASE = timedelta(seconds=20)


@dataclass
class WorkerStats:
    completed: int = 0
    failed: int = 0
    fenced: int = 0


# How long a stopping worker waits for a periodic job still running (it is a daemon).
JOBS_JOIN_SECONDS = 10.0


@dataclass(frozen=True)
class Periodic:
    """A job the worker runs every ``seconds`` by the clock, beside the steps (a sweep).

    The worker knows nothing of what it does (the composition root installs the
    jobs: e.g. the on-call escalator). Each job runs on a thread of its own,
    started and stopped with the worker, so steps that run for half an hour
    never hold up a page, a long sweep never holds up claiming steps, and a job
    waiting on a slow system (the ITSM tool, an SMTP server) never holds up
    another job's turn or the SLA checks. One run of a job at a time; an
    exception is logged and the job runs again at its next turn. ``run`` is
    given a function that says whether the worker is stopping, so a sweep of
    many items can end between two of them instead of holding up the stop.
    ``close`` (say, the job's own HTTP client) is called at most once, on the
    job's thread when the serving worker stops, after the job's last run (a
    stopped worker is not started again). A run that outlasts the stop's
    ``JOBS_JOIN_SECONDS`` is left running and closed after it ends, if the
    process lives that long: the close is best-effort.
    """

    name: str
    seconds: float
    run: Callable[[Callable[[], bool]], object]
    close: Callable[[], object] | None = None


@dataclass
class _Running:
    """One action running on its own thread, and when the worker stops waiting for it."""

    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    result: StepResult | None = None
    error: BaseException | None = None


class _Threads:
    """Daemon threads for actions: reused when idle, a new one whenever none is.

    Not a fixed pool: a thread cannot be killed, so an action that hangs past
    its timeout would hold a pool slot for good and starve later steps. Here a
    hung thread is just never idle again; the next step gets another thread.
    Reuse saves starting a thread per step (on a loaded machine its start-up
    handshake costs more than a no-op step). Up to ``keep`` idle threads wait
    for work, each for ``idle_seconds`` at most; daemon threads never keep the
    process from exiting.
    """

    def __init__(self, *, keep: int, idle_seconds: float = 30.0) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # waiting threads that no submit() has counted on yet
        self._keep = keep
        self._idle_seconds = idle_seconds

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            reuse = self._idle > 0
            if reuse:
                self._idle -= 1
        self._jobs.put(job)
        if not reuse:
            threading.Thread(target=self._serve, name="step", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:  # more threads wait than jobs come: this one may go
                        self._idle -= 1
                        return
                continue  # a submit() counted on a waiting thread: its job is coming
            job()
            with self._lock:
                if self._idle >= self._keep:
                    return
                self._idle += 1


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
        chain: bool = True,
        jobs: Sequence[Periodic] = (),
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
        # Take the next step of a run in the transaction that completes the last one.
        self.chain = chain
        self.jobs = tuple(jobs)
        names = [job.name for job in self.jobs]
        if len(set(names)) != len(names):
            raise ValueError(f"periodic job names must be unique: {names}")
        self._next_job_at: dict[str, float] = {}
        self.stats = WorkerStats()
        self._threads = _Threads(keep=concurrency)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._jobs_threads: list[threading.Thread] = []
        self._closed: set[str] = set()
        self._closing = threading.Lock()

    def wake(self) -> None:
        """Look for work now (a run was started or a gate decided in this process)."""
        self._wake.set()

    def run_once(self) -> int:
        """Claim and run one batch, and the next steps of its runs as they come due.

        Returns how many steps were run. Results are recorded as steps end (or
        time out), not in claim order: a quick step must not wait behind a slow
        one until its own lease expires and another worker runs it again. The
        steps that ended together are recorded in one transaction, which also
        claims the next step of each of their runs for this worker.
        """
        with self.db.write() as session:
            claims = self._claim(session)
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        pending: dict[int, tuple[engine.Claim, _Running]] = {}
        started = 0

        def launch(new: list[engine.Claim]) -> None:
            nonlocal started
            for claim in new:
                pending[started] = (claim, self._start(claim, partial(finished.put, started)))
                started += 1

        launch(claims)
        heartbeat = self.lease.total_seconds() / 3
        renew_at = time.monotonic() + heartbeat
        while pending:
            nearest = min(min(run.deadline for _, run in pending.values()), renew_at)
            try:
                ready = [finished.get(timeout=max(0.0, nearest - time.monotonic()))]
                while not finished.empty():  # everything else that ended meanwhile
                    ready.append(finished.get_nowait())
            except queue.Empty:
                now = time.monotonic()
                ready = [i for i, (_, run) in pending.items() if run.deadline <= now]
            # A step may end just as its deadline passes: record it once.
            batch = [pending.pop(i) for i in dict.fromkeys(ready) if i in pending]
            launch(self._record_safely(batch))
            if pending and time.monotonic() >= renew_at:
                self._renew([claim for claim, _ in pending.values()])
                renew_at = time.monotonic() + heartbeat
        return started

    def _claim(self, session: Session, runs: list[str] | None = None) -> list[engine.Claim]:
        return engine.claim(
            session,
            worker=self.name,
            limit=self.concurrency if runs is None else len(runs),
            lease_grace=self.lease_grace,
            lease=self.lease,
            runs=runs,
        )

    def _renew(self, claims: list[engine.Claim]) -> None:
        """Heartbeat: keep the leases of steps still running, so a dead worker's lapse soon."""
        try:
            with self.db.write() as session:
                engine.renew(session, claims=claims, lease=self.lease)
        except Exception:
            # The lease may lapse and the step run again elsewhere; the fencing
            # token keeps this worker from recording over it.
            log.exception("could not renew leases", steps=[c.step_name for c in claims])

    def _record_safely(self, batch: list[tuple[engine.Claim, _Running]]) -> list[engine.Claim]:
        """Record what ``batch`` did; returns the next steps claimed for this worker."""
        succeeded: list[tuple[engine.Claim, StepResult]] = []
        for claim, run in batch:
            result = self._outcome(claim, run)
            if result is not None:
                succeeded.append((claim, result))
        if len(succeeded) <= 1:
            return self._complete_one(*succeeded[0]) if succeeded else []
        try:
            return self._complete(succeeded)
        except Exception:
            log.info("recording the batch step by step", steps=len(succeeded), exc_info=True)
        # One completion spoilt the shared transaction (an action's apply refused
        # its change, say): record each on its own so the others still count.
        chained: list[engine.Claim] = []
        for claim, result in succeeded:
            chained += self._complete_one(claim, result)
        return chained

    def _complete_one(self, claim: engine.Claim, result: StepResult) -> list[engine.Claim]:
        try:
            return self._complete([(claim, result)])
        except StepFailed as exc:
            self._fail_safely(claim, str(exc), retriable=exc.retriable)
        except AppError as exc:  # the control plane refused the change: a retry cannot help
            self._fail_safely(claim, f"{exc.title}: {exc}", retriable=False)
        except Exception:
            # Recording failed (database down?): the lease will expire and the
            # step will be claimed again.
            log.exception("could not record a step", run_id=claim.run_id, step=claim.step_name)
        return []

    def _complete(self, succeeded: list[tuple[engine.Claim, StepResult]]) -> list[engine.Claim]:
        """Record ``succeeded`` and claim their runs' next steps, in one transaction.

        Plain steps are recorded set-based (``batch.complete_many``); the others
        step by step through ``engine.complete`` in the same transaction.
        """
        holder = (
            batch.Holder(worker=self.name, lease=self.lease, lease_grace=self.lease_grace)
            if self.chain
            else None
        )
        finished = [
            batch.Finished(claim, result, self._apply(claim, result)) for claim, result in succeeded
        ]
        with self.db.write() as session:
            recorded = batch.complete_many(session, finished, holder=holder)
        self.stats.completed += len(recorded.completed)
        self.stats.fenced += len(recorded.fenced)
        for claim in recorded.fenced:
            log.warning("lease lost; result dropped", run_id=claim.run_id, step=claim.step_name)
        return recorded.chained

    def _apply(self, claim: engine.Claim, result: StepResult) -> Callable[[Session], None] | None:
        """What the step's action changes in the control plane, bound to this step."""
        action = self.actions[claim.action]
        if isinstance(action, FunctionAction) and action.apply_fn is None:
            return None  # its apply() does nothing: the step can take the batch path
        apply = getattr(action, "apply", None)
        if apply is None:
            return None
        ctx = claim.context()
        return lambda session: apply(session, ctx, result)

    def _outcome(self, claim: engine.Claim, run: _Running) -> StepResult | None:
        """The step's result, or ``None`` once its failure or timeout is recorded."""
        if not run.done.is_set():
            self._fail_safely(claim, f"timed out after {claim.timeout:g}s", retriable=True)
            return None
        if isinstance(run.error, StepFailed):
            self._fail_safely(claim, str(run.error), retriable=run.error.retriable)
            return None
        if run.error is not None or run.result is None:
            exc = run.error
            log.error("action crashed", action=claim.action, run_id=claim.run_id, exc_info=exc)
            self._fail_safely(claim, f"{type(exc).__name__}: {exc}", retriable=True)
            return None
        return run.result

    def _fail_safely(self, claim: engine.Claim, error: str, *, retriable: bool) -> None:
        try:
            self._fail(claim, error, retriable=retriable)
        except Exception:
            log.exception("could not record a step", run_id=claim.run_id, step=claim.step_name)

    def _start(self, claim: engine.Claim, on_done: Callable[[], None]) -> _Running:
        """Run the action on a daemon thread of ``_Threads`` (reused, never a fixed pool)."""
        run = _Running(deadline=time.monotonic() + claim.timeout)

        def target() -> None:
            try:
                run.result = self._execute(claim)
            except BaseException as exc:  # handed to the recording thread
                run.error = exc
            finally:
                run.done.set()
                on_done()

        self._threads.submit(target)
        return run

    def _execute(self, claim: engine.Claim) -> StepResult:
        action = self.actions.get(claim.action)
        if action is None:
            raise StepFailed(f"no action named {claim.action!r} is installed", retriable=False)
        return action.run(claim.context())

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

    def run_jobs(self) -> int:
        """Run, one after the other on this thread, the periodic jobs whose turn it is
        (by the monotonic clock); how many ran. ``serve`` runs each on its own thread.

        A job that raises is logged and tried again at its next turn: one job's
        outage never stops the loop, the steps, or the other jobs.
        """
        return sum(self._take_turn(job) for job in self.jobs)

    def _take_turn(self, job: Periodic) -> bool:
        """Run ``job`` if its turn has come; whether it ran."""
        now = time.monotonic()
        if now < self._next_job_at.get(job.name, 0.0):
            return False
        self._next_job_at[job.name] = now + job.seconds
        try:
            job.run(self._stop.is_set)
        except Exception:
            log.exception("periodic job failed", job=job.name)
        return True

    def serve_job(self, job: Periodic) -> None:
        """Loop until ``stop()``: run ``job`` at each of its turns, then ``job.close``.

        The job's own thread (``serve`` starts one per job): however long the
        steps or the other jobs run, this one runs at its turn.
        """
        try:
            while not self._stop.is_set():
                self._take_turn(job)
                wait = self._next_job_at.get(job.name, 0.0) - time.monotonic()
                self._stop.wait(max(0.0, wait))
        finally:
            self._close(job)

    def _close(self, job: Periodic) -> None:
        """Call ``job.close`` unless it was called before (a job's client closes once)."""
        with self._closing:
            if job.close is None or job.name in self._closed:
                return
            self._closed.add(job.name)
        try:
            job.close()
        except Exception:
            log.exception("could not close a periodic job", job=job.name)

    def serve_deadlines(self) -> None:
        """Loop until ``stop()``: check the SLA deadlines every ``deadline_check_seconds``.

        A thread of its own, not between step batches (a batch that runs a
        half-hour step must not hold up a breach and the page it triggers), nor
        behind a periodic job.
        """
        while not self._stop.is_set():
            try:
                self.check_deadlines()
            except Exception:
                log.exception("sla deadline check failed")
            self._stop.wait(self.deadline_check_seconds)

    def _start_jobs(self) -> None:
        if any(thread.is_alive() for thread in self._jobs_threads):
            return
        self._jobs_threads = [
            threading.Thread(target=self.serve_deadlines, name=f"sla-{self.name}", daemon=True)
        ]
        self._jobs_threads += [
            threading.Thread(
                target=partial(self.serve_job, job), name=f"job-{job.name}-{self.name}", daemon=True
            )
            for job in self.jobs
        ]
        for thread in self._jobs_threads:
            thread.start()

    def _join_jobs(self, timeout: float) -> None:
        """Wait up to ``timeout`` in all for the jobs' and the SLA checks' threads."""
        deadline = time.monotonic() + timeout
        for thread in self._jobs_threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def serve(self) -> None:
        """Loop until ``stop()``: run work, sleep ``poll_seconds`` or until woken.

        The periodic jobs (``serve_job``) and the SLA deadline checks
        (``serve_deadlines``) run meanwhile, each on a thread of its own, started
        here and joined (up to ``JOBS_JOIN_SECONDS`` in all) when the loop ends.
        """
        self._start_jobs()
        try:
            while not self._stop.is_set():
                try:
                    claimed = self.run_once()
                except Exception:
                    log.exception("worker loop error")
                    claimed = 0
                if claimed == 0:
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
        finally:
            self._stop.set()  # the jobs' threads end with the loop
            self._join_jobs(JOBS_JOIN_SECONDS)

    def start(self) -> None:
        """Serve in a background thread (the in-process worker of ``tenantops serve``),
        each periodic job on another.

        Once: a stopped worker has closed its jobs (their clients), so it refuses to
        start again rather than run them closed; build a new worker instead.
        """
        if self._stop.is_set():
            raise RuntimeError("a stopped worker cannot be started again")
        self._thread = threading.Thread(target=self.serve, name=f"worker-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving; wait up to ``timeout`` for the loop and for the jobs' threads."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        self._join_jobs(max(0.0, deadline - time.monotonic()))
