"""Runs that failed page on-call: nobody is left waiting on a run that gave up.

A run fails when a step's retries are spent or its error is not worth retrying;
it then waits for a person to retry it from the failed step (or to answer the
page: the failure stands). A
failed run of a chain (the weekly SLA report, the monthly cost report, the
daily secret-rotation check) also starts no next period: without a page, the
chain would stop without a sound. ``page_failed_runs`` runs in the worker's
periodic jobs and pages once per failure (key ``run:<id>:failed:<when>``,
severity ``high``), for runs that failed within the look-back window — a
restart after a long outage does not page for last month's failures. A run a
person ended by rejecting a gate did not fail: it is not paged.

The page is resolved by the same job once its run is no longer that failure
(retried: running again, or done; or closed: nobody is to retry it). If the
retry fails again, that is a new failure and a new page. A closed run is not
paged.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from tenantops.db import Database
from tenantops.errors import AppError
from tenantops.oncall import service
from tenantops.runbooks import service as runs
from tenantops.runbooks.service import FailedRun

log = structlog.get_logger("tenantops.oncall")

LOOK_BACK = timedelta(hours=24)
EVERY = timedelta(minutes=1)  # how often the worker looks
SEVERITY = "high"
PREFIX = "run:"


def key_for(run_id: str, failed_at: datetime) -> str:
    """The page key of one failure of one run (a retry that fails again is another)."""
    return f"{PREFIX}{run_id}:failed:{failed_at:%Y%m%dT%H%M%S%f}"


def key_of(run: FailedRun) -> str:
    return key_for(run.id, run.finished_at)


def page_failed_runs(db: Database, now: datetime, *, look_back: timedelta = LOOK_BACK) -> int:
    """Page on-call for each run that failed since ``now - look_back``, and resolve the
    pages of runs retried since; how many pages were opened."""
    with db.read() as session:
        failed = runs.failed_since(session, since=now - look_back)
    opened = 0
    for run in failed:
        try:
            opened += _page(db, run)
        except AppError as exc:  # one run's page must not keep the others from theirs
            log.warning("could not page a failed run", run_id=run.id, error=exc.detail)
    _resolve_recovered(db, {key_of(run) for run in failed})
    return opened


def _page(db: Database, run: FailedRun) -> int:
    key = key_of(run)
    with db.write() as session:
        if service.page_for_key(session, key) is not None:
            return 0
        error = " ".join(run.error.split())[:300]
        service.trigger(
            session,
            key=key,
            summary=f"Run of {run.runbook_id} failed ({run.id}): {error}",
            severity=SEVERITY,
            actor=service.ESCALATOR,
            tenant_id=run.tenant_id,
        )
    return 1


def _resolve_recovered(db: Database, still_failed: set[str]) -> None:
    with db.read() as session:
        open_keys = [k for k in service.open_keys(session, PREFIX) if k not in still_failed]
    for key in open_keys:
        run_id = key.removeprefix(PREFIX).partition(":failed:")[0]
        with db.write() as session:
            status, failed_at = runs.status_of(session, run_id) or (None, None)
            if status == "failed" and failed_at is not None and key_for(run_id, failed_at) == key:
                continue  # the same failure, past the look-back: left to a person
            service.resolve(session, key=key, actor=service.ESCALATOR)
