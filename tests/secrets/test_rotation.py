"""Secrets rotation: the inventory refreshed from the store, the daily check's chain of
runs, due and overdue notices once per due date, rotations recorded, and the API.

The project clock stands at Tuesday 2030-01-01 09:00 UTC (tests.conftest.Clock); the
secret store is the local adapter, the embedded default.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.audit import service as audit
from tenantops.audit.models import AuditEntry
from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec
from tenantops.events.models import OutboxEvent
from tenantops.notifications.models import OutboxMessage
from tenantops.runbooks import engine
from tenantops.runbooks.actions import ActionContext
from tenantops.runbooks.models import Run
from tenantops.runbooks.worker import Worker
from tenantops.secrets import service
from tenantops.secrets.actions import CHECK_RUNBOOK, SCHEDULER, schedule_day
from tenantops.secrets.models import SecretEntry
from tenantops.secrets.service import RotationStatus
from tenantops.wiring import build_actions
from tests.conftest import Actors, CliRunner, Clock, TokenFactory
from tests.flows import drain, ok, problem, request_tenant

SECRETS = "/api/v1/secrets"
OWNER = "team-db@acme.example"


def entry(**fields: Any) -> SecretEntry:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    row = SecretEntry(
        tenant_id="t",
        path="app/db",
        tenant_name="acme",
        rotation_days=fields.pop("rotation_days", 30),
        store_status=fields.pop("store_status", "active"),
        first_seen_at=at,
        updated_at=at,
        **fields,
    )
    service._recompute(row)
    return row


# Where a secret stands ------------------------------------------------------------------


def test_a_secret_is_due_soon_a_quarter_cycle_before_its_date_and_overdue_on_it() -> None:
    row = entry(rotation_days=30, store_rotated_at=datetime(2030, 1, 1, tzinfo=UTC))
    due = datetime(2030, 1, 31, tzinfo=UTC)
    assert service.as_utc(row.next_due_at) == due
    assert service.status_of(row, due - timedelta(days=7, seconds=1)) == RotationStatus.OK
    assert service.status_of(row, due - timedelta(days=7)) == RotationStatus.DUE_SOON
    assert service.status_of(row, due) == RotationStatus.OVERDUE


def test_the_warning_is_at_least_a_day_and_at_most_two_weeks() -> None:
    assert service.warning(1) == timedelta(days=1)
    assert service.warning(365) == timedelta(days=14)


def test_the_latest_rotation_known_counts_whoever_reported_it() -> None:
    store = datetime(2030, 1, 1, tzinfo=UTC)
    attested = datetime(2030, 1, 10, tzinfo=UTC)
    row = entry(store_rotated_at=store, attested_at=attested)
    assert service.as_utc(row.last_rotated_at) == attested
    never = entry()
    assert service.as_utc(never.last_rotated_at) == service.as_utc(never.first_seen_at)


def test_a_revoked_secret_is_never_due() -> None:
    row = entry(store_status="revoked")
    assert service.status_of(row, datetime(2031, 1, 1, tzinfo=UTC)) == RotationStatus.REVOKED


# The daily check, end to end ------------------------------------------------------------


@pytest.fixture
def tenant(client: TestClient, actors: Actors, db: Database, clock: Clock) -> dict[str, Any]:
    """A tenant whose store holds a database secret (owner and a 30-day cycle in its
    metadata) and a queue secret (no metadata)."""
    body = request_tenant(client, actors.am, name="acme")
    LocalSecrets(db).create_store(
        tenant_id=body["id"],
        tenant_name="acme",
        paths=[
            PathSpec("app/database", {"owner": OWNER, "rotation_days": "30"}),
            PathSpec("app/queue"),
        ],
        idempotency_key="store",
    )
    return body


def check_run(db: Database) -> None:
    with db.write() as session:
        schedule_day(session, datetime(2030, 1, 1, tzinfo=UTC).date(), actor=SCHEDULER)


def of_type(db: Database, kind: str) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == f"io.tenantops.{kind}")
        )
        return [dict(r.data) for r in rows]


def messages(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        query = select(OutboxMessage).where(OutboxMessage.template == "secret_rotation")
        return list(session.scalars(query.order_by(OutboxMessage.created_at)))


def runs(db: Database) -> list[Run]:
    with db.read() as session:
        query = select(Run).where(Run.runbook_id == CHECK_RUNBOOK).order_by(Run.created_at)
        return list(session.scalars(query))


def listed(client: TestClient, who: dict[str, str], **params: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ok(client.get(SECRETS, params=params, headers=who))["items"]
    return items


def test_the_daily_check_announces_due_then_overdue_once_each_and_a_rotation_resets_it(
    client: TestClient,
    actors: Actors,
    db: Database,
    settings: Settings,
    clock: Clock,
    tenant: dict[str, Any],
) -> None:
    worker = Worker(db, build_actions(settings, db))
    check_run(db)
    drain(worker)

    rows = {s["path"]: s for s in listed(client, actors.ops)}
    assert set(rows) == {"app/database", "app/queue"}
    database = rows["app/database"]
    assert (database["owner"], database["rotation_days"], database["status"]) == (OWNER, 30, "ok")
    assert database["next_due_at"] == "2030-01-31T09:00:00Z"
    assert rows["app/queue"]["rotation_days"] == service.DEFAULT_CYCLE_DAYS
    assert of_type(db, "secret.rotation.due") == []
    (first,) = runs(db)
    assert first.status == "running"  # waiting for the next day's check

    clock.advance(days=24)  # 2030-01-25: within the last quarter of the 30-day cycle
    drain(worker)
    (due,) = of_type(db, "secret.rotation.due")
    assert (due["path"], due["status"], due["tenant_name"]) == ("app/database", "due_soon", "acme")
    # The owner registered in the store's metadata, and security (TENANTOPS_NOTIFY__SECURITY).
    notices = {m.audience: m for m in messages(db)}
    assert {a: m.recipients for a, m in notices.items()} == {
        "direct": [OWNER],
        "security": ["security@localhost"],
    }
    assert "Due soon: rotate app/database of acme" in notices["direct"].subject
    assert "was due" not in notices["direct"].body
    assert "tenantops secrets rotated acme app/database" in notices["direct"].body
    assert [r.inputs["day"] for r in runs(db)] == ["2030-01-01", "2030-01-25"]

    clock.advance(days=1)  # the next day's check finds it due soon still: nothing new
    drain(worker)
    assert len(runs(db)) == 3
    assert len(of_type(db, "secret.rotation.due")) == 1
    assert len(messages(db)) == 2

    clock.advance(days=5)  # 2030-01-31 09:00: overdue
    drain(worker)
    (overdue,) = of_type(db, "secret.rotation.overdue")
    assert overdue["due_at"] == "2030-01-31T09:00:00+00:00"
    overdue_notices = [m for m in messages(db) if m.subject.startswith("[Secrets] Overdue")]
    assert sorted(m.audience for m in overdue_notices) == ["direct", "security"]
    assert [s["path"] for s in listed(client, actors.sec, status="overdue")] == ["app/database"]

    rotated = ok(
        client.post(
            f"{SECRETS}/acme/rotations",
            json={"path": "app/database", "evidence": "CHG0012345"},
            headers=actors.ops,
        ),
        201,
    )
    assert (rotated["status"], rotated["attested_by"], rotated["evidence"]) == (
        "ok",
        "oli",
        "CHG0012345",
    )
    assert rotated["next_due_at"] == "2030-03-02T09:00:00Z"
    assert listed(client, actors.sec, status="overdue") == []
    (event,) = of_type(db, "secret.rotated")
    assert (event["actor"], event["evidence"], event["status"]) == ("oli", "CHG0012345", "ok")
    with db.read() as session:
        (entry_,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "secret.rotated")
        ).all()
        assert entry_.detail["evidence"] == "CHG0012345"
        assert audit.verify(session).ok


def test_a_revoked_store_shows_revoked_and_is_never_announced(
    db: Database, settings: Settings, clock: Clock, tenant: dict[str, Any]
) -> None:
    LocalSecrets(db).revoke(tenant_id=tenant["id"], idempotency_key="revoke")
    worker = Worker(db, build_actions(settings, db))
    check_run(db)
    drain(worker)
    clock.advance(days=200)
    drain(worker)

    with db.read() as session:
        rows = session.scalars(select(SecretEntry)).all()
        assert {service.status_of(r, clock.now) for r in rows} == {RotationStatus.REVOKED}
    assert of_type(db, "secret.rotation.overdue") == []
    assert messages(db) == []


def test_what_an_operator_registers_wins_over_the_store_metadata(
    client: TestClient,
    actors: Actors,
    db: Database,
    settings: Settings,
    clock: Clock,
    tenant: dict[str, Any],
) -> None:
    registered = ok(
        client.put(
            f"{SECRETS}/acme/registrations",
            json={"path": "app/database", "owner": "slack:#db", "rotation_days": 7},
            headers=actors.sec,
        )
    )
    assert (registered["store_status"], registered["registered_by"]) == ("absent", "sue")
    worker = Worker(db, build_actions(settings, db))
    check_run(db)
    drain(worker)

    (database,) = [s for s in listed(client, actors.ops) if s["path"] == "app/database"]
    assert (database["owner"], database["rotation_days"]) == ("slack:#db", 7)
    assert database["store_status"] == "active"
    assert database["version"] == 1
    with db.read() as session:
        (registration,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "secret.registered")
        ).all()
        assert registration.changes["registration"]["after"]["owner"] == "slack:#db"


def test_a_secret_gone_from_the_store_stays_listed_as_absent(
    client: TestClient,
    actors: Actors,
    db: Database,
    settings: Settings,
    clock: Clock,
    tenant: dict[str, Any],
) -> None:
    with db.write() as session:
        service.refresh_tenant(session, tenant_id=tenant["id"], tenant_name="acme", state=None)
        session.add(service._new_entry(tenant["id"], "acme", "old/key", clock.now))
    worker = Worker(db, build_actions(settings, db))
    check_run(db)
    drain(worker)

    stores = {s["path"]: s["store_status"] for s in listed(client, actors.ops)}
    assert stores == {"app/database": "active", "app/queue": "active", "old/key": "absent"}


def test_the_rotate_action_makes_a_new_generation_and_records_it(
    db: Database, settings: Settings, clock: Clock, tenant: dict[str, Any]
) -> None:
    action = build_actions(settings, db)["secrets.rotate"]
    clock.advance(days=3)
    ctx = ActionContext(
        run_id="r1",
        step_name="rotate",
        tenant_id=tenant["id"],
        params={"path": "app/database", "evidence": "db credentials rotated by runbook"},
        idempotency_key="r1/rotate/1",
        attempt=1,
        actor="oli",
    )
    result = action.run(ctx)
    with db.write() as session:
        action.apply(session, ctx, result)  # type: ignore[attr-defined]

    assert result.evidence == {
        "path": "app/database",
        "version": 2,
        "rotated_at": clock.now.isoformat(),
    }
    with db.read() as session:
        row = session.get(SecretEntry, (tenant["id"], "app/database"))
        assert row is not None
        assert (row.version, row.attested_by) == (2, "oli")
        assert service.as_utc(row.last_rotated_at) == clock.now
    assert [e["version"] for e in of_type(db, "secret.rotated")] == [2]
    # The step run again (a worker crashed before recording it) rotates nothing more.
    assert action.run(ctx).evidence["version"] == 2


# The API ---------------------------------------------------------------------------------


def test_bad_input_is_a_problem_not_a_change(
    client: TestClient, actors: Actors, clock: Clock, tenant: dict[str, Any]
) -> None:
    register = f"{SECRETS}/acme/registrations"
    rotations = f"{SECRETS}/acme/rotations"
    problem(
        client.put(register, json={"path": "app/x", "rotation_days": 0}, headers=actors.ops), 422
    )
    bad_path = problem(
        client.put(register, json={"path": "../x", "rotation_days": 30}, headers=actors.ops), 422
    )
    assert "is not a secret path" in bad_path["detail"]
    problem(client.post(rotations, json={"path": "app/x"}, headers=actors.ops), 422)
    future = (clock.now + timedelta(days=1)).isoformat()
    ok(client.put(register, json={"path": "app/x", "rotation_days": 30}, headers=actors.ops))
    later = problem(
        client.post(
            rotations,
            json={"path": "app/x", "evidence": "CHG1", "rotated_at": future},
            headers=actors.ops,
        ),
        422,
    )
    assert "future" in later["detail"]
    unknown = problem(
        client.post(rotations, json={"path": "app/nope", "evidence": "CHG1"}, headers=actors.ops),
        404,
    )
    assert "tenantops secrets register acme app/nope" in unknown["detail"]
    problem(client.get(SECRETS, params={"status": "late"}, headers=actors.ops), 422)


def test_roles_and_a_tenant_owner_sees_only_their_own_tenant(
    client: TestClient,
    actors: Actors,
    auth: TokenFactory,
    db: Database,
    clock: Clock,
    tenant: dict[str, Any],
) -> None:
    request_tenant(client, actors.am, name="other")
    for name in ("acme", "other"):
        ok(
            client.put(
                f"{SECRETS}/{name}/registrations",
                json={"path": "app/key", "rotation_days": 30},
                headers=actors.ops,
            )
        )
    owner = auth("tom", "tenant_owner", tenant="acme")
    assert {s["tenant_name"] for s in listed(client, owner)} == {"acme"}
    problem(client.get(SECRETS, params={"tenant": "other"}, headers=owner), 404)
    problem(client.get(SECRETS, headers=auth("fay", "finance")), 403)
    problem(
        client.put(
            f"{SECRETS}/acme/registrations",
            json={"path": "app/key", "rotation_days": 30},
            headers=owner,
        ),
        403,
    )
    recorded = ok(
        client.post(
            f"{SECRETS}/acme/rotations",
            json={"path": "app/key", "evidence": "CI #88"},
            headers=owner,
        ),
        201,
    )
    assert recorded["attested_by"] == "tom"
    problem(
        client.post(
            f"{SECRETS}/other/rotations",
            json={"path": "app/key", "evidence": "CI #88"},
            headers=owner,
        ),
        404,
    )


def test_schedule_starts_the_chain_once(cli: CliRunner, db: Database, clock: Clock) -> None:
    first = cli("secrets", "schedule")
    assert first.code == 0, first.err
    assert first.out.startswith("scheduled: run ")
    again = cli("secrets", "schedule")
    assert again.code == 0
    assert again.out.startswith("already scheduled: run ")
    assert [r.inputs for r in runs(db)] == [{"day": "2030-01-01"}]


def test_a_recipient_nobody_can_reach_is_named_and_the_chain_goes_on(
    db: Database, settings: Settings, clock: Clock, tenant: dict[str, Any]
) -> None:
    settings.notify.security = ["not-an-address"]
    worker = Worker(db, build_actions(settings, db))
    check_run(db)
    drain(worker)
    clock.advance(days=31)
    drain(worker)

    assert [m.audience for m in messages(db)] == ["direct"]
    with db.read() as session:
        (notify,) = [
            s
            for r in runs(db)
            if r.inputs["day"] == "2030-02-01"
            for s in engine.steps_of(session, r.id)
            if s.name == "notify"
        ]
    assert notify.status == "succeeded"
    (why,) = notify.evidence["undeliverable"]
    assert why.startswith("acme app/database to security: ")
    assert runs(db)[-1].status == "running"  # waiting for the next day's check
