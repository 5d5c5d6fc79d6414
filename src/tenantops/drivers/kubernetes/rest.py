"""The Kubernetes adapter: the documented REST API over httpx with a bearer token.

Server-side apply is ``PATCH`` of the object's own path with ``Content-Type:
application/apply-patch+yaml`` (a JSON body is valid YAML) and
``?fieldManager=tenantops&force=true``; ``dryRun=All`` asks the server to
validate and admit without persisting. Reads are ``GET`` of the same path.
:data:`KINDS` is the small table of the kinds the tenant manifests render.

What an API server answer means for a retry (errors are ``Status`` objects):

=============================================================  ==================
401 (token missing, invalid, expired)                          ``needs_human``
403 (RBAC: the verb and resource are named), TLS untrusted     ``needs_human``
404 on apply of a custom resource (its CRD is not installed)   ``needs_human``
404 on read                                                    ``None``, no error
400, 404 on apply of a built-in kind, 422 (invalid), other 4xx ``permanent``
409 (apply conflict without force, resourceVersion conflict)   ``retriable``
429 (``Retry-After`` kept), 5xx, no connection, timeout         ``retriable``
=============================================================  ==================

The token never appears in a message, a repr or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from tenantops.drivers.errors import CheckRow, DriverError, Retry, retry_after
from tenantops.drivers.http import send
from tenantops.drivers.kubernetes.port import (
    FIELD_MANAGER,
    Applied,
    Drift,
    identity,
    isolation_policy,
    managed_drift,
)
from tenantops.drivers.kubernetes.settings import KubernetesSettings

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"


class Kind(NamedTuple):
    """Where a kind lives in the API: its group/version, plural resource, and scope."""

    api_version: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def resource(self) -> str:
        """``plural.group`` as RBAC and CRDs name it (``networkpolicies.networking.k8s.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def builtin(self) -> bool:
        return self.group == "" or self.group.endswith(".k8s.io")


KINDS: Mapping[str, Kind] = {
    "Namespace": Kind("v1", "namespaces", namespaced=False),
    "ResourceQuota": Kind("v1", "resourcequotas", namespaced=True),
    "LimitRange": Kind("v1", "limitranges", namespaced=True),
    "ServiceAccount": Kind("v1", "serviceaccounts", namespaced=True),
    "NetworkPolicy": Kind("networking.k8s.io/v1", "networkpolicies", namespaced=True),
    "Role": Kind("rbac.authorization.k8s.io/v1", "roles", namespaced=True),
    "RoleBinding": Kind("rbac.authorization.k8s.io/v1", "rolebindings", namespaced=True),
    "SecretStore": Kind("external-secrets.io/v1beta1", "secretstores", namespaced=True),
    "Application": Kind("argoproj.io/v1alpha1", "applications", namespaced=True),
}


class KubernetesError(DriverError):
    """The API server refused or missed a call; ``status``, ``reason``, ``retry_after`` if known."""

    def __init__(
        self,
        message: str,
        *,
        retry: Retry,
        status: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry=retry, status=status, retry_after=retry_after)
        self.reason = reason


def verdict(status: int, *, kind: Kind | None = None, method: str = "GET") -> Retry:
    """What an API server error status means for trying again."""
    if status in (401, 403):
        return Retry.NEEDS_HUMAN
    if status == 404 and method == "PATCH" and kind is not None and not kind.builtin:
        return Retry.NEEDS_HUMAN
    if status in (409, 429) or status >= 500:
        return Retry.RETRIABLE
    return Retry.PERMANENT


def object_path(kind: Kind, name: str, namespace: str | None) -> str:
    """The REST path of one object (``/api/v1/...`` for the core group, else ``/apis/...``)."""
    root = f"/api/{kind.api_version}" if not kind.group else f"/apis/{kind.api_version}"
    tail = f"{kind.plural}/{quote(name, safe='')}"
    if kind.namespaced:
        if not namespace:
            raise KubernetesError(
                f"{kind.plural} {name!r} needs a namespace", retry=Retry.PERMANENT
            )
        return f"{root}/namespaces/{quote(namespace, safe='')}/{tail}"
    return f"{root}/{tail}"


def kind_of(name: str, api_version: str | None = None) -> Kind:
    """The table entry of a kind; an unknown kind, or another version of it, is permanent."""
    kind = KINDS.get(name)
    if kind is None or (api_version is not None and api_version != kind.api_version):
        known = ", ".join(f"{k} ({v.api_version})" for k, v in KINDS.items())
        raise KubernetesError(
            f"kind {name} {api_version or ''} is not one tenantops applies (known: {known})",
            retry=Retry.PERMANENT,
        )
    return kind


class KubernetesRest:
    """``Cluster`` on the Kubernetes REST API."""

    def __init__(
        self, settings: KubernetesSettings, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.settings = settings
        self._url = settings.url()
        self._client = httpx.Client(
            base_url=self._url,
            headers={
                "Authorization": f"Bearer {settings.bearer()}",
                "Accept": "application/json",
            },
            verify=settings.verify(),
            timeout=settings.timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"KubernetesRest({self._url})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    # The port ---------------------------------------------------------------------------

    def apply(
        self,
        objects: Iterable[Mapping[str, Any]],
        *,
        field_manager: str = FIELD_MANAGER,
        dry_run: bool = False,
    ) -> list[Applied]:
        """One server-side apply PATCH per object, Namespaces first; stops at the first error."""
        ordered = sorted(objects, key=lambda o: o.get("kind") != "Namespace")
        return [self._apply(obj, field_manager=field_manager, dry_run=dry_run) for obj in ordered]

    def read(self, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The live object, or ``None`` on 404."""
        entry = kind_of(kind)
        try:
            return self._call("GET", object_path(entry, name, namespace), kind=entry)
        except KubernetesError as e:
            if e.status == 404:
                return None
            raise

    def drift(self, objects: Iterable[Mapping[str, Any]]) -> list[Drift]:
        """Read each object and compare the fields it sets with the live ones."""
        found: list[Drift] = []
        for obj in objects:
            kind, name, namespace = identity(obj)
            found.extend(managed_drift(obj, self.read(kind, name, namespace)))
        return found

    def isolate(self, namespace: str) -> Applied:
        """Server-side apply the deny-all NetworkPolicy into ``namespace``."""
        log.warning("isolating namespace %s with a deny-all NetworkPolicy", namespace)
        return self._apply(
            isolation_policy(namespace), field_manager=self.settings.field_manager, dry_run=False
        )

    def _apply(self, obj: Mapping[str, Any], *, field_manager: str, dry_run: bool) -> Applied:
        kind_name, name, namespace = identity(obj)
        entry = kind_of(kind_name, str(obj.get("apiVersion")))
        params = {"fieldManager": field_manager}
        if self.settings.force:
            params["force"] = "true"
        if dry_run:
            params["dryRun"] = "All"
        suffix = " (dry run)" if dry_run else ""
        log.debug("server-side apply %s %s/%s%s", kind_name, namespace or "", name, suffix)
        answer = self._call(
            "PATCH",
            object_path(entry, name, namespace),
            kind=entry,
            params=params,
            content=json.dumps(obj).encode(),
            headers={"Content-Type": APPLY_PATCH},
        )
        meta = answer.get("metadata") or {}
        return Applied(
            kind=kind_name,
            name=name,
            namespace=namespace,
            resource_version=meta.get("resourceVersion"),
            uid=meta.get("uid"),
            dry_run=dry_run,
        )

    # Doctor -----------------------------------------------------------------------------

    def check(self) -> list[CheckRow]:
        """Reachable (``/version``), token valid and allowed to patch namespaces and policies."""
        try:
            version = self._call("GET", "/version")
        except KubernetesError as e:
            return [CheckRow("kubernetes reachable", False, str(e), self._fix_network(e))]
        rows = [CheckRow("kubernetes reachable", True, str(version.get("gitVersion", "?")), "")]
        for entry in (KINDS["Namespace"], KINDS["NetworkPolicy"]):
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "verb": "patch",
                        "group": entry.group,
                        "resource": entry.plural,
                    }
                },
            }
            try:
                answer = self._call(
                    "POST",
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                    content=json.dumps(review).encode(),
                    headers={"Content-Type": "application/json"},
                )
            except KubernetesError as e:
                if e.status == 401:
                    return [
                        *rows,
                        CheckRow("kubernetes token valid", False, str(e), FIX_CREDENTIALS),
                    ]
                failed = CheckRow(
                    f"kubernetes may patch {entry.resource}", False, str(e), self._fix_rbac(entry)
                )
                return [*rows, failed]
            if len(rows) == 1:
                rows.append(CheckRow("kubernetes token valid", True, "accepted", ""))
            status = answer.get("status") or {}
            allowed = bool(status.get("allowed"))
            detail = "allowed" if allowed else f"denied: {status.get('reason') or 'no RBAC rule'}"
            rows.append(
                CheckRow(
                    f"kubernetes may patch {entry.resource}",
                    allowed,
                    detail,
                    "" if allowed else self._fix_rbac(entry),
                )
            )
        return rows

    def _fix_network(self, error: KubernetesError) -> str:
        if error.retry is Retry.NEEDS_HUMAN and error.status is None:
            return "set TENANTOPS_KUBERNETES__CA_PATH to the CA bundle that signed the API server"
        return f"check that {self._url} is the Kubernetes API server and is reachable"

    def _fix_rbac(self, kind: Kind) -> str:
        return (
            f"bind the token's subject to a ClusterRole allowing get and patch on "
            f"{kind.resource} (see docs/integrations/kubernetes)"
        )

    # HTTP -------------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        *,
        kind: Kind | None = None,
        params: Mapping[str, str] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        what = f"Kubernetes {method} {path}"
        response = send(
            self._client,
            method,
            path,
            params=params,
            content=content,
            headers=headers,
            what=what,
            error=KubernetesError,
        )
        if response.is_success:
            try:
                body = response.json()
            except ValueError:
                raise KubernetesError(
                    f"{what}: answer is not JSON", retry=Retry.RETRIABLE
                ) from None
            return body if isinstance(body, dict) else {}
        status = response.status_code
        message, reason = _status(response)
        raise KubernetesError(
            f"{what}: HTTP {status} {reason or ''} {message}{_hint(status, method, kind)}",
            retry=verdict(status, kind=kind, method=method),
            status=status,
            reason=reason,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )


FIX_CREDENTIALS = (
    "set TENANTOPS_KUBERNETES__TOKEN to a valid service-account token "
    "(kubectl create token <sa>), or run in cluster with the service account mounted"
)


def _hint(status: int, method: str, kind: Kind | None) -> str:
    if status == 401:
        return " — the bearer token is missing, invalid or expired (`tenantops doctor`)"
    if status == 403:
        verb = {"PATCH": "patch", "GET": "get", "POST": "create"}.get(method, method.lower())
        what = kind.resource if kind is not None else "this resource"
        return f" — RBAC: the token may not {verb} {what}; grant it in a (Cluster)Role"
    if status == 404 and method == "PATCH" and kind is not None and not kind.builtin:
        return (
            f" — the CRD {kind.resource} ({kind.api_version}) is not installed on the cluster; "
            "install its operator first"
        )
    if status == 409:
        return " — another field manager or writer changed the object; apply again"
    return ""


def _status(response: httpx.Response) -> tuple[str, str | None]:
    """The ``Status`` object's message (cut short) and reason; never a header."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase, None
    if isinstance(body, dict):
        reason = body.get("reason")
        text = body.get("message") or response.reason_phrase
        return str(text)[:400], str(reason) if reason else None
    return response.reason_phrase, None
