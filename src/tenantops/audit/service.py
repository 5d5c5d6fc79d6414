"""Append to and verify the hash-chained audit trail.

Every change calls ``record`` inside its own transaction. The entry is flushed
before the transaction commits; if it cannot be written, ``AuditUnavailable``
is raised and the caller's transaction rolls back, so no change goes
unrecorded (fail-closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.auth.principal import Principal
from tenantops.errors import AuditUnavailable
from tenantops.kit.canonical import canonical_json, jsonable
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.context import current_request_id
from tenantops.kit.ids import new_id

GENESIS = "0" * 64
HEAD_ID = 1


def entry_hash(
    *,
    seq: int,
    id: str,
    at: datetime,
    actor: str,
    actor_roles: Sequence[str],
    action: str,
    tenant_id: str | None,
    request_id: str | None,
    changes: dict[str, Any],
    detail: dict[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 over the canonical form of an entry and its predecessor's hash."""
    body = {
        "seq": seq,
        "id": id,
        "at": as_utc(at).isoformat(timespec="microseconds"),
        "actor": actor,
        "actor_roles": list(actor_roles),
        "action": action,
        "tenant_id": tenant_id,
        "request_id": request_id,
        "changes": changes,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _hash_of(entry: AuditEntry, prev_hash: str) -> str:
    return entry_hash(
        seq=entry.seq,
        id=entry.id,
        at=entry.at,
        actor=entry.actor,
        actor_roles=entry.actor_roles,
        action=entry.action,
        tenant_id=entry.tenant_id,
        request_id=entry.request_id,
        changes=entry.changes,
        detail=entry.detail,
        prev_hash=prev_hash,
    )


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """``{field: {"before": …, "after": …}}`` for the fields that changed."""
    keys = sorted(set(before) | set(after))
    return {
        k: {"before": before.get(k), "after": after.get(k)}
        for k in keys
        if before.get(k) != after.get(k)
    }


def record(
    session: Session,
    *,
    actor: Principal,
    action: str,
    tenant_id: str | None,
    changes: dict[str, Any],
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry to the chain inside the caller's transaction.

    ``changes`` is the before/after of changed fields (see ``diff``); ``detail``
    is the context of the change (reason, decision, references). Neither may
    hold a secret value.
    """
    try:
        session.flush()
        head = session.execute(
            select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
        ).scalar_one()
        at = utcnow()
        entry = AuditEntry(
            seq=head.seq + 1,
            id=new_id(),
            at=at,
            actor=actor.subject,
            actor_roles=actor.role_names(),
            action=action,
            tenant_id=tenant_id,
            request_id=current_request_id(),
            changes=jsonable(changes),
            detail=jsonable(detail or {}),
            prev_hash=head.hash,
        )
        entry.hash = _hash_of(entry, head.hash)
        session.add(entry)
        head.seq = entry.seq
        head.hash = entry.hash
        session.flush()
    except SQLAlchemyError as exc:
        raise AuditUnavailable(
            "the audit entry could not be written, so the change was not made"
        ) from exc
    return entry


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``ok``, how many entries, and the first bad one."""

    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str | None = None


def _entries(session: Session, batch: int = 1000) -> Iterator[AuditEntry]:
    last = 0
    while True:
        rows = (
            session.execute(
                select(AuditEntry)
                .where(AuditEntry.seq > last)
                .order_by(AuditEntry.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Walk the chain; report the first entry that was edited, inserted, moved or lost."""
    prev_hash, expected, checked = GENESIS, 1, 0
    for entry in _entries(session):
        if entry.seq != expected:
            return VerifyResult(
                False, checked, expected, f"entry {expected} is missing (next is {entry.seq})"
            )
        if entry.prev_hash != prev_hash:
            return VerifyResult(
                False, checked, entry.seq, "does not link to the previous entry's hash"
            )
        if _hash_of(entry, prev_hash) != entry.hash:
            return VerifyResult(False, checked, entry.seq, "content does not match its hash")
        prev_hash, expected, checked = entry.hash, expected + 1, checked + 1
    head = session.get(AuditHead, HEAD_ID)
    if head is None:
        return VerifyResult(False, checked, None, "the audit head row is missing")
    if head.seq != checked or head.hash != prev_hash:
        return VerifyResult(
            False,
            checked,
            checked + 1 if head.seq > checked else head.seq,
            f"the trail ends at entry {checked} but its head records entry {head.seq}",
        )
    return VerifyResult(True, checked)
