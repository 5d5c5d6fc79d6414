"""Principals and tenants the ITIL tests share."""

from __future__ import annotations

from tenantops.auth.principal import Principal, Role
from tenantops.db import Database
from tenantops.tenants import service as tenants
from tenantops.tenants.schemas import TenantCreate
from tests.factories import tenant_body

OPS = Principal("oli", frozenset({Role.OPS_ENGINEER}))
OPS2 = Principal("olga", frozenset({Role.OPS_ENGINEER}))
SEC = Principal("sue", frozenset({Role.SECURITY}))
GOV = Principal("gus", frozenset({Role.GOVERNANCE}))
ADMIN = Principal("root", frozenset({Role.ADMIN}))
AM = Principal("amy", frozenset({Role.ACCOUNT_MANAGER}))
AUDITOR = Principal("ada", frozenset({Role.AUDITOR}))


def make_tenant(db: Database, name: str) -> str:
    """A requested tenant named ``name``; its id."""
    with db.write() as session:
        tenant, _ = tenants.create_tenant(
            session, principal=AM, data=TenantCreate(**tenant_body(name=name))
        )
        return tenant.id
