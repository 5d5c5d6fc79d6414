"""Fixtures of the audit tests: a cast of principals, the CLI, a failing audit store."""

from __future__ import annotations

import gc
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.cli import main
from tenantops.db import Database
from tenantops.kit.clock import set_clock
from tests.audit.helpers import Headers, approve, request_tenant, step
from tests.conftest import TokenFactory


@dataclass(frozen=True)
class Cast:
    """One principal per job, each with an API token."""

    am: Headers
    gov: Headers
    sec: Headers
    ops: Headers
    qa: Headers
    auditor: Headers
    admin: Headers


@pytest.fixture
def cast(auth: TokenFactory) -> Cast:
    return Cast(
        am=auth("amy", "account_manager"),
        gov=auth("gus", "governance"),
        sec=auth("sue", "security"),
        ops=auth("oli", "ops_engineer"),
        qa=auth("quinn", "qa"),
        auditor=auth("ada", "auditor"),
        admin=auth("root", "admin"),
    )


ActiveTenant = Callable[..., dict[str, Any]]


@pytest.fixture
def active_tenant(client: TestClient, cast: Cast) -> ActiveTenant:
    """Request, approve, provision and verify a tenant through the API."""

    def make(**overrides: Any) -> dict[str, Any]:
        tenant = request_tenant(client, cast.am, **overrides)
        approve(client, tenant["id"], cast.gov, "governance")
        approve(client, tenant["id"], cast.sec, "security")
        step(client, tenant["id"], "start_provisioning", cast.ops)
        step(client, tenant["id"], "provisioned", cast.ops)
        return step(client, tenant["id"], "verified", cast.qa)

    return make


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str


RunCli = Callable[..., CliResult]


@pytest.fixture
def run_cli(
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> RunCli:
    """``run_cli("audit", "verify")`` runs ``tenantops`` against the test store."""
    monkeypatch.setenv("TENANTOPS_DATABASE_URL", db.url)
    monkeypatch.setenv("TENANTOPS_DATA_DIR", str(tmp_path / "data"))

    def run(*argv: str) -> CliResult:
        earlier = capsys.readouterr()
        code = main(list(argv))
        captured = capsys.readouterr()
        # Hand back what was printed before the command, for the test to read.
        sys.stdout.write(earlier.out)
        sys.stderr.write(earlier.err)
        # `tokens create|list|revoke` open a Database and never dispose it; on
        # PostgreSQL its pooled connection then warns when garbage-collected at
        # some later, unrelated point. Collect it here, where we know its origin.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def fake_clock() -> Iterator[Callable[[datetime], None]]:
    """``fake_clock(datetime)`` freezes the clock; the wall clock comes back afterwards."""

    def freeze(at: datetime) -> None:
        set_clock(lambda: at)

    yield freeze
    set_clock(None)
