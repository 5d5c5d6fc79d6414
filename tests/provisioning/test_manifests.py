"""Rendering a tenant: per tier, every manifest valid, the app-of-apps layout, labels."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tenantops.provisioning.manifests import (
    TIERS,
    Access,
    Group,
    Platform,
    TenantSpec,
    default_groups,
    render_root,
    render_tenant,
    tenant_objects,
)
from tenantops.provisioning.validation import CRD_SCHEMAS, ManifestInvalid, validate_manifest

PLATFORM = Platform(repo_url="https://git.example.com/platform/tenants.git")
K8S = PLATFORM.kubernetes_version


def spec(**overrides: Any) -> TenantSpec:
    values: dict[str, Any] = {
        "name": "acme",
        "tier": "standard",
        "region": "eu-central-1",
        "compliance_classification": "confidential",
        "business_owner": "owner@acme.example",
        "contacts": ("ops@acme.example", "sec@acme.example"),
        "groups": default_groups("acme"),
    }
    values.update(overrides)
    return TenantSpec(**values)


def by_kind(rendered_objects: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in rendered_objects.values() if o["kind"] == kind]


@pytest.mark.parametrize("tier", sorted(TIERS))
def test_every_tier_renders_its_own_quota_and_limits(tier: str) -> None:
    rendered = render_tenant(spec(tier=tier), PLATFORM)
    size = TIERS[tier]
    (quota,) = by_kind(rendered.objects, "ResourceQuota")
    assert quota["spec"]["hard"]["requests.cpu"] == size.requests_cpu
    assert quota["spec"]["hard"]["limits.memory"] == size.limits_memory
    assert quota["spec"]["hard"]["pods"] == str(size.pods)
    (limits,) = by_kind(rendered.objects, "LimitRange")
    assert limits["spec"]["limits"][0]["max"] == {
        "cpu": size.container_max_cpu,
        "memory": size.container_max_memory,
    }


def test_tiers_grow_from_basic_to_enterprise() -> None:
    pods = [TIERS[t].pods for t in ("basic", "standard", "premium", "enterprise")]
    assert pods == sorted(pods)
    assert len(set(pods)) == 4


@pytest.mark.parametrize("isolated", [False, True])
@pytest.mark.parametrize("tier", sorted(TIERS))
def test_every_manifest_validates_with_kubernetes_validate_or_our_crd_schema(
    tier: str, isolated: bool
) -> None:
    rendered = render_tenant(spec(tier=tier, isolated=isolated), PLATFORM)
    _root_path, root_text = render_root(PLATFORM)
    documents = [yaml.safe_load(t) for t in [*rendered.files.values(), root_text]]
    for doc in documents:
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            validate_manifest(doc, kubernetes_version=K8S)
        else:
            # The library itself, strict, on the YAML text as committed.
            kubernetes_validate.validate(doc, K8S, strict=True)
    kinds = {d["kind"] for d in documents}
    assert kinds == {
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ServiceAccount",
        "SecretStore",
        "Application",
    }


def test_the_layout_is_app_of_apps() -> None:
    rendered = render_tenant(spec(), PLATFORM)
    root_path, root_text = render_root(PLATFORM)
    root = yaml.safe_load(root_text)
    assert root_path == "apps/root.yaml"
    assert root["spec"]["source"]["path"] == "apps/tenants"
    assert "finalizers" not in root["metadata"]
    app = yaml.safe_load(rendered.files["apps/tenants/acme.yaml"])
    assert app["kind"] == "Application"
    assert app["spec"]["source"] == {
        "repoURL": PLATFORM.repo_url,
        "path": "tenants/acme",
        "targetRevision": "main",
        "directory": {"recurse": False},
    }
    assert app["spec"]["destination"]["namespace"] == "acme"
    assert app["metadata"]["finalizers"] == ["resources-finalizer.argocd.argoproj.io"]
    others = [p for p in rendered.files if p != "apps/tenants/acme.yaml"]
    assert others
    assert all(p.startswith("tenants/acme/") and p.endswith(".yaml") for p in others)
    # One object per file, and every namespaced object lives in the tenant's namespace.
    for path in others:
        (doc,) = list(yaml.safe_load_all(rendered.files[path]))
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "acme"


def test_the_namespace_carries_tenant_tier_region_and_compliance_labels() -> None:
    (ns,) = by_kind(render_tenant(spec(), PLATFORM).objects, "Namespace")
    assert ns["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "tenantops",
        "tenantops.io/tenant": "acme",
        "tenantops.io/tier": "standard",
        "tenantops.io/region": "eu-central-1",
        "tenantops.io/compliance-class": "confidential",
        "kubernetes.io/metadata.name": "acme",
    }
    assert ns["metadata"]["annotations"]["tenantops.io/contacts"] == (
        "ops@acme.example,sec@acme.example"
    )


def test_network_policies_deny_by_default_and_allow_namespace_and_ingress() -> None:
    policies = {
        p["metadata"]["name"]: p
        for p in by_kind(render_tenant(spec(), PLATFORM).objects, "NetworkPolicy")
    }
    assert set(policies) == {"default-deny", "allow-same-namespace", "allow-from-ingress"}
    assert "ingress" not in policies["default-deny"]["spec"]
    assert policies["allow-same-namespace"]["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]
    source = policies["allow-from-ingress"]["spec"]["ingress"][0]["from"][0]
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }


def test_isolation_replaces_the_allow_policies_with_deny_all() -> None:
    objects = render_tenant(spec(isolated=True), PLATFORM).objects
    policies = {p["metadata"]["name"]: p for p in by_kind(objects, "NetworkPolicy")}
    assert set(policies) == {"default-deny", "isolate"}
    assert policies["isolate"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    (ns,) = by_kind(objects, "Namespace")
    assert ns["metadata"]["labels"]["tenantops.io/isolated"] == "true"


def test_each_group_is_bound_to_the_role_of_its_access() -> None:
    groups = (Group("Platform Admins", Access.ADMIN), Group("acme-devs", Access.DEVELOPER))
    objects = render_tenant(spec(groups=groups), PLATFORM).objects
    roles = {r["metadata"]["name"]: r for r in by_kind(objects, "Role")}
    assert set(roles) == {"tenant-admin", "tenant-developer"}
    bound = {
        b["subjects"][0]["name"]: b["roleRef"]["name"] for b in by_kind(objects, "RoleBinding")
    }
    assert bound == {"Platform Admins": "tenant-admin", "acme-devs": "tenant-developer"}
    # No tenant role may touch what isolates or budgets it.
    for role in roles.values():
        for rule in role["rules"]:
            assert "networkpolicies" not in rule["resources"]
            assert "resourcequotas" not in rule["resources"]
    developer_resources = {
        r for rule in roles["tenant-developer"]["rules"] for r in rule["resources"]
    }
    assert "secrets" not in developer_resources


def test_the_secret_store_points_at_the_tenants_vault_role() -> None:
    (store,) = by_kind(render_tenant(spec(), PLATFORM).objects, "SecretStore")
    assert store["apiVersion"] == "external-secrets.io/v1beta1"
    auth = store["spec"]["provider"]["vault"]["auth"]["kubernetes"]
    assert auth["role"] == "tenant-acme"
    assert auth["serviceAccountRef"] == {"name": "external-secrets"}


def test_the_render_is_deterministic_and_its_digest_follows_the_content() -> None:
    first, again = render_tenant(spec(), PLATFORM), render_tenant(spec(), PLATFORM)
    assert first.files == again.files
    assert first.digest == again.digest
    assert first.digest.startswith("sha256:")
    assert render_tenant(spec(tier="premium"), PLATFORM).digest != first.digest


def test_snapshot_defaults_groups_and_isolates_a_suspended_tenant() -> None:
    snapshot = {
        "id": "t-1",
        "name": "acme",
        "tier": "basic",
        "region": "eu-west-1",
        "compliance_classification": "internal",
        "business_owner": "o@acme.example",
        "contacts": ["c@acme.example"],
        "state": "suspended",
    }
    built = TenantSpec.from_snapshot(snapshot)
    assert built.groups == default_groups("acme")
    assert built.isolated
    assert not TenantSpec.from_snapshot(snapshot, isolated=False).isolated
    chosen = TenantSpec.from_snapshot(snapshot, groups={"ops": "viewer"})
    assert chosen.groups == (Group("ops", Access.VIEWER),)


def test_an_unknown_tier_is_refused() -> None:
    with pytest.raises(ManifestInvalid, match="unknown tier 'platinum'"):
        render_tenant(spec(tier="platinum"), PLATFORM)


def _namespace() -> dict[str, Any]:
    return copy.deepcopy(by_kind(tenant_objects(spec(), PLATFORM), "Namespace")[0])


def test_our_validator_agrees_with_kubernetes_validate() -> None:
    good = _namespace()
    validate_manifest(good, kubernetes_version=K8S)
    kubernetes_validate.validate(good, K8S, strict=True)
    bad = _namespace()
    bad["spec"] = {"finalizerz": []}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S, strict=True)
    with pytest.raises(ManifestInvalid, match="finalizerz"):
        validate_manifest(bad, kubernetes_version=K8S)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda o: o["metadata"].update(name="Acme_Corp"), "not a valid object name"),
        (lambda o: o["metadata"]["labels"].update(tier="gold tier"), "not a valid label value"),
        (lambda o: o.update(kind="Namespaces"), "no schema for Namespaces"),
    ],
)
def test_what_the_api_server_would_reject_is_refused(mutate: Any, message: str) -> None:
    ns = _namespace()
    mutate(ns)
    with pytest.raises(ManifestInvalid, match=message):
        validate_manifest(ns, kubernetes_version=K8S)


def test_a_quantity_the_api_server_cannot_parse_is_refused() -> None:
    (quota,) = by_kind(tenant_objects(spec(), PLATFORM), "ResourceQuota")
    quota["spec"]["hard"]["requests.memory"] = "lots"
    with pytest.raises(ManifestInvalid, match="'lots' is not a resource quantity"):
        validate_manifest(quota, kubernetes_version=K8S)


def test_crd_schemas_require_their_fields_and_refuse_unknown_ones() -> None:
    objects = tenant_objects(spec(), PLATFORM)
    (app,) = by_kind(objects, "Application")
    del app["spec"]["destination"]
    with pytest.raises(ManifestInvalid, match="'destination' is a required property"):
        validate_manifest(app, kubernetes_version=K8S)
    (store,) = by_kind(objects, "SecretStore")
    store["spec"]["provider"]["vault"]["verison"] = "v2"
    with pytest.raises(ManifestInvalid, match="verison"):
        validate_manifest(store, kubernetes_version=K8S)


def test_an_unsupported_kubernetes_version_is_refused() -> None:
    with pytest.raises(ManifestInvalid, match=r"no schemas for Kubernetes 1\.2\.0"):
        validate_manifest(_namespace(), kubernetes_version="1.2.0")
