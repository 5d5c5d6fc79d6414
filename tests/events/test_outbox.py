"""Every tenant change writes its event in its own transaction; a rollback writes none."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.db import Database
from tenantops.events import catalogue, outbox
from tenantops.events.models import OutboxEvent
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantCreate
from tests import flows
from tests.conftest import Actors, TokenFactory
from tests.factories import tenant_body


def events(db: Database, tenant_id: str | None = None) -> list[OutboxEvent]:
    with db.read() as session:
        query = select(OutboxEvent).order_by(OutboxEvent.seq)
        if tenant_id is not None:
            query = query.where(OutboxEvent.tenant_id == tenant_id)
        return list(session.execute(query).scalars())


def test_a_tenant_lifecycle_is_announced_in_order_on_its_topics(
    client: TestClient, db: Database, actors: Actors
) -> None:
    tenant = flows.tenant_in(client, actors, flows.S.ACTIVE)
    flows.ok(flows.suspend(client, tenant["id"], actors.ops))

    seen = [(e.type.removeprefix("io.tenantops."), e.topic) for e in events(db, tenant["id"])]
    assert seen == [
        ("tenant.requested", "tenant.lifecycle"),
        ("tenant.approval.recorded", "tenant.compliance"),
        ("tenant.approval.recorded", "tenant.compliance"),
        ("tenant.approved", "tenant.lifecycle"),
        ("tenant.provisioning", "tenant.lifecycle"),
        ("tenant.verifying", "tenant.lifecycle"),
        ("tenant.active", "tenant.lifecycle"),
        ("tenant.suspended", "tenant.security"),
    ]
    suspended = events(db, tenant["id"])[-1]
    assert suspended.data["from_state"] == "active"
    assert suspended.data["to_state"] == "suspended"
    assert suspended.data["lifecycle_event"] == "suspend"
    assert suspended.data["reason"] == "unpaid"
    assert suspended.data["tenant_name"] == tenant["name"]
    assert suspended.data["schema_version"] == 1
    decisions = [e.data for e in events(db, tenant["id"]) if e.type.endswith("approval.recorded")]
    assert [(d["role"], d["status"]) for d in decisions] == [
        ("governance", "pending"),
        ("security", "approved"),
    ]


def test_a_refused_change_announces_nothing(
    client: TestClient, db: Database, actors: Actors
) -> None:
    tenant = flows.request_tenant(client, actors.am)
    before = len(events(db))
    # The requester may not approve their own tenant: refused, nothing written.
    flows.problem(flows.decide(client, tenant["id"], "governance", actors.am), 403)
    flows.problem(flows.suspend(client, tenant["id"], actors.ops), 409)
    assert len(events(db)) == before


def test_a_rolled_back_transaction_leaves_no_event(db: Database) -> None:
    amy = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))

    def change_that_fails_late() -> None:
        with db.write() as session:
            tenants.create_tenant(session, principal=amy, data=TenantCreate(**tenant_body()))
            session.flush()
            assert session.execute(select(OutboxEvent)).scalars().first() is not None
            raise RuntimeError("the change fails after its event was written")

    with pytest.raises(RuntimeError):
        change_that_fails_late()
    assert events(db) == []


def test_emit_refuses_a_type_outside_the_catalogue_and_data_of_another_shape(
    db: Database,
) -> None:
    rogue = catalogue.EventType(
        "tenant.teleported", "tenant.lifecycle", "not real", catalogue.TenantStateChanged
    )
    with db.write() as session:
        with pytest.raises(ValueError, match="not in the catalogue"):
            outbox.emit(
                session, rogue, catalogue.AccessChanged(actor="x", grant_id="g", subject="s")
            )
        with pytest.raises(TypeError, match="carries TenantStateChanged"):
            outbox.emit(
                session,
                catalogue.TENANT_ACTIVE,
                catalogue.AccessChanged(actor="x", grant_id="g", subject="s"),
            )
    assert events(db) == []


def test_break_glass_grant_is_announced_on_the_security_topic(
    client: TestClient, db: Database, actors: Actors
) -> None:
    tenant = flows.tenant_in(client, actors, flows.S.ACTIVE)
    flows.ok(
        client.post(
            "/api/v1/break-glass",
            json={
                "tenant": tenant["name"],
                "roles": ["ops_engineer"],
                "reason": "database failover stuck",
                "incident_ref": "INC-1",
                "duration": "30m",
            },
            headers=actors.ops,
        ),
        201,
    )
    [granted] = [e for e in events(db, tenant["id"]) if e.type.endswith("access.granted")]
    assert granted.topic == "tenant.security"
    assert granted.data["incident_ref"] == "INC-1"
    assert granted.data["subject"].startswith("breakglass:")


def test_the_event_stream_pages_by_sequence_and_filters_by_type(
    client: TestClient, db: Database, actors: Actors
) -> None:
    first = flows.request_tenant(client, actors.am)
    flows.approve(client, first["id"], "governance", actors.gov)
    second = flows.request_tenant(client, actors.am)
    url = "/api/v1/events"

    page = flows.ok(client.get(url, params={"limit": 2}, headers=actors.auditor))
    assert [e["type"] for e in page["items"]] == [
        "io.tenantops.tenant.requested",
        "io.tenantops.tenant.approval.recorded",
    ]
    rest = flows.ok(client.get(url, params={"after": page["next_after"]}, headers=actors.auditor))
    assert [e["subject"] for e in rest["items"]] == [second["id"]]
    assert rest["items"][0]["sequence"] == str(rest["next_after"])

    only = flows.ok(
        client.get(url, params={"type": "io.tenantops.tenant.requested"}, headers=actors.ops)
    )
    assert [e["subject"] for e in only["items"]] == [first["id"], second["id"]]
    newest = flows.ok(client.get(url, params={"last": 1}, headers=actors.ops))
    assert [e["subject"] for e in newest["items"]] == [second["id"]]
    mine = flows.ok(client.get(url, params={"tenant": first["id"]}, headers=actors.ops))
    assert {e["subject"] for e in mine["items"]} == {first["id"]}
    flows.problem(client.get(url, headers=actors.qa), 403)  # not every role reads the stream
    prefixed = flows.ok(
        client.get(url, params={"type": "io.tenantops.tenant.*"}, headers=actors.ops)
    )
    assert len(prefixed["items"]) == 3
    for typo in ("io.tenantops.tenant.requestd", "nosuch.*"):  # a typo never waits forever
        wrong = flows.problem(client.get(url, params={"type": typo}, headers=actors.ops), 422)
        assert typo in wrong["detail"]


def test_a_principal_bound_to_a_tenant_reads_only_that_tenants_events(
    client: TestClient, db: Database, actors: Actors, auth: TokenFactory
) -> None:
    first = flows.request_tenant(client, actors.am)
    second = flows.request_tenant(client, actors.am)
    bound = auth("olga", "ops_engineer", tenant=first["name"])
    url = "/api/v1/events"

    page = flows.ok(client.get(url, headers=bound))
    assert {e["subject"] for e in page["items"]} == {first["id"]}
    newest = flows.ok(client.get(url, params={"last": 10}, headers=bound))
    assert {e["subject"] for e in newest["items"]} == {first["id"]}
    own = flows.ok(client.get(url, params={"tenant": first["id"]}, headers=bound))
    assert {e["subject"] for e in own["items"]} == {first["id"]}
    flows.problem(client.get(url, params={"tenant": second["id"]}, headers=bound), 403)
    for path in ("/subscriptions", "/deliveries"):
        flows.problem(
            client.get(url + path, headers=auth("ada", "admin", tenant=first["name"])), 403
        )
    nowhere = auth("nina", "ops_engineer", tenant="no-such-tenant")
    flows.problem(client.get(url, headers=nowhere), 403)

    # On-call pages of its own tenant name who was paged: staff only (decision 0039).
    from tenantops.oncall import service as oncall

    with db.write() as session:
        oncall.trigger(
            session, key="k", summary="down", severity="high", actor=SYSTEM, tenant_id=first["id"]
        )
    staff = flows.ok(client.get(url, params={"last": 50}, headers=actors.ops))
    assert any(".oncall.page." in e["type"] for e in staff["items"])
    for params in ({"last": 50}, {"after": 0}):
        seen = flows.ok(client.get(url, params=params, headers=bound))
        assert not [e for e in seen["items"] if ".oncall." in e["type"]]
