"""``tenantops secrets`` against a real server (``tenantops serve`` subprocess, SQLite)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.factories import tenant_body
from tests.runbooks.test_cli import CLI, Server, cli, server  # noqa: F401 (fixtures)
from tests.servers import bearer


def test_register_record_a_rotation_and_list_what_is_overdue(
    server: Server,  # noqa: F811
    cli: CLI,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    am = bearer(server.token("cli-sec-amy", "account_manager"))
    ops = server.token("cli-sec-oli", "ops_engineer")
    finance = server.token("cli-sec-fay", "finance")
    created = httpx.post(
        f"{server.url}/api/v1/tenants", json=tenant_body(name="cli-secrets"), headers=am
    )
    assert created.status_code == 201, created.text
    tenant = ("cli-secrets", "app/database")

    registered = cli.ok(
        "secrets", "register", *tenant, "--every", "30", "--owner", "db@x.example", "--token", ops
    )
    assert "absent" in registered  # registered before the store holds it
    long_ago = (datetime.now(UTC) - timedelta(days=100)).strftime("%Y-%m-%dT%H:%M:%S")
    recorded = cli.ok(
        "secrets", "rotated", *tenant, "--evidence", "CHG-1", "--at", long_ago, "--token", ops
    )
    assert recorded.startswith(f"recorded: cli-secrets app/database rotated {long_ago[:10]}")

    overdue = cli.ok("secrets", "list", "--overdue", "--token", ops)
    (row,) = [line.split() for line in overdue.splitlines() if "cli-secrets" in line]
    assert row[:3] == ["cli-secrets", "app/database", "overdue"]
    (item,) = json.loads(
        cli.ok("secrets", "list", "--tenant", "cli-secrets", "--json", "--token", ops)
    )
    assert (item["owner"], item["rotation_days"], item["evidence"]) == ("db@x.example", 30, "CHG-1")

    none = cli.ok("secrets", "list", "--tenant", "cli-secrets", "--status", "ok", "--token", ops)
    assert none.strip() == "no secrets match"  # a message, not an empty table

    bad_path = cli("secrets", "register", "cli-secrets", "../x", "--every", "30", "--token", ops)
    assert bad_path.code == 1
    assert "is not a secret path" in bad_path.err
    assert len(bad_path.err.strip().splitlines()) == 1
    no_evidence = cli("secrets", "rotated", *tenant, "--evidence", "x", "--token", ops)
    assert no_evidence.code == 1
    assert len(no_evidence.err.strip().splitlines()) == 1
    refused = cli("secrets", "list", "--token", finance)
    assert refused.code == 1
    assert len(refused.err.strip().splitlines()) == 1
    assert cli("secrets", "register", *tenant, "--every", "0", "--token", ops).code == 2
