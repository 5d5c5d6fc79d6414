"""The shipped playbooks are what the Alertmanager receiver starts, by the rules' labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tenantops.alerts.settings import AlertsSettings
from tenantops.app import create_app
from tenantops.config import Settings
from tenantops.db import Database
from tests.alerts.payloads import alert, notification
from tests.conftest import Actors
from tests.factories import tenant_body

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "receiver-token"


def shipped_playbook_labels() -> dict[str, str]:
    """alertname -> tenantops_playbook, as the shipped Prometheus rules set them."""
    rules = yaml.safe_load((ROOT / "deploy/prometheus/tenantops-finops.rules.yml").read_text())
    return {
        r["alert"]: r["labels"]["tenantops_playbook"]
        for g in rules["groups"]
        for r in g["rules"]
        if "tenantops_playbook" in r.get("labels", {})
    }


def test_the_shipped_rules_name_shipped_playbooks() -> None:
    from tenantops.runbooks import spec

    labels = shipped_playbook_labels()
    assert labels["TenantBudgetExceeded"] == "cost-overrun"
    assert labels["TenantQuotaExhaustion"] == "resource-exhaustion"
    assert set(labels.values()) <= set(spec.shipped())


@pytest.mark.parametrize(
    ("alertname", "playbook"),
    [
        ("TenantBudgetExceeded", "cost-overrun"),
        ("TenantQuotaExhaustion", "resource-exhaustion"),
        ("TenantPolicyViolation", "policy-violation"),
    ],
)
def test_an_alert_starts_its_shipped_playbook(
    db: Database, settings: Settings, actors: Actors, alertname: str, playbook: str
) -> None:
    configured = settings.model_copy(
        update={"alerts": AlertsSettings(bearer_token=SecretStr(TOKEN))}
    )
    with TestClient(create_app(configured, db=db), raise_server_exceptions=False) as client:
        tenant = client.post("/api/v1/tenants", json=tenant_body(), headers=actors.am).json()
        r = client.post(
            "/api/v1/webhooks/alertmanager",
            json=notification(alert(tenant["name"], alertname=alertname, playbook=playbook)),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["dispatch_errors"] == []
        runs = client.get(
            "/api/v1/runs", params={"tenant": tenant["id"]}, headers=actors.ops
        ).json()["items"]
        assert playbook in {run["runbook_id"] for run in runs}
