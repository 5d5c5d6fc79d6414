"""Alertmanager-shaped notifications (webhook payload version 4) for the receiver tests."""

from __future__ import annotations

import hashlib
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit fingerprint of a label set, like Alertmanager's."""
    text = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def alert(
    tenant: str | None = "acme",
    *,
    status: str = "firing",
    alertname: str = "TenantBudgetExceeded",
    playbook: str | None = "alert-test",
    starts_at: str = "2030-01-01T08:59:00.123456789Z",
    ends_at: str = ZERO_TIME,
    **labels: str,
) -> dict[str, Any]:
    all_labels = {"alertname": alertname, **labels}
    if tenant is not None:
        all_labels["tenant"] = tenant
    if playbook is not None:
        all_labels["tenantops_playbook"] = playbook
    return {
        "status": status,
        "labels": all_labels,
        "annotations": {"summary": f"{alertname} for {tenant}", "value": "1.5"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=test_tenant_ratio+%3E+1",
        "fingerprint": fingerprint(all_labels),
    }


def resolved(firing: dict[str, Any], ends_at: str = "2030-01-01T09:10:00Z") -> dict[str, Any]:
    return {**firing, "status": "resolved", "endsAt": ends_at}


def notification(*alerts: dict[str, Any], group_key: str = '{}:{alertname="X"}') -> dict[str, Any]:
    statuses = {a["status"] for a in alerts}
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": "firing" if "firing" in statuses else "resolved",
        "receiver": "tenantops",
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")} if alerts else {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }
