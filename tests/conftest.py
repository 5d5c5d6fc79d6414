"""Shared fixtures: every store test runs on SQLite and on the real PostgreSQL.

``TENANTOPS_TEST_STORES`` picks the stores (default ``sqlite,postgres``). When
PostgreSQL is asked for and cannot be reached the run fails; it never skips.
A laptop without PostgreSQL runs ``TENANTOPS_TEST_STORES=sqlite make test``.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tenantops.app import create_app
from tenantops.cli import main
from tenantops.config import Settings, WorkerSettings
from tenantops.db import Base, Database
from tenantops.kit.clock import set_clock
from tenantops.migrations import upgrade
from tests.servers import bearer, mint_token

# An app built in a test runs no background worker unless the test asks for one
# (Settings(worker=WorkerSettings(in_process=True))): requests must see exactly
# the state they made. Servers started as subprocesses get a clean environment.
os.environ.setdefault("TENANTOPS_WORKER__IN_PROCESS", "false")
# Likewise the event relay: a test that wants events published runs a Relay itself.
os.environ.setdefault("TENANTOPS_EVENTS__RELAY", "false")

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


def postgres_only(test: Callable[..., None]) -> Callable[..., None]:
    """A test of PostgreSQL's row locks and isolation, run on that store alone (not
    skipped on SQLite: not collected for it). Off when TENANTOPS_TEST_STORES leaves
    PostgreSQL out, as on a laptop; CI always has it."""
    test = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)(test)
    return pytest.mark.skipif("postgres" not in STORES, reason="PostgreSQL not in the stores")(test)


def blocked_on_a_lock(db: Database) -> bool:
    """Whether a connection to ``db`` (PostgreSQL) now waits on a lock: how a concurrency
    test knows its second transaction has reached the first one's lock."""
    with db.engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return bool(waiting)


def wipe(db: Database) -> None:
    """Empty every table and reset the audit chain to genesis."""
    with db.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        conn.execute(
            text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64}
        )
        # As the migration leaves it: retention has deleted nothing.
        conn.execute(
            text("INSERT INTO event_retention (name, pruned_through) VALUES ('outbox', 0)")
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
    # No in-process worker: API tests see exactly the state their requests made.
    return Settings(data_dir=tmp_path, log_json=False, worker=WorkerSettings(in_process=False))


@pytest.fixture
def client(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db=db), raise_server_exceptions=False) as c:
        yield c


Headers = dict[str, str]
TokenFactory = Callable[..., Headers]


@pytest.fixture
def auth(db: Database) -> TokenFactory:
    """``auth("alice", "governance", tenant=None)`` -> an Authorization header."""

    def make(subject: str, *roles: str, tenant: str | None = None) -> Headers:
        return bearer(mint_token(db, subject, *roles, tenant=tenant))

    return make


@dataclass(frozen=True)
class Actors:
    """One principal per job, each with its own API token (an Authorization header)."""

    am: Headers
    gov: Headers
    sec: Headers
    ops: Headers
    qa: Headers
    auditor: Headers
    admin: Headers

    @classmethod
    def minted(cls, token: TokenFactory) -> Actors:
        """The cast, each minted by ``token(subject, role)`` in this order."""
        return cls(
            am=token("amy", "account_manager"),
            gov=token("gus", "governance"),
            sec=token("sue", "security"),
            ops=token("oli", "ops_engineer"),
            qa=token("quinn", "qa"),
            auditor=token("ada", "auditor"),
            admin=token("root", "admin"),
        )


@pytest.fixture
def actors(auth: TokenFactory) -> Actors:
    return Actors.minted(auth)


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


CliRunner = Callable[..., CliResult]


def invoke(capsys: pytest.CaptureFixture[str], *argv: str) -> CliResult:
    """``tenantops ARGV`` in this process; its exit code and exactly what it printed."""
    earlier = capsys.readouterr()
    # As in its own process: the CLI sets up its own logging, and whatever the
    # test had set up (a server's logging, say) is back afterwards.
    saved = structlog.get_config() if structlog.is_configured() else None
    structlog.reset_defaults()
    try:
        code = main(list(argv))
    finally:
        if saved is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**saved)
    captured = capsys.readouterr()
    # Hand back what was printed before the command, for the test to read.
    sys.stdout.write(earlier.out)
    sys.stderr.write(earlier.err)
    return CliResult(code, captured.out, captured.err)


@pytest.fixture
def cli(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> CliRunner:
    """``cli("audit", "verify")`` runs ``tenantops`` against the test store."""
    monkeypatch.setenv("TENANTOPS_DATABASE_URL", db.url)
    monkeypatch.setenv("TENANTOPS_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> CliResult:
        return invoke(capsys, *argv)

    return run


class Clock:
    """The one clock of tenantops, frozen at ``now`` until a test moves it."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

    def advance(self, delta: timedelta | None = None, **parts: float) -> None:
        """``advance(timedelta(hours=1))`` or ``advance(hours=1)``."""
        self.now += (delta or timedelta()) + timedelta(**parts)


@pytest.fixture
def clock() -> Iterator[Clock]:
    """The project clock, frozen at 2030-01-01 09:00 UTC; the wall clock comes back after."""
    frozen = Clock()
    set_clock(lambda: frozen.now)
    yield frozen
    set_clock(None)
