"""The tenants list: search, filters, pages of fifty, and how many tenants match.

Rows and counts come from ``tenants.service`` as the viewer (``list_tenants``,
``count_tenants``): the list shows what ``GET /api/v1/tenants`` would, and
counts the same rows with the same conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal
from tenantops.tenants import service as tenants
from tenantops.tenants.lifecycle import TenantState
from tenantops.tenants.repository import TenantFilter
from tenantops.tenants.schemas import TenantRead

PAGE_SIZE = 50


@dataclass(frozen=True)
class ListQuery:
    """The list's search box, filters and page (``cursor`` from the previous page)."""

    q: str | None = None
    state: str | None = None
    region: str | None = None
    tier: str | None = None
    cursor: str | None = None

    def params(self, **changes: str | None) -> dict[str, str]:
        """The query string of this list with ``changes``, empty values left out."""
        values = {
            "q": self.q,
            "state": self.state,
            "region": self.region,
            "tier": self.tier,
            "cursor": self.cursor,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class TenantList:
    """One page of the tenants list: rows, how many match, where this page starts."""

    items: list[TenantRead]
    total: int
    start: int
    next_cursor: str | None
    query: ListQuery
    states: list[str]


def list_tenants(session: Session, *, principal: Principal, query: ListQuery) -> TenantList:
    """A page of the tenants ``principal`` may see, and how many match (the service's)."""
    filters = TenantFilter(state=query.state, region=query.region, tier=query.tier, q=query.q)
    rows, next_cursor = tenants.list_tenants(
        session, principal=principal, filters=filters, cursor=query.cursor, limit=PAGE_SIZE
    )
    total = tenants.count_tenants(session, principal=principal, filters=filters)
    # The rows before this page: the matching ones from the cursor (the last row shown) up.
    before = (
        tenants.count_tenants(session, principal=principal, filters=filters, cursor=query.cursor)
        if query.cursor
        else 0
    )
    return TenantList(
        items=[TenantRead.model_validate(t) for t in rows],
        total=total,
        start=before + 1,
        next_cursor=next_cursor,
        query=query,
        states=[s.value for s in TenantState],
    )
