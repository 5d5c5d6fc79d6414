"""The receiver's transaction: all or nothing, and safe against concurrent copies."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantops.alerts import service
from tenantops.alerts.dispatch import Dispatch, library_resolver
from tenantops.alerts.models import Alert
from tenantops.alerts.schemas import AlertmanagerPayload
from tenantops.db import Database
from tenantops.runbooks.models import Run
from tests.alerts.conftest import RUNBOOKS
from tests.alerts.payloads import alert, notification

DISPATCH = Dispatch(resolve=library_resolver(RUNBOOKS))


def payload(*alerts: dict[str, Any]) -> AlertmanagerPayload:
    return AlertmanagerPayload.model_validate(notification(*alerts))


def count(db: Database, model: type[Alert] | type[Run]) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_failure_after_dispatch_leaves_neither_alert_nor_run(
    db: Database, receiver: TestClient, tenant: dict[str, str]
) -> None:
    runs_before = count(db, Run)  # the tenant's onboarding run

    def ledger_down(session: Session, row: Alert) -> None:
        raise RuntimeError("ledger unavailable")

    with pytest.raises(RuntimeError, match="ledger unavailable"), db.write() as session:
        service.receive(
            session, payload=payload(alert(tenant["name"])), dispatch=DISPATCH, hooks=[ledger_down]
        )
    assert count(db, Alert) == 0
    assert count(db, Run) == runs_before

    # Alertmanager retries; this time it goes through, once.
    with db.write() as session:
        done = service.receive(session, payload=payload(alert(tenant["name"])), dispatch=DISPATCH)
    assert done.stored == 1
    assert len(done.runs_started) == 1
    assert count(db, Run) == runs_before + 1


def test_the_hook_sees_every_new_alert_once(
    db: Database, receiver: TestClient, tenant: dict[str, str]
) -> None:
    seen: list[tuple[str, str | None]] = []

    def hook(session: Session, row: Alert) -> None:
        seen.append((row.status, row.run_id))

    firing = alert(tenant["name"])
    for _ in range(2):
        with db.write() as session:
            service.receive(session, payload=payload(firing), dispatch=DISPATCH, hooks=[hook])
    assert len(seen) == 1
    assert seen[0][0] == "firing"
    assert seen[0][1] is not None


def test_concurrent_copies_of_a_notification_store_it_and_start_its_run_once(
    db: Database, receiver: TestClient, tenant: dict[str, str]
) -> None:
    runs_before = count(db, Run)
    body = payload(alert(tenant["name"]), alert(tenant["name"], alertname="QuotaNearlyFull"))
    copies = 8
    barrier = threading.Barrier(copies)
    results: list[Any] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait()
            with db.write() as session:
                results.append(service.receive(session, payload=body, dispatch=DISPATCH))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert sum(r.stored for r in results) == 2
    assert sum(r.duplicates for r in results) == 2 * copies - 2
    assert count(db, Alert) == 2
    assert count(db, Run) == runs_before + 2  # one per alert (two alertnames)


def test_concurrent_firings_of_one_alert_start_one_run(
    db: Database, receiver: TestClient, tenant: dict[str, str]
) -> None:
    runs_before = count(db, Run)
    bodies = [
        payload(alert(tenant["name"], starts_at=f"2030-01-01T08:{m:02d}:00Z")) for m in range(6)
    ]
    barrier = threading.Barrier(len(bodies))
    errors: list[BaseException] = []

    def deliver(body: AlertmanagerPayload) -> None:
        try:
            barrier.wait()
            with db.write() as session:
                service.receive(session, payload=body, dispatch=DISPATCH)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert count(db, Alert) == len(bodies)
    assert count(db, Run) == runs_before + 1
