"""The secret-store port: what Vault and the local adapter both do.

Only references and metadata cross this port: a store reference (where the
tenant's secrets live, what External Secrets' ``SecretStore`` points at) and
path references under the tenant's prefix. No operation takes or returns a
secret's value, so none can be stored or logged by mistake. Revoking cuts
every reference under the tenant's prefix at once; restoring re-enables them.

The checks every adapter applies to a path and its metadata, and the reader of
a recorded state, live here too: the domain uses them without importing an
adapter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from tenantops.drivers.errors import DriverError, Retry

PATH = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")
META_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
# Metadata describes a secret; a key like these would carry one.
VALUE_WORDS = ("value", "password", "passwd", "secret", "token", "credential", "private", "pem")
META_VALUE_MAX = 200


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
    """A tenant's secret store as the backend holds it.

    ``revoked_at`` is when the store was last revoked, kept once it is restored:
    whatever was not rotated since may have leaked.
    """

    tenant_id: str
    tenant_name: str
    store_ref: str
    prefix: str
    status: str
    paths: tuple[SecretRef, ...]
    revoked_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "store_ref": self.store_ref,
            "prefix": self.prefix,
            "status": self.status,
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
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


def state_from_record(result: dict[str, object]) -> StoreState:
    """The state an effect-log entry recorded (shared by the adapters)."""
    paths = result["paths"]
    assert isinstance(paths, list)
    return StoreState(
        tenant_id=str(result["tenant_id"]),
        tenant_name=str(result["tenant_name"]),
        store_ref=str(result["store_ref"]),
        prefix=str(result["prefix"]),
        status=str(result["status"]),
        revoked_at=_instant(result.get("revoked_at")),
        paths=tuple(
            SecretRef(
                p["path"],
                p["status"],
                int(p["version"]),
                dict(p["metadata"]),
                _instant(p.get("rotated_at")),
            )
            for p in paths
        ),
    )


def _instant(text: object) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) and text else None


def check_path(path: str) -> str:
    """``path`` if it is a secret path every adapter accepts; a permanent error otherwise."""
    if not PATH.fullmatch(path) or ".." in path.split("/"):
        raise DriverError(
            f"{path!r} is not a secret path (lowercase segments joined by '/')",
            retry=Retry.PERMANENT,
        )
    return path


def check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """``metadata`` if it only describes a secret (never a value); a permanent error otherwise."""
    for key, value in metadata.items():
        if not META_KEY.fullmatch(key) or any(w in key for w in VALUE_WORDS):
            raise DriverError(
                f"metadata key {key!r} is refused: metadata describes a secret, "
                "it never carries its value",
                retry=Retry.PERMANENT,
            )
        if not isinstance(value, str) or len(value) > META_VALUE_MAX:
            raise DriverError(
                f"metadata {key!r} must be a string of at most {META_VALUE_MAX} characters",
                retry=Retry.PERMANENT,
            )
    return dict(metadata)


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
