"""End to end with the real Prometheus and Alertmanager: a metric crosses 1, a playbook runs.

A tiny target exposes ``test_tenant_ratio{tenant=...}``; Prometheus scrapes it
every second and fires ``TestTenantRatioHigh`` (labels ``tenant`` and
``tenantops_playbook``); Alertmanager posts to a real ``tenantops serve`` with
its bearer token. The alert is stored and starts the test playbook once; when
the metric drops, the resolution closes the alert and lets the run finish.
Every wait is a bounded poll; nothing is timed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from tenantops.alerts.cli import app as alerts_cli
from tenantops.db import Database
from tests.alerts.conftest import RUNBOOKS, TOKEN
from tests.factories import tenant_body
from tests.promstack import MetricsTarget, PromStack, Webhook, binaries, wait_for
from tests.servers import bearer, mint_token, serve_process, tenantops_env

RULES = {
    "groups": [
        {
            "name": "tenantops-test",
            "rules": [
                {
                    "alert": "TestTenantRatioHigh",
                    "expr": "test_tenant_ratio > 1",
                    "labels": {"tenantops_playbook": "alert-test", "severity": "warning"},
                    "annotations": {
                        "summary": "{{ $labels.tenant }} is at {{ $value }} of its budget",
                        "value": "{{ $value }}",
                    },
                }
            ],
        }
    ]
}


@dataclass
class Server:
    url: str
    db: Database
    ops: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}/api/v1{path}", params=params, headers=self.ops, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    binaries()  # skip (laptop) or fail (CI) before starting anything
    env = tenantops_env(
        data_dir=str(tmp_path),
        bootstrap_admin="false",
        worker__poll_seconds="0.05",
        alerts__bearer_token=TOKEN,
        alerts__runbooks_dir=str(RUNBOOKS),
    )
    with serve_process(env, tmp_path / "server.log") as url:
        db = Database(f"sqlite:///{tmp_path / 'tenantops.db'}")
        yield Server(url=url, db=db, ops=bearer(mint_token(db, "oli", "ops_engineer")))
        db.dispose()


def test_a_tenant_metric_over_1_starts_its_playbook_and_its_recovery_closes_it(
    server: Server, tmp_path: Path
) -> None:
    am = bearer(mint_token(server.db, "amy", "account_manager"))
    created = httpx.post(f"{server.url}/api/v1/tenants", json=tenant_body(), headers=am, timeout=10)
    assert created.status_code == 201, created.text
    tenant = created.json()
    series = f'test_tenant_ratio{{tenant="{tenant["name"]}"}}'

    def alerts(status: str | None = None) -> list[dict[str, Any]]:
        params = {"tenant": tenant["name"], **({"status": status} if status else {})}
        items: list[dict[str, Any]] = server.get("/alerts", **params)["items"]
        return items

    def playbook_runs() -> list[dict[str, Any]]:
        runs = server.get("/runs", tenant=tenant["id"], limit=100)["items"]
        return [r for r in runs if r["runbook_id"] == "alert-test"]

    with MetricsTarget() as target:
        target.set({series: 1.5})
        stack = PromStack(
            tmp_path / "promstack",
            rules=RULES,
            targets=[target.address],
            webhook=Webhook(url=f"{server.url}/api/v1/webhooks/alertmanager", bearer=TOKEN),
        )
        with stack:
            [firing] = wait_for("the firing alert in tenantops", alerts, logs=stack.logs)
            assert firing["status"] == "firing"
            assert firing["alertname"] == "TestTenantRatioHigh"
            assert firing["tenant_id"] == tenant["id"]
            assert firing["playbook"] == "alert-test"
            assert firing["dispatch_error"] is None
            assert firing["labels"]["tenant"] == tenant["name"]
            [run] = wait_for(
                "the playbook waiting for the resolution",
                lambda: [r for r in playbook_runs() if r["status"] == "waiting"],
                logs=stack.logs,
            )
            assert firing["run_id"] == run["id"]

            target.set({series: 0.5})
            [resolved] = wait_for(
                "the resolution in tenantops", lambda: alerts("resolved"), logs=stack.logs
            )
            assert resolved["run_id"] == run["id"]
            [closed] = alerts("firing")
            assert closed["closed_at"] is not None
            wait_for(
                "the playbook finished after the resolution",
                lambda: [r for r in playbook_runs() if r["status"] == "succeeded"],
                logs=stack.logs,
            )
            assert len(playbook_runs()) == 1  # one run for the tenant, however often AM sent

    # Mounted as the lead mounts it: ``tenantops alerts list``.
    root = typer.Typer()
    root.add_typer(alerts_cli, name="alerts")
    token = server.ops["Authorization"].removeprefix("Bearer ")
    listed = CliRunner().invoke(
        root, ["alerts", "list", "--url", server.url, "--token", token, "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert {a["status"] for a in json.loads(listed.output)} == {"firing", "resolved"}
    table = CliRunner().invoke(root, ["alerts", "list", "--url", server.url, "--token", token])
    assert table.exit_code == 0, table.output
    assert "TestTenantRatioHigh" in table.output
