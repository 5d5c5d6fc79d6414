"""``tenantops oncall`` against a real server (``tenantops serve`` subprocess, SQLite):
apply, show, now, trigger, pages, page, ack, resolve; every failure is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runbooks.test_cli import CLI, Server, cli, server  # noqa: F401 (fixtures)

EXAMPLE = Path(__file__).parents[2] / "docs" / "examples" / "oncall.yaml"


def one_line(result: object) -> str:
    err: str = result.err  # type: ignore[attr-defined]
    assert result.code == 1, result  # type: ignore[attr-defined]
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_apply_show_now_and_a_page_from_trigger_to_resolve(
    server: Server,  # noqa: F811
    cli: CLI,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    ops = server.token("cli-oncall-oli", "ops_engineer")
    monkeypatch.setenv("TENANTOPS_TOKEN", ops)

    applied = cli("oncall", "apply", str(EXAMPLE))
    assert applied.code == 0, applied.err
    assert applied.out.startswith("applied: version 1 (sha256:")
    # This server has no Slack channel: applied, but said out loud.
    assert applied.err.strip() == (
        "warning: slack:platform-oncall: no slack channel 'platform-oncall' is configured here"
        " (TENANTOPS_CHANNELS__…); pages to it stay in the notification outbox"
    )
    assert cli.ok("oncall", "apply", str(EXAMPLE)).strip() == (
        "unchanged: version 1 is already in force"
    )
    shown = cli.ok("oncall", "show")
    assert "configuration: version 1 applied by cli-oncall-oli" in shown
    assert "policy standard (default): rotation:primary (15m) ->" in shown
    assert 'route 1: {"severity": ["critical"]} -> urgent' in shown
    christmas = cli.ok("oncall", "now", "--at", "2026-12-25T12:00:00Z")
    (row,) = [line.split() for line in christmas.splitlines() if "primary" in line]
    assert row[:2] == ["primary", "carol@acme.example"]
    assert row[-1] == "override"

    paged = cli.ok("oncall", "trigger", "--summary", "disk full on db-1", "--severity", "critical")
    assert paged.startswith("paged: ")
    assert "by policy urgent" in paged
    page_id = paged.split()[1]
    listed = cli.ok("oncall", "pages", "--open")
    assert page_id in listed
    assert "disk full on db-1" in listed
    detail = json.loads(cli.ok("oncall", "page", page_id, "--json"))
    assert detail["timeline"][0]["event"] == "triggered"
    assert "triggered" in cli.ok("oncall", "page", page_id)
    acked = cli.ok("oncall", "ack", page_id)
    assert acked.startswith(f"acknowledged: {page_id} acknowledged")
    assert cli.ok("oncall", "resolve", page_id).startswith(f"resolved: {page_id} resolved")
    assert cli.ok("oncall", "pages", "--open").strip() == "no pages open"


def test_every_failure_is_one_line(
    server: Server,  # noqa: F811
    cli: CLI,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TENANTOPS_URL", server.url)
    ops = server.token("cli-oncall-ops", "ops_engineer")
    finance = server.token("cli-oncall-fay", "finance")
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("Europe/Berlin", "Europe/Atlantis", 1))
    err = one_line(cli("oncall", "apply", str(bad), "--token", ops))
    assert "rotations.primary.timezone" in err
    assert str(bad) in err
    err = one_line(cli("oncall", "apply", str(tmp_path / "missing.yaml"), "--token", ops))
    assert "missing.yaml" in err
    one_line(cli("oncall", "ack", "0193a0c4-0000-7000-8000-000000000000", "--token", ops))
    one_line(cli("oncall", "pages", "--token", finance))
    one_line(cli("oncall", "show"))  # no token
    usage = cli("oncall", "trigger", "--summary", "x down", "--severity", "urgent", "--token", ops)
    assert usage.code == 2
    assert len(usage.err.strip().splitlines()) == 1
