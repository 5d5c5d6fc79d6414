"""ITIL records: open, move through their state machine, annotate, assign, link, list.

Every change is one transaction with its audit entry, its timeline entry and
its event (``tenant.compliance``), so what a record says happened is what the
trail says. Numbers are per kind (``INC0000042``): the next one is taken under
the kind's lock (PostgreSQL advisory lock; SQLite serialises writers anyway),
and the unique ``(kind, seq)`` refuses whatever slips past it. A record opened
with a ``correlation_id`` is opened once: the same key returns it again
(``replayed``), so a runbook step run twice files one ticket.

Who may do what, beyond the route table: an account manager opens changes
only; leaving ``authorize`` (approving or rejecting a change) takes governance
or admin, and never the person who opened the change (segregation of duties,
as ``approvals.rules``). A tenant owner reads their own tenant's records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantops.audit import service as audit
from tenantops.auth.principal import Principal
from tenantops.errors import (
    Conflict,
    IdempotencyMismatch,
    SegregationOfDuties,
    Unprocessable,
)
from tenantops.events import catalogue, outbox
from tenantops.itil import hooks, repository, states
from tenantops.itil.access import AUTHORIZERS as AUTHORIZERS
from tenantops.itil.access import CHANGE_OPENERS as CHANGE_OPENERS
from tenantops.itil.access import WRITERS as WRITERS
from tenantops.itil.access import find as _find
from tenantops.itil.access import locked as locked
from tenantops.itil.access import may_write as _may_write
from tenantops.itil.access import visible as _visible
from tenantops.itil.models import ItilNote, ItilRecord
from tenantops.itil.states import Kind
from tenantops.kit.clock import utcnow
from tenantops.kit.cursor import decode_cursor
from tenantops.kit.ids import new_id
from tenantops.kit.locks import serialise
from tenantops.tenants import service as tenants

SOURCES = frozenset({"manual", "runbook", "alert", "sla", "itsm"})
LISTED_AT_MOST = 500


class Opened(NamedTuple):
    """The record an ``open_record`` call stands for, and whether it was opened before."""

    record: ItilRecord
    replayed: bool


def number_of(kind: Kind, seq: int) -> str:
    return f"{states.PREFIX[kind]}{seq:07d}"


def get(session: Session, *, principal: Principal, ref: str) -> ItilRecord:
    """A record the principal may see, by id or number (``INC0000042``)."""
    return _visible(principal, _find(session, ref), ref)


def timeline(session: Session, record: ItilRecord) -> Sequence[ItilNote]:
    """The record's notes, state changes, links and assignments, oldest first."""
    return repository.timeline(session, record.id)


def next_states(record: ItilRecord) -> list[str]:
    """Where the record may move from its state now."""
    kind = Kind(record.kind)
    return sorted(states.allowed(kind, record.state, standard=_standard(record)))


