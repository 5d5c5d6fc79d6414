"""Secrets rotation: the inventory, its rotation cycles, and which secrets are due.

The inventory is a table refreshed from each tenant's secret store (what the
store holds: paths, status, generation, when the current value was written,
``owner``/``purpose``/``rotation_days`` metadata) plus what operators register
or attest. No value is ever read, stored or logged: the store port carries
none. A secret is due ``rotation_days`` after its last rotation — the later of
what the store reports and what a person or a runbook attested — and "due
soon" a quarter of its cycle before that (at most ``MAX_WARNING_DAYS``). A
secret the store does not report yet counts from when the inventory first saw it.
A secret not rotated since its store was last revoked may have leaked: once the
store is restored it is due at once (from the revocation), whatever its cycle.

Due and overdue secrets are announced (an event on ``tenant.security``) once
per status and due date: the check remembers the last announcement on the row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.drivers.errors import DriverError
from tenantops.drivers.secrets.port import StoreState, check_path
from tenantops.errors import NotFound, Unprocessable
from tenantops.events import catalogue, outbox
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.locks import serialise
from tenantops.secrets import repository
from tenantops.secrets.models import SecretEntry
from tenantops.tenants import service as tenants

DEFAULT_CYCLE_DAYS = 90
MAX_WARNING_DAYS = 14
MAX_CYCLE_DAYS = 3650
LISTED_AT_MOST = 1000
# The store's metadata keys the inventory reads (``check_metadata`` lets them through).
OWNER, PURPOSE, CYCLE = "owner", "purpose", "rotation_days"


class RotationStatus(StrEnum):
    OK = "ok"
    DUE_SOON = "due_soon"
    OVERDUE = "overdue"
    REVOKED = "revoked"


def warning(rotation_days: int) -> timedelta:
    """How long before its due date a secret is "due soon": a quarter of its cycle,
    at least a day and at most ``MAX_WARNING_DAYS``."""
    return timedelta(days=min(MAX_WARNING_DAYS, max(1, rotation_days // 4)))


def status_of(row: SecretEntry, now: datetime) -> RotationStatus:
    """Where a secret stands at ``now``; a revoked one is not due until it is restored.

    The same rule as ``list_secrets``' filters: ``next_due_at`` and ``due_soon_at``.
    """
    if row.store_status == "revoked":
        return RotationStatus.REVOKED
    if now >= as_utc(row.next_due_at):
        return RotationStatus.OVERDUE
    if now >= as_utc(row.due_soon_at):
        return RotationStatus.DUE_SOON
    return RotationStatus.OK


def _recompute(row: SecretEntry) -> None:
    known = [as_utc(t) for t in (row.store_rotated_at, row.attested_at) if t is not None]
    row.last_rotated_at = max(known, default=as_utc(row.first_seen_at))
    due = row.last_rotated_at + timedelta(days=row.rotation_days)
    revoked = None if row.store_revoked_at is None else as_utc(row.store_revoked_at)
    if revoked is not None and revoked > row.last_rotated_at:
        # Not rotated since its store was revoked: it may have leaked, it is due.
        due = min(due, revoked)
    row.next_due_at = due
    row.due_soon_at = due - warning(row.rotation_days)


def _scope(tenant_id: str) -> str:
    """The lock that serialises every change to a tenant's entries (PostgreSQL)."""
    return f"secret-inventory:{tenant_id}"


def _cycle(value: str | None) -> int | None:
    """A ``rotation_days`` metadata value, if it is a usable number of days."""
    if value is None or not value.strip().isdigit():
        return None
    days = int(value)
    return days if 1 <= days <= MAX_CYCLE_DAYS else None


def _new_entry(tenant_id: str, tenant_name: str, path: str, now: datetime) -> SecretEntry:
    row = SecretEntry(
        tenant_id=tenant_id,
        path=path,
        tenant_name=tenant_name,
        rotation_days=DEFAULT_CYCLE_DAYS,
        store_status="absent",
        first_seen_at=now,
        updated_at=now,
    )
    _recompute(row)
    return row


# The inventory's views ----------------------------------------------------------------


def as_dict(row: SecretEntry, now: datetime | None = None) -> dict[str, Any]:
    """The API's view of an entry (metadata only)."""
    at = now or utcnow()
    return {
        "tenant_id": row.tenant_id,
        "tenant_name": row.tenant_name,
        "path": row.path,
        "owner": row.owner,
        "purpose": row.purpose,
        "rotation_days": row.rotation_days,
        "registered_by": row.registered_by,
        "store_status": row.store_status,
        "version": row.version,
        "last_rotated_at": as_utc(row.last_rotated_at),
        "next_due_at": as_utc(row.next_due_at),
        "status": status_of(row, at),
        "attested_at": None if row.attested_at is None else as_utc(row.attested_at),
        "attested_by": row.attested_by,
        "evidence": row.evidence,
        "refreshed_at": None if row.refreshed_at is None else as_utc(row.refreshed_at),
    }


