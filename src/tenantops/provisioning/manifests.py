"""Render a tenant into the files of an Argo CD app-of-apps repository.

Layout::

    apps/root.yaml              Application "tenants" -> apps/tenants/
    apps/tenants/<name>.yaml    Application "tenant-<name>" -> tenants/<name>/
    tenants/<name>/*.yaml       one Kubernetes object per file

The render is a pure function of a :class:`TenantSpec` and a :class:`Platform`
(no clock, no I/O), so the same tenant always gives the same bytes and the same
digest — which is what lets an unchanged render make no commit. Tier sizes live
in one table, :data:`TIERS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import yaml

from tenantops.provisioning.validation import ManifestInvalid, validate_manifest

MANAGED_BY = {"app.kubernetes.io/managed-by": "tenantops"}
HEADER = "# Rendered by tenantops. Change the tenant, not this file.\n"
ROOT_APP = "apps/root.yaml"


class Access(StrEnum):
    """What a tenant group may do in its namespace."""

    ADMIN = "admin"
    DEVELOPER = "developer"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Group:
    """An identity-provider group and the access it gets in the tenant's namespace."""

    name: str
    access: Access


@dataclass(frozen=True)
class TenantSpec:
    """What the render needs to know about a tenant (a value object, never an ORM row).

    ``isolated`` renders the deny-all isolation of a suspended tenant in place of
    the allow policies.
    """

    name: str
    tier: str
    region: str
    compliance_classification: str
    business_owner: str = ""
    contacts: tuple[str, ...] = ()
    groups: tuple[Group, ...] = ()
    isolated: bool = False

    @classmethod
    def from_snapshot(
        cls,
        tenant: Mapping[str, Any],
        *,
        groups: Any = None,
        isolated: bool | None = None,
    ) -> TenantSpec:
        """Build from a tenant snapshot (the ``TenantRead`` fields) plus step parameters.

        ``groups`` is a ``{group: access}`` mapping; without it the tenant's own
        ``groups`` are used, else :func:`default_groups`. ``isolated`` defaults
        to whether the tenant is suspended.
        """
        name = str(tenant["name"])
        raw = groups if groups is not None else tenant.get("groups")
        parsed = (
            tuple(Group(str(g), Access(str(a))) for g, a in dict(raw).items())
            if raw
            else default_groups(name)
        )
        return cls(
            name=name,
            tier=str(tenant["tier"]),
            region=str(tenant["region"]),
            compliance_classification=str(tenant["compliance_classification"]),
            business_owner=str(tenant.get("business_owner") or ""),
            contacts=tuple(str(c) for c in tenant.get("contacts") or ()),
            groups=parsed,
            isolated=(tenant.get("state") == "suspended") if isolated is None else isolated,
        )


def default_groups(name: str) -> tuple[Group, ...]:
    """The groups a tenant gets unless told otherwise.

    ``tenant-<name>-admins``, ``-developers`` and ``-viewers``: the names the
    identity driver creates, so RBAC and the identity provider agree.
    """
    return (
        Group(f"tenant-{name}-admins", Access.ADMIN),
        Group(f"tenant-{name}-developers", Access.DEVELOPER),
        Group(f"tenant-{name}-viewers", Access.VIEWER),
    )


@dataclass(frozen=True)
class Platform:
    """Where the repository and the cluster services are: from ``Settings.gitops``."""

    repo_url: str
    revision: str = "main"
    kubernetes_version: str = "1.31.0"
    argocd_namespace: str = "argocd"
    argocd_project: str = "default"
    destination_server: str = "https://kubernetes.default.svc"
    ingress_namespace: str = "ingress-nginx"
    vault_server: str = "http://vault.vault.svc:8200"
    vault_mount: str = "secret"


@dataclass(frozen=True)
class TierSize:
    """The namespace budget of a tier: a ResourceQuota and the LimitRange defaults."""

    requests_cpu: str
    requests_memory: str
    limits_cpu: str
    limits_memory: str
    pods: int
    services: int
    pvcs: int
    storage: str
    container_default_cpu: str
    container_default_memory: str
    container_request_cpu: str
    container_request_memory: str
    container_max_cpu: str
    container_max_memory: str


