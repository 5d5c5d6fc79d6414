"""``tenantops itil`` against a real server (``tenantops serve`` subprocess, SQLite)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.factories import tenant_body
from tests.runbooks.test_cli import CLI, Server, cli, server  # noqa: F401 (fixtures)
from tests.servers import bearer


def test_open_work_and_list_a_tenants_records_and_refusals_are_one_line(
    server: Server,  # noqa: F811
    cli: CLI,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    am = server.token("cli-itil-amy", "account_manager")
    ops = server.token("cli-itil-oli", "ops_engineer")
    gov = server.token("cli-itil-gus", "governance")
    created = httpx.post(
        f"{server.url}/api/v1/tenants", json=tenant_body(name="cli-itil"), headers=bearer(am)
    )
    assert created.status_code == 201, created.text

    opened = cli.ok(
        "itil", "open", "incident", "orders API 503", "--tenant", "cli-itil", "--token", ops
    )
    assert opened.startswith("opened: INC")
    number = opened.split()[1]
    assert "cli-itil" in opened
    moved = cli.ok("itil", "transition", number, "in_progress", "--if-version", "1", "--token", ops)
    assert moved.startswith(f"moved: {number} incident in_progress")
    cli.ok("itil", "note", number, "pool exhausted", "--token", ops)
    cli.ok("itil", "assign", number, "team-db", "--token", ops)
    problem = cli.ok("itil", "open", "problem", "pool too small", "--token", ops).split()[1]
    assert cli.ok("itil", "link", number, problem, "--token", ops).startswith(
        f"linked to {problem}: {number}"
    )
    shown = cli.ok("itil", "show", number, "--token", ops)
    assert "assigned to: team-db" in shown
    assert "[work_note] pool exhausted" in shown
    assert "next: cancelled, on_hold, resolved" in shown
    (row,) = json.loads(cli.ok("itil", "list", "--tenant", "cli-itil", "--json", "--token", ops))
    assert (row["number"], row["state"], row["problem_id"] is not None) == (
        number,
        "in_progress",
        True,
    )
    table = cli.ok("itil", "list", "--tenant", "cli-itil", "--open", "--token", ops)
    assert number in table
    assert cli.ok("itil", "list", "--kind", "change", "--token", ops).strip() == "no records match"

    for refused, says in (
        (("itil", "transition", number, "closed", "--token", ops), "allowed: cancelled, on_hold"),
        (("itil", "transition", number, "resolved", "--token", ops), "needs a resolution"),
        (("itil", "transition", number, "on_hold", "--if-version", "1", "--token", ops), "version"),
        (("itil", "open", "incident", "x", "--token", am), "may not"),
        (("itil", "open", "incident", "x", "--tenant", "nobody", "--token", ops), "no tenant"),
        (("itil", "show", "INC9999999", "--token", ops), "no ITIL record"),
        (("itil", "list", "--token", "not-a-token"), ""),
    ):
        result = cli(*refused)
        assert result.code == 1, result
        assert says in result.err
        assert len(result.err.strip().splitlines()) == 1, result.err
    change = cli.ok("itil", "open", "change", "raise quota", "--token", am).split()[1]
    cli.ok("itil", "transition", change, "assess", "--token", ops)
    cli.ok("itil", "transition", change, "authorize", "--token", ops)
    sod = cli("itil", "transition", change, "scheduled", "--token", ops)
    assert sod.code == 1
    assert "governance or admin" in sod.err
    assert cli.ok("itil", "transition", change, "scheduled", "--token", gov).startswith("moved")
    assert cli("itil", "open", "incident", "x", "--priority", "7", "--token", ops).code == 2
