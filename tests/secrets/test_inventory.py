"""The inventory's rules a reviewer found broken: a restored store's secrets are due at once,
a status filter is a query (``limit`` holds), one unreadable store does not stop the check
for every tenant, and secrets that left the store are not announced.

The project clock stands at Tuesday 2030-01-01 09:00 UTC; the store is the local adapter.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from structlog.testing import capture_logs

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec, StoreState
from tenantops.events.models import OutboxEvent
from tenantops.kit.clock import as_utc
from tenantops.runbooks.actions import ActionContext, StepFailed, StepResult
from tenantops.runbooks.worker import Worker
from tenantops.secrets import service
from tenantops.secrets.actions import SCHEDULER, schedule_day, secret_actions
from tenantops.secrets.models import SecretEntry
from tenantops.secrets.service import RotationStatus
from tenantops.wiring import build_actions
from tests.conftest import Actors, Clock
from tests.flows import drain, ok, request_tenant

SECRETS = "/api/v1/secrets"


@pytest.fixture
def tenant(client: TestClient, actors: Actors, db: Database, clock: Clock) -> dict[str, Any]:
    """Tenant acme, its store holding ``app/database`` on a 30-day cycle."""
    body = request_tenant(client, actors.am, name="acme")
    LocalSecrets(db).create_store(
        tenant_id=body["id"],
        tenant_name="acme",
        paths=[PathSpec("app/database", {"rotation_days": "30"})],
        idempotency_key="store",
    )
    return body


def listed(client: TestClient, who: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(client.get(SECRETS, params=params, headers=who))["items"]
    return items


def announced(db: Database, kind: str) -> list[str]:
    with db.read() as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == f"io.tenantops.secret.rotation.{kind}")
        )
        return [r.data["path"] for r in rows]


def register(client: TestClient, who: dict[str, str], path: str, days: int) -> None:
    body = {"path": path, "rotation_days": days}
    ok(client.put(f"{SECRETS}/acme/registrations", json=body, headers=who))


# 1. A restore is no rotation --------------------------------------------------------------


def test_a_store_revoked_and_restored_between_two_checks_makes_its_secrets_due_at_once(
    client: TestClient,
    actors: Actors,
    db: Database,
    settings: Settings,
    clock: Clock,
    tenant: dict[str, Any],
) -> None:
    worker = Worker(db, build_actions(settings, db))
    with db.write() as session:
        schedule_day(session, clock.now.date(), actor=SCHEDULER)
    drain(worker)
    (before,) = listed(client, actors.ops)
    assert (before["status"], before["next_due_at"]) == ("ok", "2030-01-31T09:00:00Z")

    clock.advance(days=3)  # an incident: the store is cut, then given back hours later
    revoked_at = clock.now
    LocalSecrets(db).revoke(tenant_id=tenant["id"], idempotency_key="incident")
    clock.advance(hours=4)
    LocalSecrets(db).restore(tenant_id=tenant["id"], idempotency_key="reactivate")
    clock.advance(days=1)
    drain(worker)

    (after,) = listed(client, actors.ops)
    # Its value never changed, and it may have leaked: due from the revocation.
    assert after["last_rotated_at"] == before["last_rotated_at"]
    assert (after["status"], after["store_status"]) == ("overdue", "active")
    assert after["next_due_at"] == revoked_at.isoformat().replace("+00:00", "Z")
    assert announced(db, "overdue") == ["app/database"]

    rotated = ok(
        client.post(
            f"{SECRETS}/acme/rotations",
            json={"path": "app/database", "evidence": "CHG-after-incident"},
            headers=actors.ops,
        ),
        201,
    )
    assert rotated["status"] == "ok"  # rotated since: its own cycle again
    assert rotated["next_due_at"] == (clock.now + timedelta(days=30)).isoformat().replace(
        "+00:00", "Z"
    )


def test_an_entry_seen_revoked_then_active_is_due_even_if_the_store_does_not_date_it(
    db: Database, clock: Clock, tenant: dict[str, Any]
) -> None:
    state = LocalSecrets(db).get_store(tenant_id=tenant["id"])
    assert state is not None
    # A store that says it is revoked but not since when (a Vault record from before).
    revoked = replace(
        state,
        status="revoked",
        revoked_at=None,
        paths=tuple(replace(p, status="revoked") for p in state.paths),
    )
    with db.write() as session:
        service.refresh_tenant(session, tenant_id=tenant["id"], tenant_name="acme", state=revoked)
    clock.advance(days=2)
    with db.write() as session:
        service.refresh_tenant(session, tenant_id=tenant["id"], tenant_name="acme", state=state)
        row = session.get(SecretEntry, (tenant["id"], "app/database"))
        assert row is not None
        assert service.status_of(row, clock.now) == RotationStatus.OVERDUE
        assert as_utc(row.last_rotated_at) == datetime(2030, 1, 1, 9, tzinfo=UTC)


# 2. A status filter is a query ----------------------------------------------------------


def test_each_status_filter_returns_only_that_status_and_honours_its_limit(
    client: TestClient, actors: Actors, clock: Clock, tenant: dict[str, Any]
) -> None:
    register(client, actors.ops, "app/slow", 60)  # due day 60, due soon from day 46
    register(client, actors.ops, "app/old", 1)  # overdue from day 1
    clock.advance(days=45)
    register(client, actors.ops, "app/fast", 10)  # due day 55, due soon from day 53
    clock.advance(days=2)  # day 47

    def paths(**params: Any) -> list[str]:
        return [s["path"] for s in listed(client, actors.ops, **params)]

    assert paths(status="ok") == ["app/fast"]
    assert paths(status="overdue") == ["app/old"]
    # app/fast is due sooner but is not due soon yet: the one row asked for is app/slow.
    assert paths(status="due_soon", limit=1) == ["app/slow"]
    assert paths(status="revoked") == []
    assert paths() == ["app/old", "app/fast", "app/slow"]


# 3. One unreadable store does not stop the check ------------------------------------------


class OneBrokenStore:
    """The local store, except that reading ``broken``'s fails (``retry`` says how)."""

    def __init__(self, db: Database, broken: set[str], retry: Retry = Retry.NEEDS_HUMAN) -> None:
        self.local, self.broken, self.retry = LocalSecrets(db), broken, retry

    def get_store(self, *, tenant_id: str) -> StoreState | None:
        if tenant_id in self.broken:
            raise DriverError("vault get_store: HTTP 403: permission denied", retry=self.retry)
        return self.local.get_store(tenant_id=tenant_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.local, name)