TIERS: Mapping[str, TierSize] = {
    # quota: requests cpu, memory | limits cpu, memory | pods, services, PVCs, storage
    # per container: default cpu, memory | default request cpu, memory | max cpu, memory
    "basic": TierSize("2", "4Gi", "4", "8Gi", 20, 10, 5, "50Gi",
                      "500m", "512Mi", "100m", "128Mi", "1", "2Gi"),
    "standard": TierSize("8", "16Gi", "16", "32Gi", 100, 30, 20, "250Gi",
                         "1", "1Gi", "250m", "256Mi", "4", "8Gi"),
    "premium": TierSize("32", "64Gi", "64", "128Gi", 300, 80, 60, "1Ti",
                        "2", "2Gi", "500m", "512Mi", "8", "32Gi"),
    "enterprise": TierSize("128", "256Gi", "256", "512Gi", 1000, 200, 200, "5Ti",
                           "2", "4Gi", "500m", "1Gi", "32", "128Gi"),
}  # fmt: skip


@dataclass(frozen=True)
class Rendered:
    """A tenant's files (path -> YAML text), their objects, and one digest over them."""

    files: dict[str, str]
    objects: dict[str, dict[str, Any]] = field(repr=False)
    digest: str


def tenant_dir(name: str) -> str:
    return f"tenants/{name}"


def app_path(name: str) -> str:
    return f"apps/tenants/{name}.yaml"


def to_yaml(obj: Mapping[str, Any]) -> str:
    return HEADER + yaml.safe_dump(dict(obj), sort_keys=False, default_flow_style=False)


