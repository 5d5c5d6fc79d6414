"""The operator CLI against a real server: client commands, errors, and ``serve`` itself.

Client commands run through ``tenantops.cli.main`` in this process against a
``tenantops serve`` subprocess on an ephemeral 127.0.0.1 port (SQLite store);
the test mints tokens straight into that store. ``serve`` on an empty data
directory is tested the way an operator first starts it.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tenantops.db import Database
from tests.conftest import CliResult, invoke
from tests.flows import step
from tests.servers import (
    READY_WITHIN,
    bearer,
    free_port,
    mint_token,
    serve_process,
    tenantops_env,
)


@dataclass
class Server:
    url: str
    db: Database

    def token(self, subject: str, *roles: str) -> str:
        return mint_token(self.db, subject, *roles)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli")
    # The test moves tenants through provisioning itself, so no worker runs the runbooks.
    env = tenantops_env(data_dir=str(tmp), bootstrap_admin="false", worker__in_process="false")
    with serve_process(env, tmp / "server.log") as url:
        db = Database(f"sqlite:///{tmp / 'tenantops.db'}")
        yield Server(url=url, db=db)
        db.dispose()


@pytest.fixture
def cli(server: Server, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> CLI:
    monkeypatch.delenv("TENANTOPS_TOKEN", raising=False)
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    return CLI(capsys)


class CLI:
    """``tenantops ARGS`` in this process, with what it printed."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> CliResult:
        return invoke(self.capsys, *args)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.code == 0, result
        return result.out

    def json(self, *args: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.ok(*args, "--json"))
        return data


def _create_args(name: str, token: str | None, *extra: str) -> list[str]:
    return [
        "tenants",
        "create",
        "--name",
        name,
        "--display-name",
        f"{name.upper()} Corp",
        "--business-owner",
        "owner@acme.example",
        "--classification",
        "confidential",
        "--region",
        "eu-central-1",
        "--tier",
        "standard",
        "--budget",
        "2500",
        "--currency",
        "EUR",
        "--contact",
        "ops@acme.example",
        "--contact",
        "oncall@acme.example",
        "--ticket",
        "RITM0000042",
        *(["--token", token] if token else []),
        *extra,
    ]


def _field(table: str, key: str) -> str:
    """The value next to ``key`` in a two-column ``show`` table."""
    match = re.search(rf"^\s*{re.escape(key)}\s+(.+?)\s*$", table, re.MULTILINE)
    assert match, f"no {key} in:\n{table}"
    return match.group(1)


def _to_active(server: Server, tenant: str) -> None:
    """Provision and verify through the API, as the runbook engine would."""
    ops = bearer(server.token("cli-ops", "ops_engineer"))
    qa = bearer(server.token("cli-qa", "qa"))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for event, who in [("start_provisioning", ops), ("provisioned", ops), ("verified", qa)]:
            step(client, tenant, event, who)


