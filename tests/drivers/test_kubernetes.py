"""Kubernetes against recorded API server exchanges replayed by a local HTTP server.

The replay server is the one of ``test_argocd`` (scripted exchanges answered in
order; a request that is not the recorded one is a problem and fails the test).
The exchanges in ``tests/drivers/contracts/kubernetes/`` follow the documented
API: server-side apply PATCHes, object GETs, ``Status`` errors, and the
``/version`` and ``SelfSubjectAccessReview`` calls of doctor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from tenantops.drivers.errors import DriverError, Retry
from tenantops.drivers.kubernetes.local import LocalCluster
from tenantops.drivers.kubernetes.port import Applied, Cluster, isolation_policy, managed_drift
from tenantops.drivers.kubernetes.rest import (
    APPLY_PATCH,
    KINDS,
    KubernetesError,
    KubernetesRest,
    object_path,
)
from tenantops.drivers.kubernetes.settings import KubernetesSettings
from tenantops.provisioning.manifests import (
    Platform,
    TenantSpec,
    default_groups,
    render_tenant,
    tenant_objects,
)
from tests.drivers.test_argocd import Replay, contract, free_port, replay  # noqa: F401

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c0m3K8sSeRvIcEaCcOuNtToKeN.signature"

APPLY = contract("kubernetes", "apply")
READ = contract("kubernetes", "read")
ERRORS = contract("kubernetes", "errors")
DOCTOR = contract("kubernetes", "doctor")


def ex(name: str) -> Any:
    for c in (APPLY, READ, ERRORS, DOCTOR):
        if name in c["exchanges"]:
            return c["exchanges"][name]
    raise KeyError(name)


def acme_objects() -> dict[str, dict[str, Any]]:
    """The rendered (and validated) objects of the tenant the contracts recorded."""
    t = APPLY["tenant"]
    spec = TenantSpec(
        name=t["name"],
        tier=t["tier"],
        region=t["region"],
        compliance_classification=t["compliance_classification"],
        business_owner=t["business_owner"],
        groups=default_groups(t["name"]),
    )
    return render_tenant(spec, Platform(repo_url=t["repo_url"])).objects


def quota() -> dict[str, Any]:
    return acme_objects()["tenants/acme/resourcequota.yaml"]


@pytest.fixture
def cluster(replay: Replay) -> Iterator[KubernetesRest]:  # noqa: F811
    client = KubernetesRest(KubernetesSettings(api_url=replay.url, token=SecretStr(TOKEN)))
    yield client
    client.close()
    replay.assert_done()


def test_the_rest_adapter_is_a_cluster(cluster: KubernetesRest) -> None:
    port: Cluster = cluster
    assert port is cluster


def test_apply_sends_one_server_side_apply_patch_per_rendered_object(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    recorded = ex("tenant_acme")
    objects = acme_objects()
    assert [r["file"] for r in recorded] == list(objects)  # every rendered object, Namespace first
    replay.script(*recorded)

    namespace, *others = objects.values()
    applied = cluster.apply([*others, namespace])  # a Namespace goes first wherever it is

    assert len(replay.seen) == len(objects)
    assert replay.seen[0].path == "/api/v1/namespaces/acme"  # the namespace exists first
    for seen in replay.seen:
        assert seen.method == "PATCH"
        assert seen.headers["content-type"] == APPLY_PATCH
        assert seen.query == {"fieldManager": "tenantops", "force": "true"}
        assert seen.headers["authorization"] == f"Bearer {TOKEN}"
    sent = {(s.body["kind"], s.body["metadata"]["name"]): s.body for s in replay.seen}
    for obj in objects.values():
        assert sent[(obj["kind"], obj["metadata"]["name"])] == obj  # the render, unchanged
    paths = {s.path for s in replay.seen}
    assert "/apis/external-secrets.io/v1beta1/namespaces/acme/secretstores/tenant-secrets" in paths
    assert "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications/tenant-acme" in paths
    assert applied[0] == Applied(
        "Namespace", "acme", None, "48220", "6f1c2d3e-0000-4000-8000-000000000000", False
    )
    assert all(a.uid and a.resource_version for a in applied)


def test_a_dry_run_asks_the_server_not_to_persist(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("dry_run_namespace"))
    namespace = acme_objects()["tenants/acme/namespace.yaml"]

    [applied] = cluster.apply([namespace], dry_run=True)

    assert replay.seen[0].query["dryRun"] == "All"
    assert applied.dry_run


def test_read_returns_the_live_object_or_none(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("namespace"), ex("quota_not_found"))

    live = cluster.read("Namespace", "acme", None)
    missing = cluster.read("ResourceQuota", "tenant-quota", "acme")

    assert live is not None
    assert live["status"]["phase"] == "Active"
    assert missing is None


def test_drift_names_a_quota_someone_raised_by_hand(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("quota_edited"))

    [drift] = cluster.drift([quota()])

    assert (drift.kind, drift.name, drift.namespace) == ("ResourceQuota", "tenant-quota", "acme")
    assert (drift.field, drift.desired, drift.live) == ("spec.hard.pods", "100", "150")


def test_drift_ignores_fields_tenantops_does_not_manage(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("quota_same"))  # status, managedFields, another label: not drift

    assert cluster.drift([quota()]) == []


def test_a_missing_object_is_drift(cluster: KubernetesRest, replay: Replay) -> None:  # noqa: F811
    replay.script(ex("quota_not_found"))

    [drift] = cluster.drift([quota()])

    assert (drift.field, drift.live) == ("", None)


def test_drift_compares_list_entries_on_their_own_fields() -> None:
    desired = {"kind": "Role", "metadata": {"name": "r"}, "rules": [{"verbs": ["get"]}]}
    defaulted = {"metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "resourceNames": []}]}
    widened = {"metadata": {"name": "r"}, "rules": [{"verbs": ["get"]}, {"verbs": ["*"]}]}

    assert managed_drift(desired, defaulted) == []
    assert [d.field for d in managed_drift(desired, widened)] == ["rules"]


def test_isolate_applies_the_deny_all_policy_the_manifests_render(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    spec = TenantSpec(
        name="acme", tier="basic", region="eu", compliance_classification="x", isolated=True
    )
    rendered = tenant_objects(spec, Platform(repo_url="https://git.example.invalid/r.git"))
    assert isolation_policy("acme") == rendered["tenants/acme/networkpolicy-isolate.yaml"]
    replay.script(ex("isolate"))

    applied = cluster.isolate("acme")

    [seen] = replay.seen
    assert seen.path == "/apis/networking.k8s.io/v1/namespaces/acme/networkpolicies/isolate"
    assert seen.headers["content-type"] == APPLY_PATCH
    assert seen.body["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert (applied.kind, applied.name, applied.namespace) == ("NetworkPolicy", "isolate", "acme")


def _call(cluster: KubernetesRest, call: str) -> object:
    objects = acme_objects()
    if call == "apply_quota":
        return cluster.apply([objects["tenants/acme/resourcequota.yaml"]])
    if call == "apply_secretstore":
        return cluster.apply([objects["tenants/acme/secretstore.yaml"]])
    if call == "isolate":
        return cluster.isolate("acme")
    assert call == "read_quota"
    return cluster.read("ResourceQuota", "tenant-quota", "acme")


@pytest.mark.parametrize("name", sorted(ERRORS["exchanges"]))
def test_each_recorded_error_maps_to_its_verdict(
    name: str,
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    exchange = ex(name)
    replay.script(exchange)
    if exchange["verdict"] == "none":
        assert _call(cluster, exchange["call"]) is None
        return
    with pytest.raises(KubernetesError) as caught:
        _call(cluster, exchange["call"])
    error = caught.value
    assert isinstance(error, DriverError)
    assert error.retry is Retry(exchange["verdict"])
    assert error.status == exchange["response"]["status"]
    assert exchange["response"]["body"]["message"][:80] in str(error)  # the Status message
    assert error.retry_after == exchange.get("retry_after")


def test_error_messages_say_what_a_person_must_do(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("crd_not_installed"), ex("forbidden_isolate"))
    objects = acme_objects()

    with pytest.raises(KubernetesError, match=r"CRD secretstores\.external-secrets\.io"):
        cluster.apply([objects["tenants/acme/secretstore.yaml"]])
    with pytest.raises(
        KubernetesError, match=r"may not patch networkpolicies\.networking\.k8s\.io"
    ):
        cluster.isolate("acme")


def test_an_apply_stops_at_the_first_error(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    first, *_ = ex("tenant_acme")
    replay.script(first, ex("unauthorized"))
    objects = acme_objects()

    with pytest.raises(KubernetesError):
        cluster.apply(objects.values())

    assert len(replay.seen) == 2


def test_no_server_is_retriable() -> None:
    settings = KubernetesSettings(api_url=f"http://127.0.0.1:{free_port()}", token=SecretStr(TOKEN))
    client = KubernetesRest(settings)
    with pytest.raises(KubernetesError) as caught:
        client.read("Namespace", "acme", None)
    client.close()
    assert caught.value.retry is Retry.RETRIABLE


def test_a_kind_tenantops_does_not_apply_is_permanent_before_any_request(
    cluster: KubernetesRest,
) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "acme"}}
    with pytest.raises(KubernetesError) as caught:
        cluster.apply([pod])
    assert caught.value.retry is Retry.PERMANENT


def test_paths_follow_the_api_groups() -> None:
    assert object_path(KINDS["Namespace"], "acme", None) == "/api/v1/namespaces/acme"
    assert (
        object_path(KINDS["RoleBinding"], "b", "acme")
        == "/apis/rbac.authorization.k8s.io/v1/namespaces/acme/rolebindings/b"
    )


def test_the_token_shows_in_no_error_repr_or_log(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    replay.script(ex("unauthorized"), ex("forbidden_isolate"))
    errors = []
    for call in ("apply_quota", "isolate"):
        with pytest.raises(KubernetesError) as caught:
            _call(cluster, call)
        errors.append(caught.value)

    shown = [repr(cluster), repr(cluster.settings), str(cluster.settings), caplog.text]
    shown += [str(e) for e in errors] + [repr(e) for e in errors]
    assert caplog.text  # something was logged
    assert not any(TOKEN in text for text in shown)


def test_the_in_cluster_service_account_is_used_without_a_token(
    tmp_path: Path,
    replay: Replay,  # noqa: F811
) -> None:
    (tmp_path / "token").write_text("in-cluster-token\n")
    settings = KubernetesSettings(api_url=replay.url, service_account_dir=tmp_path)
    replay.script(ex("namespace"))
    client = KubernetesRest(settings)

    client.read("Namespace", "acme", None)
    client.close()

    assert replay.seen[0].headers["authorization"] == "Bearer in-cluster-token"
    assert settings.verify() is True  # no ca.crt there: the system's trust store
    (tmp_path / "ca.crt").write_text("")
    assert settings.verify() == str(tmp_path / "ca.crt")


def test_doctor_checks_reachable_token_and_patch_permissions(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("version"), ex("may_patch_namespaces"), ex("may_patch_networkpolicies"))

    rows = cluster.check()

    assert [(r.check, r.ok) for r in rows] == [
        ("kubernetes reachable", True),
        ("kubernetes token valid", True),
        ("kubernetes may patch namespaces", True),
        ("kubernetes may patch networkpolicies.networking.k8s.io", True),
    ]
    assert rows[0].detail == "v1.31.2"
    reviews = [s.body["spec"]["resourceAttributes"] for s in replay.seen[1:]]
    assert reviews == [
        {"verb": "patch", "group": "", "resource": "namespaces"},
        {"verb": "patch", "group": "networking.k8s.io", "resource": "networkpolicies"},
    ]


def test_doctor_names_the_missing_permission_and_its_fix(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("version"), ex("may_patch_namespaces"), ex("may_not_patch_networkpolicies"))

    last = cluster.check()[-1]

    assert (last.check, last.ok) == (
        "kubernetes may patch networkpolicies.networking.k8s.io",
        False,
    )
    assert "networkpolicies.networking.k8s.io" in last.fix


def test_doctor_says_how_to_fix_a_rejected_token(
    cluster: KubernetesRest,
    replay: Replay,  # noqa: F811
) -> None:
    replay.script(ex("version"), ex("token_rejected"))

    rows = cluster.check()

    assert [(r.check, r.ok) for r in rows] == [
        ("kubernetes reachable", True),
        ("kubernetes token valid", False),
    ]
    assert "TENANTOPS_KUBERNETES__TOKEN" in rows[-1].fix
    assert TOKEN not in rows[-1].detail


def test_doctor_without_a_server_says_it_is_unreachable() -> None:
    settings = KubernetesSettings(api_url=f"http://127.0.0.1:{free_port()}", token=SecretStr(TOKEN))
    client = KubernetesRest(settings)
    [row] = client.check()
    client.close()
    assert (row.check, row.ok) == ("kubernetes reachable", False)
    assert "reachable" in row.fix


# One contract for every Cluster that can run here ---------------------------------------


@pytest.fixture(params=["local", "rest-replayed"])
def any_cluster(
    request: pytest.FixtureRequest,
    replay: Replay,  # noqa: F811
) -> Iterator[tuple[Cluster, Replay | None]]:
    if request.param == "local":
        yield LocalCluster(), None
        return
    client = KubernetesRest(KubernetesSettings(api_url=replay.url, token=SecretStr(TOKEN)))
    yield client, replay
    client.close()
    replay.assert_done()


def test_contract_applied_objects_read_back_with_no_drift(
    any_cluster: tuple[Cluster, Replay | None],
) -> None:
    cluster, script = any_cluster
    if script is not None:
        script.script(ex("tenant_acme")[1], ex("quota_same"), ex("quota_same"))

    [applied] = cluster.apply([quota()])
    live = cluster.read("ResourceQuota", "tenant-quota", "acme")

    assert (applied.kind, applied.name, applied.namespace) == (
        "ResourceQuota",
        "tenant-quota",
        "acme",
    )
    assert live is not None
    assert live["spec"]["hard"] == quota()["spec"]["hard"]
    assert cluster.drift([quota()]) == []


def test_contract_a_missing_object_reads_none_and_is_drift(
    any_cluster: tuple[Cluster, Replay | None],
) -> None:
    cluster, script = any_cluster
    if script is not None:
        script.script(ex("quota_not_found"), ex("quota_not_found"))

    assert cluster.read("ResourceQuota", "tenant-quota", "acme") is None
    assert [d.field for d in cluster.drift([quota()])] == [""]


def test_contract_isolate_applies_the_deny_all_policy(
    any_cluster: tuple[Cluster, Replay | None],
) -> None:
    cluster, script = any_cluster
    if script is not None:
        script.script(ex("isolate"))

    applied = cluster.isolate("acme")

    assert (applied.kind, applied.name, applied.namespace) == ("NetworkPolicy", "isolate", "acme")
    assert applied.resource_version


def test_contract_an_unknown_kind_is_permanent(
    any_cluster: tuple[Cluster, Replay | None],
) -> None:
    cluster, _ = any_cluster
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "acme"}}
    with pytest.raises(DriverError) as caught:
        cluster.apply([pod])
    assert caught.value.retry is Retry.PERMANENT


def test_local_cluster_keeps_other_writers_fields_and_shows_their_drift() -> None:
    cluster = LocalCluster()
    cluster.apply([quota()])
    cluster.edit("ResourceQuota", "tenant-quota", "acme", "spec.hard.pods", "150")
    cluster.edit("ResourceQuota", "tenant-quota", "acme", "status", {"used": {"pods": "3"}})

    [drift] = cluster.drift([quota()])
    assert (drift.field, drift.desired, drift.live) == ("spec.hard.pods", "100", "150")

    cluster.apply([quota()])  # applying again takes the field back
    assert cluster.drift([quota()]) == []
    live = cluster.read("ResourceQuota", "tenant-quota", "acme")
    assert live is not None
    assert live["status"] == {"used": {"pods": "3"}}  # not tenantops's field: kept


def test_local_cluster_keeps_nothing_on_a_dry_run() -> None:
    cluster = LocalCluster()
    [applied] = cluster.apply([quota()], dry_run=True)
    assert applied.dry_run
    assert cluster.read("ResourceQuota", "tenant-quota", "acme") is None