def digest_of(files: Mapping[str, str]) -> str:
    """sha256 over the sorted (path, content) pairs: equal digests, equal repository state."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.encode() + b"\0" + files[path].encode() + b"\0")
    return f"sha256:{h.hexdigest()}"


def _meta(name: str, tenant: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**MANAGED_BY, "tenantops.io/tenant": tenant}
    return meta


def _application(
    name: str,
    path: str,
    namespace: str,
    platform: Platform,
    labels: Mapping[str, str],
    *,
    cascade: bool,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": platform.argocd_namespace,
        "labels": dict(labels),
    }
    if cascade:
        # Deleting a tenant's Application (offboarding) prunes what it deployed;
        # the root never cascades, so losing it cannot delete every tenant.
        meta["finalizers"] = ["resources-finalizer.argocd.argoproj.io"]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": meta,
        "spec": {
            "project": platform.argocd_project,
            "source": {
                "repoURL": platform.repo_url,
                "path": path,
                "targetRevision": platform.revision,
                "directory": {"recurse": False},
            },
            "destination": {"server": platform.destination_server, "namespace": namespace},
            "syncPolicy": {"automated": {"prune": True, "selfHeal": True}},
        },
    }


def root_application(platform: Platform) -> dict[str, Any]:
    """The app of apps: one Application per tenant lives in ``apps/tenants/``."""
    return _application(
        "tenants", "apps/tenants", platform.argocd_namespace, platform, MANAGED_BY, cascade=False
    )


def _network_policy(
    name: str, tenant: str, *, types: list[str], ingress: list[dict[str, Any]] | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": {}, "policyTypes": types}
    if ingress is not None:
        spec["ingress"] = ingress
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name, tenant, tenant),
        "spec": spec,
    }


_WORKLOADS = [
    ("", ["pods", "services", "configmaps", "persistentvolumeclaims", "serviceaccounts"]),
    ("apps", ["deployments", "statefulsets", "replicasets"]),
    ("batch", ["jobs", "cronjobs"]),
    ("autoscaling", ["horizontalpodautoscalers"]),
]
_READ = ["get", "list", "watch"]
_WRITE = [*_READ, "create", "update", "patch", "delete"]


def _rules(access: Access) -> list[dict[str, Any]]:
    # Quotas, limit ranges and network policies are never the tenant's to change:
    # that would lift its budget or undo an isolation.
    verbs = _READ if access is Access.VIEWER else _WRITE
    rules = [{"apiGroups": [g], "resources": list(r), "verbs": list(verbs)} for g, r in _WORKLOADS]
    rules.append({"apiGroups": [""], "resources": ["events", "pods/log"], "verbs": list(_READ)})
    if access is Access.ADMIN:
        rules.append({"apiGroups": [""], "resources": ["secrets"], "verbs": list(_WRITE)})
        rules.append({"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]})
    return rules


def _binding_name(group: Group) -> str:
    return f"{group.access.value}-{hashlib.sha256(group.name.encode()).hexdigest()[:10]}"


def tenant_objects(
    spec: TenantSpec, platform: Platform, tiers: Mapping[str, TierSize] = TIERS
) -> dict[str, dict[str, Any]]:
    """Every object of a tenant, by its path in the repository."""
    size = tiers.get(spec.tier)
    if size is None:
        raise ManifestInvalid(
            f"tenant {spec.name}: unknown tier {spec.tier!r} (known: {', '.join(sorted(tiers))})"
        )
    n = spec.name
    ns_labels = {
        **MANAGED_BY,
        "tenantops.io/tenant": n,
        "tenantops.io/tier": spec.tier,
        "tenantops.io/region": spec.region,
        "tenantops.io/compliance-class": spec.compliance_classification,
        "kubernetes.io/metadata.name": n,
    }
    if spec.isolated:
        ns_labels["tenantops.io/isolated"] = "true"
    annotations = {"tenantops.io/business-owner": spec.business_owner}
    if spec.contacts:
        annotations["tenantops.io/contacts"] = ",".join(spec.contacts)
    objs: dict[str, dict[str, Any]] = {
        "namespace.yaml": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": n, "labels": ns_labels, "annotations": annotations},
        },
        "resourcequota.yaml": {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta("tenant-quota", n, n),
            "spec": {
                "hard": {
                    "requests.cpu": size.requests_cpu,
                    "requests.memory": size.requests_memory,
                    "limits.cpu": size.limits_cpu,
                    "limits.memory": size.limits_memory,
                    "pods": str(size.pods),
                    "services": str(size.services),
                    "persistentvolumeclaims": str(size.pvcs),
                    "requests.storage": size.storage,
                }
            },
        },
        "limitrange.yaml": {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": _meta("tenant-limits", n, n),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "default": {
                            "cpu": size.container_default_cpu,
                            "memory": size.container_default_memory,
                        },
                        "defaultRequest": {
                            "cpu": size.container_request_cpu,
                            "memory": size.container_request_memory,
                        },
                        "max": {"cpu": size.container_max_cpu, "memory": size.container_max_memory},
                    }
                ]
            },
        },
        "networkpolicy-default-deny.yaml": _network_policy(
            "default-deny", n, types=["Ingress"], ingress=None
        ),
    }
    if spec.isolated:
        objs["networkpolicy-isolate.yaml"] = _network_policy(
            "isolate", n, types=["Ingress", "Egress"], ingress=None
        )
    else:
        objs["networkpolicy-allow-same-namespace.yaml"] = _network_policy(
            "allow-same-namespace", n, types=["Ingress"], ingress=[{"from": [{"podSelector": {}}]}]
        )
        objs["networkpolicy-allow-from-ingress.yaml"] = _network_policy(
            "allow-from-ingress",
            n,
            types=["Ingress"],
            ingress=[
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {
                                    "kubernetes.io/metadata.name": platform.ingress_namespace
                                }
                            }
                        }
                    ]
                }
            ],
        )
    for access in sorted({g.access for g in spec.groups}):
        objs[f"role-{access.value}.yaml"] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(f"tenant-{access.value}", n, n),
            "rules": _rules(access),
        }
    for group in spec.groups:
        binding = _binding_name(group)
        meta = _meta(binding, n, n)
        meta["annotations"] = {"tenantops.io/group": group.name}
        objs[f"rolebinding-{binding}.yaml"] = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": f"tenant-{group.access.value}",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group.name}
            ],
        }
    objs["serviceaccount-external-secrets.yaml"] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta("external-secrets", n, n),
    }
    objs["secretstore.yaml"] = {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "SecretStore",
        "metadata": _meta("tenant-secrets", n, n),
        "spec": {
            "provider": {
                "vault": {
                    "server": platform.vault_server,
                    "path": platform.vault_mount,
                    "version": "v2",
                    "auth": {
                        "kubernetes": {
                            "mountPath": "kubernetes",
                            "role": f"tenant-{n}",
                            "serviceAccountRef": {"name": "external-secrets"},
                        }
                    },
                }
            }
        },
    }
    paths = {f"{tenant_dir(n)}/{file}": obj for file, obj in objs.items()}
    paths[app_path(n)] = _application(
        f"tenant-{n}",
        tenant_dir(n),
        n,
        platform,
        {**MANAGED_BY, "tenantops.io/tenant": n},
        cascade=True,
    )
    return paths


def render_tenant(
    spec: TenantSpec, platform: Platform, tiers: Mapping[str, TierSize] = TIERS
) -> Rendered:
    """Render and validate every file of a tenant; raises :class:`ManifestInvalid`."""
    objects = tenant_objects(spec, platform, tiers)
    for obj in objects.values():
        validate_manifest(obj, kubernetes_version=platform.kubernetes_version)
    files = {path: to_yaml(obj) for path, obj in objects.items()}
    return Rendered(files=files, objects=objects, digest=digest_of(files))


def render_root(platform: Platform) -> tuple[str, str]:
    """The root Application's path and validated text."""
    obj = root_application(platform)
    validate_manifest(obj, kubernetes_version=platform.kubernetes_version)
    return ROOT_APP, to_yaml(obj)
