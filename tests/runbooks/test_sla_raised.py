"""An onboarding that misses its SLA (provisioning < 30 min after approval) is raised to on-call."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit.models import AuditEntry
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.notifications.models import OutboxMessage
from tenantops.wiring import build_worker
from tests.conftest import Actors, Clock
from tests.flows import approve, request_tenant


def test_a_late_onboarding_is_recorded_once_and_raised_to_oncall_once(
    client: TestClient, actors: Actors, db: Database, settings: Settings, clock: Clock
) -> None:
    worker = build_worker(settings, db)
    request_tenant(client, actors.am, name="late")
    worker.run_once()  # intake; the run now waits at its approval gate
    approve(client, "late", "governance", actors.gov)
    approve(client, "late", "security", actors.sec)
    # The SLA clock starts at the second approval; from here nothing provisions.

    clock.advance(minutes=29, seconds=59)
    assert worker.check_deadlines() == 0
    clock.advance(seconds=1)
    assert worker.check_deadlines() == 1
    clock.advance(minutes=10)
    assert worker.check_deadlines() == 0  # a breach is raised once, not at every check

    with db.read() as s:
        raised = (
            s.execute(select(OutboxMessage).where(OutboxMessage.template == "sla_breach"))
            .scalars()
            .all()
        )
        breaches = (
            s.execute(select(AuditEntry).where(AuditEntry.action == "run.sla_breached"))
            .scalars()
            .all()
        )
    assert [m.recipients for m in raised] == [["oncall@localhost"]]
    assert raised[0].tenant_name == "late"
    assert "tenant-onboarding" in raised[0].subject
    assert len(breaches) == 1
    assert breaches[0].tenant_id == raised[0].tenant_id
