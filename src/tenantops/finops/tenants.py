"""What finops reads of the tenant registry, in bulk.

The tenants repository answers one tenant at a time; an import resolves
thousands of names at once. This one query belongs in
``tenantops.tenants.repository`` (as ``ids_by_ref``); it lives here until
the tenants owner takes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tenantops.tenants.models import Tenant

IN_LIMIT = 500  # references per IN list


def ids_by_ref(session: Session, refs: Sequence[str]) -> dict[str, str]:
    """``{ref: tenant id}`` for every ref that is a tenant's name or id; unknown refs are absent."""
    found: dict[str, str] = {}
    for start in range(0, len(refs), IN_LIMIT):
        chunk = list(refs[start : start + IN_LIMIT])
        rows = session.execute(
            select(Tenant.id, Tenant.name).where(or_(Tenant.name.in_(chunk), Tenant.id.in_(chunk)))
        )
        wanted = set(chunk)
        for tenant_id, name in rows:
            if name in wanted:
                found[name] = tenant_id
            if tenant_id in wanted:
                found[tenant_id] = tenant_id
    return found