def test_a_tenant_from_request_to_offboarding(server: Server, cli: CLI) -> None:
    am = server.token("cli-amy", "account_manager")
    gov = server.token("cli-gus", "governance")
    gov2 = server.token("cli-gia", "governance")
    sec = server.token("cli-sue", "security")
    ops = server.token("cli-oli", "ops_engineer")
    auditor = server.token("cli-ada", "auditor")

    shown = cli.ok(*_create_args("cli-acme", am))
    assert _field(shown, "name") == "cli-acme"
    assert _field(shown, "state") == "requested"
    assert _field(shown, "contacts") == "ops@acme.example, oncall@acme.example"
    assert _field(shown, "requested_by") == "cli-amy"

    listed = cli.ok("tenants", "list", "--token", auditor)
    header, *rows = [line for line in listed.splitlines() if re.search(r"\w", line)]
    assert header.split() == ["name", "state", "region", "tier", "owner", "budget", "created"]
    (row,) = [r for r in rows if "cli-acme" in r.split()]
    assert row.split()[:7] == [
        "cli-acme",
        "requested",
        "eu-central-1",
        "standard",
        "owner@acme.example",
        "2,500.00",
        "EUR",
    ]

    shown = cli.ok("tenants", "show", "cli-acme", "--token", auditor)
    assert _field(shown, "display_name") == "CLI-ACME Corp"
    assert _field(shown, "monthly_budget") == "2,500.00"
    tenant = cli.json("tenants", "show", "cli-acme", "--token", auditor)
    assert tenant["state"] == "requested"
    assert tenant["ticket_ref"] == "RITM0000042"

    shown = cli.ok("tenants", "approve", "cli-acme", "--role", "governance", "--token", gov)
    assert _field(shown, "state") == "requested"
    decided = cli.json(
        "tenants", "approve", "cli-acme", "--role", "security", "--risk-ref", "RISK-7",
        "--token", sec,
    )  # fmt: skip
    assert decided["state"] == "approved"

    _to_active(server, "cli-acme")

    shown = cli.ok(
        "tenants", "suspend", "cli-acme", "--reason", "payment breach", "--incident", "INC0042",
        "--token", ops,
    )  # fmt: skip
    assert _field(shown, "state") == "suspended"

    asked = cli.ok("tenants", "reactivate", "cli-acme", "--reason", "paid in full", "--token", am)
    assert "waiting for a governance approval" in asked
    approved = cli("tenants", "reactivate", "cli-acme", "--approve", "--token", gov2)
    assert approved.code == 0, approved.err
    # Active only once the reactivation run has reversed the isolation (no worker here).
    assert _field(approved.out, "state") == "suspended"
    assert "stays suspended until its tenant-reactivation run" in approved.err

    shown = cli.ok(
        "tenants", "offboard", "cli-acme", "--reason", "contract ended", "--ticket", "RITM9",
        "--token", am,
    )  # fmt: skip
    assert _field(shown, "state") == "offboarding"
    assert cli.json("tenants", "list", "--state", "offboarding", "--token", auditor)


def test_reject_and_filtered_list(
    server: Server, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No --token: the account manager's token comes from TENANTOPS_TOKEN.
    monkeypatch.setenv("TENANTOPS_TOKEN", server.token("cli-ann", "account_manager"))
    cli.ok(*_create_args("cli-rejected", None))
    sec = server.token("cli-sam", "security")

    shown = cli.ok(
        "tenants", "reject", "cli-rejected", "--role", "security", "--comment", "no DPA",
        "--token", sec,
    )  # fmt: skip
    assert _field(shown, "state") == "rejected"

    names = [
        t["name"] for t in json.loads(cli.ok("tenants", "list", "--state", "rejected", "--json"))
    ]
    assert "cli-rejected" in names
    assert "cli-acme" not in names
    empty = cli.ok("tenants", "list", "--search", "no-such-tenant-anywhere")
    assert "no tenants match" in empty


def _one_line_error(result: CliResult) -> str:
    assert result.code != 0, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("error: "), result.err
    assert "Traceback" not in result.err
    return lines[0]


def test_bad_input_is_one_line_naming_the_field(server: Server, cli: CLI) -> None:
    am = server.token("cli-amos", "account_manager")
    line = _one_line_error(cli(*_create_args("Not_A_DNS_Label", am)))
    assert "name" in line
    line = _one_line_error(cli(*_create_args("cli-badcur", am, "--currency", "XXZ")))
    assert "currency" in line


def test_forbidden_is_one_line_naming_the_roles(server: Server, cli: CLI) -> None:
    line = _one_line_error(cli(*_create_args("cli-nope", server.token("cli-gwen", "governance"))))
    assert "account_manager" in line


def test_unknown_tenant_is_one_line(server: Server, cli: CLI) -> None:
    line = _one_line_error(
        cli("tenants", "show", "no-such-tenant", "--token", server.token("cli-ari", "auditor"))
    )
    assert "no-such-tenant" in line


def test_invalid_token_is_one_line(cli: CLI) -> None:
    line = _one_line_error(cli("tenants", "list", "--token", "tnp_not-a-real-token"))
    assert "token" in line


def test_unreachable_server_is_one_line(server: Server, cli: CLI) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    token = server.token("cli-una", "auditor")
    line = _one_line_error(cli("tenants", "list", "--url", closed, "--token", token))
    assert "cannot reach" in line
    assert closed in line


def test_missing_token_is_one_line(cli: CLI) -> None:
    line = _one_line_error(cli("tenants", "show", "anything"))
    assert "TENANTOPS_TOKEN" in line


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["tenants", "create", "--name", "x"], "--display-name"),
        (["tenants", "list", "--limit", "0"], "--limit"),
        (["tenants", "approve", "x"], "--role"),
        (["tenants", "frobnicate"], "frobnicate"),
        (["tenants", "reactivate", "x", "--approve", "--reject"], "exactly one"),
        (["tenants", "list", "--url", "not a url"], "url"),
        (["worker", "--concurrency", "257"], "--concurrency"),
    ],
    ids=[
        "missing-option",
        "out-of-range",
        "missing-role",
        "unknown-command",
        "both-flags",
        "bad-url",
        "worker-concurrency-over-the-bound",
    ],
)
def test_usage_errors_are_one_line(cli: CLI, args: list[str], mentions: str) -> None:
    result = cli(*args)
    line = _one_line_error(result)
    assert mentions in line
    assert result.code == 2


