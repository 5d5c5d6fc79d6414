"""Connection settings of the Vault secret-store adapter.

The token is a ``SecretStr``: it never shows in a repr, a log line or an error
message. Names that end up in Vault paths and ACL policies (mount, prefixes)
may not carry glob characters, so no tenant's policy can reach past its prefix.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

# A Vault path segment list: no glob (*, +), no spaces, quotes or "..".
SEGMENTS = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


class VaultSettings(BaseModel):
    """Where the Vault that keeps tenants' secret stores is, how to log in, and its names."""

    url: str = Field(
        default="http://127.0.0.1:8200",
        pattern=r"^https?://[^\s/]+/?$",
        description="Vault's address (scheme, host, port), as VAULT_ADDR.",
    )
    token: SecretStr = Field(
        default=SecretStr(""),
        description="A token whose policy allows the paths `tenantops doctor` checks.",
    )
    namespace: str | None = Field(
        default=None, pattern=SEGMENTS, description="Vault Enterprise namespace, if any."
    )
    kv_mount: str = Field(default="secret", pattern=SEGMENTS, description="A KV v2 mount.")
    path_prefix: str = Field(
        default="tenants",
        pattern=SEGMENTS,
        description="A tenant's path references live under <kv_mount>/<path_prefix>/<tenant>/.",
    )
    state_path: str = Field(
        default="tenantops/stores",
        pattern=SEGMENTS,
        description="KV metadata entries <state_path>/<tenant id> record each store's status.",
    )
    policy_prefix: str = Field(
        default="tenant-",
        pattern=r"^[a-z0-9_.-]*$",
        description="The tenant's ACL policy (and token role) is <policy_prefix><tenant>.",
    )
    lease_prefixes: tuple[str, ...] = Field(
        default=("auth/token/create/{policy}",),
        description="Lease prefixes revoke cuts (sys/leases/revoke-prefix); {policy} and "
        "{tenant} are filled in. The default: tokens minted from the tenant's token role.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    ca_path: Path | None = Field(
        default=None, description="CA bundle that signed Vault's TLS certificate (VAULT_CACERT)."
    )

    def verify(self) -> bool | str:
        """What ``requests`` verifies TLS with: the CA bundle if set, else the system's."""
        return str(self.ca_path) if self.ca_path is not None else True
