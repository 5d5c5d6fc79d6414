"""The shipped Prometheus rules and Alertmanager route pass the tools that load them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "tenantops-finops.rules.yml"
ROUTES = DEPLOY / "alertmanager.example.yml"


def _tool(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(path).exists():
        pytest.fail(f"{name} is needed (Debian package prometheus / prometheus-alertmanager)")
    return path


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [_tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rules_name_the_playbooks_the_receiver_starts() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rules = {r["alert"]: r for g in groups for r in g["rules"]}
    assert rules["TenantBudgetExceeded"]["expr"] == "tenantops_tenant_budget_ratio > 1"
    assert rules["TenantBudgetExceeded"]["labels"]["tenantops_playbook"] == "cost-overrun"
    assert "0.8" in rules["TenantBudgetThreshold"]["expr"]
    assert rules["TenantQuotaExhaustion"]["labels"]["tenantops_playbook"] == "resource-exhaustion"
    assert "kube_resourcequota" in rules["TenantQuotaExhaustion"]["expr"]


def test_amtool_accepts_the_route_example() -> None:
    result = subprocess.run(
        [_tool("amtool"), "check-config", str(ROUTES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(ROUTES.read_text())
    route = config["route"]["routes"][0]
    assert route["matchers"] == ['tenantops_playbook=~".+"']
    hook = next(r for r in config["receivers"] if r["name"] == route["receiver"])
    webhook = hook["webhook_configs"][0]
    assert webhook["url"] == "http://tenantops:8080/api/v1/webhooks/alertmanager"
    assert "credentials_file" in webhook["http_config"]["authorization"]
