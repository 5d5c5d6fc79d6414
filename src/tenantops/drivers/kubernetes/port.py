"""The ``Cluster`` port and its value objects; drift is a pure comparison, testable alone.

Drift compares only the fields tenantops manages — the fields of the desired
object it renders — with the live object: anything the API server or another
controller added (``status``, ``managedFields``, defaulted fields, other
labels) is not drift, because server-side apply never claimed it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

FIELD_MANAGER = "tenantops"
MANAGED_BY = {"app.kubernetes.io/managed-by": "tenantops"}
ISOLATION_POLICY = "isolate"


@dataclass(frozen=True)
class Applied:
    """One object the API server accepted (or, on a dry run, would accept)."""

    kind: str
    name: str
    namespace: str | None
    resource_version: str | None = None
    uid: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Drift:
    """A managed field whose live value is not the desired one.

    ``field`` is a dotted path (``spec.hard.pods``, ``rules[0].verbs``); an
    object missing from the cluster is one drift with ``field == ""`` and
    ``live is None``.
    """

    kind: str
    name: str
    namespace: str | None
    field: str
    desired: Any
    live: Any


class Cluster(Protocol):
    """A Kubernetes cluster as tenantops drives it: declaratively, as one field manager."""

    def apply(
        self,
        objects: Iterable[Mapping[str, Any]],
        *,
        field_manager: str = FIELD_MANAGER,
        dry_run: bool = False,
    ) -> list[Applied]:
        """Server-side apply each object (Namespaces first); stops at the first error."""
        ...

    def read(self, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The live object, or ``None`` when it does not exist."""
        ...

    def drift(self, objects: Iterable[Mapping[str, Any]]) -> list[Drift]:
        """Every managed field of ``objects`` that differs from the live state."""
        ...

    def isolate(self, namespace: str) -> Applied:
        """Apply the deny-all NetworkPolicy at once (an emergency, ahead of GitOps)."""
        ...


def isolation_policy(namespace: str) -> dict[str, Any]:
    """The deny-all ingress and egress NetworkPolicy, as the manifests render it when isolated."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": ISOLATION_POLICY,
            "namespace": namespace,
            "labels": {**MANAGED_BY, "tenantops.io/tenant": namespace},
        },
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def identity(obj: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """``(kind, name, namespace)`` of a manifest."""
    meta = obj.get("metadata") or {}
    return str(obj["kind"]), str(meta["name"]), meta.get("namespace")


def managed_drift(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> list[Drift]:
    """Where ``live`` differs from ``desired`` on the fields ``desired`` sets."""
    kind, name, namespace = identity(desired)
    if live is None:
        return [Drift(kind, name, namespace, "", "present", None)]
    found: list[tuple[str, Any, Any]] = []
    for key, want in desired.items():
        if key in ("apiVersion", "kind"):
            continue
        _compare(key, want, live.get(key), found)
    return [Drift(kind, name, namespace, f, d, v) for f, d, v in found]


def _compare(path: str, want: Any, got: Any, found: list[tuple[str, Any, Any]]) -> None:
    if isinstance(want, Mapping):
        if not isinstance(got, Mapping):
            found.append((path, want, got))
            return
        for key, value in want.items():
            _compare(f"{path}.{key}", value, got.get(key), found)
    elif isinstance(want, Sequence) and not isinstance(want, str):
        # Lists are atomic or keyed in the API; entries may gain defaulted fields,
        # so same length and each entry matching on its own fields is "same".
        if not isinstance(got, Sequence) or isinstance(got, str) or len(got) != len(want):
            found.append((path, want, got))
            return
        for i, (w, g) in enumerate(zip(want, got, strict=True)):
            _compare(f"{path}[{i}]", w, g, found)
    elif want != got:
        found.append((path, want, got))
