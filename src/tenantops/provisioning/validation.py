"""Every manifest is checked before commit: core kinds strictly, our CRDs by a small schema.

Core Kubernetes kinds are validated against the strict schemas bundled with
``kubernetes-validate`` for one fixed Kubernetes version (a render is only
reproducible if its schema is). The bundled schemas know nothing of CRDs, so
the two we emit — External Secrets ``SecretStore`` and Argo CD
``Application`` — are validated against the JSON schemas below, which hold their
required fields and reject unknown ones in the parts we write. On top of the
schemas come the API server's own format rules that no schema states: object
names, label keys and values, and resource quantities.

Compiled validators are cached per (version, file): ``kubernetes_validate.validate``
re-reads its 1.3 MB definitions file on every call (~8 ms a manifest); this
module reads the same files once (tests/provisioning check both agree).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from referencing import Registry, Resource

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")


class ManifestInvalid(ValueError):
    """A rendered manifest that the cluster would reject; says which and why."""


_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}

APPLICATION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "argoproj.io/v1alpha1 Application (the fields tenantops writes)",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "Application"},
        "metadata": {**_METADATA, "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["project", "source", "destination"],
            "additionalProperties": False,
            "properties": {
                "project": {"type": "string", "minLength": 1},
                "source": {
                    "type": "object",
                    "required": ["repoURL", "path", "targetRevision"],
                    "additionalProperties": False,
                    "properties": {
                        "repoURL": {"type": "string", "minLength": 1},
                        "path": {"type": "string", "minLength": 1},
                        "targetRevision": {"type": "string", "minLength": 1},
                        "directory": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"recurse": {"type": "boolean"}},
                        },
                    },
                },
                "destination": {
                    "type": "object",
                    "required": ["server", "namespace"],
                    "additionalProperties": False,
                    "properties": {
                        "server": {"type": "string", "minLength": 1},
                        "namespace": {"type": "string", "minLength": 1},
                    },
                },
                "syncPolicy": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "automated": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "prune": {"type": "boolean"},
                                "selfHeal": {"type": "boolean"},
                            },
                        },
                        "syncOptions": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
        },
    },
}

SECRET_STORE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "external-secrets.io/v1beta1 SecretStore with a Vault provider",
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "external-secrets.io/v1beta1"},
        "kind": {"const": "SecretStore"},
        "metadata": {**_METADATA, "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["provider"],
            "additionalProperties": False,
            "properties": {
                "provider": {
                    "type": "object",
                    "required": ["vault"],
                    "additionalProperties": False,
                    "properties": {
                        "vault": {
                            "type": "object",
                            "required": ["server", "path", "version", "auth"],
                            "additionalProperties": False,
                            "properties": {
                                "server": {"type": "string", "pattern": "^https?://"},
                                "path": {"type": "string", "minLength": 1},
                                "version": {"enum": ["v1", "v2"]},
                                "auth": {
                                    "type": "object",
                                    "required": ["kubernetes"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "kubernetes": {
                                            "type": "object",
                                            "required": ["mountPath", "role"],
                                            "additionalProperties": False,
                                            "properties": {
                                                "mountPath": {"type": "string", "minLength": 1},
                                                "role": {"type": "string", "minLength": 1},
                                                "serviceAccountRef": {
                                                    "type": "object",
                                                    "required": ["name"],
                                                    "additionalProperties": False,
                                                    "properties": {"name": {"type": "string"}},
                                                },
                                            },
                                        }
                                    },
                                },
                            },
                        }
                    },
                },
                "refreshInterval": {"type": "integer", "minimum": 0},
            },
        },
    },
}

CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("argoproj.io/v1alpha1", "Application"): APPLICATION_SCHEMA,
    ("external-secrets.io/v1beta1", "SecretStore"): SECRET_STORE_SCHEMA,
}


def _schema_dir(version: str) -> Any:
    parts = version.removeprefix("v").split(".")
    if len(parts) < 2:
        raise ManifestInvalid(f"{version!r} is not a Kubernetes version like 1.31.0")
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    folder = root / f"v{parts[0]}.{parts[1]}.0-local-strict"
    if not folder.is_dir():
        raise ManifestInvalid(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return folder


@cache
def _definitions(version: str) -> Registry[Any]:
    text = (_schema_dir(version) / "_definitions.json").read_text(encoding="utf-8")
    registry: Registry[Any] = Resource.from_contents(json.loads(text)) @ Registry()
    return registry


@cache
def _core_validator(version: str, kind: str, api_version: str) -> Any:
    # The file naming of kubernetes-validate: rbac.authorization.k8s.io/v1 -> rbac-v1.
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version) / f"{kind.lower()}-{group}.json"
    if not path.is_file():
        raise ManifestInvalid(
            f"no schema for {kind} ({api_version}) in Kubernetes {version}; "
            "a CRD needs an entry in CRD_SCHEMAS"
        )
    schema = json.loads(path.read_text(encoding="utf-8"))
    registry = Resource.from_contents(schema) @ _definitions(version)
    return jsonschema.Draft202012Validator(schema, registry=registry)


@cache
def _crd_validator(api_version: str, kind: str) -> Any:
    return jsonschema.Draft202012Validator(CRD_SCHEMAS[(api_version, kind)])


def _where(error: Any) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def _check_formats(manifest: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    meta = manifest.get("metadata") or {}
    name = str(meta.get("name", ""))
    pattern = DNS_LABEL if manifest.get("kind") == "Namespace" else DNS_SUBDOMAIN
    limit = 63 if pattern is DNS_LABEL else 253
    if not pattern.match(name) or len(name) > limit:
        problems.append(f"metadata.name {name!r} is not a valid object name")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = str(key).rpartition("/")
        bad_prefix = bool(prefix) and not DNS_SUBDOMAIN.match(prefix)
        if bad_prefix or not label or len(label) > 63 or not LABEL_NAME.match(label):
            problems.append(f"label key {key!r} is not valid")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_NAME.match(value):
            problems.append(f"label {key}={value!r}: not a valid label value")
    spec = manifest.get("spec") or {}
    quantities: list[tuple[str, Any]] = []
    if manifest.get("kind") == "ResourceQuota":
        quantities += [(f"spec.hard.{k}", v) for k, v in (spec.get("hard") or {}).items()]
    if manifest.get("kind") == "LimitRange":
        for i, limit_item in enumerate(spec.get("limits") or []):
            for field in ("max", "min", "default", "defaultRequest", "maxLimitRequestRatio"):
                for k, v in (limit_item.get(field) or {}).items():
                    quantities.append((f"spec.limits.{i}.{field}.{k}", v))
    for where, value in quantities:
        if not QUANTITY.match(str(value)):
            problems.append(f"{where}: {value!r} is not a resource quantity")
    return problems


def validate_manifest(manifest: dict[str, Any], *, kubernetes_version: str) -> None:
    """Raise :class:`ManifestInvalid` unless ``manifest`` would be accepted by the cluster."""
    api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise ManifestInvalid("a manifest needs apiVersion and kind")
    if (api_version, kind) in CRD_SCHEMAS:
        validator = _crd_validator(api_version, kind)
    else:
        validator = _core_validator(kubernetes_version, kind, api_version)
    problems = [
        f"{_where(e)}: {e.message}"
        for e in sorted(
            validator.iter_errors(manifest), key=lambda e: [str(p) for p in e.absolute_path]
        )
    ]
    problems += _check_formats(manifest)
    if problems:
        name = (manifest.get("metadata") or {}).get("name", "?")
        raise ManifestInvalid(f"{kind}/{name}: " + "; ".join(problems))
