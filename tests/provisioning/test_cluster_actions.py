"""k8s.isolate, k8s.drift and k8s.apply_tenant as runbook steps (in-memory cluster).

The REST adapter behind them is tested against recorded Kubernetes API
exchanges in tests/drivers/test_kubernetes.py.
"""

from __future__ import annotations

from pathlib import Path

from tenantops.config import Settings
from tenantops.drivers.kubernetes.local import LocalCluster
from tenantops.provisioning.actions import cluster_actions
from tests.provisioning.test_actions import ctx


def test_apply_then_drift_then_isolate(tmp_path: Path) -> None:
    cluster = LocalCluster()
    actions = cluster_actions(Settings(data_dir=tmp_path), cluster=cluster)

    before = actions["k8s.drift"].run(ctx("drift"))
    assert before.evidence["in_sync"] is False  # nothing applied yet

    applied = actions["k8s.apply_tenant"].run(ctx("apply"))
    kinds = {a["kind"] for a in applied.evidence["applied"]}
    assert {"Namespace", "ResourceQuota", "NetworkPolicy"} <= kinds
    assert "Application" not in kinds  # Argo CD's object stays on the GitOps path

    after = actions["k8s.drift"].run(ctx("drift-again"))
    assert after.evidence == {"in_sync": True, "drift": []}

    isolated = actions["k8s.isolate"].run(ctx("isolate"))
    assert isolated.evidence["kind"] == "NetworkPolicy"
    assert isolated.evidence["namespace"] == "acme"


def test_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    cluster = LocalCluster()
    actions = cluster_actions(Settings(data_dir=tmp_path), cluster=cluster)
    actions["k8s.apply_tenant"].run(ctx("apply", params={"dry_run": True}))
    assert actions["k8s.drift"].run(ctx("drift")).evidence["in_sync"] is False


def test_without_a_kubernetes_api_each_step_is_done_and_says_gitops_reaches_the_cluster(
    tmp_path: Path,
) -> None:
    actions = cluster_actions(Settings(data_dir=tmp_path))
    for name in ("k8s.isolate", "k8s.drift", "k8s.apply_tenant"):
        result = actions[name].run(ctx(name))
        assert result.evidence["skipped"] is True
        assert "through GitOps" in result.evidence["reason"]
