"""The worker's periodic jobs: the escalator runs by the clock beside the steps, a job that
raises never stops the loop, and an SLA breach pages on-call (besides its message)."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.config import OncallSettings, Settings
from tenantops.db import Database
from tenantops.notifications.models import OutboxMessage
from tenantops.oncall import service
from tenantops.runbooks.worker import Periodic, Worker
from tenantops.wiring import build_actions, build_worker
from tests.conftest import Actors, Clock
from tests.flows import approve, request_tenant
from tests.oncall.test_pages import OLI


def pages_told(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.template == "oncall_page")
        return list(session.scalars(query))


def test_the_worker_runs_the_escalator_as_a_periodic_job(
    db: Database, settings: Settings, clock: Clock
) -> None:
    settings.oncall = OncallSettings(sweep_seconds=0.05)
    worker = build_worker(settings, db)
    assert [job.name for job in worker.jobs] == ["oncall-escalator", "oncall-failed-runs"]
    with db.write() as session:
        page = service.trigger(session, key="k", summary="disk full", severity="high", actor=OLI)
    worker.start()
    try:
        deadline = time.monotonic() + 30  # a generous bound, never an assertion on timing
        while not pages_told(db) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
    (message,) = pages_told(db)
    assert message.recipients == ["oncall@localhost"]  # the default policy: role:oncall
    with db.read() as session:
        assert service.get_page(session, page_id=page.id).level == 1


def test_a_job_that_raises_is_logged_and_the_loop_goes_on(db: Database, settings: Settings) -> None:
    calls: list[str] = []
    done = threading.Event()

    def broken(_stopping: object) -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    def fine(_stopping: object) -> None:
        calls.append("fine")
        if calls.count("fine") >= 3 and calls.count("broken") >= 3:  # each on its own thread
            done.set()

    actions = build_actions(settings, db)
    hourly = Worker(
        db, actions, jobs=[Periodic("broken", 3600, broken), Periodic("fine", 3600, fine)]
    )
    assert hourly.run_jobs() == 2  # the broken one raised; the other still ran
    assert hourly.run_jobs() == 0  # neither's turn again for an hour
    assert calls == ["broken", "fine"]
    worker = Worker(
        db,
        actions,
        poll_seconds=0.01,
        jobs=[Periodic("broken", 0.01, broken), Periodic("fine", 0.01, fine)],
    )
    worker.start()
    try:
        done.wait(30)
    finally:
        worker.stop()
    assert calls.count("broken") >= 3  # it kept its turns, and so did the other job
    assert calls.count("fine") >= 3


def test_an_sla_breach_pages_oncall_once_besides_its_message(
    client: TestClient, actors: Actors, db: Database, settings: Settings, clock: Clock
) -> None:
    worker = build_worker(settings, db)
    request_tenant(client, actors.am, name="late")
    worker.run_once()
    approve(client, "late", "governance", actors.gov)
    approve(client, "late", "security", actors.sec)
    clock.advance(minutes=30)
    assert worker.check_deadlines() == 1
    with db.read() as session:
        pages = service.list_pages(session).items
    (page,) = pages
    assert page.key.startswith("sla:")
    assert page.key.endswith("/provisioning") or page.key.endswith("/run")
    assert page.severity == "high"
    assert page.tenant_name == "late"
    assert "tenant-onboarding" in page.summary
    with db.read() as session:
        sla = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "sla_breach")
        ).all()
    assert len(sla) == 1  # the existing message is still sent