def list_records(
    session: Session,
    *,
    principal: Principal,
    kind: Kind | None = None,
    state: str | None = None,
    tenant: str | None = None,
    open_only: bool = False,
    cursor: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[Sequence[ItilRecord], str | None]:
    """A page of records the principal may see, newest first; a tenant owner sees their own."""
    tenant_ids: list[str] | None = None
    if tenant is not None:
        tenant_ids = [tenants.get_tenant(session, principal=principal, ref=tenant).id]
    elif principal.tenant_scoped:
        own = tenants.own_tenant_id(session, principal)
        if own is None:
            return [], None
        tenant_ids = [own]
    filters = repository.RecordFilter(
        kind=kind.value if kind else None,
        state=state,
        tenant_ids=tenant_ids,
        open_only=open_only,
        done_states=sorted(states.DONE),
    )
    after = decode_cursor(cursor) if cursor else None
    return repository.list_page(
        session, filters, after_id=after, limit=min(limit, LISTED_AT_MOST), offset=offset
    )


def open_record(
    session: Session,
    *,
    kind: Kind | str,
    title: str,
    description: str,
    priority: int,
    actor: Principal,
    tenant: str | None = None,
    source: str = "manual",
    run_id: str | None = None,
    correlation_id: str | None = None,
    fields: Mapping[str, Any] | None = None,
    external: Mapping[str, str] | None = None,
    problem: str | None = None,
) -> Opened:
    """Open a record linked to ``tenant`` (id or name; None: the platform), or return the
    one ``correlation_id`` opened before.

    ``external`` (``system``, ``id``, ``link``) marks the row as the mirror of a
    ticket in the ITSM tool. A priority 1 or 2 incident pages on-call in the
    same transaction.
    """
    kind = _kind(kind)
    _may_write(actor, CHANGE_OPENERS if kind is Kind.CHANGE else WRITERS)
    if not 1 <= priority <= 4:
        raise Unprocessable("priority must be 1 (critical) to 4 (low)", param="priority")
    if source not in SOURCES:
        raise Unprocessable(f"source must be one of {sorted(SOURCES)}", param="source")
    if not title.strip():
        raise Unprocessable("a record needs a title", param="title")
    extra = {str(k): v for k, v in (fields or {}).items()}
    if kind is Kind.CHANGE and extra.get("type") == states.STANDARD and source != "runbook":
        # Pre-authorised changes skip authorisation: only a runbook that passed its
        # approval gate opens one.
        raise Unprocessable("only a runbook opens a standard (pre-authorised) change")
    owner = None if tenant is None else tenants.get_tenant(session, principal=actor, ref=tenant)
    owner_id = owner.id if owner else None
    found = _replay(session, actor, kind, owner_id, correlation_id)
    if found is not None:
        return Opened(found, True)
    linked = _problem(session, actor, problem, kind) if problem else None
    serialise(session, f"itil:number:{kind.value}")
    # Looked up again under the lock: a concurrent open with this key has committed.
    found = _replay(session, actor, kind, owner_id, correlation_id)
    if found is not None:
        return Opened(found, True)
    now = utcnow()
    seq = repository.next_seq(session, kind.value)
    record = ItilRecord(
        id=new_id(),
        kind=kind.value,
        seq=seq,
        number=number_of(kind, seq),
        tenant_id=owner.id if owner else None,
        tenant_name=owner.name if owner else None,
        title=title.strip()[:300],
        description=description,
        state=states.NEW,
        priority=priority,
        source=source,
        run_id=run_id,
        correlation_id=correlation_id,
        external_system=(external or {}).get("system"),
        external_id=(external or {}).get("id"),
        external_link=(external or {}).get("link"),
        problem_id=linked.id if linked else None,
        opened_by=actor.subject,
        fields=extra,
        opened_at=now,
        updated_at=now,
        version=1,
    )
    session.add(record)
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(
            f"another {kind.value} took this number or correlation id at the same time; retry",
        ) from exc
    audit.record(
        session,
        actor=actor,
        action="itil.record.opened",
        tenant_id=record.tenant_id,
        changes={"record": {"before": None, "after": hooks.audited(record)}},
        detail={"number": record.number, "source": source, "run_id": run_id},
    )
    outbox.emit(session, catalogue.ITIL_RECORD_OPENED, hooks.event(record, actor, None))
    hooks.opened(session, record, actor)
    return Opened(record, False)


def _kind(kind: Kind | str) -> Kind:
    try:
        return Kind(kind)
    except ValueError:
        raise Unprocessable(
            f"kind must be one of {[k.value for k in Kind]}, not {kind!r}", param="kind"
        ) from None


def _replay(
    session: Session,
    actor: Principal,
    kind: Kind,
    tenant_id: str | None,
    correlation_id: str | None,
) -> ItilRecord | None:
    """The record ``correlation_id`` opened, if it is the one this request asks for.

    Keys can be guessed (an alert's is ``alert:<fingerprint>:<startsAt>``), so a
    replay answers only what ``get`` would: a record the caller may not see is
    "not found", and one of another tenant or kind is a reused key, never a
    silent answer.
    """
    if correlation_id is None:
        return None
    found = repository.by_correlation(session, correlation_id)
    if found is None:
        return None
    _visible(actor, found, correlation_id)
    if found.kind != kind.value:
        raise IdempotencyMismatch(
            f"correlation id {correlation_id!r} opened {found.number}, a {found.kind}, "
            f"not a {kind.value}"
        )
    if found.tenant_id != tenant_id:
        raise IdempotencyMismatch(
            f"correlation id {correlation_id!r} opened {found.number} for "
            f"{found.tenant_name or 'the platform'}, not for this request's "
            f"{'tenant' if tenant_id else 'platform'}"
        )
    return found


def _problem(session: Session, actor: Principal, ref: str, kind: Kind) -> ItilRecord:
    if kind is Kind.PROBLEM:
        raise Unprocessable("a problem is not linked to another problem", param="problem")
    found = _visible(actor, _find(session, ref), ref)
    if found.kind != Kind.PROBLEM.value:
        raise Unprocessable(f"{found.number} is a {found.kind}, not a problem", param="problem")
    return found


def _standard(record: ItilRecord) -> bool:
    return record.kind == Kind.CHANGE.value and (record.fields or {}).get("type") == "standard"


def transition(
    session: Session,
    *,
    actor: Principal,
    ref: str,
    to: str,
    resolution: str | None = None,
    note: str | None = None,
    expected_version: int | None = None,
) -> ItilRecord:
    """Move a record one legal step of its state machine (422 names the allowed ones)."""
    record = locked(session, principal=actor, ref=ref, expected_version=expected_version)
    kind = Kind(record.kind)
    target = states.name_of(kind, to) or to
    before = record.state
    allowed = states.allowed(kind, before, standard=_standard(record))
    if record.state == states.AUTHORIZE and kind is Kind.CHANGE:
        if not any(actor.has(r) for r in AUTHORIZERS):
            raise SegregationOfDuties("a change leaves authorize only by governance or admin")
        if actor.subject == record.opened_by:
            raise SegregationOfDuties(
                f"{actor.subject} opened {record.number} and may not authorise it"
            )
    else:
        _may_write(actor)
    if target not in allowed:
        raise Unprocessable(
            f"{record.number} cannot move from {before} to {target}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none (it is ' + before + ')'}",
            allowed=sorted(allowed),
            state=before,
        )
    if states.needs_resolution(kind, target) and not (resolution and resolution.strip()):
        raise Unprocessable(
            f"moving {record.number} to {target} needs a resolution", param="resolution"
        )
    now = utcnow()
    record.state = target
    if resolution and resolution.strip():
        record.resolution = resolution.strip()
    # Taken up for the first time: from new, or reopened after it was resolved from new.
    if record.acknowledged_at is None and target in states.TAKEN_UP:
        record.acknowledged_at = now
    if target == states.RESOLVED:
        record.resolved_at = now
    elif before == states.RESOLVED:
        record.resolved_at = None  # reopened
    if target in states.TERMINAL:
        record.closed_at = now
    record.updated_at = now
    record.version += 1
    text = f"{before} -> {target}"
    for extra in (resolution, note):
        if extra and extra.strip():
            text += f"\n{extra.strip()}"
    session.add(
        ItilNote(record_id=record.id, at=now, author=actor.subject, kind="state", text=text)
    )
    audit.record(
        session,
        actor=actor,
        action="itil.record.transitioned",
        tenant_id=record.tenant_id,
        changes={"state": {"before": before, "after": target}},
        detail={"number": record.number, "resolution": record.resolution, "note": note},
    )
    outbox.emit(session, catalogue.ITIL_RECORD_TRANSITIONED, hooks.event(record, actor, before))
    hooks.moved(session, record, actor)
    return record


def add_note(
    session: Session,
    *,
    actor: Principal,
    ref: str,
    text: str,
    key: str | None = None,
    kind: str = "work_note",
) -> ItilNote:
    """A work note on the timeline; with ``key``, written once however often it is sent."""
    if not text.strip():
        raise Unprocessable("a note needs text", param="text")
    _may_write(actor)
    record = locked(session, principal=actor, ref=ref, expected_version=None)
    if key is not None:
        done = repository.note_by_key(session, key)
        if done is not None:
            if done.record_id != record.id:
                # Named by nothing but the key: the other record may be one the
                # caller may not see.
                raise IdempotencyMismatch(
                    f"note key {key!r} was used on another record, not {record.number}"
                )
            return done
    now = utcnow()
    note = ItilNote(
        record_id=record.id, at=now, author=actor.subject, kind=kind, text=text.strip(), key=key
    )
    session.add(note)
    record.updated_at = now
    record.version += 1
    try:
        session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a note with key {key!r} was added at the same time; retry") from exc
    audit.record(
        session,
        actor=actor,
        action="itil.note.added",
        tenant_id=record.tenant_id,
        changes={},
        detail={"number": record.number, "kind": kind, "key": key},
    )
    return note


def assign(
    session: Session,
    *,
    actor: Principal,
    ref: str,
    assigned_to: str | None,
    expected_version: int | None = None,
) -> ItilRecord:
    """Give the record to a person or group (None: back to the queue)."""
    _may_write(actor)
    record = locked(session, principal=actor, ref=ref, expected_version=expected_version)
    before = record.assigned_to
    if before == assigned_to:
        return record
    record.assigned_to = assigned_to
    _changed(session, record, actor, "assignment", f"assigned to {assigned_to or 'nobody'}")
    audit.record(
        session,
        actor=actor,
        action="itil.record.assigned",
        tenant_id=record.tenant_id,
        changes={"assigned_to": {"before": before, "after": assigned_to}},
        detail={"number": record.number},
    )
    outbox.emit(session, catalogue.ITIL_RECORD_UPDATED, hooks.event(record, actor, record.state))
    return record


def link_problem(
    session: Session,
    *,
    actor: Principal,
    ref: str,
    problem: str,
    expected_version: int | None = None,
) -> ItilRecord:
    """Link an incident or change to the known problem behind it."""
    _may_write(actor)
    record = locked(session, principal=actor, ref=ref, expected_version=expected_version)
    linked = _problem(session, actor, problem, Kind(record.kind))
    before = record.problem_id
    if before == linked.id:
        return record
    record.problem_id = linked.id
    _changed(session, record, actor, "link", f"linked to problem {linked.number}")
    audit.record(
        session,
        actor=actor,
        action="itil.record.linked",
        tenant_id=record.tenant_id,
        changes={"problem_id": {"before": before, "after": linked.id}},
        detail={"number": record.number, "problem": linked.number},
    )
    outbox.emit(session, catalogue.ITIL_RECORD_UPDATED, hooks.event(record, actor, record.state))
    return record


def update_fields(
    session: Session, *, actor: Principal, ref: str, fields: Mapping[str, str]
) -> ItilRecord:
    """Merge ``fields`` into the record's (a runbook step's extra columns); audited.

    ``type`` is not one of them: a change's type is set when it is opened (only
    a runbook opens a standard one), and turning a normal change standard
    afterwards would skip its authorisation.
    """
    _may_write(actor)
    if "type" in fields:
        raise Unprocessable(
            "a record's type is set when it is opened and cannot be updated", param="fields"
        )
    record = locked(session, principal=actor, ref=ref, expected_version=None)
    merged = {**(record.fields or {}), **fields}
    if merged == record.fields:
        return record
    before, record.fields = record.fields, merged
    record.updated_at = utcnow()
    record.version += 1
    audit.record(
        session,
        actor=actor,
        action="itil.record.updated",
        tenant_id=record.tenant_id,
        changes=audit.diff(dict(before or {}), merged),
        detail={"number": record.number},
    )
    return record


def _changed(session: Session, record: ItilRecord, actor: Principal, kind: str, text: str) -> None:
    now = utcnow()
    record.updated_at = now
    record.version += 1
    session.add(ItilNote(record_id=record.id, at=now, author=actor.subject, kind=kind, text=text))


def find_by_correlation(session: Session, correlation_id: str) -> ItilRecord | None:
    """The record ``correlation_id`` opened (an alert's firing, a runbook step), if any."""
    return repository.by_correlation(session, correlation_id)
