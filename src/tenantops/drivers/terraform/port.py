"""The Terraform port: plan a tenant's module, apply exactly that plan once per step key.

Value objects only. :class:`Plan` carries the plan JSON (``terraform show -json``)
that a step stores as evidence, and a digest over the parts that say what would
change — so the same inputs against the same state give the same digest, and
an apply can be matched to the plan a person approved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenantops.drivers.errors import CheckRow, DriverError, Retry


class TerraformError(DriverError):
    """A terraform command failed; ``output`` is its (secret-scrubbed) message."""

    def __init__(self, message: str, *, retry: Retry, output: str = "") -> None:
        super().__init__(message, retry=retry)
        self.output = output


def plan_digest(plan_json: Mapping[str, Any]) -> str:
    """sha256 over the variables, resource and output changes (not timestamps or versions)."""
    stable = {
        "variables": plan_json.get("variables") or {},
        "resource_changes": plan_json.get("resource_changes") or [],
        "output_changes": plan_json.get("output_changes") or {},
    }
    canonical = json.dumps(stable, sort_keys=True, separators=(",", ":"))
    return f"sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"


def change_summary(plan_json: Mapping[str, Any]) -> dict[str, list[str]]:
    """Resource addresses by action (``create``, ``update``, ``delete``, ``replace``)."""
    out: dict[str, list[str]] = {}
    for rc in plan_json.get("resource_changes") or []:
        actions = list(rc.get("change", {}).get("actions") or [])
        if actions == ["no-op"] or actions == ["read"]:
            continue
        action = "replace" if set(actions) == {"create", "delete"} else actions[0]
        out.setdefault(action, []).append(str(rc.get("address")))
    return {k: sorted(v) for k, v in sorted(out.items())}


@dataclass(frozen=True)
class Plan:
    """A saved plan for one tenant: its JSON, digest and the file ``apply`` will run."""

    tenant: str
    idempotency_key: str
    digest: str
    changes: dict[str, list[str]]
    plan_json: dict[str, Any] = field(repr=False)
    plan_file: str = ""
    binary_version: str = ""

    @property
    def has_changes(self) -> bool:
        return any(self.changes.values())

    def as_dict(self) -> dict[str, Any]:
        """The step evidence: digest, summary of changes and the full plan JSON."""
        return {
            "tenant": self.tenant,
            "idempotency_key": self.idempotency_key,
            "digest": self.digest,
            "changes": self.changes,
            "plan_file": self.plan_file,
            "binary_version": self.binary_version,
            "plan": self.plan_json,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        return cls(
            tenant=str(data["tenant"]),
            idempotency_key=str(data["idempotency_key"]),
            digest=str(data["digest"]),
            changes={k: list(v) for k, v in dict(data["changes"]).items()},
            plan_json=dict(data["plan"]),
            plan_file=str(data.get("plan_file") or ""),
            binary_version=str(data.get("binary_version") or ""),
        )


@dataclass(frozen=True)
class Applied:
    """A plan applied: which digest, when, and whether this call did it or found it done."""

    tenant: str
    idempotency_key: str
    digest: str
    applied_at: str
    changes: dict[str, list[str]]
    outputs: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "idempotency_key": self.idempotency_key,
            "digest": self.digest,
            "applied_at": self.applied_at,
            "changes": self.changes,
            "outputs": self.outputs,
            "replayed": self.replayed,
        }


class Provisioner(Protocol):
    """Provision a tenant from an infrastructure-as-code module (terraform/tofu)."""

    def plan(self, tenant: str, variables: Mapping[str, Any], *, idempotency_key: str) -> Plan:
        """Plan ``tenant`` with ``variables``; saved for :meth:`apply`. Raises ``DriverError``."""
        ...

    def apply(self, plan: Plan) -> Applied:
        """Apply exactly ``plan``, once per its key: the same key again changes nothing."""
        ...

    def check(self) -> list[CheckRow]:
        """Doctor rows: binary, version, whether the module initialises here."""
        ...
