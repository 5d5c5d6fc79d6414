"""The local secret store: references and metadata only, revoke/restore by tenant prefix."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import inspect, text

from tenantops.config import Settings
from tenantops.db import Database
from tenantops.drivers.actions import driver_actions
from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.secrets.local import LocalSecrets
from tenantops.drivers.secrets.port import PathSpec
from tenantops.kit.ids import new_id
from tenantops.runbooks.actions import ActionContext, StepFailed

SENTINEL = "hunter2-do-not-store"
TABLES = ("secret_stores", "secret_paths", "secret_effects")


def dump(db: Database) -> str:
    """Every row of the secret tables, as text."""
    with db.engine.connect() as conn:
        return repr([list(conn.execute(text(f"SELECT * FROM {t}"))) for t in TABLES])


def ctx(tenant: dict[str, Any], key: str, **params: Any) -> ActionContext:
    return ActionContext(
        run_id="run-1",
        step_name="secrets",
        tenant_id=tenant["id"],
        params=params,
        idempotency_key=key,
        attempt=1,
        actor="amy",
        inputs={"tenant": tenant},
    )


def make_store(secrets: LocalSecrets, name: str = "acme", key: str = "c") -> str:
    tid = new_id()
    secrets.create_store(
        tenant_id=tid,
        tenant_name=name,
        paths=[PathSpec("app/database", {"owner": "team-a"}), PathSpec("app/queue")],
        idempotency_key=key,
    )
    return tid


def test_a_store_holds_path_references_under_the_tenant_prefix(db: Database) -> None:
    secrets = LocalSecrets(db)
    tid = make_store(secrets)
    state = secrets.get_store(tenant_id=tid)

    assert state is not None
    assert state.store_ref == "local://secrets/tenants/acme/"
    assert state.status == "active"
    assert [(p.path, p.status, p.version) for p in state.paths] == [
        ("tenants/acme/app/database", "active", 1),
        ("tenants/acme/app/queue", "active", 1),
    ]
    assert state.paths[0].metadata == {"owner": "team-a"}


def test_revoke_cuts_every_reference_of_the_tenant_and_only_its(db: Database) -> None:
    secrets = LocalSecrets(db)
    acme = make_store(secrets, "acme", "a")
    other = make_store(secrets, "acme-two", "b")  # its prefix starts like acme's

    revoked = secrets.revoke(tenant_id=acme, idempotency_key="rev")

    assert revoked.status == "revoked"
    assert {p.status for p in revoked.paths} == {"revoked"}
    untouched = secrets.get_store(tenant_id=other)
    assert untouched is not None
    assert untouched.status == "active"
    assert {p.status for p in untouched.paths} == {"active"}


def test_restore_brings_revoked_references_back_as_new_versions(db: Database) -> None:
    secrets = LocalSecrets(db)
    tid = make_store(secrets)
    secrets.revoke(tenant_id=tid, idempotency_key="rev")

    restored = secrets.restore(tenant_id=tid, idempotency_key="res")

    assert restored.status == "active"
    assert [(p.status, p.version) for p in restored.paths] == [("active", 2), ("active", 2)]


def test_a_replayed_step_returns_its_record_and_revokes_nothing_again(db: Database) -> None:
    secrets = LocalSecrets(db)
    tid = make_store(secrets)
    first = secrets.revoke(tenant_id=tid, idempotency_key="rev")
    secrets.restore(tenant_id=tid, idempotency_key="res")

    replay = secrets.revoke(tenant_id=tid, idempotency_key="rev")

    assert replay == first
    now = secrets.get_store(tenant_id=tid)
    assert now is not None
    assert now.status == "active"
    assert secrets.effect_count(tenant_id=tid) == 3


@pytest.mark.parametrize("key", ["value", "password", "db_password", "api_token", "private_key"])
def test_metadata_that_could_carry_a_value_is_refused_and_not_stored(
    db: Database, key: str
) -> None:
    secrets = LocalSecrets(db)
    with pytest.raises(DriverError) as caught:
        secrets.create_store(
            tenant_id=new_id(),
            tenant_name="acme",
            paths=[PathSpec("app/database", {key: SENTINEL})],
            idempotency_key="c",
        )
    assert caught.value.retry is Retry.PERMANENT
    assert SENTINEL not in dump(db)
    assert secrets.effect_count() == 0


def test_no_value_is_stored_by_a_whole_lifecycle(db: Database, settings: Settings) -> None:
    actions = driver_actions(settings, db)
    tenant = {"id": new_id(), "name": "acme", "business_owner": SENTINEL + "@acme.example"}
    for action, key in [
        ("secrets.create_store", "c"),
        ("secrets.revoke", "r"),
        ("secrets.restore", "s"),
    ]:
        actions[action].run(ctx(tenant, key))
    stored = dump(db)
    # Only references and metadata: the owner's address (metadata) is there, no value column is.
    assert "tenants/acme/app/config" in stored
    columns = {
        c["name"]
        for t in ("secret_stores", "secret_paths")
        for c in inspect(db.engine).get_columns(t)
    }
    assert "meta" in columns
    assert not columns & {"value", "secret", "data", "password"}


@pytest.mark.parametrize("path", ["../etc", "App/Upper", "a//b", ""])
def test_a_path_that_is_not_a_secret_path_is_refused(db: Database, path: str) -> None:
    with pytest.raises(DriverError) as caught:
        LocalSecrets(db).create_store(
            tenant_id=new_id(), tenant_name="acme", paths=[PathSpec(path)], idempotency_key="c"
        )
    assert caught.value.retry is Retry.PERMANENT


def test_revoking_a_tenant_without_a_store_needs_a_human(db: Database, settings: Settings) -> None:
    actions = driver_actions(settings, db)
    with pytest.raises(StepFailed) as caught:
        actions["secrets.revoke"].run(ctx({"id": new_id(), "name": "acme"}, "r"))
    assert not caught.value.retriable
    assert "needs_human" in str(caught.value)


def test_the_action_reports_the_store_as_evidence(db: Database, settings: Settings) -> None:
    actions = driver_actions(settings, db)
    tenant = {"id": new_id(), "name": "acme", "business_owner": "o@acme.example"}

    created = actions["secrets.create_store"].run(ctx(tenant, "c", paths=["app/db"]))
    revoked = actions["secrets.revoke"].run(ctx(tenant, "r"))

    assert created.evidence["store"] == "local://secrets/tenants/acme/"
    assert created.evidence["paths"] == {"tenants/acme/app/db": "active"}
    assert revoked.evidence["status"] == "revoked"
