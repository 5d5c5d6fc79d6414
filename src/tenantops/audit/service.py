"""Append to and verify the hash-chained audit trail.

Every change calls ``record`` inside its own transaction. The entry is flushed
before the transaction commits; if it cannot be written, ``AuditUnavailable``
is raised and the caller's transaction rolls back, so no change goes
unrecorded (fail-closed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tenantops.audit import repository
from tenantops.audit.models import AuditEntry, AuditHead
from tenantops.auth.principal import Principal
from tenantops.db import Database
from tenantops.errors import AuditUnavailable
from tenantops.kit.bulk import insert_many
from tenantops.kit.canonical import canonical_json, jsonable
from tenantops.kit.clock import as_utc, utcnow
from tenantops.kit.context import current_request_id
from tenantops.kit.ids import new_id

GENESIS = "0" * 64
HEAD_ID = 1

log = structlog.get_logger("tenantops.audit")


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
    """SHA-256 over the canonical form of an entry and its predecessor's hash.

    ``at`` is hashed as UTC: PostgreSQL hands a ``timestamptz`` back in the
    session's time zone, and the hash must not depend on the server's setting.
    """
    body = {
        "seq": seq,
        "id": id,
        "at": as_utc(at).astimezone(UTC).isoformat(timespec="microseconds"),
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


def hash_of(entry: AuditEntry, prev_hash: str) -> str:
    """The hash ``entry`` must carry when it follows an entry hashed ``prev_hash``."""
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
        head = _locked_head(session)
        # In UTC whatever zone the clock reports: the stored instant and its hash
        # must not depend on it (SQLite keeps only the wall time).
        at = as_utc(utcnow()).astimezone(UTC)
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
        entry.hash = hash_of(entry, head.hash)
        session.add(entry)
        head.seq = entry.seq
        head.hash = entry.hash
        session.flush()
    except SQLAlchemyError as exc:
        # The driver's message only, never the statement's parameters.
        log.error(
            "audit entry not written; the change is refused",
            action=action,
            tenant_id=tenant_id,
            error=f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}",
        )
        raise AuditUnavailable(
            "the audit entry could not be written, so the change was not made"
        ) from exc
    return entry


@dataclass(frozen=True)
class NewEntry:
    """One entry for ``record_many``: the arguments ``record`` takes."""

    actor: Principal
    action: str
    tenant_id: str | None
    changes: dict[str, Any]
    detail: dict[str, Any] | None = None


_LOG = cast(Table, AuditEntry.__table__)


def record_many(session: Session, entries: Sequence[NewEntry]) -> None:
    """Append ``entries`` in order, as that many ``record`` calls would, in fewer statements.

    The chain is the same one ``record`` builds (same fields, hashes and head),
    but the head is locked once, the entries go in with one multi-row
    ``INSERT`` and the head is moved once. Fail-closed like ``record``: if the
    entries cannot be written, ``AuditUnavailable`` is raised and the caller's
    transaction rolls back with them.
    """
    if not entries:
        return
    try:
        session.flush()
        head = _locked_head(session)
        seq, prev = head.seq, head.hash
        request_id = current_request_id()
        rows: list[dict[str, Any]] = []
        for new in entries:
            seq += 1
            row = {
                "seq": seq,
                "id": new_id(),
                "at": as_utc(utcnow()).astimezone(UTC),
                "actor": new.actor.subject,
                "actor_roles": new.actor.role_names(),
                "action": new.action,
                "tenant_id": new.tenant_id,
                "request_id": request_id,
                "changes": jsonable(new.changes),
                "detail": jsonable(new.detail or {}),
                "prev_hash": prev,
            }
            row["hash"] = prev = entry_hash(**row)
            rows.append(row)
        insert_many(session, _LOG, rows)
        head.seq, head.hash = seq, prev
        session.flush()
    except SQLAlchemyError as exc:
        log.error(
            "audit entries not written; the change is refused",
            actions=sorted({e.action for e in entries}),
            error=f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}",
        )
        raise AuditUnavailable(
            "the audit entry could not be written, so the change was not made"
        ) from exc


def serialize(session: Session) -> None:
    """Take the audit chain's lock now, for the rest of the transaction.

    Every audited write takes it before it commits, so a check made after this
    sees every write committed before it and none can commit before this
    transaction ends: what a uniqueness check across tenants needs (two
    transactions would otherwise both find the name free). The caller would
    take it anyway when it records its entry; this only takes it earlier.
    """
    _locked_head(session)


def _locked_head(session: Session) -> AuditHead:
    """The chain head, locked until the transaction ends; read once per transaction.

    The lock is held to the end of the transaction, so a second entry of the
    same transaction (a worker recording a batch of steps) reuses the head it
    already holds instead of reading it again.
    """
    transaction = session.get_transaction()
    held = session.info.get("audit_head")
    if held is not None and held[0] is transaction:
        return held[1]  # type: ignore[no-any-return]
    # populate_existing: a head this session read earlier (unlocked) may be
    # stale; the locked read must see the latest committed seq and hash.
    head = session.execute(
        select(AuditHead)
        .where(AuditHead.id == HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()
    session.info["audit_head"] = (transaction, head)
    return head


def head(session: Session) -> tuple[int, str] | None:
    """The chain's last entry number and hash as this transaction sees them (no lock)."""
    row = session.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == HEAD_ID))
    found = row.first()
    return (found.seq, found.hash) if found else None


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``ok``, how many entries, and the first bad one."""

    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str | None = None


@contextmanager
def snapshot(db: Database) -> Iterator[Session]:
    """A read-only session over one consistent snapshot of the trail, for ``verify``.

    Under PostgreSQL's default READ COMMITTED every statement sees a new
    snapshot, so a walk racing live writers would find a head newer than the
    entries it read and report a break that is not there. REPEATABLE READ pins
    one snapshot; SQLite in WAL mode already reads one per transaction.
    """
    with db.sessions() as session:
        if not db.is_sqlite:
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


def _entries(session: Session, batch: int = 1000) -> Iterator[AuditEntry]:
    # No lower bound on the first batch: a row forged with seq <= 0 must be seen.
    last: int | None = None
    while True:
        query = select(AuditEntry).order_by(AuditEntry.seq).limit(batch)
        if last is not None:
            query = query.where(AuditEntry.seq > last)
        rows = session.execute(query).scalars().all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Walk the chain; report the first entry that was edited, inserted, moved or lost.

    Run it over a ``snapshot`` so writers committing meanwhile cannot make an
    intact trail look broken.
    """
    prev_hash, expected, checked = GENESIS, 1, 0
    for entry in _entries(session):
        if entry.seq < expected:
            return VerifyResult(
                False, checked, entry.seq, f"entry {entry.seq} lies before the first entry (1)"
            )
        if entry.seq > expected:
            return VerifyResult(
                False, checked, expected, f"entry {expected} is missing (next is {entry.seq})"
            )
        if entry.prev_hash != prev_hash:
            # Either this entry or its predecessor was altered (or swapped in).
            previous = f"entry {expected - 1}" if expected > 1 else "the start of the chain"
            return VerifyResult(
                False,
                checked,
                entry.seq,
                f"does not link to {previous}: one of the two was altered or replaced",
            )
        if hash_of(entry, prev_hash) != entry.hash:
            return VerifyResult(False, checked, entry.seq, "content does not match its hash")
        prev_hash, expected, checked = entry.hash, expected + 1, checked + 1
    head = session.get(AuditHead, HEAD_ID)
    if head is None:
        return VerifyResult(False, checked, None, "the audit head row is missing")
    if head.seq > checked:
        return VerifyResult(
            False,
            checked,
            checked + 1,
            f"entry {checked + 1} is missing: the trail ends at entry {checked} "
            f"but its head records entry {head.seq}",
        )
    if head.seq < checked:
        return VerifyResult(
            False,
            head.seq,
            head.seq + 1,
            f"entry {head.seq + 1} is not recorded in the head, which ends at entry {head.seq}",
        )
    if head.hash != prev_hash:
        return VerifyResult(
            False,
            max(checked - 1, 0),
            checked or None,
            "does not match the hash the head records",
        )
    return VerifyResult(True, checked)


def entries_about(
    session: Session, *, tenant_id: str, action: str, since: datetime | None, limit: int = 100
) -> Sequence[AuditEntry]:
    """One tenant's entries of one ``action`` since ``since``, oldest first, at most ``limit``.

    For another domain reading back what the trail recorded (the access
    review reads who approved its gate), without reaching the table.
    """
    return repository.list_entries(
        session, tenant_id=tenant_id, action=action, since=since, limit=limit
    )


def tenant_trail(session: Session, tenant_id: str) -> list[dict[str, Any]]:
    """Every entry about one tenant, oldest first, as plain JSON values (evidence, exports)."""
    entries: list[dict[str, Any]] = []
    after: int | None = None
    while True:
        page = repository.list_entries(session, tenant_id=tenant_id, after_seq=after, limit=500)
        entries.extend(
            {
                "seq": e.seq,
                "id": e.id,
                "at": as_utc(e.at).isoformat(),
                "actor": e.actor,
                "action": e.action,
                "changes": e.changes,
                "detail": e.detail,
                "hash": e.hash,
            }
            for e in page
        )
        if len(page) < 500:
            return entries
        after = page[-1].seq