def list_secrets(
    session: Session,
    *,
    principal: Principal,
    tenant: str | None,
    status: RotationStatus | None,
    limit: int = LISTED_AT_MOST,
) -> list[SecretEntry]:
    """Entries the principal may see, soonest due first; a tenant owner sees their own."""
    now = utcnow()
    tenant_ids: list[str] | None = None
    if tenant is not None:
        tenant_ids = [tenants.get_tenant(session, principal=principal, ref=tenant).id]
    elif principal.tenant_scoped:
        own = tenants.own_tenant_id(session, principal)
        if own is None:
            return []
        tenant_ids = [own]
    # Each status is a range of the stored dates (as ``status_of`` reads them), so the
    # query filters and ``limit`` holds.
    window = repository.Window()
    if status == RotationStatus.REVOKED:
        window = repository.Window(revoked=True)
    elif status == RotationStatus.OVERDUE:
        window = repository.Window(revoked=False, due_by=now)
    elif status == RotationStatus.DUE_SOON:
        window = repository.Window(revoked=False, due_after=now, soon_by=now)
    elif status == RotationStatus.OK:
        window = repository.Window(revoked=False, soon_after=now)
    return list(repository.listing(session, tenant_ids=tenant_ids, window=window, limit=limit))


def _visible_entry(
    session: Session, principal: Principal, tenant_ref: str, path: str, *, lock: bool
) -> tuple[Any, SecretEntry | None]:
    """The tenant and its entry at ``path``; with ``lock``, nobody else changes the
    tenant's entries (nor adds this one: a row lock cannot hold a row not there yet)
    until the transaction ends."""
    tenant = tenants.get_tenant(session, principal=principal, ref=tenant_ref)
    if lock:
        serialise(session, _scope(tenant.id))
    return tenant, repository.get(session, tenant.id, _path(path), for_update=lock)


def _path(path: str) -> str:
    try:
        return check_path(path.strip("/"))
    except DriverError as exc:
        raise Unprocessable(str(exc)) from None


# Operators' changes (audited) ---------------------------------------------------------


def register_secret(
    session: Session,
    *,
    principal: Principal,
    tenant_ref: str,
    path: str,
    owner: str | None,
    purpose: str | None,
    rotation_days: int,
) -> SecretEntry:
    """Register (or change) a secret's owner, purpose and rotation cycle (audited).

    What an operator registers wins over the store's metadata from then on. The
    path need not be in the store yet: it shows as ``absent`` until it is.
    """
    if not 1 <= rotation_days <= MAX_CYCLE_DAYS:
        raise Unprocessable(f"rotation_days must be 1 to {MAX_CYCLE_DAYS}")
    tenant, row = _visible_entry(session, principal, tenant_ref, path, lock=True)
    now = utcnow()
    before = None if row is None else _registration(row)
    if row is None:
        row = _new_entry(tenant.id, tenant.name, _path(path), now)
        session.add(row)
    row.owner, row.purpose, row.rotation_days = owner, purpose, rotation_days
    row.registered_by, row.updated_at = principal.subject, now
    _recompute(row)
    audit.record(
        session,
        actor=principal,
        action="secret.registered",
        tenant_id=tenant.id,
        changes={"registration": {"before": before, "after": _registration(row)}},
        detail={"path": row.path},
    )
    return row


def _registration(row: SecretEntry) -> dict[str, Any]:
    return {"owner": row.owner, "purpose": row.purpose, "rotation_days": row.rotation_days}


def record_rotation(
    session: Session,
    *,
    principal: Principal,
    tenant_ref: str,
    path: str,
    evidence: str,
    rotated_at: datetime | None = None,
    version: int | None = None,
) -> SecretEntry:
    """Record that a secret was rotated, by whom and with what evidence (audited, announced).

    ``rotated_at`` defaults to now and may not be in the future. The next due
    date counts from the latest rotation known, so recording an older one
    changes nothing but the record.
    """
    now = utcnow()
    when = now if rotated_at is None else as_utc(rotated_at)
    if when > now:
        raise Unprocessable("rotated_at is in the future; record a rotation once it happened")
    tenant, row = _visible_entry(session, principal, tenant_ref, path, lock=True)
    if row is None:
        raise NotFound(
            f"no secret {path!r} of tenant {tenant.name} in the inventory: register it "
            f"(`tenantops secrets register {tenant.name} {path} …`) or wait for the next check"
        )
    before = {"last_rotated_at": as_utc(row.last_rotated_at).isoformat()}
    if row.attested_at is None or when >= as_utc(row.attested_at):
        row.attested_at, row.attested_by, row.evidence = when, principal.subject, evidence
    if version is not None:
        row.version = version
    row.updated_at = now
    _recompute(row)
    after = {"last_rotated_at": as_utc(row.last_rotated_at).isoformat()}
    audit.record(
        session,
        actor=principal,
        action="secret.rotated",
        tenant_id=tenant.id,
        changes={"rotation": {"before": before, "after": after}},
        detail={"path": row.path, "rotated_at": when.isoformat(), "evidence": evidence},
    )
    outbox.emit(session, catalogue.SECRET_ROTATED, _event(row, principal.subject, now, evidence))
    return row


