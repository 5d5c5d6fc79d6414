"""The local identity provider: groups, grants, disable/enable, once per idempotency key."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.identity.local import LocalIdentity
from tenantops.drivers.identity.port import Grant, Permission
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import ActionContext, StepFailed

OWNER = Grant("Owner@Acme.example", Permission.WRITE)
CONTACT = Grant("ops@acme.example", Permission.READ)


def ctx(tenant: dict[str, Any], key: str, **params: Any) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_name="step",
        tenant_id=tenant["id"],
        params=params,
        idempotency_key=key,
        attempt=1,
        actor="amy",
        inputs={"tenant": tenant},
    )


def snapshot(name: str = "acme") -> dict[str, Any]:
    return {
        "id": new_id(),
        "name": name,
        "business_owner": "owner@acme.example",
        "contacts": ["ops@acme.example", "OWNER@acme.example"],
        "compliance_classification": "confidential",
    }


def test_a_group_holds_the_owner_as_writer_and_contacts_as_readers(db: Database) -> None:
    idp = LocalIdentity(db)
    tid = new_id()
    state = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key="k1"
    )

    assert state.group == "tenant-acme"
    assert state.enabled
    assert state.permission_of("owner@acme.example") is Permission.WRITE
    assert state.permission_of("ops@acme.example") is Permission.READ
    assert idp.get_group(tenant_id=tid) == state
    assert [g.tenant_name for g in idp.list_groups()] == ["acme"]


def test_the_same_key_returns_the_recorded_state_and_changes_nothing(db: Database) -> None:
    idp = LocalIdentity(db)
    tid = new_id()
    first = idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key="k")
    disabled = idp.disable_access(tenant_id=tid, idempotency_key="d1")
    again = idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key="k"
    )

    assert again == first  # the recorded result, not a second effect
    assert not disabled.enabled
    current = idp.get_group(tenant_id=tid)
    assert current is not None
    assert not current.enabled
    assert current.permission_of("ops@acme.example") is None
    assert idp.effect_count(tenant_id=tid) == 2


def test_disable_then_enable_keeps_the_grants(db: Database) -> None:
    idp = LocalIdentity(db)
    tid = new_id()
    idp.create_group(
        tenant_id=tid, tenant_name="acme", grants=[OWNER, CONTACT], idempotency_key="c"
    )

    off = idp.disable_access(tenant_id=tid, idempotency_key="off")
    on = idp.enable_access(tenant_id=tid, idempotency_key="on")
    replayed_off = idp.disable_access(tenant_id=tid, idempotency_key="off")

    assert not off.enabled
    assert on.enabled
    assert on.members == off.members
    assert not replayed_off.enabled  # what was recorded then
    now = idp.get_group(tenant_id=tid)
    assert now is not None
    assert now.enabled


def test_members_are_added_changed_and_removed(db: Database) -> None:
    idp = LocalIdentity(db)
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key="c")

    added = idp.add_member(
        tenant_id=tid, grant=Grant("sre@acme.example", Permission.ADMIN), idempotency_key="a"
    )
    changed = idp.add_member(
        tenant_id=tid, grant=Grant("sre@acme.example", Permission.READ), idempotency_key="b"
    )
    removed = idp.remove_member(tenant_id=tid, subject="SRE@acme.example", idempotency_key="r")

    assert added.permission_of("sre@acme.example") is Permission.ADMIN
    assert changed.permission_of("sre@acme.example") is Permission.READ
    assert removed.permission_of("sre@acme.example") is None


def test_changing_a_tenant_without_a_group_needs_a_human(db: Database) -> None:
    idp = LocalIdentity(db)
    with pytest.raises(DriverError) as caught:
        idp.disable_access(tenant_id=new_id(), idempotency_key="x")
    assert caught.value.retry is Retry.NEEDS_HUMAN
    assert idp.effect_count() == 0


def test_a_key_reused_for_another_operation_is_refused(db: Database) -> None:
    idp = LocalIdentity(db)
    tid = new_id()
    idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key="k")
    with pytest.raises(DriverError) as caught:
        idp.disable_access(tenant_id=tid, idempotency_key="k")
    assert caught.value.retry is Retry.PERMANENT
    group = idp.get_group(tenant_id=tid)
    assert group is not None
    assert group.enabled


def test_concurrent_runs_of_one_step_apply_the_effect_once(db: Database) -> None:
    idp = LocalIdentity(db)
    tid = new_id()
    results: list[object] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        results.append(
            idp.create_group(tenant_id=tid, tenant_name="acme", grants=[OWNER], idempotency_key="k")
        )

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 4
    assert all(r == results[0] for r in results)
    assert idp.effect_count(tenant_id=tid) == 1


def test_actions_grant_from_the_tenant_snapshot_and_report_evidence(
    db: Database, settings: Settings
) -> None:
    actions = driver_actions(settings, db)
    tenant = snapshot()

    created = actions["identity.create_group"].run(ctx(tenant, "run-1/identity"))
    disabled = actions["identity.disable_access"].run(ctx(tenant, "run-1/disable"))
    enabled = actions["identity.enable_access"].run(ctx(tenant, "run-2/enable"))

    assert created.evidence["group"] == "tenant-acme"
    assert sorted(created.evidence["members"]) == [
        "ops@acme.example:read",
        "owner@acme.example:write",
    ]
    assert disabled.evidence["enabled"] is False
    assert enabled.evidence["enabled"] is True


def test_an_action_on_a_tenant_without_a_group_fails_for_good(
    db: Database, settings: Settings
) -> None:
    actions = driver_actions(settings, db)
    with pytest.raises(StepFailed) as caught:
        actions["identity.disable_access"].run(ctx(snapshot(), "run-1/disable"))
    assert not caught.value.retriable
    assert "needs_human" in str(caught.value)


def test_an_action_without_a_tenant_snapshot_fails_for_good(
    db: Database, settings: Settings
) -> None:
    actions = driver_actions(settings, db)
    bare = ActionContext(
        run_id="r",
        step_name="s",
        tenant_id=None,
        params={},
        idempotency_key="k",
        attempt=1,
        actor="a",
    )
    with pytest.raises(StepFailed) as caught:
        actions["identity.create_group"].run(bare)
    assert not caught.value.retriable