def test_a_group_without_a_command_shows_its_help_once(cli: CLI) -> None:
    result = cli("tenants")
    assert result.code == 2
    assert result.out.count("Usage: tenantops tenants") == 1
    assert "approve" in result.out


@pytest.mark.slow
def test_serve_on_an_empty_data_dir_migrates_and_prints_a_bootstrap_token_once(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    env = tenantops_env(data_dir=str(data), log_json="true")

    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    with serve_process(env, first_log) as url:
        token = _bootstrap_token(first_log)
        me = httpx.get(f"{url}/api/v1/me", headers=bearer(token), timeout=10)
        assert me.status_code == 200, me.text
        assert me.json()["roles"] == ["admin"]
        created = httpx.post(
            f"{url}/api/v1/tenants", json=_tenant_json(), headers=bearer(token), timeout=10
        )
        assert created.status_code == 201, created.text
    assert (data / "tenantops.db").exists()
    assert first_log.read_text().count(token) == 1  # shown once, never logged
    assert f"serving {url} (with an in-process worker)" in first_log.read_text()

    with serve_process(env, second_log) as url:
        assert httpx.get(f"{url}/api/v1/me", headers=bearer(token), timeout=10).status_code == 200
    assert "bootstrap admin token" not in second_log.read_text()


def _bootstrap_token(log: Path) -> str:
    deadline = time.monotonic() + READY_WITHIN
    while time.monotonic() < deadline:
        match = re.search(r"^\s+(tnp_\S+)\s*$", log.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no bootstrap token printed:\n{log.read_text()}")


def _tenant_json() -> dict[str, object]:
    return {
        "name": "first-tenant",
        "display_name": "First",
        "business_owner": "owner@acme.example",
        "compliance_classification": "internal",
        "region": "eu-central-1",
        "tier": "standard",
        "monthly_budget": 100,
        "currency": "EUR",
    }


def test_the_notification_outbox_from_the_terminal(server: Server, cli: CLI) -> None:
    from tenantops.drivers.notify.local import OutboxNotifier
    from tenantops.drivers.notify.port import OutgoingMessage

    sent = OutboxNotifier(server.db).send(
        OutgoingMessage(
            to=("legal@corp.example",),
            subject="[Suspension] cli-outbox suspended",
            body="Tenant cli-outbox was suspended: payment breach.",
            template="suspension",
            audience="legal",
            tenant_name="cli-outbox",
        ),
        idempotency_key="cli-test/notify-legal",
    )
    ops = server.token("cli-olga", "ops_engineer")

    listed = cli.ok("notifications", "list", "--tenant", "cli-outbox", "--token", ops)
    assert "legal@corp.example" in listed
    assert "[Suspension] cli-outbox suspended" in listed
    items = json.loads(cli.ok("notifications", "list", "--json", "--token", ops))
    assert [m["id"] for m in items if m["tenant_name"] == "cli-outbox"] == [sent.message_id]

    shown = cli.ok("notifications", "show", sent.message_id, "--token", ops)
    assert "Tenant cli-outbox was suspended: payment breach." in shown
    assert "stored" in shown

    refused = cli("notifications", "show", sent.message_id, "--token", server.token("q", "qa"))
    assert refused.code != 0
    assert len(refused.err.strip().splitlines()) == 1


def test_events_from_the_terminal(server: Server, cli: CLI) -> None:
    admin = server.token("cli-ada", "admin")
    ops = server.token("cli-olaf", "ops_engineer")
    am = server.token("cli-amir", "account_manager")
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: deliveries stay pending

    made = cli.ok(
        "events", "subscriptions", "create", closed, "--type", "io.tenantops.tenant.*",
        "--description", "billing", "--token", admin,
    )  # fmt: skip
    assert "signing secret (shown once" in made
    assert "whsec_" in made
    sub_id = made.split()[1]
    assert closed in cli.ok("events", "subscriptions", "list", "--token", admin)

    cli.ok(*_create_args("cli-events", am))
    tail = cli.ok("events", "tail", "--no-follow", "--last", "3", "--token", ops)
    assert re.search(r"tenant\.requested\s+cli-events", tail), tail
    lines = cli.ok("events", "tail", "--no-follow", "--json", "--token", ops).splitlines()
    assert json.loads(lines[-1])["data"]["tenant_name"] == "cli-events"

    deadline = time.monotonic() + READY_WITHIN
    listed = ""
    while "tenant.requested" not in listed and time.monotonic() < deadline:
        listed = cli.ok("events", "deliveries", "--subscription", sub_id, "--token", ops)
        time.sleep(0.2)
    assert "tenant.requested" in listed
    assert "pending" in listed

    bad = cli("events", "subscriptions", "create", "not-a-url", "--token", admin)
    assert bad.code != 0
    assert len(bad.err.strip().splitlines()) == 1
    assert "url" in bad.err
    missing = cli("events", "redeliver", "no-such-delivery", "--token", ops)
    assert missing.code != 0
    assert "no delivery" in missing.err
    qa = server.token("cli-quinn", "qa")
    assert cli("events", "tail", "--no-follow", "--token", qa).code != 0  # not for every role
    typo = cli("events", "tail", "-t", "nosuch.type", "--token", ops)  # refused, never waits
    assert typo.code != 0
    assert "nosuch.type" in _one_line_error(typo)

    assert "deleted" in cli.ok("events", "subscriptions", "delete", sub_id, "--token", admin)
    assert "no webhook subscriptions" in cli.ok("events", "subscriptions", "list", "--token", admin)


def test_the_event_catalogue_prints_offline(cli: CLI) -> None:
    from tenantops.events.asyncapi import document, markdown

    assert cli.ok("events", "catalogue", "--markdown") == markdown()
    assert json.loads(cli.ok("events", "catalogue")) == document()


def test_reject_takes_reason_as_suspend_and_offboard_do(server: Server, cli: CLI) -> None:
    am = server.token("cli-ron", "account_manager")
    cli.ok(*_create_args("cli-rejected-reason", am))
    sec = server.token("cli-sol", "security")

    shown = cli.ok(
        "tenants", "reject", "cli-rejected-reason", "--role", "security", "--reason", "no DPA",
        "--token", sec,
    )  # fmt: skip

    assert _field(shown, "state") == "rejected"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        r = client.get("/api/v1/tenants/cli-rejected-reason/approvals", headers=bearer(sec))
    assert r.status_code == 200, r.text
    decisions = [d for a in r.json() for d in a["decisions"]]
    assert [(d["decision"], d["comment"]) for d in decisions] == [("reject", "no DPA")]
