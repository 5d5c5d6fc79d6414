"""Fixtures of the audit tests: a tenant onboarded through the API, a frozen clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tenantops.kit.clock import set_clock
from tenantops.tenants.lifecycle import TenantState
from tests.conftest import Actors
from tests.flows import tenant_in

ActiveTenant = Callable[..., dict[str, Any]]


@pytest.fixture
def active_tenant(client: TestClient, actors: Actors) -> ActiveTenant:
    """Request, approve, provision and verify a tenant through the API."""

    def make(**overrides: Any) -> dict[str, Any]:
        return tenant_in(client, actors, TenantState.ACTIVE, **overrides)

    return make


@pytest.fixture
def fake_clock() -> Iterator[Callable[[datetime], None]]:
    """``fake_clock(datetime)`` freezes the clock; the wall clock comes back afterwards."""

    def freeze(at: datetime) -> None:
        set_clock(lambda: at)

    yield freeze
    set_clock(None)
