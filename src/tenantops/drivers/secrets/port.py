"""The secret-store port: what Vault and the local adapter both do.

Only references and metadata cross this port: a store reference (where the
tenant's secrets live, what External Secrets' ``SecretStore`` points at) and
path references under the tenant's prefix. No operation takes or returns a
secret's value, so none can be stored or logged by mistake. Revoking cuts
every reference under the tenant's prefix at once; restoring re-enables them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class SecretRef:
    """A path in the tenant's store, with metadata (owner, rotation, purpose).

    ``rotated_at`` is when the backend last saw a new generation of the secret
    (Vault: the current KV version's ``created_time``, or a recorded rotation if
    later); ``None`` when it cannot tell (no value was ever written).
    """

    path: str
    status: str
    version: int
    metadata: Mapping[str, str] = field(default_factory=dict)
    rotated_at: datetime | None = None


@dataclass(frozen=True)
class StoreState:
    """A tenant's secret store as the backend holds it."""

    tenant_id: str
    tenant_name: str
    store_ref: str
    prefix: str
    status: str
    paths: tuple[SecretRef, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "store_ref": self.store_ref,
            "prefix": self.prefix,
            "status": self.status,
            "paths": [
                {
                    "path": p.path,
                    "status": p.status,
                    "version": p.version,
                    "metadata": dict(p.metadata),
                    "rotated_at": None if p.rotated_at is None else p.rotated_at.isoformat(),
                }
                for p in self.paths
            ],
        }


@dataclass(frozen=True)
class PathSpec:
    """A path reference to create, relative to the tenant's prefix."""

    path: str
    metadata: Mapping[str, str] = field(default_factory=dict)


class SecretStore(Protocol):
    """Tenant secret stores in a secrets backend."""

    def create_store(
        self,
        *,
        tenant_id: str,
        tenant_name: str,
        paths: Sequence[PathSpec],
        idempotency_key: str,
    ) -> StoreState:
        """Create (or converge) the tenant's store and at least ``paths``."""
        ...

    def add_path(self, *, tenant_id: str, path: PathSpec, idempotency_key: str) -> StoreState:
        """Add one path reference (or update its metadata) in the tenant's store."""
        ...

    def revoke(self, *, tenant_id: str, idempotency_key: str) -> StoreState:
        """Revoke the store and every reference under the tenant's prefix."""
        ...

    def restore(self, *, tenant_id: str, idempotency_key: str) -> StoreState:
        """Re-enable what ``revoke`` cut."""
        ...

    def rotate(self, *, tenant_id: str, path: str, idempotency_key: str) -> StoreState:
        """Record a new generation of ``path`` (relative to the tenant's prefix).

        Its version goes up and ``rotated_at`` becomes now. No value crosses:
        whoever holds the secret writes the new value in the backend; this marks
        that it happened, so the reference's consumers know to re-read.
        """
        ...

    def get_store(self, *, tenant_id: str) -> StoreState | None:
        """The tenant's store, or ``None``."""
        ...
