"""Who may touch a record and how one is found: roles, tenant scope, locks, versions.

A tenant owner sees their own tenant's records; someone else's, and the
platform's, are "not found" — as a tenant is (``tenants.service``), so a
probe learns nothing of what exists.
"""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from tenantops.auth.principal import Principal, Role
from tenantops.errors import Forbidden, NotFound, PreconditionFailed
from tenantops.itil import repository
from tenantops.itil.models import ItilRecord

WRITERS = frozenset({Role.OPS_ENGINEER, Role.SECURITY, Role.ADMIN})
CHANGE_OPENERS = WRITERS | {Role.ACCOUNT_MANAGER}
AUTHORIZERS = frozenset({Role.GOVERNANCE, Role.ADMIN})
NUMBER = re.compile(r"^(INC|CHG|PRB)[0-9]{7,}$")


def may_write(actor: Principal, roles: frozenset[Role] = WRITERS) -> None:
    if not any(actor.has(r) for r in roles):
        raise Forbidden(f"{actor.subject} may not change ITIL records")


def visible(principal: Principal, record: ItilRecord | None, ref: str) -> ItilRecord:
    # Someone else's tenant's record is "not found", as a tenant is (tenants.service).
    if record is None:
        raise NotFound(f"no ITIL record {ref!r}")
    if record.tenant_id is None:
        if principal.tenant_scoped:
            raise NotFound(f"no ITIL record {ref!r}")
    elif not principal.can_see(record.tenant_id, record.tenant_name or ""):
        raise NotFound(f"no ITIL record {ref!r}")
    return record


def find(session: Session, ref: str, *, for_update: bool = False) -> ItilRecord | None:
    if NUMBER.match(ref.upper()):
        return repository.by_number(session, ref.upper(), for_update=for_update)
    return repository.get(session, ref, for_update=for_update)


def locked(
    session: Session, *, principal: Principal, ref: str, expected_version: int | None
) -> ItilRecord:
    """The record, locked for this transaction; 412 if it moved past ``expected_version``."""
    record = visible(principal, find(session, ref, for_update=True), ref)
    if expected_version is not None and record.version != expected_version:
        raise PreconditionFailed(
            f"{record.number} is at version {record.version}, not {expected_version}; "
            "read it again",
            current_version=record.version,
        )
    return record