def _event(
    row: SecretEntry, actor: str, now: datetime, evidence: str | None = None
) -> catalogue.SecretRotation:
    status = status_of(row, now)
    return catalogue.SecretRotation(
        tenant_id=row.tenant_id,
        tenant_name=row.tenant_name,
        actor=actor,
        path=row.path,
        owner=row.owner,
        purpose=row.purpose,
        rotation_days=row.rotation_days,
        last_rotated_at=as_utc(row.last_rotated_at).isoformat(),
        due_at=as_utc(row.next_due_at).isoformat(),
        status="ok" if status == RotationStatus.REVOKED else status.value,
        version=row.version,
        evidence=evidence,
    )


# The scheduled check --------------------------------------------------------------------


def refresh_tenant(
    session: Session, *, tenant_id: str, tenant_name: str, state: StoreState | None
) -> int:
    """Bring a tenant's entries in line with its store as read; how many paths it holds.

    A path the store no longer reports stays in the inventory as ``absent``
    (with its history) until someone looks; the store's metadata fills owner,
    purpose and cycle of entries nobody registered. The store's last revocation
    is kept on each entry: restored, a secret not rotated since is due at once.
    """
    now = utcnow()
    serialise(session, _scope(tenant_id))  # an operator may be registering a new path
    rows = repository.of_tenant(session, tenant_id)
    refs = () if state is None else state.paths
    seen: set[str] = set()
    for ref in refs:
        path = ref.path.removeprefix(state.prefix) if state is not None else ref.path
        seen.add(path)
        row = rows.get(path)
        if row is None:
            row = rows[path] = _new_entry(tenant_id, tenant_name, path, now)
            session.add(row)
        _take_store_view(row, ref.metadata)
        revoked = None if state is None else state.revoked_at
        if revoked is None and row.store_status == "revoked" and ref.status != "revoked":
            # Back from a revocation the store does not date: due from when we saw it.
            revoked = row.store_revoked_at or now
        if revoked is not None and (
            row.store_revoked_at is None or as_utc(revoked) > as_utc(row.store_revoked_at)
        ):
            row.store_revoked_at = revoked
        row.store_status, row.version = ref.status, ref.version
        row.store_rotated_at = ref.rotated_at
        row.tenant_name, row.refreshed_at, row.updated_at = tenant_name, now, now
        _recompute(row)
    for path, row in rows.items():
        if path not in seen and row.store_status != "absent":
            row.store_status, row.refreshed_at, row.updated_at = "absent", now, now
    return len(seen)


def _take_store_view(row: SecretEntry, metadata: Mapping[str, str]) -> None:
    if row.registered_by is not None:
        return
    row.owner = metadata.get(OWNER) or None
    row.purpose = metadata.get(PURPOSE) or None
    row.rotation_days = _cycle(metadata.get(CYCLE)) or DEFAULT_CYCLE_DAYS


@dataclass(frozen=True)
class CheckSummary:
    """What one check found: how many secrets are due soon or overdue, how many it announced."""

    due_soon: int
    overdue: int
    announced: int


def marker(status: RotationStatus, row: SecretEntry) -> str:
    """``overdue:2030-03-01``: one announcement per status and due date."""
    return f"{status.value}:{as_utc(row.next_due_at).date().isoformat()}"


def check_due(session: Session, *, actor: str) -> CheckSummary:
    """Announce every live secret that became due soon or overdue since it was last announced.

    Live: in the store and not revoked, or registered by an operator and not in the
    store yet. A secret that left the store (a deleted path, an archived tenant's)
    stays listed as ``absent`` but is not announced: there is nothing left to rotate.
    """
    now = utcnow()
    counts = {RotationStatus.DUE_SOON: 0, RotationStatus.OVERDUE: 0}
    announced = 0
    for row in repository.due_by(session, now + timedelta(days=MAX_WARNING_DAYS)):
        status = status_of(row, now)
        if status not in counts:
            continue
        counts[status] += 1
        mark = marker(status, row)
        if row.announced == mark:
            continue
        kind = (
            catalogue.SECRET_ROTATION_OVERDUE
            if status == RotationStatus.OVERDUE
            else catalogue.SECRET_ROTATION_DUE
        )
        outbox.emit(session, kind, _event(row, actor, now))
        row.announced, row.updated_at = mark, now
        announced += 1
    return CheckSummary(counts[RotationStatus.DUE_SOON], counts[RotationStatus.OVERDUE], announced)


def pending_notices(session: Session, *, limit: int = 500) -> Sequence[SecretEntry]:
    """Entries announced due whose owner has not been notified of it yet."""
    return repository.unnotified(session, limit)


def mark_notified(session: Session, *, tenant_id: str, path: str, notice: str) -> None:
    """The owner was told of announcement ``notice`` (ignored if a newer one replaced it)."""
    row = repository.get(session, tenant_id, path, for_update=True)
    if row is not None and row.announced == notice:
        row.notified = notice
