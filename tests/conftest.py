"""Shared fixtures: every store test runs on SQLite and on the real PostgreSQL.

``TENANTOPS_TEST_STORES`` picks the stores (default ``sqlite,postgres``). When
PostgreSQL is asked for and cannot be reached the run fails; it never skips.
A laptop without PostgreSQL runs ``TENANTOPS_TEST_STORES=sqlite make test``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tenantops.app import create_app
from tenantops.auth import tokens
from tenantops.auth.principal import SYSTEM, Role
from tenantops.config import Settings
from tenantops.db import Base, Database
from tenantops.migrations import upgrade

PG_ADMIN_URL = os.environ.get(
    "TENANTOPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
STORES = [
    s.strip()
    for s in os.environ.get("TENANTOPS_TEST_STORES", "sqlite,postgres").split(",")
    if s.strip()
]


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database for this run; returns its URL."""
    name = f"tenantops_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is needed for these tests but {PG_ADMIN_URL} is not usable: {exc}. "
            "Start it, or run SQLite only with TENANTOPS_TEST_STORES=sqlite.",
            pytrace=False,
        )
    finally:
        admin.dispose()
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=STORES)
def store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database URL per store, shared by the session's tests."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'tenantops.db'}"
        upgrade(Database(url).engine)
        yield url
        return
    if request.param != "postgres":
        raise ValueError(f"unknown store {request.param!r} in TENANTOPS_TEST_STORES")
    url = create_pg_database()
    db = Database(url)
    upgrade(db.engine)
    db.dispose()
    yield url
    drop_pg_database(url)


def wipe(db: Database) -> None:
    """Empty every table and reset the audit chain to genesis."""
    with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(
            text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
        )


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    """The store, emptied before the test."""
    database = Database(store_url)
    wipe(database)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, log_json=False)


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as c:
        yield c


TokenFactory = Callable[..., dict[str, str]]


@pytest.fixture
def auth(db: Database) -> TokenFactory:
    """``auth("alice", "governance", tenant=None)`` -> an Authorization header."""

    def make(subject: str, *roles: str, tenant: str | None = None) -> dict[str, str]:
        with db.write() as session:
            issued = tokens.create_token(
                session,
                actor=SYSTEM,
                subject=subject,
                roles=[Role(r) for r in roles],
                tenant_id=tenant,
                ttl=None,
            )
        return {"Authorization": f"Bearer {issued.value}"}

    return make
