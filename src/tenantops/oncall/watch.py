"""Runs that failed page on-call: nobody is left waiting on a run that gave up.

A run fails when a step's retries are spent or its error is not worth retrying;
it then waits for a person to retry it from the failed step or cancel it. A
failed run of a chain (the weekly SLA report, the monthly cost report, the
daily secret-rotation check) also starts no next period: without a page, the
chain would stop without a sound. ``page_failed_runs`` runs in the worker's
periodic jobs and pages once per failed run (key ``run:<id>:failed``, severity
``high``), for runs that failed within the look-back window — a restart after
a long outage does not page for last month's failures.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tenantops.db import Database
from tenantops.oncall import service
from tenantops.runbooks import service as runs

LOOK_BACK = timedelta(hours=24)
EVERY = timedelta(minutes=1)  # how often the worker looks
SEVERITY = "high"


def key_of(run_id: str) -> str:
    return f"run:{run_id}:failed"


def page_failed_runs(db: Database, now: datetime, *, look_back: timedelta = LOOK_BACK) -> int:
    """Page on-call for each run that failed since ``now - look_back``; how many pages were new."""
    with db.read() as session:
        failed = runs.failed_since(session, since=now - look_back)
    opened = 0
    for run in failed:
        with db.write() as session:
            if service.page_for_key(session, key_of(run.id)) is not None:
                continue
            error = " ".join(run.error.split())[:300]
            service.trigger(
                session,
                key=key_of(run.id),
                summary=f"Run of {run.runbook_id} failed ({run.id}): {error}",
                severity=SEVERITY,
                actor=service.ESCALATOR,
                tenant_id=run.tenant_id,
            )
            opened += 1
    return opened
