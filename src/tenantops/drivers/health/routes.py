"""The built-in probe of each tenant: what the embedded default health-checks.

Stands in for a tenant's own workload endpoint. A tenant is *serving* when
its lifecycle state is ``verifying`` or ``active`` and the local drivers say
its group's access is on, its secret store is active and its queues are not
paused — so a check after provisioning proves the provisioning happened, and
a check of a suspended tenant fails.

These routes are public, like a workload's health endpoint. They answer 200
whenever the probe itself worked and put the verdict in the body
(``serving``), as a status page does; the health driver reads the verdict.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantops.auth.principal import SYSTEM
from tenantops.drivers.access.port import QueueAccess
from tenantops.drivers.actions import identity_provider, queue_access, secret_store
from tenantops.drivers.health.models import ProbeValue
from tenantops.drivers.identity.port import IdentityProvider
from tenantops.drivers.secrets.port import SecretStore
from tenantops.errors import NotFound
from tenantops.kit.clock import utcnow
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import database
from tenantops.tenants import service as tenants

router = APIRouter(prefix="/probe", tags=["probe"], responses=problem_responses(422))

SERVING_STATES = frozenset({"verifying", "active"})

TenantName = Annotated[str, Path(min_length=1, max_length=63)]


class ProbeRead(BaseModel):
    tenant: str
    state: str | None
    serving: bool
    checks: dict[str, bool]


class SyntheticWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str | None = Field(default=None, max_length=200)


class SyntheticRead(BaseModel):
    tenant: str
    written: bool | None = None
    value: str | None = None


class _Adapters:
    """The configured identity, secret-store and queue adapters, built once per app: the
    probe must see what onboarding provisioned through them, whichever they are."""

    def __init__(self, request: Request) -> None:
        settings, db = request.app.state.settings, database(request)
        self.identity: IdentityProvider = identity_provider(settings, db)
        self.secrets: SecretStore = secret_store(settings, db)
        self.queues: QueueAccess = queue_access(settings, db)


def _adapters(request: Request) -> _Adapters:
    found = getattr(request.app.state, "probe_adapters", None)
    if not isinstance(found, _Adapters):
        found = request.app.state.probe_adapters = _Adapters(request)
    return found


def _probe(request: Request, session: Session, name: str) -> tuple[str | None, ProbeRead]:
    try:
        tenant = tenants.get_tenant(session, principal=SYSTEM, ref=name)
    except NotFound:
        return None, ProbeRead(tenant=name, state=None, serving=False, checks={})
    adapters = _adapters(request)
    group = adapters.identity.get_group(tenant_id=tenant.id)
    store = adapters.secrets.get_store(tenant_id=tenant.id)
    access = adapters.queues.get_state(tenant_id=tenant.id)
    checks = {
        "state": tenant.state in SERVING_STATES,
        "identity": group is not None and group.enabled,
        "secrets": store is not None and store.status == "active",
        "queues": access is None or not access.queues_paused,
    }
    return tenant.id, ProbeRead(
        tenant=tenant.name, state=tenant.state, serving=all(checks.values()), checks=checks
    )


@router.get("/tenants/{name}", summary="Is the tenant serving (built-in health probe)")
def probe(request: Request, name: TenantName) -> ProbeRead:
    db = database(request)
    with db.read() as session:
        return _probe(request, session, name)[1]


@router.put(
    "/tenants/{name}/synthetic",
    summary="Write a synthetic-test value",
    # A body that cannot be decoded at all (not UTF-8) is a 400.
    responses=problem_responses(400),
)
def write_synthetic(request: Request, name: TenantName, body: SyntheticWrite) -> SyntheticRead:
    db = database(request)
    with db.read() as session:
        tenant_id, verdict = _probe(request, session, name)
    if tenant_id is None or not verdict.serving or body.value is None:
        return SyntheticRead(tenant=name, written=False)
    for _ in range(3):
        try:
            with db.write() as session:
                row = session.get(ProbeValue, tenant_id, with_for_update=True)
                if row is None:
                    session.add(
                        ProbeValue(tenant_id=tenant_id, value=body.value, written_at=utcnow())
                    )
                else:
                    row.value, row.written_at = body.value, utcnow()
            return SyntheticRead(tenant=name, written=True, value=body.value)
        except IntegrityError:
            continue  # another write created the row first: update it
    return SyntheticRead(tenant=name, written=False)


@router.get("/tenants/{name}/synthetic", summary="Read the synthetic-test value back")
def read_synthetic(request: Request, name: TenantName) -> SyntheticRead:
    db = database(request)
    with db.read() as session:
        tenant_id, verdict = _probe(request, session, name)
        row = session.get(ProbeValue, tenant_id) if tenant_id and verdict.serving else None
        return SyntheticRead(tenant=name, value=row.value if row else None)