def refresh(settings: Settings, db: Database, store: OneBrokenStore) -> StepResult:
    send = build_actions(settings, db)["notify.send"]
    action = secret_actions(settings, db, store=store, send=send)["secrets.refresh"]
    ctx = ActionContext(
        run_id="r1",
        step_name="refresh",
        tenant_id=None,
        params={},
        idempotency_key="r1/refresh/1",
        attempt=1,
        actor="system:secrets-scheduler",
    )
    return action.run(ctx)


def test_a_store_that_cannot_be_read_is_named_and_the_other_tenants_are_refreshed(
    client: TestClient,
    actors: Actors,
    db: Database,
    settings: Settings,
    tenant: dict[str, Any],
) -> None:
    broken = request_tenant(client, actors.am, name="broken")

    with capture_logs() as logs:
        result = refresh(settings, db, OneBrokenStore(db, {broken["id"]}))

    assert result.output == {"tenants": 1, "stores": 1, "paths": 1, "failed": 1}
    (failure,) = result.evidence["failures"]
    assert failure.startswith("broken: vault get_store: HTTP 403")
    assert [(e["log_level"], e["tenant"]) for e in logs if "tenant" in e] == [("warning", "broken")]
    assert [s["path"] for s in listed(client, actors.ops, tenant="acme")] == ["app/database"]


def test_when_no_store_can_be_read_the_step_fails_and_says_so(
    db: Database, settings: Settings, tenant: dict[str, Any]
) -> None:
    store = OneBrokenStore(db, {tenant["id"]}, retry=Retry.RETRIABLE)
    with pytest.raises(StepFailed, match="no tenant's secret store could be read") as failed:
        refresh(settings, db, store)
    assert failed.value.retriable


# 5. Secrets that left the store are not announced -----------------------------------------


def test_a_secret_that_left_the_store_is_not_announced_one_registered_ahead_of_it_is(
    client: TestClient, actors: Actors, db: Database, clock: Clock, tenant: dict[str, Any]
) -> None:
    with db.write() as session:
        state = LocalSecrets(db).get_store(tenant_id=tenant["id"])
        service.refresh_tenant(session, tenant_id=tenant["id"], tenant_name="acme", state=state)
    register(client, actors.ops, "app/database", 30)  # registered, then it leaves the store
    register(client, actors.ops, "app/coming", 30)  # registered before the store holds it
    with db.write() as session:  # the tenant is archived: its store is gone
        service.refresh_tenant(session, tenant_id=tenant["id"], tenant_name="acme", state=None)
    clock.advance(days=40)

    with db.write() as session:
        summary = service.check_due(session, actor="system:secrets-check")

    assert announced(db, "overdue") == ["app/coming"]
    assert (summary.overdue, summary.announced) == (1, 1)
    stores = {s["path"]: s["store_status"] for s in listed(client, actors.ops)}
    assert stores == {"app/database": "absent", "app/coming": "absent"}  # still listed
