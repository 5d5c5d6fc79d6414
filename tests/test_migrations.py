"""Migrations run on both stores and match the models exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from tenantops.auth.principal import SYSTEM, Principal, Role
from tenantops.config import Settings
from tenantops.db import Base, Database
from tenantops.errors import Unprocessable
from tenantops.finops.store import comparable_metadata
from tenantops.migrations import alembic_config, current_revision, head_revision, upgrade
from tenantops.store import open_database
from tenantops.tenants import service as tenants
from tenantops.tenants.models import Tenant
from tenantops.tenants.schemas import TenantCreate
from tenantops.web import service as web_users
from tests.conftest import STORES, create_pg_database, drop_pg_database
from tests.factories import tenant_body

BODY = tenant_body(name="rows")


def test_models_and_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        # Alembic compares schemas only when asked, and knows no schema translation.
        context = MigrationContext.configure(conn, opts={"include_schemas": True})
        diff = compare_metadata(context, comparable_metadata(Base.metadata, conn.dialect.name))
    assert diff == [], f"models differ from the migrations: {diff}"


def test_upgrade_is_idempotent_and_reaches_head(db: Database) -> None:
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision(db.engine)


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    from alembic import command

    from tenantops.migrations import alembic_config

    db = Database(f"sqlite:///{tmp_path / 'down.db'}")
    upgrade(db.engine)
    command.downgrade(alembic_config(db.engine), "base")
    assert current_revision(db.engine) is None
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision(db.engine)


def test_default_store_is_a_sqlite_file_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANTOPS_DATABASE_URL", raising=False)
    monkeypatch.setenv("TENANTOPS_DATA_DIR", str(tmp_path / "data"))
    settings = Settings()
    db = open_database(settings, migrate_empty=True)
    assert db.is_sqlite
    assert (tmp_path / "data" / "tenantops.db").exists()
    db.dispose()


def test_database_url_selects_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    if "postgres" not in STORES:
        pytest.skip("PostgreSQL store not selected (TENANTOPS_TEST_STORES)")
    url = create_pg_database()
    try:
        monkeypatch.setenv("TENANTOPS_DATABASE_URL", url)
        db = open_database(Settings(), migrate_empty=True)
        assert db.engine.dialect.name == "postgresql"
        assert current_revision(db.engine) == head_revision(db.engine)
        db.dispose()
    finally:
        drop_pg_database(url)


def test_outdated_schema_is_refused_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    upgrade(db.engine)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    db.dispose()
    with pytest.raises(Unprocessable, match="tenantops db upgrade"):
        open_database(Settings(database_url=url), migrate_empty=True)


@pytest.mark.parametrize("store", STORES)
def test_0009_fills_the_milestones_from_the_audit_trail(store: str, tmp_path: Path) -> None:
    """Tenants onboarded before 0009 keep their activation and provisioning times."""
    url = f"sqlite:///{tmp_path / 'm.db'}" if store == "sqlite" else create_pg_database()
    db = Database(url)
    try:
        upgrade(db.engine, "0008")
        tenant = (
            "INSERT INTO tenants (id, name, display_name, business_owner,"
            " compliance_classification, region, tier, monthly_budget, currency, contacts,"
            " state, requested_by, created_at, updated_at, version) VALUES"
            " (:id, :id, 'T', 'o@example.com', 'internal', 'eu', 'standard', 1, 'EUR', '[]',"
            " 'active', 'amy', :at, :at, 1)"
        )
        entry = (
            "INSERT INTO audit_log (seq, id, at, actor, actor_roles, action, tenant_id,"
            " changes, detail, prev_hash, hash) VALUES"
            " (:seq, :eid, :at, 'x', '[]', :action, 'onboarded', '{}', '{}', '0', '0')"
        )
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        with db.engine.begin() as conn:
            for tid in ("onboarded", "requested"):
                conn.execute(text(tenant), {"id": tid, "at": t0})
            for seq, (action, minutes) in enumerate(
                [
                    ("tenant.step.verified", 40),  # a later verification: not the first
                    ("tenant.approved", 10),
                    ("tenant.step.verified", 25),
                    ("tenant.suspended", 50),
                ]
            ):
                at = t0 + timedelta(minutes=minutes)
                conn.execute(
                    text(entry),
                    {"seq": seq, "eid": str(seq), "at": at, "action": action},
                )
        upgrade(db.engine)
        with db.read() as session:
            rows = {
                t.id: (t.approved_at, t.activated_at)
                for t in session.execute(select(Tenant)).scalars()
            }
        assert rows == {
            "onboarded": (t0 + timedelta(minutes=10), t0 + timedelta(minutes=25)),
            "requested": (None, None),
        }
    finally:
        db.dispose()
        if store == "postgres":
            drop_pg_database(url)


@pytest.mark.parametrize("store", STORES)
def test_migrations_that_rebuild_tables_keep_the_rows_that_point_at_them(
    store: str, tmp_path: Path
) -> None:
    """Down past 0009 and 0008 (on SQLite: tables rebuilt under foreign keys) and up again."""
    url = f"sqlite:///{tmp_path / 'rows.db'}" if store == "sqlite" else create_pg_database()
    db = Database(url)
    try:
        upgrade(db.engine)
        amy = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
        with db.write() as session:
            tenants.create_tenant(session, principal=amy, data=TenantCreate(**BODY))
            web_users.create_user(
                session,
                actor=SYSTEM,
                username="root",
                password="p" * 12,
                roles=[Role.ADMIN],
                tenant_id=None,
            )
        with db.write() as session:
            assert web_users.login(session, username="root", password="p" * 12) is not None

        def counts() -> dict[str, int]:
            with db.engine.connect() as conn:
                return {
                    table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                    for table in ("tenants", "approval_requests", "runs", "users", "web_sessions")
                }

        before = counts()
        assert all(before.values()), before
        command.downgrade(alembic_config(db.engine), "0007")
        assert counts() == before
        upgrade(db.engine)
        assert counts() == before
        command.downgrade(alembic_config(db.engine), "base")
        assert current_revision(db.engine) is None
    finally:
        db.dispose()
        if store == "postgres":
            drop_pg_database(url)


@pytest.mark.parametrize("store", STORES)
def test_0019_closes_the_failed_runs_a_later_lifecycle_change_superseded(
    store: str, tmp_path: Path
) -> None:
    """Tenants offboarded or reactivated before 0019 get the rule of decision 0047 too."""
    url = f"sqlite:///{tmp_path / 'm.db'}" if store == "sqlite" else create_pg_database()
    db = Database(url)
    try:
        upgrade(db.engine, "0018")
        tenant = (
            "INSERT INTO tenants (id, name, display_name, business_owner,"
            " compliance_classification, region, tier, monthly_budget, currency, contacts,"
            " state, requested_by, created_at, updated_at, version) VALUES"
            " (:id, :id, 'T', 'o@example.com', 'internal', 'eu', 'standard', 1, 'EUR', '[]',"
            " :state, 'amy', :at, :at, 1)"
        )
        run = (
            "INSERT INTO runs (id, runbook_id, runbook_version, runbook_hash, document,"
            " tenant_id, status, inputs, started_by, created_at, updated_at, finished_at)"
            " VALUES (:id, :runbook, '1.0', 'h', '{}', :tenant, :status, '{}', 'amy', :at, :at,"
            " :at)"
        )
        gate = (
            "INSERT INTO run_steps (id, run_id, position, name, kind, status, attempt, failures,"
            " max_attempts, idempotency_key) VALUES"
            " (:id, :id, 0, 'approval', 'gate', 'failed', 0, 0, 1, :id)"
        )
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        runs = [  # id, tenant, runbook, status, minutes after t0
            ("old-suspension", "back", "tenant-suspension", "failed", 0),
            ("reactivation", "back", "tenant-reactivation", "succeeded", 10),
            ("quota", "back", "quota-change", "failed", 20),  # not a lifecycle run: stays
            ("last-suspension", "back", "tenant-suspension", "failed", 30),  # nothing later
            ("reactivation-2", "gone", "tenant-reactivation", "failed", 0),
            ("rejected", "gone", "quota-change", "failed", 5),  # a person's decision
            ("offboarding", "gone", "tenant-offboarding", "failed", 10),  # to be retried
        ]
        with db.engine.begin() as conn:
            for tid, state in (("back", "active"), ("gone", "archived")):
                conn.execute(text(tenant), {"id": tid, "state": state, "at": t0})
            for rid, tid, runbook, status, minutes in runs:
                at = t0 + timedelta(minutes=minutes)
                conn.execute(
                    text(run),
                    {"id": rid, "tenant": tid, "runbook": runbook, "status": status, "at": at},
                )
            conn.execute(text(gate), {"id": "rejected"})
        upgrade(db.engine)
        with db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, closed_reason FROM runs WHERE closed_at IS NOT NULL")
            ).all()
            closed = {row.id: row.closed_reason for row in rows}
            statuses = set(conn.execute(text("SELECT status FROM runs")).scalars())
        assert closed == {
            "old-suspension": "superseded by a later lifecycle change",
            "reactivation-2": "tenant offboarded",
        }
        assert statuses == {"failed", "succeeded"}  # closing changes no status
    finally:
        db.dispose()
        if store == "postgres":
            drop_pg_database(url)
