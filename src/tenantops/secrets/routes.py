"""JSON API of the secrets inventory: ``/api/v1/secrets``.

Reads and records only: the store is read by the scheduled check (a runbook
step), never in a request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from tenantops.auth.deps import Caller, GuardedRoute, authorize
from tenantops.kit.problems import problem_responses
from tenantops.kit.web import Db
from tenantops.secrets import service
from tenantops.secrets.models import SecretEntry
from tenantops.secrets.schemas import RotationCreate, SecretList, SecretRead, SecretRegister
from tenantops.secrets.service import RotationStatus

router = APIRouter(
    prefix="/api/v1",
    route_class=GuardedRoute,
    tags=["secrets"],
    dependencies=[Depends(authorize)],
    responses=problem_responses(401, 403, 404, 422, 503),
)

TenantRef = Annotated[str, Path(min_length=1, max_length=63, description="Tenant id or name")]


def _read(*rows: SecretEntry) -> list[SecretRead]:
    return [SecretRead.model_validate(service.as_dict(r)) for r in rows]


@router.get(
    "/secrets",
    summary="The secrets inventory, soonest due first (metadata only)",
    response_model=SecretList,
)
def list_secrets(
    db: Db,
    caller: Caller,
    tenant: Annotated[
        str | None, Query(min_length=1, max_length=63, description="Tenant id or name")
    ] = None,
    status: RotationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=service.LISTED_AT_MOST)] = 200,
) -> SecretList:
    """A tenant owner sees the secrets of their own tenant only."""
    with db.read() as session:
        rows = service.list_secrets(
            session, principal=caller, tenant=tenant, status=status, limit=limit
        )
        return SecretList(items=_read(*rows))


@router.put(
    "/secrets/{tenant}/registrations",
    summary="Register a secret's owner, purpose and rotation cycle (audited)",
    response_model=SecretRead,
    responses=problem_responses(400),  # a body that is not JSON
)
def register_secret(tenant: TenantRef, data: SecretRegister, db: Db, caller: Caller) -> SecretRead:
    with db.write() as session:
        row = service.register_secret(
            session,
            principal=caller,
            tenant_ref=tenant,
            path=data.path,
            owner=data.owner,
            purpose=data.purpose,
            rotation_days=data.rotation_days,
        )
        return _read(row)[0]


@router.post(
    "/secrets/{tenant}/rotations",
    summary="Record a rotation that happened, with its evidence (audited, announced)",
    response_model=SecretRead,
    status_code=201,
    responses=problem_responses(400),  # a body that is not JSON
)
def record_rotation(tenant: TenantRef, data: RotationCreate, db: Db, caller: Caller) -> SecretRead:
    """The value was rotated where it lives; this records who did it, when, and the evidence."""
    with db.write() as session:
        row = service.record_rotation(
            session,
            principal=caller,
            tenant_ref=tenant,
            path=data.path,
            evidence=data.evidence,
            rotated_at=data.rotated_at,
        )
        return _read(row)[0]
