"""Who is calling: a principal with roles, possibly scoped to one tenant."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ACCOUNT_MANAGER = "account_manager"
    GOVERNANCE = "governance"
    SECURITY = "security"
    OPS_ENGINEER = "ops_engineer"
    QA = "qa"
    FINANCE = "finance"
    AUDITOR = "auditor"
    TENANT_OWNER = "tenant_owner"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. ``tenant`` (id or name) scopes a tenant owner."""

    subject: str
    roles: frozenset[Role] = field(default_factory=frozenset)
    tenant: str | None = None
    via: str = "token"

    def has(self, role: Role) -> bool:
        return role in self.roles

    @property
    def tenant_scoped(self) -> bool:
        """True for a principal that may only ever see its own tenant.

        Holding ``tenant_owner`` scopes the whole principal, whatever other roles
        it has: a tenant owner without a tenant sees nothing rather than everything.
        """
        return self.tenant is not None or Role.TENANT_OWNER in self.roles

    def can_see(self, tenant_id: str, tenant_name: str) -> bool:
        if not self.tenant_scoped:
            return True
        return self.tenant is not None and self.tenant in (tenant_id, tenant_name)

    def role_names(self) -> list[str]:
        return sorted(r.value for r in self.roles)


SYSTEM = Principal(subject="system:tenantops", roles=frozenset({Role.ADMIN}), via="system")
